"""A per-socket budget of client frames: every frame type costs, so refusals stay cheap.

The per-user rate limit (content.RateLimiter) only counts accepted messages. Everything else a
socket sends (moderation frames from someone who may not moderate, unknown types, malformed
JSON, binary frames) was free to repeat as fast as the socket could carry it, and each one
still cost a parse, a check and a reply. The budget bounds that: at most ``frames`` frames per
``window`` seconds (a fixed window, counted before the frame is even parsed).

Past the budget the first extra frame gets a ``chat:error`` (code ``frame_budget``, with
``retry_after``) and the extra frames are ignored until the window ends; a client that sends
as many extra frames again within the same window is not listening and is closed with 1008.
"""

from __future__ import annotations

from enum import Enum


class Verdict(Enum):
    OK = "ok"  # handle the frame
    WARN = "warn"  # first frame over the budget: tell the client, ignore the frame
    IGNORE = "ignore"  # over the budget, already told
    CLOSE = "close"  # twice the budget in one window: close the socket


class FrameBudget:
    __slots__ = ("frames", "window", "start", "used")

    def __init__(self, frames: int, window: float) -> None:
        self.frames = frames
        self.window = window
        self.start = float("-inf")
        self.used = 0

    def take(self, now: float) -> Verdict:
        """Count one frame arriving at ``now`` (monotonic seconds)."""
        if now - self.start >= self.window:
            self.start, self.used = now, 0
        self.used += 1
        over = self.used - self.frames
        if over <= 0:
            return Verdict.OK
        if over == 1:
            return Verdict.WARN
        return Verdict.CLOSE if over > self.frames else Verdict.IGNORE

    def retry_after(self, now: float) -> float:
        return max(0.0, self.start + self.window - now)
