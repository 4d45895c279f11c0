"""What the home page reads, cached so a busy page costs few queries.

* The live channels: one query every ``recommendations.live_cache_seconds`` for every visitor
  (concurrent visitors of an expired list wait for the one query instead of each running it),
  with each live channel's first broadcast (asked once per channel, then remembered).
* Co-viewing ("viewers of X also watch"): counted over the newest
  ``recommendations.coview_sample`` watch sessions in the background every
  ``coview_refresh`` seconds, never on a visitor's request; the page uses the last count.
* A user's watch-history signals: reused for ``user_cache_seconds`` (an LRU of
  ``user_cache_entries`` users). Follows and blocks are read at every visit (two indexed
  queries), so following or blocking someone shows on the next page load.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from mediaserver.settings import RecommendationSettings
from storage import Database
from storage import recommendations as rec_queries
from storage.recommendations import ChannelSignal, LiveCard

from .recommend import Limits, Sections, anonymous_sections, co_viewing, user_sections

log = logging.getLogger(__name__)


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
        )
        self._live: list[LiveCard] = []
        self._live_until = 0.0
        self._live_lock = asyncio.Lock()
        self._first_live: dict[int, datetime] = {}
        self._anonymous: Sections | None = None
        self._neighbours: dict[int, list[tuple[int, int]]] = {}
        self._coview_at = -float("inf")
        self._coview_task: asyncio.Task[None] | None = None
        self._watched: OrderedDict[int, tuple[float, list[ChannelSignal]]] = OrderedDict()

    # -- live channels ---------------------------------------------------------------------

    async def live(self) -> list[LiveCard]:
        if time.monotonic() < self._live_until:
            return self._live
        async with self._live_lock:
            if time.monotonic() < self._live_until:
                return self._live  # another request refreshed it while this one waited
            async with self.db.session() as session:
                live = await rec_queries.live_cards(session, self.settings.max_live)
                unknown = [c.channel_id for c in live if c.channel_id not in self._first_live]
                if len(self._first_live) + len(unknown) > 4 * self.settings.max_live:
                    self._first_live.clear()
                    unknown = [c.channel_id for c in live]
                if unknown:
                    self._first_live.update(await rec_queries.first_stream_times(session, unknown))
            self._live = live
            self._anonymous = None
            self._live_until = time.monotonic() + self.settings.live_cache_seconds
        self._maybe_refresh_coview()
        return live

    async def anonymous(self) -> Sections:
        live = await self.live()
        sections = self._anonymous
        if sections is None or live is not self._live:
            sections = anonymous_sections(live, self.limits)
            if live is self._live:
                self._anonymous = sections  # the same for every visitor until the next refresh
        return sections

    # -- one user ------------------------------------------------------------------------

    async def _watched_of(self, session: AsyncSession, user_id: int) -> list[ChannelSignal]:
        ttl = self.settings.user_cache_seconds
        now = time.monotonic()
        cached = self._watched.get(user_id)
        if cached is not None and cached[0] > now:
            self._watched.move_to_end(user_id)
            return cached[1]
        watched = await rec_queries.watched_signals(
            session, user_id, self.settings.max_history_read
        )
        if ttl > 0:
            self._watched[user_id] = (now + ttl, watched)
            self._watched.move_to_end(user_id)
            while len(self._watched) > self.settings.user_cache_entries:
                self._watched.popitem(last=False)
        return watched

    async def for_user(self, user_id: int) -> Sections:
        live = await self.live()
        s = self.settings
        async with self.db.session() as session:
            followed = await rec_queries.followed_signals(session, user_id, s.max_follows_read)
            blocked = await rec_queries.blocked_user_ids(session, user_id, s.max_blocks_read)
            watched = await self._watched_of(session, user_id)
        return user_sections(
            live,
            user_id=user_id,
            followed=followed,
            watched=watched,
            blocked=blocked,
            neighbours=self._neighbours,
            first_live=self._first_live,
            now=datetime.now(UTC),
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
        task = self._coview_task
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
