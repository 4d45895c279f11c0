"""Rolling rates (frames per second, media seconds per second) for the transcoder's figures."""

from __future__ import annotations

from collections import deque


class RollingRate:
    """Rolling rate of a growing counter over the last ``window`` seconds."""

    def __init__(self, window: float = 5.0) -> None:
        self.window = window
        self._samples: deque[tuple[float, float]] = deque()
        self._latest: tuple[float, float] | None = None

    def record(self, now: float, value: float) -> None:
        self._latest = (now, value)
        samples = self._samples
        if not samples or now - samples[-1][0] >= 0.25:
            samples.append((now, value))
            while len(samples) > 2 and now - samples[0][0] > self.window:
                samples.popleft()

    def rate(self, now: float) -> float:
        latest = self._latest
        if latest is None or not self._samples or now - latest[0] > self.window:
            return 0.0  # nothing recent: stalled or ended
        t0, v0 = self._samples[0]
        t1, v1 = latest
        return (v1 - v0) / (t1 - t0) if t1 > t0 else 0.0
