"""Our RTMP publisher against RTMP servers we did not write.

- The ffmpeg CLI in listen mode (``ffmpeg -listen 1 -i rtmp://... -c copy out.flv``) takes an
  H.264 + AAC push; ffprobe reads its recording: same codecs, every packet, same duration.
- PyAV's FFmpeg 8 in listen mode (tests/rtmp_listener.py) takes HEVC + AAC and AV1 + Opus over
  Enhanced RTMP, and decodes every frame of them.

The listeners take one connection each, so the publisher does not probe their port: it retries
while the connection is refused (the listener is not up yet), which is an event, not a delay.
"""

from __future__ import annotations

import asyncio
import fractions
import json
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest

from mediaserver.restream import PublishError, RtmpPublisher
from mediaserver.rtmp import PublishTarget
from tests.conftest import free_port, make_source, require_ffmpeg

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
# Decoder names (PyAV opens AV1 with libdav1d) -> what the RTMP client calls the codec.
CODECS = {"h264": "avc1", "hevc": "hvc1", "libdav1d": "av01", "aac": "mp4a", "opus": "opus"}

Packet = tuple[str, int, int, bool, bytes]


def demux(path: Path) -> tuple[dict[str, tuple[str, bytes]], list[Packet]]:
    """({kind: (codec, config)}, [(kind, dts, pts, keyframe, data)]) with timestamps shifted
    so the first DTS is 0 (MP4 with B-frames starts below zero; RTMP has no sign)."""
    with av.open(str(path)) as container:
        configs = {
            s.type: (CODECS[s.codec_context.codec.name], bytes(s.codec_context.extradata or b""))
            for s in container.streams
        }
        packets: list[Packet] = []
        for p in container.demux():
            if p.size == 0 or p.dts is None:
                continue
            scale = p.time_base * 1000
            dts = round(p.dts * scale)
            pts = round(p.pts * scale) if p.pts is not None else dts
            packets.append((p.stream.type, dts, pts, p.is_keyframe, bytes(p)))
    shift = -min(0, *(dts for _, dts, *_ in packets))
    return configs, [(k, d + shift, p + shift, key, data) for k, d, p, key, data in packets]


def encode_source(path: Path, video: str, audio: str, seconds: int = 2) -> Path:
    """A small 320x240 30 fps clip encoded by PyAV (HEVC or AV1 need no system ffmpeg)."""
    with av.open(str(path), "w") as out:
        v = out.add_stream(video, rate=30)
        v.width, v.height, v.pix_fmt = 320, 240, "yuv420p"
        v.options = {"x265-params": "log-level=error"} if video == "libx265" else {"preset": "11"}
        a = out.add_stream(audio, rate=48000)
        a.layout = "stereo"
        for i in range(30 * seconds):
            picture = np.full((240, 320, 3), (i * 7) % 255, np.uint8)
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = i, fractions.Fraction(1, 30)
            out.mux(v.encode(frame))
        size = a.codec_context.frame_size or 1024
        for start in range(0, 48000 * seconds, size):
            t = np.arange(start, start + size) / 48000
            tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            stereo = np.stack([tone, tone])
            frame = av.AudioFrame.from_ndarray(stereo, format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = 48000, start
            frame.time_base = fractions.Fraction(1, 48000)
            out.mux(a.encode(frame))
        out.mux(v.encode(None))
        out.mux(a.encode(None))
    return path


async def open_when_listening(url: str, timeout: float = 30.0) -> RtmpPublisher:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await RtmpPublisher.open(
                PublishTarget.parse(url), fourcc_list=["hvc1", "av01", "Opus", "mp4a"]
            )
        except PublishError as exc:
            if exc.stage != "connect" or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def publish(url: str, configs: dict[str, tuple[str, bytes]], packets: list[Packet]) -> None:
    publisher = await open_when_listening(url)
    vcodec, vconfig = configs["video"]
    acodec, aconfig = configs["audio"]
    assert publisher.send_metadata({"width": 320.0, "height": 240.0})
    assert publisher.send_video_config(vcodec, vconfig)
    assert publisher.send_audio_config(acodec, aconfig)
    for kind, dts, pts, keyframe, data in packets:
        if kind == "video":
            assert publisher.send_video(vcodec, dts, pts, keyframe, data)
        else:
            assert publisher.send_audio(acodec, dts, data)
        await asyncio.sleep(0)  # let the loop write as we go, as a paced relay would
    await publisher.close()
    assert publisher.dropped == 0


def probe(path: Path) -> dict:
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-count_packets",
            "-show_entries",
            "stream=codec_type,codec_name,nb_read_packets,width,height,sample_rate,channels"
            ":format=duration",
            "-of",
            "json",
            str(path),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out)


async def test_ffmpeg_cli_records_what_we_push(tmp_path: Path) -> None:
    source = make_source(tmp_path / "src.flv", size="426x240", seconds=4, bitrate="300k")
    configs, packets = demux(source)
    url = f"rtmp://127.0.0.1:{free_port()}/live/some-key"
    recording = tmp_path / "out.flv"
    listener = await asyncio.create_subprocess_exec(
        require_ffmpeg(),
        *("-hide_banner", "-loglevel", "error", "-nostdin", "-listen", "1", "-i", url),
        *("-c", "copy", "-y", str(recording)),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    await publish(url, configs, packets)
    await asyncio.wait_for(listener.communicate(), 30)
    got, want = probe(recording), probe(source)
    streams = {s["codec_type"]: s for s in got["streams"]}
    for expected in want["streams"]:
        assert streams[expected["codec_type"]] == expected
    assert abs(float(got["format"]["duration"]) - float(want["format"]["duration"])) < 0.1


@pytest.mark.parametrize(
    ("video", "audio", "expected"),
    [("libx265", "aac", ("hevc", "aac")), ("libsvtav1", "libopus", ("libdav1d", "opus"))],
)
async def test_ffmpeg8_decodes_enhanced_rtmp(
    tmp_path: Path, video: str, audio: str, expected: tuple[str, str]
) -> None:
    source = await asyncio.to_thread(encode_source, tmp_path / "src.mp4", video, audio)
    configs, packets = demux(source)
    url = f"rtmp://127.0.0.1:{free_port()}/live/some-key"
    listener = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "tests.rtmp_listener", url),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    await publish(url, configs, packets)
    out, err = await asyncio.wait_for(listener.communicate(), 60)
    assert listener.returncode == 0, err.decode()
    info = json.loads(out)
    sent_video = [p for p in packets if p[0] == "video"]
    sent_audio = [p for p in packets if p[0] == "audio"]
    assert (info["video"]["codec"], info["audio"]["codec"]) == expected
    assert bytes.fromhex(info["video"]["config"]) == configs["video"][1]
    assert info["video"]["packets"] == info["video"]["frames"] == len(sent_video)
    assert info["video"]["keyframes"] == sum(p[3] for p in sent_video)
    assert info["video"]["dts"] == [p[1] for p in sent_video]
    assert info["audio"]["packets"] == info["audio"]["frames"] == len(sent_audio)
