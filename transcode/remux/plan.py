"""Laying out the flat MP4: ftyp + moov computed up front, then the mdat as file ranges.

Chunk offsets depend on the moov's size, which depends on whether the offsets need 64 bits,
so the moov is built until its size settles (twice, at most three times). The result is a
``Mp4Plan``: the header bytes and a table of (segment file, offset) pieces, enough for
``Mp4Reader`` to produce any byte range of the file.
"""

from __future__ import annotations

import bisect
import os
import re
import struct
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from transcode.hls.fmp4 import box, full_box
from transcode.hls.syntax import parse_segment_name
from transcode.remux import tables
from transcode.remux.fragments import (
    Init,
    RemuxError,
    Runs,
    Track,
    adopt_init,
    full,
    read_init,
    read_segment,
)

DEFAULT_READ_BYTES = 1 << 20

_RENDITION_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_MAP_RE = re.compile(r'#EXT-X-MAP:.*?URI="([^"]*)"')

# ---------------------------------------------------------------------------------------------
# Writing the header


def _with_duration(kind: bytes, body: bytes, words: int, duration: int) -> bytes:
    """``body`` (a mvhd/tkhd/mdhd) with a new duration; version 1 only when a field needs it.
    ``words``: 32-bit fields between the two times and the duration."""
    version, flags, rest = full(body)
    t = 8 if version == 1 else 4
    if len(rest) < 3 * t + 4 * words:
        raise RemuxError(f"{kind!r} too short")
    created, modified = struct.unpack_from(">QQ" if t == 8 else ">II", rest)
    middle = rest[2 * t : 2 * t + 4 * words]
    tail = rest[3 * t + 4 * words :]
    if max(created, modified, duration) > 0xFFFFFFFF:
        times = struct.pack(">QQ", created, modified)
        return full_box(kind, 1, flags, times, middle, struct.pack(">Q", duration), tail)
    times = struct.pack(">II", created, modified)
    return full_box(kind, 0, flags, times, middle, struct.pack(">I", duration), tail)


def _movie_timescale(mvhd: bytes) -> int:
    version, _, rest = full(mvhd)
    pos = 16 if version == 1 else 8
    if len(rest) < pos + 4 or struct.unpack_from(">I", rest, pos)[0] == 0:
        raise RemuxError("mvhd without a timescale")
    return int(struct.unpack_from(">I", rest, pos)[0])


def _edits(tracks: list[Track], movie_ts: int) -> dict[int, tuple[int, int, int]]:
    """Per track: (empty lead in movie ticks, media time, presented duration in movie ticks).

    In the recording a track starts at its first tfdt, plus the composition offset of its
    earliest presented sample. The earliest track starts the file at 0; the others keep their
    lead, and leading composition offsets are skipped, so the tracks stay in sync."""
    starts: dict[int, tuple[Fraction, int]] = {}
    for t in tracks:
        decode = 0
        earliest: int | None = None
        offsets = t.offsets[:64] if t.offsets is not None else [0] * len(t.durations[:64])
        for d, c in zip(t.durations[:64], offsets, strict=True):
            earliest = decode + c if earliest is None else min(earliest, decode + c)
            decode += d
        media_time = max(0, earliest or 0)
        starts[t.track_id] = (Fraction((t.first_decode or 0) + media_time, t.timescale), media_time)
    zero = min(s for s, _ in starts.values())
    result = {}
    for t in tracks:
        start, media_time = starts[t.track_id]
        lead = round((start - zero) * movie_ts)
        shown = round(Fraction(max(0, t.total - media_time), t.timescale) * movie_ts)
        result[t.track_id] = (lead, media_time, shown)
    return result


class _Box:
    """A box whose bytes are joined once, at the end: a ten-hour moov is about 15 MB, and
    nesting it five boxes deep with ``box`` would copy it at every level."""

    __slots__ = ("header", "parts", "size")
    header: bytes
    parts: tuple[bytes | _Box, ...]
    size: int

    def __init__(self, kind: bytes, *parts: bytes | _Box) -> None:
        self.parts = parts
        self.size = 8
        for part in parts:
            self.size += len(part) if isinstance(part, bytes) else part.size
        if self.size > 0xFFFFFFFF:
            raise RemuxError(f"{kind!r} box too large for a 32-bit size")
        self.header = struct.pack(">I4s", self.size, kind)

    def pieces(self) -> Iterator[bytes]:
        yield self.header
        for part in self.parts:
            if isinstance(part, bytes):
                yield part
            else:
                yield from part.pieces()


