"""Where segments start, decided once for every rung from timestamps alone.

Pure code (no PyAV, no threads), like ``transcode.ladder.plan_ladder``: the reader asks these
for each packet or frame and forces a keyframe on every rung where the answer is yes, so
segment boundaries are identical across renditions and the rule is unit-tested without media.
"""

from __future__ import annotations

import math

# A timestamp this far (beyond two segments) behind the next cut is a clock that jumped back,
# not a reordered frame: the grid starts over there.
JUMP_BACK_MS = 10_000
# Marks older than the frame just matched are forgotten once more than this many are held.
MAX_MARKS = 32


class SegmentClock:
    """Whether a frame starts a segment: the first frame does, then the first frame at or after
    each multiple of the segment duration from that first one.

    A late frame does not shift the grid: after a cut at 2.3 s (2 s segments from 0) the next
    cut is the first frame at or after 4 s. Only frames that may start a segment are
    candidates (``can_cut``: in copy mode only source keyframes can), so there a cut lands on
    the first keyframe at or after each multiple. ``restart()`` (the source changed) or a clock
    that jumps back makes the next candidate cut and anchor a new grid.
    """

    def __init__(self, segment_ms: float) -> None:
        if segment_ms <= 0:
            raise ValueError(f"segment duration must be positive, got {segment_ms!r} ms")
        self.segment_ms = segment_ms
        self.anchor_ms: float | None = None
        self.next_ms = 0.0  # where the next cut is due (after the first)
        self._restart = False

    def restart(self) -> None:
        """The next candidate starts a segment and a new grid (decoders restart there)."""
        self._restart = True

    def cut(self, pts_ms: int, can_cut: bool = True) -> bool:
        """True if the frame presented at ``pts_ms`` starts a segment."""
        if not can_cut:
            return False
        anchor = self.anchor_ms
        if (
            anchor is None
            or self._restart
            or pts_ms < self.next_ms - (2 * self.segment_ms + JUMP_BACK_MS)
        ):
            self.anchor_ms = anchor = float(pts_ms)
            self.next_ms = anchor + self.segment_ms
            self._restart = False
            return True
        if pts_ms >= self.next_ms:
            k = math.floor((pts_ms - anchor) / self.segment_ms) + 1
            self.next_ms = anchor + k * self.segment_ms
            return True
        return False


class BoundaryMarks:
    """Copy mode: the presentation times of the source keyframes that start segments.

    The copy rung cuts at packets (decode order); the transcoded rungs see decoded frames
    (presentation order) and cut where a frame's time was marked, so every rung starts its
    segments at the same times.
    """

    def __init__(self) -> None:
        self._marks: set[int] = set()

    def __len__(self) -> int:
        return len(self._marks)

    def mark(self, pts_ms: int) -> None:
        self._marks.add(pts_ms)

    def take(self, pts_ms: int) -> bool:
        """True (once) if a frame presented at ``pts_ms`` starts a segment."""
        if pts_ms not in self._marks:
            return False
        self._marks.discard(pts_ms)
        if len(self._marks) > MAX_MARKS:  # marks whose frame never came (undecodable)
            self._marks = {b for b in self._marks if b > pts_ms}
        return True
