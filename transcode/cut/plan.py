"""Which samples of a rendition a clip copies and which it re-encodes: pure, no media.

The kept frames are those presented inside the window; the window's edges are rounded to the
nearest frame by the caller. A GOP (an IDR and what follows it up to the next IDR) whose every
frame is kept is copied as it is. So is a GOP whose kept frames are the first ones in decode
order (the tail of a clip from a source without B-frames): none of them can reference a frame
that is left out, since references always come earlier in decode order. Any other GOP that
holds kept frames (the head of a clip starting after an IDR, a tail with reordered frames, a
clip inside one GOP) is decoded from its IDR and its kept frames re-encoded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Piece:
    """A run of samples in decode order, ``[first, end)``.

    ``copy``: the samples go out as they are. Otherwise they are decoded (from ``first``, an
    IDR) and the frames presented in ``[lo, hi)`` are re-encoded.
    """

    copy: bool
    first: int
    end: int
    lo: int
    hi: int
    frames: int  # frames this piece puts in the clip


def gop_starts(idr: Sequence[bool]) -> list[int]:
    return [i for i, key in enumerate(idr) if key]


def plan_cut(pts: Sequence[int], idr: Sequence[bool], lo: int, hi: int) -> list[Piece]:
    """Pieces, in decode order, that together present exactly the frames with ``lo <= pts <
    hi``. ``ValueError`` if a kept frame comes before the first IDR (nothing to decode it from).
    """
    if len(pts) != len(idr):
        raise ValueError("pts and idr differ in length")
    starts = gop_starts(idr)
    kept_before = [i for i in range(starts[0] if starts else len(pts)) if lo <= pts[i] < hi]
    if kept_before:
        raise ValueError("the window starts before the first IDR of the media read")
    pieces: list[Piece] = []
    bounds = [*starts, len(pts)]
    for g0, g1 in zip(bounds, bounds[1:], strict=False):
        kept = [i for i in range(g0, g1) if lo <= pts[i] < hi]
        if not kept:
            continue
        if kept == list(range(g0, g0 + len(kept))):
            end = g0 + len(kept)
            if pieces and pieces[-1].copy and pieces[-1].end == g0:
                last = pieces.pop()
                pieces.append(Piece(True, last.first, end, lo, hi, last.frames + len(kept)))
            else:
                pieces.append(Piece(True, g0, end, lo, hi, len(kept)))
        else:
            pieces.append(Piece(False, g0, max(kept) + 1, lo, hi, len(kept)))
    return pieces
