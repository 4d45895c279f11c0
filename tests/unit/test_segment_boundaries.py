"""Where segments start: the transcoder's boundary rule as pure code, without media or threads.

Every rung forces a keyframe where these say "cut", so the rule decides segment lengths and
their alignment across renditions (the pipeline tests check the same with real media).
"""

from __future__ import annotations

import pytest

from transcode.pipeline.boundaries import MAX_MARKS, BoundaryMarks, SegmentClock
from transcode.pipeline.reader import estimate_fps


def cuts(clock: SegmentClock, times: list[int], keyframes: set[int] | None = None) -> list[int]:
    """The times among ``times`` that start a segment (``keyframes``: the only candidates)."""
    return [t for t in times if clock.cut(t, keyframes is None or t in keyframes)]


def test_the_first_frame_and_the_first_at_or_after_each_multiple_cut() -> None:
    frames = [round(i * 1000 / 30) for i in range(300)]  # 10 s at 30 fps
    got = cuts(SegmentClock(2000), frames)
    assert got == [0, 2000, 4000, 6000, 8000]
    shifted = [t + 1234 for t in frames]  # the grid starts at the first frame, not at zero
    assert cuts(SegmentClock(2000), shifted) == [1234, 3234, 5234, 7234, 9234]


def test_a_late_frame_does_not_shift_the_grid() -> None:
    clock = SegmentClock(2000)
    assert cuts(clock, [0, 1000, 2300, 3900, 4000, 6500, 7999, 8000]) == [0, 2300, 4000, 6500, 8000]
    assert clock.anchor_ms == 0 and clock.next_ms == 10000


def test_a_gap_skips_to_the_next_multiple_after_it() -> None:
    clock = SegmentClock(2000)
    assert cuts(clock, [0, 7100, 7900, 8000]) == [0, 7100, 8000]


def test_copy_mode_cuts_only_at_keyframes() -> None:
    """Only source keyframes can start a segment: the first keyframe at/after each multiple."""
    times = list(range(0, 10000, 250))
    keyframes = {0, 1500, 2500, 3000, 5000, 9000}
    assert cuts(SegmentClock(2000), times, keyframes) == [0, 2500, 5000, 9000]
    # Frames that cannot cut leave the clock alone.
    clock = SegmentClock(2000)
    assert clock.cut(0) and not clock.cut(2000, can_cut=False) and clock.next_ms == 2000


def test_restart_cuts_at_the_next_candidate_and_anchors_a_new_grid() -> None:
    clock = SegmentClock(2000)
    assert cuts(clock, [0, 500]) == [0]
    clock.restart()
    assert not clock.cut(600, can_cut=False)  # a non-keyframe cannot take the restart
    assert cuts(clock, [700, 2600, 2700, 4700]) == [700, 2700, 4700]


def test_a_clock_that_jumps_far_back_starts_over_and_jitter_does_not() -> None:
    clock = SegmentClock(2000)
    assert cuts(clock, [30000, 29990, 31000]) == [30000]  # a little back: nothing happens
    assert clock.cut(1000)  # 30 s back (beyond two segments and 10 s): a new grid at 1000
    assert cuts(clock, [2000, 3000]) == [3000]
    near = SegmentClock(2000)
    assert cuts(near, [20000, 10000]) == [20000]  # 10 s back is within the margin


def test_fractional_durations_keep_to_the_grid() -> None:
    clock = SegmentClock(2002.0)  # 2.002 s: 60 frames at 29.97 fps
    frames = [round(i * 1001 / 30) for i in range(200)]
    got = cuts(clock, frames)
    assert got == [frames[i] for i in (0, 60, 120, 180)]


def test_the_segment_duration_must_be_positive() -> None:
    with pytest.raises(ValueError):
        SegmentClock(0)


def test_marks_match_each_marked_frame_once() -> None:
    marks = BoundaryMarks()
    for t in (0, 2000, 4000):
        marks.mark(t)
    assert not marks.take(1000)
    assert marks.take(2000) and not marks.take(2000)
    assert marks.take(0) and len(marks) == 1


def test_marks_whose_frame_never_came_are_forgotten() -> None:
    marks = BoundaryMarks()
    for t in range(MAX_MARKS + 2):
        marks.mark(t * 100)
    assert marks.take(500)
    assert len(marks) == MAX_MARKS + 2 - 6  # 0..400 were passed by: forgotten
    assert not marks.take(0)


def test_frame_rate_from_timestamps_or_the_declared_rate() -> None:
    thirty = [round(i * 1000 / 30) for i in range(30)]
    assert estimate_fps(thirty, 0.0) == 30.0  # millisecond timestamps snap to a common rate
    assert estimate_fps(thirty, 30.0) == 30.0
    assert estimate_fps(thirty, 60.0) == 30.0  # a declared rate the timestamps deny is ignored
    assert estimate_fps([0], 25.0) == 25.0
    assert estimate_fps([], 0.0) == 0.0
    odd = [i * 77 for i in range(10)]
    assert estimate_fps(odd, 0.0) == round(1000 / 77, 3)
