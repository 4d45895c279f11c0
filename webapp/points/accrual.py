"""Points earned by watching, counted in memory and written in batches.

The player page of a logged-in viewer sends ``POST /api/points/heartbeat`` every
``points.heartbeat_interval`` seconds while it plays. The handler credits it (``beat``) only
when the same login session fetched media of the channel within ``points.media_window``
seconds: the HLS layer notes the login cookie of every part and segment request in memory
(``ViewerCounter.fetched_media``, no database lookup per request), so a heartbeat from a
page that does not really play (or a script) earns nothing.

One counted session per user and channel: each credited heartbeat adds the time since that
user's previous credited heartbeat on the channel, at most ``points.session_gap`` seconds, so
several tabs share one clock and cannot earn more than the time that passed.

Writes: nothing per heartbeat. ``flush`` (every ``points.flush_interval`` seconds and at
shutdown) turns the whole minutes gathered into points, in one transaction of five
statements whatever the number of watchers (``storage.points.accrue``: the channels'
rates, the followers among the watchers, the recent chatters, one multi-row INSERT of ledger
rows, one upsert of the balances); a minute is taken from memory only once its transaction
committed, so a failed flush is retried whole at the next one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from aiohttp import web

from storage import Database
from storage import points as store

log = logging.getLogger(__name__)


class Accrual:
    def __init__(
        self,
        db: Database,
        *,
        session_gap: float,
        max_tracked: int,
        defaults: store.Rates,
        chat_window: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.session_gap = session_gap
        self.max_tracked = max_tracked
        self.defaults = defaults
        self.chat_window = chat_window
        self.clock = clock
        # (user id, channel id) -> [last credited beat (clock), seconds not yet written]
        self._watching: dict[tuple[int, int], list[float]] = {}
        self._lock = asyncio.Lock()

    def __len__(self) -> int:
        return len(self._watching)

    def beat(self, user_id: int, channel_id: int) -> bool:
        """A credited heartbeat; False when not kept (over the memory bound)."""
        now = self.clock()
        key = (user_id, channel_id)
        entry = self._watching.get(key)
        if entry is None:
            if len(self._watching) >= self.max_tracked:
                return False
            self._watching[key] = [now, 0.0]
            return True
        entry[1] += min(max(now - entry[0], 0.0), self.session_gap)
        entry[0] = now
        return True

    def pending_seconds(self, user_id: int, channel_id: int) -> float:
        entry = self._watching.get((user_id, channel_id))
        return 0.0 if entry is None else entry[1]

    async def flush(self) -> int:
        """Write the whole minutes gathered; the ledger rows written."""
        async with self._lock:
            now = self.clock()
            minutes = {k: int(e[1] // 60) for k, e in self._watching.items() if e[1] >= 60}
            written = 0
            if minutes:
                since = datetime.now(UTC) - timedelta(seconds=self.chat_window)
                async with self.db.session() as session:
                    written = await store.accrue(session, minutes, self.defaults, since)
                    await session.commit()
                for key, m in minutes.items():
                    self._watching[key][1] -= m * 60
            # Forget who stopped watching (less than a minute left over is dropped).
            for key in [k for k, e in self._watching.items() if now - e[0] > self.session_gap]:
                if self._watching[key][1] < 60:
                    del self._watching[key]
            return written

    async def run(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.flush()
            except Exception:
                log.exception("writing channel points failed; retrying at the next flush")


ACCRUAL_KEY = web.AppKey("points_accrual", Accrual)
