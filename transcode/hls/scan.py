"""Reading back what the packager wrote: is an fMP4 file whole, and how much media it holds.

Recovery after a crash trusts nothing on disk: a segment counts only if it is a run of complete
moof+mdat pairs whose samples all lie inside their own mdat, and its duration is read from the
boxes (tfdt + trun), not inferred from a name or a size. Only box headers and moof payloads are
read; media data is skipped, so checking hours of recording reads a few KiB per segment.

Anything unexpected (a box running past the end of the file, a missing tfdt, an offset outside
the mdat) makes the file unusable: ``ScanError``, never a wrong duration.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from transcode.hls.fmp4 import VIDEO_TRACK_ID

# A moof holds sample tables only; anything this large is not one the packager wrote.
MAX_MOOF_BYTES = 16 << 20

_TFHD_BASE_DATA_OFFSET = 0x000001
_TFHD_SAMPLE_DESCRIPTION = 0x000002
_TFHD_DEFAULT_DURATION = 0x000008
_TFHD_DEFAULT_SIZE = 0x000010
_TFHD_DEFAULT_FLAGS = 0x000020
_TFHD_DEFAULT_BASE_IS_MOOF = 0x020000
_TRUN_DATA_OFFSET = 0x000001
_TRUN_FIRST_FLAGS = 0x000004
_TRUN_DURATION = 0x000100
_TRUN_SIZE = 0x000200
_TRUN_FLAGS = 0x000400
_TRUN_CTS = 0x000800


class ScanError(ValueError):
    """The file is not a complete fragment (torn, truncated or not what the packager writes)."""


@dataclass(frozen=True, slots=True)
class SegmentScan:
    """What a whole media segment holds on one track (decode times in that track's timescale)."""

    start: int  # tfdt of the track's first sample
    end: int  # decode time just after its last sample
    size: int  # bytes

    def duration(self, timescale: int) -> float:
        return (self.end - self.start) / timescale


def _header(f: BinaryIO, offset: int, limit: int) -> tuple[bytes, int, int]:
    """(type, box size, header size) of the box at ``offset``; it must end by ``limit``."""
    f.seek(offset)
    head = f.read(8)
    if len(head) < 8:
        raise ScanError(f"box header cut at {offset}")
    size, kind = struct.unpack(">I4s", head)
    header = 8
    if size == 1:
        large = f.read(8)
        if len(large) < 8:
            raise ScanError(f"large box header cut at {offset}")
        size, header = struct.unpack(">Q", large)[0], 16
    elif size == 0:
        size = limit - offset  # "to the end of the file": only whole files get here
    if size < header or offset + size > limit:
        raise ScanError(f"{kind!r} box at {offset} runs past the end ({size} bytes)")
    return kind, size, header


def _boxes(f: BinaryIO, size: int) -> Iterator[tuple[bytes, int, int, int]]:
    """Top-level boxes of a file of ``size`` bytes: (type, offset, size, header size)."""
    offset = 0
    while offset < size:
        kind, box_size, header = _header(f, offset, size)
        yield kind, offset, box_size, header
        offset += box_size


def _children(payload: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(type, body) of the boxes packed in ``payload``, which they must fill exactly."""
    offset = 0
    while offset < len(payload):
        if offset + 8 > len(payload):
            raise ScanError("child box header cut")
        size, kind = struct.unpack_from(">I4s", payload, offset)
        if size < 8 or offset + size > len(payload):
            raise ScanError(f"child box {kind!r} has a bad size {size}")
        yield kind, payload[offset + 8 : offset + size]
        offset += size


def _full(body: bytes) -> tuple[int, int, bytes]:
    if len(body) < 4:
        raise ScanError("full box without version and flags")
    word = struct.unpack_from(">I", body)[0]
    return word >> 24, word & 0xFFFFFF, body[4:]


@dataclass(slots=True)
class _Run:
    start: int
    duration: int
    data_start: int  # offset of the first sample byte from the moof's first byte
    data_end: int


def _traf(body: bytes) -> tuple[int, list[_Run]]:
    """(track id, sample runs) of one traf."""
    track_id: int | None = None
    default_duration = default_size = 0
    decode_time: int | None = None
    runs: list[_Run] = []
    for kind, child in _children(body):
        if kind == b"tfhd":
            _, flags, rest = _full(child)
            if not flags & _TFHD_DEFAULT_BASE_IS_MOOF or flags & _TFHD_BASE_DATA_OFFSET:
                raise ScanError("tfhd: only default-base-is-moof offsets are written here")
            fields = [
                _TFHD_SAMPLE_DESCRIPTION,
                _TFHD_DEFAULT_DURATION,
                _TFHD_DEFAULT_SIZE,
                _TFHD_DEFAULT_FLAGS,
            ]
            need = 4 + 4 * sum(1 for f in fields if flags & f)
            if len(rest) < need:
                raise ScanError("tfhd too short")
            track_id = struct.unpack_from(">I", rest)[0]
            pos = 4 + (4 if flags & _TFHD_SAMPLE_DESCRIPTION else 0)
            if flags & _TFHD_DEFAULT_DURATION:
                default_duration = struct.unpack_from(">I", rest, pos)[0]
                pos += 4
            if flags & _TFHD_DEFAULT_SIZE:
                default_size = struct.unpack_from(">I", rest, pos)[0]
        elif kind == b"tfdt":
            version, _, rest = _full(child)
            fmt = ">Q" if version == 1 else ">I"
            if len(rest) < struct.calcsize(fmt):
                raise ScanError("tfdt too short")
            decode_time = struct.unpack_from(fmt, rest)[0]
        elif kind == b"trun":
            if track_id is None or decode_time is None:
                raise ScanError("trun before tfhd/tfdt")
            start = decode_time + sum(r.duration for r in runs)
            runs.append(_trun(child, start, default_duration, default_size))
    if track_id is None or decode_time is None or not runs:
        raise ScanError("traf without tfhd, tfdt or trun")
    return track_id, runs


def _trun(body: bytes, start: int, default_duration: int, default_size: int) -> _Run:
    _, flags, rest = _full(body)
    if not flags & _TRUN_DATA_OFFSET:
        raise ScanError("trun without a data offset")
    if len(rest) < 8:
        raise ScanError("trun too short")
    count, data_offset = struct.unpack_from(">Ii", rest)
    pos = 8 + (4 if flags & _TRUN_FIRST_FLAGS else 0)
    fields = [f for f in (_TRUN_DURATION, _TRUN_SIZE, _TRUN_FLAGS, _TRUN_CTS) if flags & f]
    row = 4 * len(fields)
    if count == 0 or len(rest) < pos + row * count:
        raise ScanError(f"trun of {count} samples does not fit its box")
    duration = size = 0
    for i in range(count):
        values = dict(
            zip(fields, struct.unpack_from(f">{len(fields)}I", rest, pos + i * row), strict=True)
        )
        duration += values.get(_TRUN_DURATION, default_duration)
        size += values.get(_TRUN_SIZE, default_size)
    return _Run(start, duration, data_offset, data_offset + size)


def scan_segment(path: Path, track_id: int = VIDEO_TRACK_ID) -> SegmentScan:
    """Check a media segment file and measure ``track_id``'s decode time range in it.

    The file must be moof+mdat pairs to its last byte, every sample of every track inside the
    mdat that follows its moof, and ``track_id`` continuous (each fragment's tfdt where the
    previous one ended) with at least one sample. ``ScanError`` otherwise (or ``OSError``).
    """
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        start: int | None = None
        end: int | None = None
        pending: tuple[int, int, list[tuple[int, list[_Run]]]] | None = None  # moof waiting
        for kind, offset, box_size, header in _boxes(f, size):
            if kind == b"moof":
                if pending is not None:
                    raise ScanError(f"moof at {offset} follows a moof without its mdat")
                if box_size > MAX_MOOF_BYTES:
                    raise ScanError(f"moof of {box_size} bytes")
                f.seek(offset + header)
                payload = f.read(box_size - header)
                has_mfhd = False
                trafs: list[tuple[int, list[_Run]]] = []
                for child, body in _children(payload):
                    if child == b"mfhd":
                        has_mfhd = len(_full(body)[2]) >= 4
                    elif child == b"traf":
                        trafs.append(_traf(body))
                if not has_mfhd or not trafs:
                    raise ScanError(f"moof at {offset} without mfhd or traf")
                pending = (offset, box_size, trafs)
            elif kind == b"mdat":
                if pending is None:
                    raise ScanError(f"mdat at {offset} without a moof")
                moof_offset, moof_size, trafs = pending
                data_lo = offset + header - moof_offset
                data_hi = offset + box_size - moof_offset
                for traf_track, runs in trafs:
                    for run in runs:
                        if run.data_start < data_lo or run.data_end > data_hi:
                            raise ScanError(f"samples of track {traf_track} lie outside their mdat")
                        if traf_track != track_id:
                            continue
                        if end is not None and run.start != end:
                            raise ScanError(f"track {track_id} jumps from {end} to {run.start}")
                        start = run.start if start is None else start
                        end = run.start + run.duration
                pending = None
            else:
                raise ScanError(f"unexpected {kind!r} box in a media segment")
        if pending is not None:
            raise ScanError("the last moof has no mdat (torn segment)")
        if start is None or end is None or end <= start:
            raise ScanError(f"no samples of track {track_id}")
        return SegmentScan(start, end, size)


def check_init(path: Path) -> None:
    """An initialization section is whole: ftyp then moov, nothing cut.

    Raises ``ScanError`` or ``OSError``."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        kinds = [kind for kind, *_ in _boxes(f, size)]
    if kinds[:2] != [b"ftyp", b"moov"]:
        raise ScanError(f"initialization section holds {kinds!r}, not ftyp + moov")
