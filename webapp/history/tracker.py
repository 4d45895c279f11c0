"""The watch sessions being played right now, in memory, written to the database in batches.

A logged-in player page sends a heartbeat (``POST /api/watch/heartbeat``) every
``history.heartbeat_interval`` seconds while its video plays. The user is the one the request
authenticated (session cookie with its CSRF token, or a bearer token), never a field of the
body, so nobody can write into another user's history; anonymous players send nothing.

Each heartbeat credits the time since that session's previous heartbeat, at most
``history.session_gap`` seconds: however often a client beats, it cannot be credited more than
the time that passed (two tabs on one stream share one session and split the same clock). A
session silent for longer than the gap is over; the next heartbeat starts a new entry.

Writes: nothing per heartbeat. ``flush`` (every ``history.flush_interval`` seconds, and once
at shutdown) inserts the new sessions and updates the running ones in one transaction, with
absolute totals so a retried flush cannot double-count. Memory is bounded by
``history.max_tracked`` sessions in all and ``history.max_tracked_per_user`` per user.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from storage import Database
from storage import history as history_queries

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Watch:
    user_id: int
    channel_id: int
    stream_id: int
    started_at: datetime
    last_seen_at: datetime
    last_beat: float  # monotonic
    seconds: float = 0.0
    row_id: int | None = None
    # Bumped by every heartbeat: a flush marks the session clean only if none came meanwhile.
    version: int = 1
    written: int = 0


def _now() -> datetime:
    return datetime.now(UTC)


class WatchTracker:
    def __init__(
        self,
        db: Database,
        *,
        session_gap: float,
        max_tracked: int,
        max_per_user: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.session_gap = session_gap
        self.max_tracked = max_tracked
        self.max_per_user = max_per_user
        self.clock = clock
        self._watches: dict[tuple[int, int], _Watch] = {}
        self._per_user: dict[int, int] = {}
        # Sessions that ended (a gap) before their last seconds were written.
        self._finished: list[_Watch] = []
        # Flushes and deletions take turns, so a flush in flight cannot write back a session
        # the user just deleted.
        self._lock = asyncio.Lock()

    def __len__(self) -> int:
        return len(self._watches) + len(self._finished)

    def beat(self, user_id: int, channel_id: int, stream_id: int) -> bool:
        """A heartbeat of ``user_id`` playing ``stream_id``; False when not recorded (over a
        memory bound)."""
        now = self.clock()
        key = (user_id, stream_id)
        watch = self._watches.get(key)
        if watch is not None and now - watch.last_beat > self.session_gap:
            self._end(key, watch)
            watch = None
        if watch is None:
            if len(self) >= self.max_tracked or self._per_user.get(user_id, 0) >= self.max_per_user:
                return False
            wall = _now()
            self._watches[key] = _Watch(user_id, channel_id, stream_id, wall, wall, now)
            self._per_user[user_id] = self._per_user.get(user_id, 0) + 1
            return True
        watch.seconds += min(max(now - watch.last_beat, 0.0), self.session_gap)
        watch.last_beat = now
        watch.last_seen_at = _now()
        watch.version += 1
        return True

    def _end(self, key: tuple[int, int], watch: _Watch) -> None:
        del self._watches[key]
        n = self._per_user[watch.user_id] - 1
        if n:
            self._per_user[watch.user_id] = n
        else:
            del self._per_user[watch.user_id]
        if watch.written != watch.version:
            self._finished.append(watch)

    async def flush(self) -> int:
        """Write every session changed since the last flush; how many were written."""
        async with self._lock:
            now = self.clock()
            for key, watch in list(self._watches.items()):
                if now - watch.last_beat > self.session_gap:
                    self._end(key, watch)
            due = [w for w in self._watches.values() if w.written != w.version]
            finished, self._finished = self._finished, []
            due += finished
            if not due:
                return 0
            versions = [w.version for w in due]
            new = [w for w in due if w.row_id is None]
            try:
                async with self.db.session() as session:
                    ids = await history_queries.write_batch(
                        session,
                        [
                            history_queries.NewWatch(
                                w.user_id,
                                w.channel_id,
                                w.stream_id,
                                w.started_at,
                                w.last_seen_at,
                                int(w.seconds),
                            )
                            for w in new
                        ],
                        [
                            history_queries.WatchUpdate(w.row_id, w.last_seen_at, int(w.seconds))
                            for w in due
                            if w.row_id is not None
                        ],
                    )
                    await session.commit()
            except BaseException:
                self._finished = finished + self._finished  # written at the next flush
                raise
            for watch, row_id in zip(new, ids, strict=True):
                watch.row_id = row_id
            for watch, version in zip(due, versions, strict=True):
                watch.written = version
            return len(due)

    async def forget(
        self, user_id: int, entry_id: int | None, delete: Callable[[], object]
    ) -> None:
        """Drop ``user_id``'s sessions from memory (only the one written as ``entry_id`` when
        given), then run ``delete`` (the database deletion) before any flush can run again."""
        async with self._lock:
            for key, watch in list(self._watches.items()):
                if watch.user_id == user_id and entry_id in (None, watch.row_id):
                    self._end(key, watch)
            self._finished = [
                w
                for w in self._finished
                if not (w.user_id == user_id and entry_id in (None, w.row_id))
            ]
            result = delete()
            if asyncio.iscoroutine(result):
                await result

    async def run(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.flush()
            except Exception:
                log.exception("writing the watch history failed; retrying at the next flush")
