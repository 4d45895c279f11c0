"""Reading a recording back: init sections and the moof boxes of its media segments.

What ``plan`` needs to write a flat MP4 without touching media data: each track's init boxes
(tkhd, mdhd, hdlr, the sample entry with its avcC/hvcC/esds), and from every trun the samples'
durations, sizes, flags and composition offsets, in per-track ``array``s, plus where each run's
bytes lie in its segment file. Only box headers and moof payloads are read. Anything that is
not a whole recording of the supported kind (a torn segment, a sample outside its mdat, a
fragment naming an unknown track) is a ``RemuxError``.
"""

from __future__ import annotations

import os
import struct
import sys
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from transcode.hls.fmp4 import box

MAX_MOOF_BYTES = 16 << 20
MAX_INIT_BYTES = 1 << 20
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
_NON_SYNC = 0x00010000  # sample_is_non_sync_sample


class RemuxError(ValueError):
    """The recording cannot be copied into one MP4 (missing, torn, or not what it should be)."""


# ---------------------------------------------------------------------------------------------
# Reading boxes


def children(payload: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(type, body) of the boxes filling ``payload``."""
    pos = 0
    while pos < len(payload):
        if pos + 8 > len(payload):
            raise RemuxError("box header cut")
        size, kind = struct.unpack_from(">I4s", payload, pos)
        header = 8
        if size == 1 and pos + 16 <= len(payload):
            size, header = struct.unpack_from(">Q", payload, pos + 8)[0], 16
        elif size == 0:
            size = len(payload) - pos
        if size < header or pos + size > len(payload):
            raise RemuxError(f"{kind!r} box has a bad size {size}")
        yield kind, payload[pos + header : pos + size]
        pos += size


def _child(payload: bytes, kind: bytes) -> bytes:
    for k, body in children(payload):
        if k == kind:
            return body
    raise RemuxError(f"no {kind!r} box")


def full(body: bytes) -> tuple[int, int, bytes]:
    if len(body) < 4:
        raise RemuxError("full box without version and flags")
    word = struct.unpack_from(">I", body)[0]
    return word >> 24, word & 0xFFFFFF, body[4:]


def _file_boxes(f: object, size: int) -> Iterator[tuple[bytes, int, int, int]]:
    """Top-level boxes of an open file: (type, offset, size, header size)."""
    read, seek = f.read, f.seek  # type: ignore[attr-defined]
    offset = 0
    while offset < size:
        seek(offset)
        head = read(16)
        if len(head) < 8:
            raise RemuxError(f"box header cut at {offset}")
        box_size, kind = struct.unpack_from(">I4s", head)
        header = 8
        if box_size == 1:
            if len(head) < 16:
                raise RemuxError(f"large box header cut at {offset}")
            box_size, header = struct.unpack_from(">Q", head, 8)[0], 16
        elif box_size == 0:
            box_size = size - offset
        if box_size < header or offset + box_size > size:
            raise RemuxError(f"{kind!r} box at {offset} runs past the end of the file")
        yield kind, offset, box_size, header
        offset += box_size


# ---------------------------------------------------------------------------------------------
# The init section


@dataclass(slots=True)
class Track:
    """One track of the recording: its init boxes and, as segments are read, its samples."""

    track_id: int
    timescale: int
    tkhd: bytes  # full-box body (version, flags, fields)
    mdhd: bytes
    other_mdia: list[bytes]  # hdlr and anything else, as whole boxes, in order
    other_minf: list[bytes]  # vmhd/smhd, dinf...
    stsd_head: bytes  # stsd version/flags
    entries: list[bytes] = field(default_factory=list)  # distinct sample entries (whole boxes)
    trex: tuple[int, int, int, int] = (1, 0, 0, 0)  # description index, duration, size, flags
    durations: array = field(default_factory=lambda: array("I"))
    sizes: array = field(default_factory=lambda: array("I"))
    offsets: array | None = None  # composition offsets; None while all are zero
    sync: array | None = None  # sync sample numbers (1-based); None while all samples are
    chunk_samples: array = field(default_factory=lambda: array("I"))
    chunk_entries: array = field(default_factory=lambda: array("I"))
    chunk_positions: array = field(default_factory=lambda: array("Q"))
    first_decode: int | None = None
    entry_now: int = 1  # 1-based stsd index of the init in force

    @property
    def total(self) -> int:
        return sum(self.durations)


@dataclass(slots=True)
class Init:
    ftyp: bytes
    mvhd: bytes  # full-box body
    tracks: dict[int, Track]
    moov_other: list[bytes]  # udta etc., whole boxes


def _timescale(mdhd: bytes) -> int:
    version, _, rest = full(mdhd)
    pos = 16 if version == 1 else 8
    if len(rest) < pos + 4:
        raise RemuxError("mdhd too short")
    ts = struct.unpack_from(">I", rest, pos)[0]
    if ts <= 0:
        raise RemuxError("mdhd timescale is zero")
    return int(ts)


def read_init(path: Path) -> Init:
    try:
        if path.stat().st_size > MAX_INIT_BYTES:
            raise RemuxError(f"{path.name} is too large for an initialization section")
        data = path.read_bytes()
    except OSError as exc:
        raise RemuxError(f"cannot read {path.name}: {exc.strerror}") from exc
    top = dict(children(data))
    if b"ftyp" not in top or b"moov" not in top:
        raise RemuxError(f"{path.name} is not ftyp + moov")
    moov = top[b"moov"]
    tracks: dict[int, Track] = {}
    trex: dict[int, tuple[int, int, int, int]] = {}
    mvhd = b""
    other: list[bytes] = []
    for kind, body in children(moov):
        if kind == b"mvhd":
            mvhd = body
        elif kind == b"trak":
            track = _read_trak(body)
            tracks[track.track_id] = track
        elif kind == b"mvex":
            for k, b in children(body):
                if k == b"trex" and len(b) >= 24:
                    tid, index, duration, size, flags = struct.unpack_from(">IIIII", b, 4)
                    trex[tid] = (index, duration, size, flags)
        else:
            other.append(box(kind, body))
    if not mvhd or not tracks:
        raise RemuxError(f"{path.name} has no mvhd or no track")
    for tid, track in tracks.items():
        track.trex = trex.get(tid, track.trex)
    return Init(top[b"ftyp"], mvhd, tracks, other)


def _read_trak(trak: bytes) -> Track:
    tkhd = _child(trak, b"tkhd")
    version, _, rest = full(tkhd)
    pos = 16 if version == 1 else 8
    if len(rest) < pos + 4:
        raise RemuxError("tkhd too short")
    track_id = struct.unpack_from(">I", rest, pos)[0]
    mdia = _child(trak, b"mdia")
    mdhd = b""
    other_mdia: list[bytes] = []
    other_minf: list[bytes] = []
    stsd = b""
    for kind, body in children(mdia):
        if kind == b"mdhd":
            mdhd = body
        elif kind == b"minf":
            for k, b in children(body):
                if k == b"stbl":
                    stsd = _child(b, b"stsd")
                else:
                    other_minf.append(box(k, b))
        else:
            other_mdia.append(box(kind, body))
    if not mdhd or not stsd:
        raise RemuxError(f"track {track_id} has no mdhd or stsd")
    _, _, entries_body = full(stsd)
    if len(entries_body) < 4:
        raise RemuxError("stsd too short")
    entries = [box(k, b) for k, b in children(entries_body[4:])]
    if len(entries) != 1:
        raise RemuxError(f"track {track_id} has {len(entries)} sample entries, not one")
    return Track(track_id, _timescale(mdhd), tkhd, mdhd, other_mdia, other_minf, stsd[:4], entries)


def adopt_init(tracks: dict[int, Track], init: Init, name: str) -> None:
    """Make ``init`` the one in force: same tracks and timescales, its sample entries added."""
    if set(init.tracks) != set(tracks):
        raise RemuxError(f"{name} has other tracks than the first initialization section")
    for tid, new in init.tracks.items():
        track = tracks[tid]
        if new.timescale != track.timescale:
            raise RemuxError(f"{name} changes the timescale of track {tid}")
        entry = new.entries[0]
        if entry not in track.entries:
            track.entries.append(entry)
        track.entry_now = track.entries.index(entry) + 1
        track.trex = new.trex


# ---------------------------------------------------------------------------------------------
# The fragments


# trun layouts by the flags that shape a row: (column of duration, size, flags, cts; -1 when
# absent) and the row's width in 32-bit words.
_TRUN_LAYOUTS: dict[int, tuple[int, int, int, int, int]] = {}
for _bits in range(16):
    _flags = _bits << 8
    _fields = [f for f in (_TRUN_DURATION, _TRUN_SIZE, _TRUN_FLAGS, _TRUN_CTS) if _flags & f]
    _TRUN_LAYOUTS[_flags] = (
        *(_fields.index(f) if f in _fields else -1 for f in (0x100, 0x200, 0x400, 0x800)),
        len(_fields),
    )  # type: ignore[assignment]
# The sample_is_non_sync_sample bit as one byte of a native 32-bit word, kept as 0 or 1.
_NON_SYNC_BYTE = 2 if sys.byteorder == "little" else 1
_BIT0 = bytes(b & 1 for b in range(256))


def _tfhd(body: bytes, tracks: dict[int, Track]) -> tuple[Track, int, int, int]:
    """(track, default duration, size, flags) of a tfhd."""
    _, flags, rest = full(body)
    if flags & _TFHD_BASE_DATA_OFFSET or not flags & _TFHD_DEFAULT_BASE_IS_MOOF:
        raise RemuxError("tfhd: only default-base-is-moof offsets are supported")
    if len(rest) < 4:
        raise RemuxError("tfhd too short")
    track = tracks.get(struct.unpack_from(">I", rest)[0])
    if track is None:
        raise RemuxError("a fragment names a track the init does not have")
    _, duration, size, sample_flags = track.trex
    pos = 8 if flags & _TFHD_SAMPLE_DESCRIPTION else 4  # one sample entry per init
    values = [duration, size, sample_flags]
    for n, bit in enumerate((_TFHD_DEFAULT_DURATION, _TFHD_DEFAULT_SIZE, _TFHD_DEFAULT_FLAGS)):
        if flags & bit:
            if len(rest) < pos + 4:
                raise RemuxError("tfhd too short")
            values[n] = struct.unpack_from(">I", rest, pos)[0]
            pos += 4
    return track, values[0], values[1], values[2]


def _read_traf(
    traf: bytes, tracks: dict[int, Track], tfhds: dict[bytes, tuple[Track, int, int, int]]
) -> list[tuple[Track, int, int, int]]:  # (track, samples, data offset, bytes)
    found: tuple[Track, int, int, int] | None = None
    runs: list[tuple[Track, int, int, int]] = []
    for kind, body in children(traf):
        if kind == b"tfhd":
            found = tfhds.get(body)
            if found is None:  # fragments of one track repeat their tfhd byte for byte
                found = tfhds[body] = _tfhd(body, tracks)
        elif kind == b"tfdt":
            if found is None:
                raise RemuxError("tfdt before tfhd")
            version, _, rest = full(body)
            fmt = ">Q" if version == 1 else ">I"
            if len(rest) < struct.calcsize(fmt):
                raise RemuxError("tfdt too short")
            if found[0].first_decode is None:
                found[0].first_decode = struct.unpack_from(fmt, rest)[0]
        elif kind == b"trun":
            if found is None:
                raise RemuxError("trun before tfhd")
            count, offset, length = _read_trun(body, *found)
            runs.append((found[0], count, offset, length))
    return runs


def _read_trun(
    body: bytes, track: Track, default_duration: int, default_size: int, default_flags: int
) -> tuple[int, int, int]:
    """Append a trun's samples to ``track``: (count, data offset, bytes)."""
    version, flags, rest = full(body)
    if not flags & _TRUN_DATA_OFFSET:
        raise RemuxError("trun without a data offset")
    if len(rest) < 8:
        raise RemuxError("trun too short")
    count, data_offset = struct.unpack_from(">Ii", rest)
    pos = 8
    first_flags = None
    if flags & _TRUN_FIRST_FLAGS:
        if len(rest) < 12:
            raise RemuxError("trun too short")
        first_flags = struct.unpack_from(">I", rest, 8)[0]
        pos = 12
    di, si, fi, ci, width = _TRUN_LAYOUTS[flags & 0xF00]
    if count == 0 or len(rest) < pos + 4 * width * count:
        raise RemuxError(f"trun of {count} samples does not fit its box")
    table = array("I", rest[pos : pos + 4 * width * count])
    if sys.byteorder == "little":
        table.byteswap()
    durations = table[di::width] if di >= 0 else array("I", [default_duration]) * count
    sizes = table[si::width] if si >= 0 else array("I", [default_size]) * count
    sample_flags = table[fi::width] if fi >= 0 else array("I", [default_flags]) * count
    if first_flags is not None:
        sample_flags[0] = first_flags
    base = len(track.sizes) + 1
    if ci >= 0 and any(cts := table[ci::width]):
        if version == 0 and max(cts) > 0x7FFFFFFF:
            raise RemuxError("composition offset too large")
        if track.offsets is None:  # the first offset: the samples before had none
            track.offsets = array("i", bytes(4 * (base - 1)))
        track.offsets.extend(array("i", cts.tobytes()))  # version 1: signed
    elif track.offsets is not None:
        track.offsets.extend(array("i", bytes(4 * count)))
    # One byte a sample, 1 where it is not a sync sample (read without a loop in Python).
    non_sync = sample_flags.tobytes()[_NON_SYNC_BYTE::4].translate(_BIT0)
    if track.sync is None and 1 in non_sync:  # the first non-sync sample: list them
        track.sync = array("I", range(1, base))
    if track.sync is not None:
        track.sync.extend(base + i for i, bit in enumerate(non_sync) if not bit)
    track.durations.extend(durations)
    track.sizes.extend(sizes)
    return count, data_offset, sum(sizes)


class Runs:
    """Every trun's sample data, in file order: one chunk of the output each. Parallel arrays,
    since a ten-hour recording has hundreds of thousands of them."""

    def __init__(self) -> None:
        self.paths: list[Path] = []
        self.path = array("I")  # index into paths
        self.start = array("Q")  # offset in the segment file
        self.size = array("Q")
        self.track = array("I")  # track id
        self.count = array("I")  # samples
        self.entry = array("I")  # 1-based sample entry in force

    def __len__(self) -> int:
        return len(self.start)


def read_segment(
    path: Path,
    tracks: dict[int, Track],
    out: Runs,
    tfhds: dict[bytes, tuple[Track, int, int, int]] | None = None,
) -> None:
    """Append the segment's runs, in file order; every sample must lie inside its mdat.
    ``tfhds``: the tfhd boxes read so far, kept by the caller across a recording's segments
    (valid for one set of ``tracks``)."""
    tfhds = {} if tfhds is None else tfhds
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise RemuxError(f"cannot read {path.name}: {exc.strerror}") from exc
    with f:
        index = len(out.paths)
        out.paths.append(path)
        size = os.fstat(f.fileno()).st_size
        pending: tuple[int, list[tuple[Track, int, int, int]]] | None = None
        for kind, offset, box_size, header in _file_boxes(f, size):
            if kind == b"moof":
                if pending is not None or box_size > MAX_MOOF_BYTES:
                    raise RemuxError(f"{path.name}: unexpected moof at {offset}")
                f.seek(offset + header)
                payload = f.read(box_size - header)
                runs = []
                for child, body in children(payload):
                    if child == b"traf":
                        runs += _read_traf(body, tracks, tfhds)
                pending = (offset, runs)
            elif kind == b"mdat":
                if pending is None:
                    raise RemuxError(f"{path.name}: mdat at {offset} without a moof")
                moof_offset, runs = pending
                found = []
                for track, count, data_offset, length in runs:
                    start = moof_offset + data_offset
                    if start < offset + header or start + length > offset + box_size:
                        raise RemuxError(f"{path.name}: samples outside their mdat")
                    found.append((start, length, track.track_id, count, track.entry_now))
                for start, length, track_id, count, entry in sorted(found):
                    out.path.append(index)
                    out.start.append(start)
                    out.size.append(length)
                    out.track.append(track_id)
                    out.count.append(count)
                    out.entry.append(entry)
                pending = None
            elif kind not in (b"styp", b"sidx", b"prft", b"emsg", b"free", b"skip"):
                raise RemuxError(f"{path.name}: unexpected {kind!r} box")
        if pending is not None:
            raise RemuxError(f"{path.name}: the last moof has no mdat (torn segment)")
