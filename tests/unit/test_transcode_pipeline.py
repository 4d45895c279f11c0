"""The live transcoder with real encoded input: renditions, aligned keyframes, passthrough,
HEVC and MP3 sources, a slow rung, thumbnails, end of stream, failures and config changes.

Sources are made once per module with the ffmpeg CLI and demuxed with PyAV into the same
CodecConfig/MediaPacket items ingest produces, fed through a real Subscription. Outputs are
checked by decoding them with PyAV.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import threading
import time
from dataclasses import replace
from itertools import pairwise
from pathlib import Path
from typing import Any

import av
import pytest

from mediaserver.live import CodecConfig, MediaKind, MediaPacket, Subscription
from transcode.ladder import DEFAULT_LADDER, Rung
from transcode.pipeline import LiveTranscoder
from transcode.types import AudioTrackInfo, EncodedPacket, Track, VideoTrackInfo

V, A = MediaKind.VIDEO, MediaKind.AUDIO
NAMES = {"h264": "avc1", "hevc": "hvc1", "aac": "mp4a", "mp3": "mp3", "mp3float": "mp3"}
Item = CodecConfig | MediaPacket


def ffmpeg(*args: str) -> None:
    exe = shutil.which("ffmpeg")
    if exe is None:
        pytest.fail("the ffmpeg CLI makes the test media: run `make test` to install it")
    subprocess.run([exe, "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args], check=True)


def demux(path: Path, *, audio_config: bool = True) -> list[Item]:
    """Configs first, then packets in file order, with millisecond timestamps (as from RTMP).

    ``audio_config=False`` drops the audio config, as legacy FLV MP3 arrives without one.
    """
    items: list[Item] = []
    with av.open(str(path)) as container:
        for stream in container.streams:
            cc = stream.codec_context
            kind = V if stream.type == "video" else A
            if kind is A and not audio_config:
                continue
            items.append(
                CodecConfig(
                    kind,
                    NAMES[cc.name],
                    bytes(cc.extradata or b""),
                    cc.sample_rate if kind is A else 0,
                    cc.channels if kind is A else 0,
                )
            )
        for packet in container.demux():
            if packet.pts is None or packet.size == 0:
                continue
            tb = packet.time_base
            dts = packet.dts if packet.dts is not None else packet.pts
            items.append(
                MediaPacket(
                    V if packet.stream.type == "video" else A,
                    NAMES[packet.stream.codec_context.name],
                    round(dts * tb * 1000),
                    round(packet.pts * tb * 1000),
                    packet.is_keyframe,
                    bytes(packet),
                )
            )
    return items


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Item]]:
    tmp = tmp_path_factory.mktemp("transcode-media")
    h264 = tmp / "h264.flv"
    # 4 s of 1280x720 30 fps H.264 with a keyframe every second, and AAC: what OBS sends.
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=1280x720:rate=30",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-t",
        "4",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-g",
        "30",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-b:a",
        "96k",
        "-ac",
        "2",
        "-f",
        "flv",
        str(h264),
    )
    small = tmp / "small.flv"  # a second source to switch to mid-stream
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=640x360:rate=30",
        "-t",
        "2",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-g",
        "30",
        "-pix_fmt",
        "yuv420p",
        "-an",
        "-f",
        "flv",
        str(small),
    )
    fast = tmp / "fast.flv"  # 60 fps, for a 30 fps rung
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=640x360:rate=60",
        "-t",
        "2",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-g",
        "60",
        "-pix_fmt",
        "yuv420p",
        "-an",
        "-f",
        "flv",
        str(fast),
    )
    bframes = tmp / "bframes.flv"  # B-frames, as OBS sends by default: pts != dts
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=854x480:rate=30",
        "-t",
        "3",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-bf",
        "2",
        "-g",
        "30",
        "-pix_fmt",
        "yuv420p",
        "-an",
        "-f",
        "flv",
        str(bframes),
    )
    hevc = tmp / "hevc.mp4"
    # HEVC 640x360 with MP3 audio at 44.1 kHz: neither can be copied into the ladder.
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=640x360:rate=30",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=330:sample_rate=44100",
        "-t",
        "3",
        "-c:v",
        "libx265",
        "-preset",
        "ultrafast",
        "-x265-params",
        "log-level=error:bframes=0:keyint=30",
        "-tag:v",
        "hvc1",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "libmp3lame",
        "-b:a",
        "128k",
        "-ac",
        "2",
        str(hevc),
    )
    return {
        "h264": demux(h264),
        "small": demux(small),
        "60fps": demux(fast),
        "bframes": demux(bframes),
        "hevc_mp3": demux(hevc, audio_config=False),
    }


class Sink:
    """Records every call, in order, from whichever thread makes it."""

    def __init__(self, slow: dict[str, float] | None = None, fail_on: str | None = None) -> None:
        self.lock = threading.Lock()
        self.calls: list[tuple[str, str, Any]] = []
        self.thumbnails: list[bytes] = []
        self.ended = threading.Event()
        self.end_calls = 0
        self.slow = slow or {}
        self.fail_on = fail_on

    def on_track_info(
        self, rendition: str, video: VideoTrackInfo, audio: AudioTrackInfo | None
    ) -> None:
        with self.lock:
            self.calls.append(("info", rendition, (video, audio)))

    def on_packet(self, rendition: str, packet: EncodedPacket) -> None:
        if rendition == self.fail_on:
            raise RuntimeError("packager exploded")
        if packet.track is Track.VIDEO and rendition in self.slow:
            time.sleep(self.slow[rendition])
        with self.lock:
            self.calls.append(("packet", rendition, packet))

    def on_thumbnail(self, jpeg: bytes) -> None:
        self.thumbnails.append(jpeg)

    def on_end(self) -> None:
        with self.lock:
            self.end_calls += 1
            self.calls.append(("end", "", None))
        self.ended.set()

    # -- views ----------------------------------------------------------------------------
    def renditions(self) -> list[str]:
        return list(dict.fromkeys(r for kind, r, _ in self.calls if kind == "info"))

    def infos(self, rendition: str) -> list[tuple[VideoTrackInfo, AudioTrackInfo | None]]:
        return [x for kind, r, x in self.calls if kind == "info" and r == rendition]

    def packets(self, rendition: str, track: Track) -> list[EncodedPacket]:
        return [
            p
            for kind, r, p in self.calls
            if kind == "packet" and r == rendition and p.track is track
        ]

    def starts(self, rendition: str) -> list[int]:
        return [p.pts for p in self.packets(rendition, Track.VIDEO) if p.segment_start]


def feed(sub: Subscription, items: list[Item], *, realtime: bool = False) -> threading.Thread:
    """Put items into the subscription from a thread, as ingest does (never overflowing it
    unless ``realtime``, where the publisher's pace is kept whatever the consumer does)."""

    def run() -> None:
        start = time.monotonic()
        first: int | None = None
        for item in items:
            if realtime and isinstance(item, MediaPacket):
                first = item.dts if first is None else first
                delay = start + (item.dts - first) / 1000 - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            else:
                while len(sub) > sub.maxsize // 2:
                    time.sleep(0.001)
            sub.put(item)
        sub.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def transcode(
    items: list[Item],
    sink: Sink,
    ladder: Any = DEFAULT_LADDER,
    *,
    realtime: bool = False,
    timeout: float = 60,
    **kw: Any,
) -> LiveTranscoder:
    sub = Subscription("transcoder", 512)
    kw.setdefault("preset", "ultrafast")
    kw.setdefault("lossless", not realtime)
    transcoder = LiveTranscoder(sub, ladder, sink, **kw)
    transcoder.start()
    feeder = feed(sub, items, realtime=realtime)
    assert transcoder.join(timeout), "the transcoder did not finish"
    if transcoder.error is None:
        feeder.join(5)  # (after a failure nobody reads: the daemon feeder is left behind)
    return transcoder


def video_packets(items: list[Item]) -> list[MediaPacket]:
    return [i for i in items if isinstance(i, MediaPacket) and i.kind is V]


def decode_h264(info: VideoTrackInfo, packets: list[EncodedPacket]) -> list[av.VideoFrame]:
    """Decode a rendition the way a player would: avcC as extradata, AVCC samples."""
    ctx = av.CodecContext.create("h264", "r")
    ctx.extradata = info.avcc
    frames: list[av.VideoFrame] = []
    for p in sorted(packets, key=lambda p: p.dts):
        packet = av.Packet(p.data)
        packet.pts, packet.dts = p.pts, p.dts
        frames += ctx.decode(packet)
    frames += ctx.decode(None)
    return frames


def check_common(sink: Sink, transcoder: LiveTranscoder) -> None:
    """on_end exactly once and last; each rendition announced before its first packet."""
    assert sink.end_calls == 1 and sink.calls[-1][0] == "end"
    announced: set[str] = set()
    for kind, rendition, _ in sink.calls:
        if kind == "info":
            announced.add(rendition)
        elif kind == "packet":
            assert rendition in announced, f"{rendition} got a packet before its track info"
    assert transcoder.error is None
    assert not transcoder.running


def test_ladder_from_720p_source_is_aligned_decodable_and_complete(media) -> None:
    items = media["h264"]
    source = video_packets(items)
    sink = Sink()
    transcoder = transcode(items, sink, passthrough="never", thumbnail_interval=1.0)
    check_common(sink, transcoder)
    assert [p.name for p in transcoder.plans] == ["720p", "480p"]  # 1080p would upscale
    assert sorted(sink.renditions()) == ["480p", "720p"]

    # Segment starts: the first frame, then the first frame at/after every 2 s, same pts on
    # every rung, each one a keyframe, and the only keyframes there are.
    first = min(p.pts for p in source)
    expected = [first * 90] + [
        min(p.pts for p in source if p.pts >= first + k * 2000) * 90 for k in (1,)
    ]
    for name in ("720p", "480p"):
        video = sink.packets(name, Track.VIDEO)
        assert sink.starts(name) == expected
        assert [p.pts for p in video if p.keyframe] == expected
        assert all(p.pts == p.dts for p in video)  # no B-frames: dts never below zero
        # End of stream flushed the encoders: every source frame came out, in order.
        assert [p.pts for p in video] == sorted(p.pts * 90 for p in source)
    assert sink.starts("720p") == sink.starts("480p")

    for name, (width, height) in {"720p": (1280, 720), "480p": (854, 480)}.items():
        ((video_info, audio_info),) = sink.infos(name)
        assert (video_info.width, video_info.height) == (width, height)
        assert video_info.frame_rate == 30.0
        assert video_info.avcc[0] == 1  # an avcC record
        frames = decode_h264(video_info, sink.packets(name, Track.VIDEO))
        assert len(frames) == len(source)
        assert {(f.width, f.height) for f in frames} == {(width, height)}
        # AAC is copied: same frames, the source's AudioSpecificConfig, 1024-sample steps.
        audio_config = next(i for i in items if isinstance(i, CodecConfig) and i.kind is A)
        assert audio_info == AudioTrackInfo(audio_config.data, 48000, 2)
        audio = sink.packets(name, Track.AUDIO)
        assert [p.data for p in audio] == [
            i.data for i in items if isinstance(i, MediaPacket) and i.kind is A
        ]
        assert all(b.pts - a.pts == 1024 for a, b in pairwise(audio))

    stats = transcoder.stats()
    assert stats["frames_decoded"] == len(source) and stats["dropped_frames"] == 0
    assert stats["speed"] == 0.0 and stats["running"] is False  # ended
    assert stats["source"] == {"width": 1280, "height": 720, "fps": 30.0, "codec": "avc1"}
    for name in ("720p", "480p"):
        assert stats["renditions"][name]["frames"] == len(source)
        assert stats["renditions"][name]["dropped_frames"] == 0
        assert stats["renditions"][name]["fps"] >= 0.0

    # Thumbnails: JPEGs 320 wide (even height, aspect kept), one per second of media.
    assert 3 <= len(sink.thumbnails) <= 5
    for jpeg in sink.thumbnails:
        assert jpeg[:2] == b"\xff\xd8"
        with av.open(io.BytesIO(jpeg)) as c:
            frame = next(c.decode(video=0))
            assert (frame.width, frame.height) == (320, 180)


def test_passthrough_copies_the_source_for_the_top_rung(media) -> None:
    items = media["h264"]
    source = video_packets(items)
    sink = Sink()
    transcoder = transcode(items, sink, passthrough="auto")
    check_common(sink, transcoder)
    assert sorted(sink.renditions()) == ["480p", "720p"]
    copied = sink.packets("720p", Track.VIDEO)
    assert [p.data for p in copied] == [p.data for p in source]  # byte-identical
    assert [(p.pts, p.dts, p.keyframe) for p in copied] == [
        (p.pts * 90, p.dts * 90, p.keyframe) for p in source
    ]
    ((info, _),) = sink.infos("720p")
    video_config = next(i for i in items if isinstance(i, CodecConfig) and i.kind is V)
    assert info.avcc == video_config.data and (info.width, info.height) == (1280, 720)
    # The source has a keyframe every second; segments start at those at/after every 2 s,
    # and the encoded rung starts its segments (forced IDRs) on exactly the same frames.
    keys = [p.pts * 90 for p in source if p.keyframe]
    assert sink.starts("720p") == keys[::2]
    assert sink.starts("480p") == keys[::2]
    assert [p.pts for p in sink.packets("480p", Track.VIDEO) if p.keyframe] == keys[::2]
    assert transcoder.stats()["renditions"]["720p"]["passthrough"] is True


def test_hevc_source_with_mp3_becomes_h264_and_aac(media) -> None:
    items = media["hevc_mp3"]
    assert {i.codec for i in items} == {"hvc1", "mp3"}
    sink = Sink()
    transcoder = transcode(items, sink, passthrough="always")  # HEVC is never copied anyway
    check_common(sink, transcoder)
    assert sink.renditions() == ["360p"]  # smaller than every rung: one rung at its size
    ((video_info, audio_info),) = sink.infos("360p")
    assert (video_info.width, video_info.height) == (640, 360)
    frames = decode_h264(video_info, sink.packets("360p", Track.VIDEO))
    assert len(frames) == len(video_packets(items)) and frames[0].width == 640
    assert not transcoder.stats()["renditions"]["360p"]["passthrough"]

    # MP3 became AAC-LC at the source rate, with the encoder's AudioSpecificConfig.
    assert audio_info is not None and audio_info.sample_rate == 44100
    assert audio_info.channels == 2 and audio_info.asc[0] >> 3 == 2  # AOT 2: AAC-LC
    audio = sink.packets("360p", Track.AUDIO)
    assert all(p.duration == 1024 for p in audio)
    assert all(b.pts - a.pts == 1024 for a, b in pairwise(audio))
    decoder = av.CodecContext.create("aac", "r")
    decoder.extradata = audio_info.asc
    samples = 0
    for p in audio:
        for frame in decoder.decode(av.Packet(p.data)):
            samples += frame.samples
    assert abs(samples - 3 * 44100) < 3 * 1024  # about 3 s of sound came through


def test_slow_rung_drops_to_the_next_boundary_and_the_others_keep_everything(media) -> None:
    """A sink that takes 100 ms per 480p frame (that encoder's thread stalls) with 16 queued
    frames allowed, at the publisher's pace: 480p loses frames, counted; the copy rung and
    360p lose none."""
    items = media["h264"]
    source = video_packets(items)
    ladder = [Rung("720p", 720, 30, 3000), Rung("480p", 480, 30, 1200), Rung("360p", 360, 30, 700)]
    sink = Sink(slow={"480p": 0.1})
    transcoder = transcode(
        items, sink, ladder, realtime=True, queue_size=16, passthrough="auto", timeout=30
    )
    check_common(sink, transcoder)
    stats = transcoder.stats()["renditions"]
    slow = sink.packets("480p", Track.VIDEO)
    assert stats["480p"]["dropped_frames"] > 0
    assert len(slow) + stats["480p"]["dropped_frames"] == len(source)  # every loss counted
    assert len(sink.packets("720p", Track.VIDEO)) == len(source)
    assert len(sink.packets("360p", Track.VIDEO)) == len(source)
    assert stats["360p"]["dropped_frames"] == stats["720p"]["dropped_frames"] == 0
    # Boundaries are never dropped: the slow rung still starts every segment with the others,
    # and inside a segment it only ever lost a tail (it resumes at the next boundary).
    assert sink.starts("480p") == sink.starts("360p") == sink.starts("720p")
    starts = sink.starts("480p")
    all_pts = sorted(p.pts * 90 for p in source)
    got = {p.pts for p in slow}
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else all_pts[-1] + 1
        segment = [t for t in all_pts if start <= t < end]
        kept = [t for t in segment if t in got]
        assert kept == segment[: len(kept)]
    # the audio is still complete on the slow rung
    assert len(sink.packets("480p", Track.AUDIO)) == len(sink.packets("360p", Track.AUDIO))


def test_a_failing_sink_ends_the_pipeline_cleanly(media) -> None:
    sink = Sink(fail_on="480p")
    transcoder = transcode(media["h264"], sink, passthrough="never", timeout=20)
    assert isinstance(transcoder.error, RuntimeError)
    assert sink.end_calls == 1 and sink.calls[-1][0] == "end"
    assert not transcoder.running and not transcoder.stats()["running"]


def test_stop_ends_quickly_and_still_calls_on_end(media) -> None:
    sub = Subscription("transcoder", 512)
    sink = Sink()
    transcoder = LiveTranscoder(sub, DEFAULT_LADDER, sink, preset="ultrafast")
    transcoder.start()
    for item in media["h264"][:40]:
        sub.put(item)  # the publisher stays connected: no end of stream
    time.sleep(0.5)
    started = time.monotonic()
    transcoder.stop()
    assert transcoder.join(5) and time.monotonic() - started < 3
    assert sink.end_calls == 1 and transcoder.error is None


def test_source_resolution_change_keeps_the_planned_sizes(media) -> None:
    """Mid-stream the publisher switches from 1280x720 to 640x360 H.264 (a new avcC): the
    decoder is reopened, the copy rung cannot copy a smaller picture into its 720p track so
    it is encoded from there on, every rung keeps its size and segments stay aligned."""
    first, second = media["h264"], media["small"]
    shift = max(i.dts for i in first if isinstance(i, MediaPacket)) + 33
    moved = [
        replace(i, dts=i.dts + shift, pts=i.pts + shift) if isinstance(i, MediaPacket) else i
        for i in second
    ]
    sink = Sink()
    transcoder = transcode(first + moved, sink, passthrough="auto")
    check_common(sink, transcoder)
    assert sorted(sink.renditions()) == ["480p", "720p"]
    infos = sink.infos("720p")
    assert len(infos) == 2  # copy track, then an encoded one
    assert infos[0][0].avcc == first[0].data and infos[1][0].avcc != first[0].data
    assert {(i.width, i.height) for i, _ in infos} == {(1280, 720)}
    n_first, n_second = len(video_packets(first)), len(video_packets(second))
    for name, size in {"720p": (1280, 720), "480p": (854, 480)}.items():
        video = sink.packets(name, Track.VIDEO)
        assert len(video) == n_first + n_second
        info = sink.infos(name)[-1][0]
        tail = [p for p in video if p.pts >= shift * 90]
        frames = decode_h264(info, tail)
        assert len(frames) == n_second and {(f.width, f.height) for f in frames} == {size}
    assert sink.starts("720p") == sink.starts("480p")
    assert shift * 90 in sink.starts("720p")  # the switch starts a segment everywhere


def test_60fps_source_is_halved_for_a_30fps_rung_and_not_copied(media) -> None:
    items = media["60fps"]
    source = video_packets(items)
    sink = Sink()
    transcoder = transcode(items, sink, [Rung("360p", 360, 30, 800)], passthrough="auto")
    check_common(sink, transcoder)
    (plan,) = transcoder.plans
    assert not plan.passthrough and plan.fps == 30.0  # 60 fps does not fit a 30 fps rung
    ((info, _),) = sink.infos("360p")
    assert info.frame_rate == 30.0
    video = sink.packets("360p", Track.VIDEO)
    assert abs(len(video) - len(source) / 2) <= 2
    steps = [b.pts - a.pts for a, b in pairwise(video)]
    assert all(2800 <= step <= 3200 for step in steps)  # every other frame, ~1/30 s apart
    assert video[0].segment_start and video[0].pts == source[0].pts * 90
    frames = decode_h264(info, video)
    assert len(frames) == len(video) and (frames[0].width, frames[0].height) == (640, 360)


def test_source_with_b_frames_copies_and_aligns_on_presentation_times(media) -> None:
    items = media["bframes"]
    source = video_packets(items)
    assert any(p.pts != p.dts for p in source)
    sink = Sink()
    transcoder = transcode(
        items, sink, [Rung("480p", 480, 30, 1200), Rung("360p", 360, 30, 700)], passthrough="auto"
    )
    check_common(sink, transcoder)
    copied = sink.packets("480p", Track.VIDEO)
    assert [(p.data, p.pts, p.dts) for p in copied] == [
        (p.data, p.pts * 90, p.dts * 90) for p in source
    ]
    encoded = sink.packets("360p", Track.VIDEO)
    assert sorted(p.pts for p in encoded) == sorted(p.pts * 90 for p in source)
    keys = [p.pts * 90 for p in source if p.keyframe]
    assert sink.starts("480p") == sink.starts("360p") == keys[::2]
