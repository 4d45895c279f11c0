"""Failed-login accounting: a sliding window per account and per client address.

Kept in memory: one process serves the site, the counts only need to live as long as the
window, and a login attempt must not cost a database write before the password is checked.
Memory is bounded by ``auth.login_tracked_keys``: past it the least recently failed keys are
forgotten first (an attacker spraying addresses makes us forget old ones, not grow forever).
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Limit:
    key: str
    max_failures: int


class LoginLimiter:
    def __init__(self, window: float, max_keys: int) -> None:
        self.window = window
        self.max_keys = max_keys
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, key: str, now: float) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def retry_after(self, limits: list[Limit], now: float) -> tuple[Limit, int] | None:
        """The first limit already reached and whole seconds until it frees up, or None."""
        for limit in limits:
            times = self._recent(limit.key, now)
            if times is not None and len(times) >= limit.max_failures:
                # Blocked until enough old failures leave the window.
                oldest_that_matters = times[len(times) - limit.max_failures]
                return limit, max(1, math.ceil(oldest_that_matters + self.window - now))
        return None

    def record_failure(self, limits: list[Limit], now: float) -> None:
        for limit in limits:
            times = self._recent(limit.key, now)
            if times is None:
                times = self._failures[limit.key] = deque(maxlen=limit.max_failures)
            times.append(now)
            self._failures.move_to_end(limit.key)
        while len(self._failures) > self.max_keys:
            self._failures.popitem(last=False)

    def clear(self, key: str) -> None:
        self._failures.pop(key, None)

    def __len__(self) -> int:
        return len(self._failures)
