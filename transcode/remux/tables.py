"""Sample tables of a flat (non-fragmented) MP4 track, built from per-sample arrays.

The writing half of ``mp4_remux``: given what every sample of a track is (duration, size,
composition offset, sync or not) and where each chunk of samples will lie in the output, these
functions write the ``stbl`` children a progressive-download player reads (ISO/IEC 14496-12,
8.6-8.7). Runs of equal values are folded as the tables allow (stts, ctts, stsc); stsz keeps one
entry per sample unless all are the same; chunk offsets take 64 bits (co64) only when the file
needs them. Pure functions over ``array``s: the tables of a ten-hour recording are millions of
samples, so nothing here builds a Python object per sample.
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Iterable, Sequence

from transcode.hls.fmp4 import box, full_box

_BIG_ENDIAN = sys.byteorder == "big"


def _be(values: array) -> bytes:
    """The array's items as big-endian bytes (MP4 is big-endian throughout)."""
    if _BIG_ENDIAN:
        return values.tobytes()
    swapped = array(values.typecode, values)
    swapped.byteswap()
    return swapped.tobytes()


def _runs(values: array) -> tuple[array, array]:
    """(counts, values) of the runs of equal consecutive values."""
    counts = array("I")
    kept = array(values.typecode)
    if not values:
        return counts, kept
    previous = values[0]
    n = 0
    for v in values:
        if v == previous:
            n += 1
        else:
            counts.append(n)
            kept.append(previous)
            previous, n = v, 1
    counts.append(n)
    kept.append(previous)
    return counts, kept


def _interleave(first: array, second: array) -> bytes:
    """Pairs (first[i], second[i]) as consecutive 32-bit big-endian words."""
    both = array("I", bytes(8 * len(first)))
    both[0::2] = first
    both[1::2] = array("I", second.tobytes()) if second.typecode != "I" else second
    return _be(both)


def stts(durations: array) -> bytes:
    """Decoding time to sample: (count, delta) runs."""
    counts, deltas = _runs(durations)
    return full_box(b"stts", 0, 0, struct.pack(">I", len(counts)), _interleave(counts, deltas))


def ctts(offsets: array | None) -> bytes | None:
    """Composition offsets, or None when every one is zero (the box is then left out).
    Version 1 (signed) when any offset is negative, as the fragments' version-1 truns were."""
    if offsets is None or not any(offsets):
        return None
    version = 1 if min(offsets) < 0 else 0
    counts, values = _runs(offsets)
    return full_box(
        b"ctts", version, 0, struct.pack(">I", len(counts)), _interleave(counts, values)
    )


def stss(sync: array | None, count: int) -> bytes | None:
    """Sync samples (1-based numbers), or None when all ``count`` samples are sync (``sync``
    None or all of them)."""
    if sync is None or len(sync) == count:
        return None
    return full_box(b"stss", 0, 0, struct.pack(">I", len(sync)), _be(sync))


def stsz(sizes: array) -> bytes:
    if sizes and min(sizes) == max(sizes):
        return full_box(b"stsz", 0, 0, struct.pack(">II", sizes[0], len(sizes)))
    return full_box(b"stsz", 0, 0, struct.pack(">II", 0, len(sizes)), _be(sizes))


def stsc(chunk_samples: array, chunk_descriptions: array) -> bytes:
    """Sample-to-chunk: one entry where the (samples per chunk, description) pair changes."""
    rows = array("I")
    last: tuple[int, int] | None = None
    for i, key in enumerate(zip(chunk_samples, chunk_descriptions, strict=True)):
        if key != last:
            rows.extend((i + 1, key[0], key[1]))
            last = key
    return full_box(b"stsc", 0, 0, struct.pack(">I", len(rows) // 3), _be(rows))


def chunk_offsets(offsets: array) -> bytes:
    """stco when every offset fits 32 bits, else co64."""
    if not offsets or max(offsets) <= 0xFFFFFFFF:
        return full_box(b"stco", 0, 0, struct.pack(">I", len(offsets)), _be(array("I", offsets)))
    return full_box(b"co64", 0, 0, struct.pack(">I", len(offsets)), _be(offsets))


def elst(edits: Sequence[tuple[int, int]]) -> bytes:
    """An edit list of (segment duration in the movie timescale, media time; -1: empty)."""
    wide = any(d > 0xFFFFFFFF or t > 0x7FFFFFFF for d, t in edits)
    fmt = ">Qq" if wide else ">Ii"
    rows = b"".join(struct.pack(fmt, d, t) + struct.pack(">hh", 1, 0) for d, t in edits)
    return box(b"edts", full_box(b"elst", 1 if wide else 0, 0, struct.pack(">I", len(edits)), rows))


def sample_tables(
    durations: array,
    offsets: array | None,
    sync: array | None,
    sizes: array,
    chunk_samples: array,
    chunk_descriptions: array,
) -> list[bytes]:
    """stts, ctts, stss, stsc and stsz, in the order stbl holds them: everything of a track's
    sample table but its sample descriptions (first) and chunk offsets (last)."""
    parts: Iterable[bytes | None] = (
        stts(durations),
        ctts(offsets),
        stss(sync, len(sizes)),
        stsc(chunk_samples, chunk_descriptions),
        stsz(sizes),
    )
    return [p for p in parts if p is not None]
