"""Reading a recording's fMP4 files back into samples: the init section's tracks and every
sample of a media segment with its decode time, composition offset, sync flag and bytes.

Written against ISO/IEC 14496-12 rather than against what our packager happens to write, so
segments from another packager (ffmpeg's HLS muxer) read the same: tfhd defaults, base data
offsets, several truns per traf and signed (version 1) composition offsets are all honoured.
Anything that does not add up is a ``MediaError``, never a wrong sample.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# Sample flags (14496-12 8.8.3.1): sample_is_non_sync_sample.
_NON_SYNC = 0x00010000
_TFHD_BASE_DATA_OFFSET = 0x000001
_TFHD_SAMPLE_DESCRIPTION = 0x000002
_TFHD_DEFAULT_DURATION = 0x000008
_TFHD_DEFAULT_SIZE = 0x000010
_TFHD_DEFAULT_FLAGS = 0x000020
_TRUN_DATA_OFFSET = 0x000001
_TRUN_FIRST_FLAGS = 0x000004
_TRUN_DURATION = 0x000100
_TRUN_SIZE = 0x000200
_TRUN_FLAGS = 0x000400
_TRUN_CTS = 0x000800
# A moof holds sample tables only; one this large is not a recording's.
MAX_MOOF_BYTES = 16 << 20


class MediaError(ValueError):
    """A file is not the fMP4 a recording is made of (or is cut short)."""


@dataclass(frozen=True, slots=True)
class TrackConfig:
    """One track of an initialization section."""

    track_id: int
    kind: str  # "video" or "audio"
    timescale: int
    codec: str  # the sample entry's type: "avc1", "avc3", "mp4a", ...
    config: bytes  # avcC payload for video, AudioSpecificConfig for audio
    width: int = 0
    height: int = 0
    sample_rate: int = 0
    channels: int = 0


@dataclass(frozen=True, slots=True)
class InitInfo:
    video: TrackConfig | None
    audio: TrackConfig | None


@dataclass(frozen=True, slots=True)
class Sample:
    """One sample in its track's timescale: ``pts = dts + cts``."""

    dts: int
    cts: int
    duration: int
    sync: bool
    data: bytes

    @property
    def pts(self) -> int:
        return self.dts + self.cts


def _boxes(data: bytes, start: int = 0, end: int | None = None) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, box end) of each box tiling ``data[start:end]``."""
    end = len(data) if end is None else end
    pos = start
    while pos < end:
        if pos + 8 > end:
            raise MediaError(f"box header cut at {pos}")
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            if pos + 16 > end:
                raise MediaError(f"large box header cut at {pos}")
            size = struct.unpack_from(">Q", data, pos + 8)[0]
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            raise MediaError(f"{kind!r} box at {pos} runs past its parent")
        yield kind, pos + header, pos + size
        pos += size


def _child(data: bytes, start: int, end: int, kind: bytes) -> tuple[int, int]:
    for k, s, e in _boxes(data, start, end):
        if k == kind:
            return s, e
    raise MediaError(f"no {kind.decode('latin-1')!r} box")


def _path(data: bytes, start: int, end: int, *kinds: bytes) -> tuple[int, int]:
    for kind in kinds:
        start, end = _child(data, start, end, kind)
    return start, end


def _descriptor(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, payload start, payload end) of an MPEG-4 descriptor (14496-1 8.3.3)."""
    if pos >= end:
        raise MediaError("descriptor cut")
    tag = data[pos]
    pos += 1
    size = 0
    for _ in range(4):
        if pos >= end:
            raise MediaError("descriptor size cut")
        b = data[pos]
        pos += 1
        size = (size << 7) | (b & 0x7F)
        if not b & 0x80:
            break
    if pos + size > end:
        raise MediaError("descriptor runs past its box")
    return tag, pos, pos + size


def _asc_from_esds(data: bytes, start: int, end: int) -> bytes:
    tag, s, e = _descriptor(data, start + 4, end)  # skip version + flags
    if tag != 0x03:
        raise MediaError("esds without an ES descriptor")
    flags = data[s + 2]
    s += 3 + (2 if flags & 0x80 else 0)
    if flags & 0x40:
        s += 1 + data[s]
    if flags & 0x20:
        s += 2
    tag, s, e = _descriptor(data, s, e)
    if tag != 0x04:
        raise MediaError("esds without a decoder config")
    tag, s, e = _descriptor(data, s + 13, e)
    if tag != 0x05:
        raise MediaError("esds without an AudioSpecificConfig")
    return bytes(data[s:e])


