"""What the home page reads, cached so a busy page costs few queries.

* The live channels: one query every ``recommendations.live_cache_seconds`` for every visitor.
  While the list is less than twice that old, visitors get it at once and one background task
  reads the next (read in chunks, yielding between them, so the event loop keeps serving);
  an older list (a quiet site) is refreshed before answering. Each live channel's first
  broadcast is asked once per channel, then remembered.
* Co-viewing ("viewers of X also watch"): counted over the newest
  ``recommendations.coview_sample`` watch sessions in the background every
  ``coview_refresh`` seconds, never on a visitor's request; the page uses the last count.
* A user's follows and blocks: one query, reused for ``follows_cache_seconds`` and dropped at
  once when the user follows or unfollows through the site (the follows area's listeners).
  Their watch-history signals: reused for ``user_cache_seconds``. Both in LRUs of
  ``user_cache_entries`` users.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from typing import Generic, TypeVar

from mediaserver.settings import RecommendationSettings
from mediaserver.tasks import stop_task
from storage import Database
from storage import recommendations as rec_queries
from storage.recommendations import ChannelSignal

from .recommend import (
    Limits,
    LiveIndex,
    Sections,
    anonymous_sections,
    co_viewing,
    index_live,
    user_sections,
)

log = logging.getLogger(__name__)

V = TypeVar("V")


class _Expiring(Generic[V]):
    """A small LRU of values that go stale ``ttl`` seconds (give or take a random tenth, so
    the entries made in one burst do not all go stale together) after they were stored."""

    def __init__(self, ttl: float, size: int) -> None:
        self.ttl = ttl
        self.size = size
        self._items: OrderedDict[int, tuple[float, V]] = OrderedDict()

    def get(self, key: int) -> tuple[V | None, bool]:
        """``(value, fresh)``; ``(None, False)`` when there is none."""
        item = self._items.get(key)
        if item is None:
            return None, False
        self._items.move_to_end(key)
        return item[1], item[0] > time.monotonic()

    def put(self, key: int, value: V) -> None:
        if self.ttl <= 0:
            return
        ttl = self.ttl * random.uniform(0.9, 1.1)
        self._items[key] = (time.monotonic() + ttl, value)
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def drop(self, key: int) -> None:
        self._items.pop(key, None)


class HomeData:
    def __init__(self, db: Database, settings: RecommendationSettings) -> None:
        self.db = db
        self.settings = settings
        self.limits = Limits(
            following=settings.following_max,
            recommended=settings.recommended_max,
            popular=settings.popular_max,
            new_creators=settings.new_creators_max,
            per_category=settings.popular_per_category,
            new_creator_age=timedelta(days=settings.new_creator_days),
            signals_used=settings.signals_used,
            candidates_per_signal=settings.candidates_per_signal,
        )
        self._live = index_live([], {}, datetime.now(UTC), self.limits)
        self._live_at = -float("inf")  # monotonic time of the read behind self._live
        self._live_lock = asyncio.Lock()
        self._live_task: asyncio.Task[None] | None = None
        self._first_live: dict[int, datetime] = {}
        self._anonymous: Sections | None = None
        self._neighbours: dict[int, list[tuple[int, int]]] = {}
        self._coview_at = -float("inf")
        self._coview_task: asyncio.Task[None] | None = None
        self._follows: _Expiring[tuple[list[ChannelSignal], set[int]]] = _Expiring(
            settings.follows_cache_seconds, settings.user_cache_entries
        )
        self._watched: _Expiring[list[ChannelSignal]] = _Expiring(
            settings.user_cache_seconds, settings.user_cache_entries
        )
        self._rereading: set[int] = set()
        # Follow changes per user, so a read that overlapped one does not cache what it read.
        self._drops: dict[int, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # -- live channels ---------------------------------------------------------------------

    async def live(self) -> LiveIndex:
        age = time.monotonic() - self._live_at
        ttl = self.settings.live_cache_seconds
        if age >= ttl:
            if age < 2 * ttl:
                if self._live_task is None or self._live_task.done():
                    self._live_task = asyncio.get_running_loop().create_task(self._refresh())
            else:
                await self._refresh()
        self._maybe_refresh_coview()
        return self._live

    async def _refresh(self) -> None:
        seen = self._live
        async with self._live_lock:
            if self._live is not seen:
                return  # another request refreshed it while this one waited
            started = time.monotonic()
            try:
                async with self.db.session() as session:
                    live = await rec_queries.live_cards(session, self.settings.max_live)
                    known = self._first_live
                    unknown = [c.channel_id for c in live if c.channel_id not in known]
                    if len(known) + len(unknown) > 4 * self.settings.max_live:
                        known.clear()
                        unknown = [c.channel_id for c in live]
                    if unknown:
                        known.update(await rec_queries.first_stream_times(session, unknown))
            except Exception:
                if self._live_at == -float("inf"):
                    raise  # nothing to show instead
                log.exception("reading the live channels failed; showing the previous list")
                return
            self._live = index_live(live, self._first_live, datetime.now(UTC), self.limits)
            self._anonymous = None
            self._live_at = started

    async def anonymous(self) -> Sections:
        live = await self.live()
        sections = self._anonymous
        if sections is None or live is not self._live:
            sections = anonymous_sections(live, self.limits)
            if live is self._live:
                self._anonymous = sections  # the same for every visitor until the next refresh
        return sections

    # -- one user ------------------------------------------------------------------------

    def follow_changed(self, user_id: int) -> None:
        """The user followed or unfollowed a channel: read their follows at the next visit."""
        self._follows.drop(user_id)
        if len(self._drops) >= self.settings.user_cache_entries:
            self._drops.clear()
        self._drops[user_id] = self._drops.get(user_id, 0) + 1

    async def _read_user(
        self, user_id: int, follows: bool, watched: bool
    ) -> tuple[tuple[list[ChannelSignal], set[int]] | None, list[ChannelSignal] | None]:
        """Read (and cache) the signals asked for; None for those not asked."""
        s = self.settings
        read_follows = read_watched = None
        drops = self._drops.get(user_id, 0)
        async with self.db.session() as session:
            if follows:
                read_follows = await rec_queries.follows_and_blocks(
                    session, user_id, s.max_follows_read, s.max_blocks_read
                )
                if self._drops.get(user_id, 0) == drops:  # no follow changed meanwhile
                    self._follows.put(user_id, read_follows)
            if watched:
                read_watched = await rec_queries.watched_signals(
                    session, user_id, s.max_history_read
                )
                self._watched.put(user_id, read_watched)
        return read_follows, read_watched

    async def _reread_user(self, user_id: int, follows: bool, watched: bool) -> None:
        try:
            await self._read_user(user_id, follows, watched)
        except Exception:
            log.exception("reading a user's signals failed; keeping the previous ones")
        finally:
            self._rereading.discard(user_id)

    async def for_user(self, user_id: int) -> Sections:
        """The sections for ``user_id``. Signals never read (or dropped by a follow) are read
        now; stale ones are used once more while a background task reads them again."""
        live = await self.live()
        follows, follows_fresh = self._follows.get(user_id)
        watched, watched_fresh = self._watched.get(user_id)
        if follows is None or watched is None:
            read_follows, read_watched = await self._read_user(
                user_id, follows is None, watched is None
            )
            follows = follows if read_follows is None else read_follows
            watched = watched if read_watched is None else read_watched
            assert follows is not None and watched is not None
        elif not (follows_fresh and watched_fresh) and user_id not in self._rereading:
            self._rereading.add(user_id)
            self._tasks.add(
                asyncio.get_running_loop().create_task(
                    self._reread_user(user_id, not follows_fresh, not watched_fresh)
                )
            )
            self._tasks = {t for t in self._tasks if not t.done()}
        followed, blocked = follows
        return user_sections(
            live,
            user_id=user_id,
            followed=followed,
            watched=watched,
            blocked=blocked,
            neighbours=self._neighbours,
            limits=self.limits,
        )

    # -- co-viewing ----------------------------------------------------------------------

    def _maybe_refresh_coview(self) -> None:
        if self._coview_task is not None and not self._coview_task.done():
            return
        if time.monotonic() - self._coview_at < self.settings.coview_refresh:
            return
        self._coview_at = time.monotonic()
        self._coview_task = asyncio.get_running_loop().create_task(self.refresh_coview())

    async def refresh_coview(self) -> None:
        """Recount co-viewing over the newest sessions (the count runs in a thread, so the
        event loop keeps serving pages meanwhile)."""
        s = self.settings
        try:
            async with self.db.session() as session:
                pairs = await rec_queries.recent_watch_pairs(session, s.coview_sample)
            self._neighbours = await asyncio.to_thread(
                co_viewing, pairs, s.coview_channels_per_user, s.coview_neighbours
            )
        except Exception:
            log.exception("counting co-viewing failed; keeping the previous count")

    async def close(self) -> None:
        for task in (self._coview_task, self._live_task, *self._tasks):
            if task is not None and not task.done():
                await stop_task(task)