def _trak(
    t: Track, edit: tuple[int, int, int], total: int, samples: list[bytes], positions: array
) -> _Box:
    lead, media_time, shown = edit
    edits = ([(lead, -1)] if lead else []) + [(shown, media_time)]
    stsd = box(b"stsd", t.stsd_head, struct.pack(">I", len(t.entries)), *t.entries)
    stbl = _Box(b"stbl", stsd, *samples, tables.chunk_offsets(positions))
    minf = _Box(b"minf", *t.other_minf, stbl)
    mdhd = _with_duration(b"mdhd", t.mdhd, 1, total)
    mdia = _Box(b"mdia", mdhd, *t.other_mdia, minf)
    tkhd = _with_duration(b"tkhd", t.tkhd, 2, lead + shown)
    parts = [tkhd] + ([tables.elst(edits)] if lead or media_time else []) + [mdia]
    return _Box(b"trak", *parts)


def _ftyp(tracks: list[Track], init_ftyp: bytes) -> bytes:
    brands = [b"isom", b"iso2"]
    if any(t.offsets is not None and min(t.offsets) < 0 for t in tracks):
        brands.append(b"iso4")  # ctts version 1
    compatible = {init_ftyp[i : i + 4] for i in range(8, len(init_ftyp) - 3, 4)}
    brands += [b for b in (b"avc1", b"hvc1") if b in compatible]
    return box(b"ftyp", b"isom", struct.pack(">I", 0x200), *brands, b"mp41")


# ---------------------------------------------------------------------------------------------
# The plan


@dataclass(frozen=True, slots=True)
class Mp4Plan:
    """The MP4's bytes: ``head`` (ftyp + moov + mdat header) then the listed file ranges."""

    head: bytes
    paths: tuple[Path, ...]
    piece_path: array  # index into paths
    piece_offset: array  # offset in that file
    piece_start: array  # offset of the piece in the output
    size: int
    duration: float  # seconds, the longest track's

    @property
    def memory(self) -> int:
        """Bytes this plan holds (the header and its piece table), for caches to count."""
        return len(self.head) + 20 * len(self.piece_start) + 100 * len(self.paths)

    def reader(self) -> Mp4Reader:
        return Mp4Reader(self)


class Mp4Reader:
    """Reads the planned file by position, one file descriptor open at a time. Not
    thread-safe; meant for one download, in a worker thread; ``close`` when done."""

    def __init__(self, plan: Mp4Plan) -> None:
        self.plan = plan
        self._fd = -1
        self._fd_path = -1

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = self._fd_path = -1

    def __enter__(self) -> Mp4Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _file(self, index: int) -> int:
        if index != self._fd_path:
            self.close()
            self._fd = os.open(self.plan.paths[index], os.O_RDONLY)
            self._fd_path = index
        return self._fd

    def read(self, position: int, limit: int) -> bytearray:
        """Up to ``limit`` bytes from ``position`` (fewer only at the end of the file), read
        by the kernel straight into the returned buffer. ``RemuxError`` if a segment changed
        size or vanished since the plan was made."""
        plan = self.plan
        stop = min(plan.size, position + limit)
        out = bytearray(max(0, stop - position))
        view = memoryview(out)
        filled = 0
        head = len(plan.head)
        if position < head:
            part = plan.head[position : min(stop, head)]
            view[: len(part)] = part
            filled = len(part)
            position += filled
        i = bisect.bisect_right(plan.piece_start, position) - 1
        while position < stop:
            end = plan.piece_start[i + 1] if i + 1 < len(plan.piece_start) else plan.size
            want = min(stop, end) - position
            skip = position - plan.piece_start[i]
            try:
                got = os.preadv(
                    self._file(plan.piece_path[i]),
                    [view[filled : filled + want]],
                    plan.piece_offset[i] + skip,
                )
            except OSError as exc:
                raise RemuxError(f"cannot read a segment: {exc.strerror}") from exc
            if got != want:
                raise RemuxError("a segment changed while it was being read")
            filled += want
            position += want
            i += 1
        return out

    def chunks(
        self, start: int = 0, stop: int | None = None, block: int = DEFAULT_READ_BYTES
    ) -> Iterator[bytearray]:
        stop = self.plan.size if stop is None else stop
        while start < stop:
            data = self.read(start, min(block, stop - start))
            start += len(data)
            yield data