def _track(data: bytes, start: int, end: int) -> TrackConfig | None:
    s, e = _child(data, start, end, b"tkhd")
    version = data[s]
    track_id = struct.unpack_from(">I", data, s + (20 if version == 1 else 12))[0]
    ms, me = _child(data, start, end, b"mdia")
    s, e = _child(data, ms, me, b"mdhd")
    version = data[s]
    timescale = struct.unpack_from(">I", data, s + (20 if version == 1 else 12))[0]
    s, e = _child(data, ms, me, b"hdlr")
    handler = data[s + 8 : s + 12]
    s, e = _path(data, ms, me, b"minf", b"stbl", b"stsd")
    entries = list(_boxes(data, s + 8, e))
    if not entries or timescale <= 0:
        raise MediaError("track without a sample description or timescale")
    codec, es, ee = entries[0]
    if handler == b"vide":
        width, height = struct.unpack_from(">HH", data, es + 24)
        cs, ce = _child(data, es + 78, ee, b"avcC")
        return TrackConfig(
            track_id, "video", timescale, codec.decode("latin-1"), data[cs:ce], width, height
        )
    if handler == b"soun":
        channels = struct.unpack_from(">H", data, es + 16)[0]
        rate = struct.unpack_from(">I", data, es + 24)[0] >> 16
        cs, ce = _child(data, es + 28, ee, b"esds")
        asc = _asc_from_esds(data, cs, ce)
        return TrackConfig(
            track_id,
            "audio",
            timescale,
            codec.decode("latin-1"),
            asc,
            sample_rate=rate or timescale,
            channels=channels,
        )
    return None


def read_init(path: Path) -> InitInfo:
    """The first video and first audio track of an initialization section."""
    data = path.read_bytes()
    try:
        s, e = _child(data, 0, len(data), b"moov")
        video = audio = None
        for kind, ts, te in _boxes(data, s, e):
            if kind != b"trak":
                continue
            track = _track(data, ts, te)
            if track is None:
                continue
            if track.kind == "video" and video is None:
                video = track
            elif track.kind == "audio" and audio is None:
                audio = track
    except (struct.error, IndexError) as exc:
        raise MediaError(f"{path.name}: initialization section cut short") from exc
    if video is None:
        raise MediaError(f"{path.name}: no video track")
    return InitInfo(video, audio)


def _traf(data: bytes, start: int, end: int, moof: int, tracks: dict[int, list[Sample]]) -> None:
    track_id = None
    base = moof
    default_duration = default_size = default_flags = 0
    decode_time: int | None = None
    for kind, s, e in _boxes(data, start, end):
        if kind == b"tfhd":
            flags = struct.unpack_from(">I", data, s)[0] & 0xFFFFFF
            track_id = struct.unpack_from(">I", data, s + 4)[0]
            pos = s + 8
            if flags & _TFHD_BASE_DATA_OFFSET:
                base = struct.unpack_from(">Q", data, pos)[0]
                pos += 8
            if flags & _TFHD_SAMPLE_DESCRIPTION:
                pos += 4
            if flags & _TFHD_DEFAULT_DURATION:
                default_duration = struct.unpack_from(">I", data, pos)[0]
                pos += 4
            if flags & _TFHD_DEFAULT_SIZE:
                default_size = struct.unpack_from(">I", data, pos)[0]
                pos += 4
            if flags & _TFHD_DEFAULT_FLAGS:
                default_flags = struct.unpack_from(">I", data, pos)[0]
        elif kind == b"tfdt":
            fmt = ">Q" if data[s] == 1 else ">I"
            decode_time = struct.unpack_from(fmt, data, s + 4)[0]
        elif kind == b"trun":
            if track_id is None or decode_time is None:
                raise MediaError("trun before tfhd/tfdt")
            out = tracks.setdefault(track_id, [])
            word = struct.unpack_from(">I", data, s)[0]
            version, flags = word >> 24, word & 0xFFFFFF
            count = struct.unpack_from(">I", data, s + 4)[0]
            pos = s + 8
            offset = base
            if flags & _TRUN_DATA_OFFSET:
                offset = base + struct.unpack_from(">i", data, pos)[0]
                pos += 4
            first_flags = None
            if flags & _TRUN_FIRST_FLAGS:
                first_flags = struct.unpack_from(">I", data, pos)[0]
                pos += 4
            for i in range(count):
                duration, size, sflags, cts = default_duration, default_size, default_flags, 0
                if flags & _TRUN_DURATION:
                    duration = struct.unpack_from(">I", data, pos)[0]
                    pos += 4
                if flags & _TRUN_SIZE:
                    size = struct.unpack_from(">I", data, pos)[0]
                    pos += 4
                if flags & _TRUN_FLAGS:
                    sflags = struct.unpack_from(">I", data, pos)[0]
                    pos += 4
                elif i == 0 and first_flags is not None:
                    sflags = first_flags
                if flags & _TRUN_CTS:
                    cts = struct.unpack_from(">i" if version else ">I", data, pos)[0]
                    pos += 4
                if pos > e or offset + size > len(data):
                    raise MediaError("trun runs past its box or its data past the file")
                out.append(
                    Sample(
                        decode_time,
                        cts,
                        duration,
                        not sflags & _NON_SYNC,
                        data[offset : offset + size],
                    )
                )
                decode_time += duration
                offset += size


def read_segment(path: Path) -> dict[int, list[Sample]]:
    """Every sample of a media segment by track id, in decode order."""
    data = path.read_bytes()
    tracks: dict[int, list[Sample]] = {}
    try:
        box_start = 0  # top-level boxes tile the file: each starts where the last ended
        for kind, s, e in _boxes(data):
            if kind == b"moof":
                if e - s > MAX_MOOF_BYTES:
                    raise MediaError(f"{path.name}: moof too large")
                for child, cs, ce in _boxes(data, s, e):
                    if child == b"traf":
                        _traf(data, cs, ce, box_start, tracks)
            box_start = e
    except (struct.error, IndexError) as exc:
        raise MediaError(f"{path.name}: media segment cut short") from exc
    return tracks
