"""The smart cut's plan (``transcode.cut.plan``): which samples are copied and which GOPs are
re-encoded, on made-up timelines (one tick per frame)."""

from __future__ import annotations

import pytest

from transcode.cut.plan import Piece, plan_cut


def gops(count: int, size: int) -> tuple[list[int], list[bool]]:
    """No reordering: decode order is presentation order."""
    pts = list(range(count * size))
    return pts, [i % size == 0 for i in pts]


def bframe_gops(count: int, size: int) -> tuple[list[int], list[bool]]:
    """I P B P B ... in decode order: each P is shown after the B that follows it."""
    pts: list[int] = []
    idr: list[bool] = []
    for g in range(count):
        base = g * size
        order = [0]
        for k in range(1, size, 2):
            order += [k + 1, k] if k + 1 < size else [k]
        pts += [base + k for k in order]
        idr += [k == 0 for k in order]
    return pts, idr


def copied(pieces: list[Piece]) -> int:
    return sum(p.frames for p in pieces if p.copy)


def test_whole_gops_copied_edges_reencoded() -> None:
    pts, idr = gops(5, 10)
    pieces = plan_cut(pts, idr, 15, 35)
    assert pieces == [
        Piece(False, 10, 20, 15, 35, 5),
        Piece(True, 20, 35, 15, 35, 15),  # GOP 20-29 whole, then 30-34 as a prefix
    ]


def test_start_on_a_keyframe_reencodes_nothing_without_reordering() -> None:
    pts, idr = gops(5, 10)
    assert plan_cut(pts, idr, 20, 43) == [Piece(True, 20, 43, 20, 43, 23)]


def test_inside_one_gop() -> None:
    pts, idr = gops(3, 10)
    assert plan_cut(pts, idr, 12, 17) == [Piece(False, 10, 17, 12, 17, 5)]


def test_reordered_tail_is_reencoded() -> None:
    pts, idr = bframe_gops(4, 10)
    # Kept 20-23 of a GOP decoded as 20 22 21 24 23 ...: 24 is not kept but 23 needs it.
    pieces = plan_cut(pts, idr, 10, 24)
    assert pieces[0] == Piece(True, 10, 20, 10, 24, 10)
    assert not pieces[1].copy and pieces[1].frames == 4
    # Decoding stops at the last kept frame in decode order: nothing after it is needed.
    kept = [i for i in range(20, 30) if 10 <= pts[i] < 24]
    assert pieces[1].end == max(kept) + 1


def test_reordered_prefix_that_is_whole_is_copied() -> None:
    # 20 22 21 24 23 in decode order are exactly 20-24: nothing kept needs a dropped frame.
    pts, idr = bframe_gops(4, 10)
    assert plan_cut(pts, idr, 10, 25) == [Piece(True, 10, 25, 10, 25, 15)]


def test_every_frame_accounted_for() -> None:
    pts, idr = bframe_gops(6, 12)
    for lo in range(0, 60, 7):
        for hi in range(lo + 1, 72, 5):
            pieces = plan_cut(pts, idr, lo, hi)
            assert sum(p.frames for p in pieces) == len([p for p in pts if lo <= p < hi])
            assert copied(pieces) <= sum(p.frames for p in pieces)
            for p in pieces:
                assert idr[p.first]  # every piece starts (and decodes) from an IDR


def test_kept_frames_before_the_first_idr() -> None:
    pts = [0, 1, 2, 3, 4, 5]
    idr = [False, False, False, True, False, False]
    with pytest.raises(ValueError):
        plan_cut(pts, idr, 1, 5)
    assert plan_cut(pts, idr, 3, 6) == [Piece(True, 3, 6, 3, 6, 3)]
