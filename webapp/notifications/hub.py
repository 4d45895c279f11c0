"""The bell's live unread count: one Server-Sent Events stream per open logged-in page.

The count is a state, not a series of events: each stream holds only the latest value to send
(a newer count replaces one not sent yet), so a client that reads slowly costs one integer, and
one that never reads is closed once its socket's write buffer passes
``notifications.send_buffer_bytes`` or a write waits ``notifications.write_timeout``.

Where new counts come from:
- notifications written by this process (the fan-out of a stream published here, marks as
  read through this process's API) mark their users dirty at once (``dirty``/``dirty_range``);
- notifications written by another process (it took the publish) are found by a cheap poll
  every ``notifications.poll_interval``: the newest id, and only when it moved, which of the
  users with an open stream here got one. With no stream open here the poll asks nothing (an
  idle server, or one that only ingests, makes no query a second for bells nobody has open);
  the first poll with a stream open again catches the mark up and recounts the open streams;
- every ``notifications.recount_interval`` every open stream is recounted (a mark as read made
  through another process).
A flusher recounts the dirty users in grouped queries and wakes their streams.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from mediaserver.settings import NotificationsSettings
from mediaserver.tasks import stop_tasks
from storage import Database
from storage import notifications as store

from ..errors import ApiError

log = logging.getLogger(__name__)


class EventStream:
    """One open bell: the latest count not sent yet, and a wake-up for its handler."""

    __slots__ = ("user_id", "pending", "wake", "closed")

    def __init__(self, user_id: int) -> None:
        self.user_id = user_id
        self.pending: int | None = None
        self.wake = asyncio.Event()
        self.closed = False

    def offer(self, count: int) -> None:
        self.pending = count
        self.wake.set()

    def close(self) -> None:
        self.closed = True
        self.wake.set()


class NotificationHub:
    def __init__(self, db: Database, settings: NotificationsSettings) -> None:
        self.db = db
        self.settings = settings
        self.streams: dict[int, set[EventStream]] = {}
        self.total = 0
        self._dirty: set[int] = set()
        self._all_dirty = False
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._mark = 0  # the newest notification id the poll has seen
        # A poll found no stream open, asked nothing, and left the mark behind the newest row.
        self._mark_behind = False
        self.idle_polls = 0  # polls that asked nothing (no stream open)

    # -- streams ----------------------------------------------------------------------------

    def open(self, user_id: int) -> EventStream:
        """A new stream for ``user_id``; ApiError 429 past the per-user or total bound."""
        mine = self.streams.get(user_id, set())
        if len(mine) >= self.settings.max_streams_per_user:
            raise ApiError(
                429, "too_many_streams", "too many open notification streams for this account"
            )
        if self.total >= self.settings.max_streams:
            raise ApiError(429, "too_many_streams", "too many open notification streams")
        stream = EventStream(user_id)
        self.streams.setdefault(user_id, set()).add(stream)
        self.total += 1
        return stream

    def close(self, stream: EventStream) -> None:
        stream.close()
        mine = self.streams.get(stream.user_id)
        if mine is not None and stream in mine:
            mine.discard(stream)
            self.total -= 1
            if not mine:
                del self.streams[stream.user_id]

    def close_all(self) -> None:
        for mine in list(self.streams.values()):
            for stream in list(mine):
                self.close(stream)

    # -- what changed ------------------------------------------------------------------------

    def dirty(self, user_ids: Iterable[int]) -> None:
        """These users' counts may have changed: recount those with an open stream here."""
        added = False
        for uid in user_ids:
            if uid in self.streams:
                self._dirty.add(uid)
                added = True
        if added:
            self._wake.set()

    def dirty_range(self, after: int, upto: int | None) -> None:
        """Users with ids in (after, upto] (upto None: no upper end) may have new ones."""
        self.dirty(uid for uid in self.streams if uid > after and (upto is None or uid <= upto))

    def push(self, user_id: int, count: int) -> None:
        for stream in self.streams.get(user_id, ()):
            stream.offer(count)

    # -- background work ---------------------------------------------------------------------

    async def start(self) -> None:
        async with self.db.session() as session:
            self._mark = await store.latest_id(session)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._flush_loop()), loop.create_task(self._poll_loop())]

    async def stop(self) -> None:
        self.close_all()
        await stop_tasks(self._tasks)
        self._tasks = []

    async def _flush_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._all_dirty:
                self._all_dirty = False
                self._dirty.update(self.streams)
            users = [uid for uid in self._dirty if uid in self.streams]
            self._dirty.clear()
            if not users:
                continue
            try:
                async with self.db.session() as session:
                    counts = await store.unread_counts(session, users)
            except Exception:
                log.exception("notifications: counting unread notifications failed")
                self._dirty.update(users)  # tried again at the next wake-up
                continue
            for uid, count in counts.items():
                self.push(uid, count)

    async def _poll_loop(self) -> None:
        last_recount = time.monotonic()
        while True:
            await asyncio.sleep(self.settings.poll_interval)
            try:
                await self.poll()
            except Exception:
                log.exception("notifications: looking for new notifications failed")
            now = time.monotonic()
            if now - last_recount >= self.settings.recount_interval:
                last_recount = now
                self._all_dirty = True
                self._wake.set()

    async def poll(self) -> None:
        """The newest id and, when it moved, which open streams' users got one since.

        With no stream open there is nobody to tell: no query. The first poll with a stream
        open afterwards moves the mark to the newest row and recounts every open stream (one
        grouped count) instead of scanning what was written while nobody listened.
        """
        if not self.streams:
            self._mark_behind = True
            self.idle_polls += 1
            return
        async with self.db.session() as session:
            newest = await store.latest_id(session)
            if self._mark_behind:
                self._mark_behind = False
                self._mark = newest
                self._all_dirty = True
                self._wake.set()
                return
            if newest <= self._mark:
                return
            users = await store.users_notified_since(session, self._mark, list(self.streams))
        self._mark = newest
        self.dirty(users)
