"""Real encoded media for the HLS packager tests: libx264 video and AAC audio made with PyAV.

Encodes are cached per process so the three HLS test files share them. Frames are drawn with
numpy straight into yuv420p (a moving gradient and box, like ffmpeg's testsrc) so no scaler
runs; libx264 through a bare CodecContext emits Annex B, converted here to AVCC with the
product's own helpers, exactly as the transcoder must do.
"""

from __future__ import annotations

import functools
import json
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from transcode.avc import annexb_to_avcc, avcc_from_annexb
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
def encode_video(seconds: float, *, bframes: int = 0, gop_seconds: float = 2.0) -> tuple[VideoTrackInfo, tuple[EncodedPacket, ...]]:
    """H.264 at 30 fps, an IDR every ``gop_seconds`` flagged ``segment_start`` (as the
    transcoder will), 90 kHz timestamps, AVCC samples."""
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    ctx.time_base = Fraction(1, VIDEO_TIMESCALE)
    ctx.framerate = Fraction(FPS)
    ctx.flags |= av.codec.context.Flags.global_header
    gop = round(gop_seconds * FPS)
    if bframes:
        ctx.options = {"preset": "veryfast", "bf": str(bframes),
                       "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:rc-lookahead=4"}
    else:
        ctx.options = {"preset": "ultrafast", "tune": "zerolatency",
                       "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0"}
    ctx.open()
    raw = []
    for i in range(round(seconds * FPS)):
        raw += ctx.encode(_frame(i))
    raw += ctx.encode(None)
    info = VideoTrackInfo(avcc=avcc_from_annexb(bytes(ctx.extradata)), width=WIDTH, height=HEIGHT, frame_rate=FPS)
    packets = tuple(
        EncodedPacket(
            track=Track.VIDEO, pts=p.pts, dts=p.dts, duration=FRAME_TICKS, keyframe=p.is_keyframe,
            data=annexb_to_avcc(bytes(p)), segment_start=p.is_keyframe,
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
        frame = av.AudioFrame.from_ndarray(np.vstack([tone[start : start + n]] * 2), format="fltp", layout="stereo")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = start
        raw += ctx.encode(frame)
    raw += ctx.encode(None)
    info = AudioTrackInfo(asc=bytes(ctx.extradata), sample_rate=SAMPLE_RATE, channels=2)
    packets = tuple(
        EncodedPacket(track=Track.AUDIO, pts=p.pts, dts=p.dts, duration=p.duration or n, keyframe=True, data=bytes(p))
        for p in raw
    )
    return info, packets


def interleave(*streams: tuple[VideoTrackInfo | AudioTrackInfo, tuple[EncodedPacket, ...]]) -> list[EncodedPacket]:
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
        check=True, capture_output=True, timeout=60,
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


def iter_boxes(data: bytes, start: int = 0, end: int | None = None):
    """(type, offset, size) of each box in ``data[start:end]``; asserts sizes tile exactly."""
    end = len(data) if end is None else end
    pos = start
    while pos < end:
        size = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8].decode("latin-1")
        assert size >= 8 and pos + size <= end, (kind, pos, size, end)
        yield kind, pos, size
        pos += size
    assert pos == end


def children(data: bytes, offset: int, size: int, header: int = 8):
    """Child boxes of the box at ``offset`` (``header`` = 12 for a FullBox)."""
    return list(iter_boxes(data, offset + header, offset + size))


def find(data: bytes, path: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """(offset, size) of every box at a slash-separated path, e.g. ``moov/trak/mdia/mdhd``."""
    first, _, rest = path.partition("/")
    found = []
    for kind, off, size in iter_boxes(data, start, end):
        if kind != first:
            continue
        if rest:
            found += find(data, rest, off + 8, off + size)
        else:
            found.append((off, size))
    return found


def parse_fragments(data: bytes) -> list[dict]:
    """Every traf of every moof in a run of moof+mdat pairs, with its samples resolved to
    the bytes the trun data offset points at (asserted to lie inside the following mdat)."""
    out = []
    boxes = list(iter_boxes(data))
    for i, (kind, off, size) in enumerate(boxes):
        if kind != "moof":
            continue
        assert boxes[i + 1][0] == "mdat", "every moof is followed by its mdat"
        _, mdat_off, mdat_size = boxes[i + 1]
        (mfhd_off, _), = find(data, "mfhd", off + 8, off + size)
        seq = int.from_bytes(data[mfhd_off + 12 : mfhd_off + 16], "big")
        for traf_off, traf_size in find(data, "traf", off + 8, off + size):
            (tfhd_off, _), = find(data, "tfhd", traf_off + 8, traf_off + traf_size)
            (tfdt_off, _), = find(data, "tfdt", traf_off + 8, traf_off + traf_size)
            (trun_off, _), = find(data, "trun", traf_off + 8, traf_off + traf_size)
            tfhd_flags = int.from_bytes(data[tfhd_off + 9 : tfhd_off + 12], "big")
            track_id = int.from_bytes(data[tfhd_off + 12 : tfhd_off + 16], "big")
            assert data[tfdt_off + 8] == 1, "tfdt version 1"
            tfdt = int.from_bytes(data[tfdt_off + 12 : tfdt_off + 20], "big")
            version = data[trun_off + 8]
            flags = int.from_bytes(data[trun_off + 9 : trun_off + 12], "big")
            count = int.from_bytes(data[trun_off + 12 : trun_off + 16], "big")
            data_offset = int.from_bytes(data[trun_off + 16 : trun_off + 20], "big", signed=True)
            pos = trun_off + 20
            samples = []
            cursor = off + data_offset
            decode_time = tfdt
            for _ in range(count):
                duration, sample_size, sample_flags = (
                    int.from_bytes(data[pos + k : pos + k + 4], "big") for k in (0, 4, 8)
                )
                pos += 12
                cts = 0
                if flags & 0x800:
                    cts = int.from_bytes(data[pos : pos + 4], "big", signed=(version == 1))
                    pos += 4
                assert mdat_off + 8 <= cursor and cursor + sample_size <= mdat_off + mdat_size
                samples.append({
                    "dts": decode_time, "pts": decode_time + cts, "duration": duration,
                    "flags": sample_flags, "data": data[cursor : cursor + sample_size],
                })
                cursor += sample_size
                decode_time += duration
            out.append({
                "sequence": seq, "track_id": track_id, "tfhd_flags": tfhd_flags, "tfdt": tfdt,
                "trun_version": version, "trun_flags": flags, "samples": samples,
                "moof": off, "mdat": (mdat_off, mdat_size),
            })
    return out


def nal_types(sample: bytes) -> list[int]:
    from transcode.avc import split_avcc

    return [n[0] & 0x1F for n in split_avcc(sample)]
