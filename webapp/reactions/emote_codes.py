"""Which emote codes a room accepts as reactions: the global emotes and the channel's, except
follower-only ones (a reaction is not a message the server can mark as a follower's).

Read from the database once per process (global) and once per channel, then kept current by
the emotes area's own change events on the chat bus (``emotes:changed`` for a channel's set,
``_emotes`` on the ``_emotes`` topic for the global set), which carry the whole new set. This
area never imports the emotes area: only the shapes of those events and storage.emotes.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from storage import Database
from storage import emotes as emote_store
from storage.chat import ChannelChatState

GLOBAL_TOPIC = "_emotes"
CHANNELS_KEPT = 10_000  # channel sets kept per process; the least recently used go first


def _codes(emotes: Iterable[Any]) -> frozenset[str]:
    out = set()
    for e in emotes:
        code, follower_only = (
            (e.get("code"), e.get("follower_only"))
            if isinstance(e, dict)
            else (e.code, e.follower_only)
        )
        if isinstance(code, str) and not follower_only:
            out.add(code)
    return frozenset(out)


class EmoteCodes:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.global_codes: frozenset[str] | None = None
        self.channels: OrderedDict[str, frozenset[str]] = OrderedDict()
        self._version = 0  # bumped by every change event, so a racing load keeps no stale set
        self._lock = asyncio.Lock()

    async def knows(self, state: ChannelChatState, code: str) -> bool:
        if self.global_codes is None or state.slug not in self.channels:
            await self._load(state)
        self.channels.move_to_end(state.slug)
        return code in (self.global_codes or ()) or code in self.channels[state.slug]

    async def _load(self, state: ChannelChatState) -> None:
        async with self._lock:  # one load at a time: a burst of taps reads once
            if self.global_codes is not None and state.slug in self.channels:
                return
            version = self._version
            async with self.db.session() as session:
                found = _codes(await emote_store.list_emotes(session, None))
                mine = _codes(await emote_store.list_emotes(session, state.channel_id))
            if version != self._version:
                return self._load_again(state, found, mine)
            if self.global_codes is None:
                self.global_codes = found
            self.channels[state.slug] = mine
            while len(self.channels) > CHANNELS_KEPT:
                self.channels.popitem(last=False)

    def _load_again(
        self, state: ChannelChatState, found: frozenset[str], mine: frozenset[str]
    ) -> None:
        """A change arrived during the read: keep what the change said where it said it."""
        if self.global_codes is None:
            self.global_codes = found
        self.channels.setdefault(state.slug, mine)

    def on_bus(self, slug: str, events: list[dict[str, Any]]) -> None:
        for event in events:
            kind = event.get("type")
            if kind == "emotes:changed" and event.get("scope") == "channel":
                self._version += 1
                self.channels[slug] = _codes(event.get("emotes", ()))
            elif kind == "_emotes" and slug == GLOBAL_TOPIC:
                self._version += 1
                self.global_codes = _codes(event.get("emotes", ()))