def _layout(init: Init, tracks: dict[int, Track], runs: Runs) -> Mp4Plan:
    used = [t for t in tracks.values() if len(t.sizes)]
    if not used:
        raise RemuxError("the recording holds no samples")
    payload = 0
    piece_path, piece_offset, piece_start = array("I"), array("Q"), array("Q")
    relative: dict[int, array] = {t.track_id: array("Q") for t in used}
    for i in range(len(runs)):
        track, path, start = tracks[runs.track[i]], runs.path[i], runs.start[i]
        relative[track.track_id].append(payload)
        track.chunk_samples.append(runs.count[i])
        track.chunk_entries.append(runs.entry[i])
        if not (
            piece_path
            and piece_path[-1] == path
            and piece_offset[-1] + (payload - piece_start[-1]) == start
        ):  # else it continues the previous piece in the same file
            piece_path.append(path)
            piece_offset.append(start)
            piece_start.append(payload)
        payload += runs.size[i]
    movie_ts = _movie_timescale(init.mvhd)
    edits = _edits(used, movie_ts)
    totals = {t.track_id: t.total for t in used}
    ftyp = _ftyp(used, init.ftyp)
    samples: dict[int, list[bytes]] = {}
    for t in used:  # the tables once; the per-sample arrays are let go as soon as they are in
        samples[t.track_id] = tables.sample_tables(
            t.durations, t.offsets, t.sync, t.sizes, t.chunk_samples, t.chunk_entries
        )
        t.durations, t.offsets, t.sync, t.sizes = array("I"), None, None, array("I")
    mdat_header = 8 if payload + 8 <= 0xFFFFFFFF else 16
    duration = max(lead + shown for lead, _, shown in edits.values())
    next_id = struct.pack(">I", max(tracks) + 1)
    mvhd_body = _with_duration(b"mvhd", init.mvhd, 1, duration)[8:]
    mvhd = box(b"mvhd", mvhd_body[:-4] + next_id)
    guess = 0
    while True:  # chunk offsets depend on the moov's size, which grows if they need co64
        base = len(ftyp) + guess + mdat_header
        traks = [
            _trak(
                t,
                edits[t.track_id],
                totals[t.track_id],
                samples[t.track_id],
                array("Q", (base + p for p in relative[t.track_id])),
            )
            for t in used
        ]
        moov = _Box(b"moov", mvhd, *traks, *init.moov_other)
        if moov.size == guess:
            break
        guess = moov.size
    if mdat_header == 8:
        mdat = struct.pack(">I4s", payload + 8, b"mdat")
    else:
        mdat = struct.pack(">I4sQ", 1, b"mdat", payload + 16)
    head = b"".join([ftyp, *moov.pieces(), mdat])
    for i in range(len(piece_start)):
        piece_start[i] += len(head)
    return Mp4Plan(
        head,
        tuple(runs.paths),
        piece_path,
        piece_offset,
        piece_start,
        len(head) + payload,
        duration / movie_ts,
    )


def plan_mp4(groups: list[tuple[Path, list[Path]]]) -> Mp4Plan:
    """The plan for a recording given as (init section, its segments) groups, in play order."""
    if not groups:
        raise RemuxError("no segments")
    first = read_init(groups[0][0])
    tracks = first.tracks
    runs = Runs()
    for n, (init_path, segments) in enumerate(groups):
        if n:
            adopt_init(tracks, read_init(init_path), init_path.name)
        tfhds: dict[bytes, tuple[Track, int, int, int]] = {}  # defaults may change with the init
        for segment in segments:
            read_segment(segment, tracks, runs, tfhds)
    return _layout(first, tracks, runs)


def rendition_names(directory: Path) -> list[str]:
    """The renditions a VOD's master playlist lists, highest bandwidth first (its order)."""
    try:
        text = (directory / "master.m3u8").read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise RemuxError("the recording has no master playlist") from exc
    names = []
    for line in text.splitlines():
        rendition, _, rest = line.strip().partition("/")
        if rest == "index.m3u8" and _RENDITION_RE.fullmatch(rendition):
            names.append(rendition)
    return names


def rendition_groups(directory: Path, rendition: str) -> list[tuple[Path, list[Path]]]:
    """(init, segments) groups of one rendition, from its VOD playlist. Only names the
    playlist lists in their canonical spelling reach the file system."""
    if not _RENDITION_RE.fullmatch(rendition):
        raise RemuxError(f"bad rendition name {rendition[:40]!r}")
    folder = directory / rendition
    try:
        text = (folder / "index.m3u8").read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise RemuxError(f"no playlist for rendition {rendition!r}") from exc
    groups: list[tuple[Path, list[Path]]] = []
    for line in text.splitlines():
        line = line.strip()
        m = _MAP_RE.match(line)
        name = m.group(1) if m else line if line and not line.startswith("#") else ""
        parsed = parse_segment_name(name) if name else None
        if parsed is None:
            if name:
                raise RemuxError(f"unexpected name {name[:40]!r} in the playlist")
            continue
        if parsed.kind == "init":
            groups.append((folder / name, []))
        elif parsed.kind == "segment" and groups:
            groups[-1][1].append(folder / name)
        else:
            raise RemuxError(f"{name!r} is not where a playlist may list it")
    groups = [g for g in groups if g[1]]
    if not groups:
        raise RemuxError(f"rendition {rendition!r} has no segments")
    return groups
