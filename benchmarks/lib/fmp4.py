"""Fragmented MP4 (CMAF) read the way a player reads it: boxes, initialization segments and
the samples of moof+mdat fragments (ISO/IEC 14496-12).

Why a reader of its own and not the packager's code: the HLS tests check what the packager
wrote, and the latency benchmark decodes what the server sent; both need an independent
reading of the spec, or a packager bug would be read back as correct. Nothing here knows how
our server lays out its boxes beyond what the spec allows, and a box whose size does not tile
its parent is an error (``ValueError``), never skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

# Sample flags: sample_is_non_sync_sample.
NON_SYNC = 0x10000


def box_headers(
    data: bytes | memoryview, start: int = 0, end: int | None = None
) -> Iterator[tuple[str, int, int, int]]:
    """(type, offset, size, header size) of each box in ``data[start:end]``; the boxes must
    tile the range exactly. Handles 64-bit sizes and size 0 (to the end)."""
    end = len(data) if end is None else end
    pos = start
    while pos < end:
        if pos + 8 > end:
            raise ValueError(f"{end - pos} stray bytes at {pos}")
        size = int.from_bytes(data[pos : pos + 4], "big")
        kind = bytes(data[pos + 4 : pos + 8]).decode("latin-1")
        header = 8
        if size == 1:
            size = int.from_bytes(data[pos + 8 : pos + 16], "big")
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            raise ValueError(f"bad box {kind!r} at {pos}: size {size}, range ends at {end}")
        yield kind, pos, size, header
        pos += size


def iter_boxes(
    data: bytes | memoryview, start: int = 0, end: int | None = None
) -> Iterator[tuple[str, int, int]]:
    """(type, offset, size) of each box in ``data[start:end]``; the boxes must tile it."""
    for kind, offset, size, _ in box_headers(data, start, end):
        yield kind, offset, size


def children(data: bytes, offset: int, size: int, header: int = 8) -> list[tuple[str, int, int]]:
    """Child boxes of the box at ``offset`` (``header`` = 12 for a FullBox)."""
    return list(iter_boxes(data, offset + header, offset + size))


def find(
    data: bytes | memoryview, path: str, start: int = 0, end: int | None = None
) -> list[tuple[int, int]]:
    """(offset, size) of every box at a slash-separated path, e.g. ``moov/trak/mdia/mdhd``,
    looked for in ``data[start:end]`` (plain container boxes on the way)."""
    first, _, rest = path.partition("/")
    found = []
    for kind, off, size, header in box_headers(data, start, end):
        if kind != first:
            continue
        if rest:
            found += find(data, rest, off + header, off + size)
        else:
            found.append((off, size))
    return found


def _u32(data: bytes | memoryview, offset: int) -> int:
    return int.from_bytes(data[offset : offset + 4], "big")


def _full_box_field(data: bytes | memoryview, box: int, v0: int, v1: int) -> int:
    """A 32-bit field of a FullBox whose position depends on its version (byte 8)."""
    return _u32(data, box + (v1 if data[box + 8] == 1 else v0))


def avc_config(init: bytes) -> tuple[int, bytes, int]:
    """(track id, avcC record, timescale) of the H.264 track of an initialization segment."""
    for trak, size in find(init, "moov/trak"):
        tkhd = find(init, "tkhd", trak + 8, trak + size)
        stsd = find(init, "mdia/minf/stbl/stsd", trak + 8, trak + size)
        if not tkhd or not stsd:
            continue
        track_id = _full_box_field(init, tkhd[0][0], 20, 28)
        mdhd = find(init, "mdia/mdhd", trak + 8, trak + size)
        timescale = _full_box_field(init, mdhd[0][0], 20, 28) if mdhd else 90000
        # stsd: FullBox header (12) and an entry count (4), then the sample entries.
        stsd_off, stsd_size = stsd[0]
        for kind, entry, entry_size, header in box_headers(
            init, stsd_off + 16, stsd_off + stsd_size
        ):
            if kind not in ("avc1", "avc3"):
                continue
            # VisualSampleEntry: 78 bytes of fixed fields after the header, then child boxes.
            for child, off, child_size, child_header in box_headers(
                init, entry + header + 78, entry + entry_size
            ):
                if child == "avcC":
                    return track_id, bytes(init[off + child_header : off + child_size]), timescale
    raise ValueError("no H.264 video track in the initialization segment")


@dataclass
class Sample:
    offset: int  # where its bytes start in the data given to ``fragments``
    dts: int
    pts: int
    duration: int
    flags: int
    data: bytes

    @property
    def sync(self) -> bool:
        return not self.flags & NON_SYNC


@dataclass
class TrackRun:
    version: int
    flags: int
    samples: list[Sample] = field(default_factory=list)


@dataclass
class TrackFragment:
    """One traf of a moof, with its samples resolved to their bytes."""

    sequence: int | None  # mfhd sequence_number
    track_id: int
    tfhd_flags: int
    tfdt: int | None  # baseMediaDecodeTime, None without a tfdt
    tfdt_version: int | None
    runs: list[TrackRun]
    moof: int  # offset of the moof
    mdat: tuple[int, int] | None  # (offset, size) of the mdat right after the moof

    @property
    def samples(self) -> list[Sample]:
        return [s for run in self.runs for s in run.samples]


def _track_fragment(
    data: bytes | memoryview,
    moof: int,
    traf: int,
    traf_end: int,
    sequence: int | None,
    mdat: tuple[int, int] | None,
) -> TrackFragment:
    tfhd = find(data, "tfhd", traf + 8, traf_end)
    if not tfhd:
        raise ValueError(f"traf at {traf} has no tfhd")
    p = tfhd[0][0] + 8
    tf_flags = int.from_bytes(data[p + 1 : p + 4], "big")
    track_id = _u32(data, p + 4)
    q = p + 8
    base = moof  # default-base-is-moof, as CMAF requires
    if tf_flags & 0x1:
        base = int.from_bytes(data[q : q + 8], "big")
        q += 8
    if tf_flags & 0x2:
        q += 4  # sample_description_index
    defaults = {}
    for flag, name in ((0x8, "duration"), (0x10, "size"), (0x20, "flags")):
        if tf_flags & flag:
            defaults[name] = _u32(data, q)
            q += 4
    decode_time = tfdt_version = None
    tfdt = find(data, "tfdt", traf + 8, traf_end)
    if tfdt:
        tfdt_version = data[tfdt[0][0] + 8]
        n = 8 if tfdt_version == 1 else 4
        decode_time = int.from_bytes(data[tfdt[0][0] + 12 : tfdt[0][0] + 12 + n], "big")
    out = TrackFragment(sequence, track_id, tf_flags, decode_time, tfdt_version, [], moof, mdat)
    time = decode_time or 0
    cursor = base
    for trun, _ in find(data, "trun", traf + 8, traf_end):
        version = data[trun + 8]
        flags = int.from_bytes(data[trun + 9 : trun + 12], "big")
        count = _u32(data, trun + 12)
        r = trun + 16
        if flags & 0x1:
            cursor = base + int.from_bytes(data[r : r + 4], "big", signed=True)
            r += 4
        first_flags = None
        if flags & 0x4:
            first_flags = _u32(data, r)
            r += 4
        run = TrackRun(version, flags)
        for n in range(count):
            duration = defaults.get("duration", 0)
            size = defaults.get("size", 0)
            sflags = defaults.get("flags", 0)
            cts = 0
            if flags & 0x100:
                duration = _u32(data, r)
                r += 4
            if flags & 0x200:
                size = _u32(data, r)
                r += 4
            if flags & 0x400:
                sflags = _u32(data, r)
                r += 4
            elif n == 0 and first_flags is not None:
                sflags = first_flags
            if flags & 0x800:
                cts = int.from_bytes(data[r : r + 4], "big", signed=(version == 1))
                r += 4
            if cursor + size > len(data):
                raise ValueError(f"sample {n} of track {track_id} lies past the data")
            run.samples.append(
                Sample(
                    cursor, time, time + cts, duration, sflags, bytes(data[cursor : cursor + size])
                )
            )
            cursor += size
            time += duration
        out.runs.append(run)
    return out


def fragments(data: bytes | memoryview) -> list[TrackFragment]:
    """Every traf of every moof in a run of moof+mdat pairs (a segment or an LL-HLS part)."""
    out = []
    boxes = list(box_headers(data))
    for i, (kind, moof, size, header) in enumerate(boxes):
        if kind != "moof":
            continue
        after = boxes[i + 1] if i + 1 < len(boxes) else None
        mdat = (after[1], after[2]) if after is not None and after[0] == "mdat" else None
        mfhd = find(data, "mfhd", moof + header, moof + size)
        sequence = _u32(data, mfhd[0][0] + 12) if mfhd else None
        for traf, traf_size in find(data, "traf", moof + header, moof + size):
            out.append(_track_fragment(data, moof, traf, traf + traf_size, sequence, mdat))
    return out


def video_samples(data: bytes, track_id: int) -> list[tuple[int, bytes, bool]]:
    """(pts, sample bytes, is sync sample) of one track in a run of moof+mdat pairs."""
    return [
        (s.pts, s.data, s.sync)
        for t in fragments(data)
        if t.track_id == track_id
        for s in t.samples
    ]
