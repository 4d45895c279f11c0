"""Each channel's chat state (owner, moderators, bans, timeouts, chat settings, and its live
stream with the viewer count joins start from), cached in this process.

Every permission is checked when it is used, from this copy, so a refused frame costs no query.
A moderation change drops the copy (``forget``: here directly, in the other processes through
the ``_state`` event the service publishes) and the next use loads it again; an epoch bumped
by every ``forget`` keeps a load that raced a change from caching what it read.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from storage import Database, queries
from storage import channels as channel_queries
from storage import chat as chat_store
from storage.chat import ChannelChatState


class ChannelStates:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.held: dict[str, ChannelChatState] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._epoch = 0

    async def get(self, slug: str) -> ChannelChatState | None:
        """The channel's cached chat state; None for an unknown channel."""
        state = self.held.get(slug)
        if state is not None:
            return state
        if not queries.SLUG_RE.fullmatch(slug):
            return None
        lock = self._locks.setdefault(slug, asyncio.Lock())
        async with lock:
            state = self.held.get(slug)
            if state is not None:
                return state
            while True:
                epoch = self._epoch
                async with self.db.session() as session:
                    channel = await queries.get_channel_by_slug(session, slug)
                    if channel is None:
                        return None
                    state = await chat_store.load_chat_state(session, channel, datetime.now(UTC))
                    live = await queries.live_stream_for_channel(session, channel.id)
                if live is not None:
                    state.stream_id, state.stream_title = live.id, live.title
                    state.viewers = live.viewer_count
                if self._epoch == epoch:
                    break  # no change was announced while we read: this copy is current
            self.held[slug] = state
            return state

    async def by_channel_id(self, channel_id: int) -> ChannelChatState | None:
        async with self.db.session() as session:
            channel = await channel_queries.get_channel(session, channel_id)
        return None if channel is None else await self.get(channel.slug)

    def forget(self, slug: str) -> None:
        """The channel's moderation state changed: drop the copy; a load under way reads again."""
        self.held.pop(slug, None)
        self._epoch += 1

    def stream_status(self, slug: str, event: dict[str, Any]) -> None:
        """A ``stream:status`` event: what joins are told of the stream from now on."""
        state = self.held.get(slug)
        if state is None:
            return
        live = bool(event.get("live"))
        state.stream_id = event.get("stream_id") if live else None
        state.stream_title = event.get("title") if live else None
        if not live:
            state.viewers = 0
