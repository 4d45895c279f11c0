"""Real encoded media for the HLS packager tests: libx264 video and AAC audio made with PyAV.

Encodes are cached per process so the three HLS test files share them. Frames are drawn with
numpy straight into yuv420p (a moving gradient and box, like ffmpeg's testsrc) so no scaler
runs; libx264 through a bare CodecContext emits Annex B, converted here to AVCC with the
product's own helpers, exactly as the transcoder must do. The boxes are read back by the
benchmarks' fMP4 reader (``benchmarks.lib.fmp4``; ``iter_boxes``, ``children`` and ``find`` are
re-exported here), which knows nothing of how the packager writes them.
"""

from __future__ import annotations

import functools
import json
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from benchmarks.lib.fmp4 import children, find, fragments, iter_boxes  # noqa: F401 (re-exported)
from transcode.avc import annexb_to_avcc, avcc_from_annexb, split_avcc
from transcode.types import VIDEO_TIMESCALE, AudioTrackInfo, EncodedPacket, Track, VideoTrackInfo

FPS = 30
FRAME_TICKS = VIDEO_TIMESCALE // FPS
WIDTH, HEIGHT = 192, 108
SAMPLE_RATE = 48_000


def _frame(i: int) -> av.VideoFrame:
    y = (np.add.outer(np.arange(HEIGHT), np.arange(WIDTH)) * 2 + i * 4).astype(np.uint8)
    x0 = (i * 3) % (WIDTH - 24)
    y[40:64, x0 : x0 + 24] = 235
    uv = np.full((HEIGHT // 2, WIDTH), 128, np.uint8)
    uv[:, : (i * 5) % WIDTH] = 90
    frame = av.VideoFrame.from_ndarray(np.vstack([y, uv]), format="yuv420p")
    frame.pts = i * FRAME_TICKS
    return frame


@functools.cache
def encode_video(
    seconds: float, *, bframes: int = 0, gop_seconds: float = 2.0
) -> tuple[VideoTrackInfo, tuple[EncodedPacket, ...]]:
    """H.264 at 30 fps, an IDR every ``gop_seconds`` flagged ``segment_start`` (as the
    transcoder will), 90 kHz timestamps, AVCC samples."""
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    ctx.time_base = Fraction(1, VIDEO_TIMESCALE)
    ctx.framerate = Fraction(FPS)
    ctx.flags |= av.codec.context.Flags.global_header
    gop = round(gop_seconds * FPS)
    if bframes:
        ctx.options = {
            "preset": "veryfast",
            "bf": str(bframes),
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:rc-lookahead=4",
        }
    else:
        ctx.options = {
            "preset": "ultrafast",
            "tune": "zerolatency",
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0",
        }
    ctx.open()
    raw = []
    for i in range(round(seconds * FPS)):
        raw += ctx.encode(_frame(i))
    raw += ctx.encode(None)
    info = VideoTrackInfo(
        avcc=avcc_from_annexb(bytes(ctx.extradata)), width=WIDTH, height=HEIGHT, frame_rate=FPS
    )
    packets = tuple(
        EncodedPacket(
            track=Track.VIDEO,
            pts=p.pts,
            dts=p.dts,
            duration=FRAME_TICKS,
            keyframe=p.is_keyframe,
            data=annexb_to_avcc(bytes(p)),
            segment_start=p.is_keyframe,
        )
        for p in raw
    )
    return info, packets


@functools.cache
def encode_audio(seconds: float) -> tuple[AudioTrackInfo, tuple[EncodedPacket, ...]]:
    """AAC-LC stereo 48 kHz of a 440 Hz tone; includes the encoder's priming packet (pts<0)."""
    ctx = av.CodecContext.create("aac", "w")
    ctx.sample_rate, ctx.layout, ctx.format = SAMPLE_RATE, "stereo", "fltp"
    ctx.time_base = Fraction(1, SAMPLE_RATE)
    ctx.flags |= av.codec.context.Flags.global_header
    ctx.open()
    n = ctx.frame_size
    raw = []
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    for start in range(0, len(tone) - n + 1, n):
        frame = av.AudioFrame.from_ndarray(
            np.vstack([tone[start : start + n]] * 2), format="fltp", layout="stereo"
        )
        frame.sample_rate = SAMPLE_RATE
        frame.pts = start
        raw += ctx.encode(frame)
    raw += ctx.encode(None)
    info = AudioTrackInfo(asc=bytes(ctx.extradata), sample_rate=SAMPLE_RATE, channels=2)
    packets = tuple(
        EncodedPacket(
            track=Track.AUDIO,
            pts=p.pts,
            dts=p.dts,
            duration=p.duration or n,
            keyframe=True,
            data=bytes(p),
        )
        for p in raw
    )
    return info, packets


def interleave(
    *streams: tuple[VideoTrackInfo | AudioTrackInfo, tuple[EncodedPacket, ...]],
) -> list[EncodedPacket]:
    """Packets of several tracks merged by decode time, as a muxing transcoder would send them."""
    keyed = []
    for info, packets in streams:
        for order, p in enumerate(packets):
            keyed.append((Fraction(p.dts, info.timescale), order, p))
    keyed.sort(key=lambda k: (k[0], k[1]))
    return [p for _, _, p in keyed]


def ffprobe(path: Path, *entries: str) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-of", "json", *entries, str(path)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return json.loads(out.stdout)


def decode(path: Path) -> dict[str, list[int]]:
    """Presentation times of every decoded frame per stream type, via PyAV."""
    result: dict[str, list[int]] = {"video": [], "audio": []}
    with av.open(str(path)) as container:
        for packet in container.demux():
            for frame in packet.decode():
                result[packet.stream.type].append(frame.pts)
    return result


def parse_fragments(data: bytes) -> list[dict]:
    """Every traf of every moof in a run of moof+mdat pairs (read by ``benchmarks.lib.fmp4``),
    with its samples resolved to the bytes the trun data offset points at, checked to be what
    the packager must write: one trun and a version 1 tfdt per traf, each moof followed by its
    mdat, every sample inside that mdat."""
    out = []
    for traf in fragments(data):
        assert traf.mdat is not None, "every moof is followed by its mdat"
        mdat_off, mdat_size = traf.mdat
        assert traf.sequence is not None and len(traf.runs) == 1, traf
        assert traf.tfdt_version == 1, "tfdt version 1"
        (run,) = traf.runs
        samples = []
        for s in run.samples:
            assert mdat_off + 8 <= s.offset and s.offset + len(s.data) <= mdat_off + mdat_size
            samples.append(
                {
                    "dts": s.dts,
                    "pts": s.pts,
                    "duration": s.duration,
                    "flags": s.flags,
                    "data": s.data,
                }
            )
        out.append(
            {
                "sequence": traf.sequence,
                "track_id": traf.track_id,
                "tfhd_flags": traf.tfhd_flags,
                "tfdt": traf.tfdt,
                "trun_version": run.version,
                "trun_flags": run.flags,
                "samples": samples,
                "moof": traf.moof,
                "mdat": traf.mdat,
            }
        )
    return out


def nal_types(sample: bytes) -> list[int]:
    return [n[0] & 0x1F for n in split_avcc(sample)]
