"""Sockets that joined together do not all go stale together (issue 16's big rooms): each
principal's re-check comes at its own point of the second half of ``chat.recheck_interval``,
never after the interval."""

from __future__ import annotations

import random

from webapp.chat.principal import SESSION, Principal

INTERVAL = 30.0


def test_rechecks_of_a_crowd_are_spread_over_half_the_interval_never_later() -> None:
    random.seed(16)
    crowd = [Principal(n, f"u{n}", False, SESSION, "h" * 64, checked=0.0) for n in range(1000)]
    stale_at = sorted(INTERVAL * p.spread for p in crowd)
    assert not any(p.stale(INTERVAL, now=INTERVAL / 2 - 0.001) for p in crowd)
    assert all(p.stale(INTERVAL, now=INTERVAL) for p in crowd)  # never later than before
    # spread, not bunched: no second of the window holds more than a few percent of the crowd
    per_second = [
        sum(1 for t in stale_at if s <= t < s + 1) for s in range(int(INTERVAL / 2), int(INTERVAL))
    ]
    assert max(per_second) < 0.15 * len(crowd), per_second
    assert min(per_second) > 0
