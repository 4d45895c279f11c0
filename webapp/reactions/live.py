"""Live reactions: a viewer taps an emoji, everyone in the room sees it float over the player.

A tap is a ``reaction:send`` frame ``{"emoji"}`` on the chat socket, so only logged-in viewers
react (the room's frame handlers only hear from logged-in sockets, and a per-viewer limit needs
an identity: an anonymous tap could be sent by a script as fast as the socket allows). The
emoji must be one of ``reactions.emojis``, an emote code of the room (global or the channel's,
not follower-only: emote_codes.py) or a code a ``REACTION_CODES_KEY`` source knows for it.

Taps are counted per emoji per room in this process and published as ONE ``reaction:burst``
``{"counts": {emoji: n}}`` per room at most every ``reactions.tick``: the first tap after a
quiet tick goes out at once (the next loop turn, so taps that arrived together share it).
Later ones go out just before the room's next broadcast (``ChatService.flush_at``, ``LEAD``
ahead of it) that is at least a tick after the previous burst, so a burst rides the chat frame
that follows it instead of waiting a reactions tick and then a chat tick (up to 75 ms; now at
most the chat tick). With several processes each publishes its own bursts; a page adds them
up (through Redis a burst may land one chat tick later, as before).

Each viewer may tap ``reactions.rate_limit`` times per ``reactions.rate_window`` seconds (per
process); past it, taps are dropped, and the first dropped one in a window answers the sender a
``chat:error`` ``rate_limited`` with ``retry_after`` (once, so a held-down button is not
answered with a stream of errors).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from mediaserver.settings import ReactionSettings
from storage.chat import ChannelChatState

from ..keys import RoomCodes
from .emote_codes import EmoteCodes

# Past this many viewers in the rate table, entries whose window ended are forgotten.
PRUNE_AT = 10_000
# Seconds before the room's broadcast a burst is published: the publish is a task run on the
# next loop turn, and the loop's timers have millisecond resolution.
LEAD = 0.003


class ReactionRooms:
    def __init__(
        self,
        settings: ReactionSettings,
        chat: Any,
        sources: Sequence[RoomCodes],
        emotes: EmoteCodes | None = None,
    ) -> None:
        self.rs = settings
        self.emotes = emotes  # the global and channel emote codes (emote_codes.py)
        self.chat = chat
        self.sources = sources
        self.emojis = tuple(settings.emojis.split())
        self._fixed = frozenset(self.emojis)
        self._counts: dict[str, Counter[str]] = {}
        self._last: dict[str, float] = {}  # slug -> loop time of its last burst
        self._scheduled: set[str] = set()
        self._limits: dict[int, list[float]] = {}  # user id -> [window start, taps, warned]
        self._tasks: set[asyncio.Task[Any]] = set()
        self.taps = 0  # counted taps (tests and the benchmark read them)
        self.dropped = 0  # taps over a viewer's limit

    async def _known(self, state: ChannelChatState, emoji: str) -> bool:
        if emoji in self._fixed:
            return True
        if any(emoji in source(state.slug) for source in self.sources):
            return True
        return self.emotes is not None and await self.emotes.knows(state, emoji)

    def _allow(self, user_id: int) -> tuple[bool, float | None]:
        """(counted, retry_after when this is the first refused tap of the window)."""
        now = time.monotonic()
        window = self.rs.rate_window
        entry = self._limits.get(user_id)
        if entry is None or now - entry[0] >= window:
            if len(self._limits) >= PRUNE_AT:
                self._limits = {u: e for u, e in self._limits.items() if now - e[0] < window}
            self._limits[user_id] = [now, 1.0, 0.0]
            return True, None
        entry[1] += 1
        if entry[1] <= self.rs.rate_limit:
            return True, None
        if entry[2]:
            return False, None
        entry[2] = 1.0
        return False, window - (now - entry[0])

    async def on_send(
        self, service: Any, state: ChannelChatState, client: Any, actor: Any, frame: dict[str, Any]
    ) -> dict[str, Any] | None:
        emoji = frame.get("emoji")
        if not isinstance(emoji, str) or len(emoji) > 64 or not await self._known(state, emoji):
            return {
                "type": "chat:error",
                "code": "invalid",
                "message": "not a reaction this room knows",
            }
        counted, retry_after = self._allow(actor.id)
        if not counted:
            self.dropped += 1
            if retry_after is None:
                return None  # dropped silently: this window's error was already sent
            return {
                "type": "chat:error",
                "code": "rate_limited",
                "message": f"at most {self.rs.rate_limit} reactions in "
                f"{self.rs.rate_window:g} s: extra taps are dropped",
                "retry_after": round(retry_after, 1),
            }
        self.taps += 1
        self._counts.setdefault(state.slug, Counter())[emoji] += 1
        self._schedule(state.slug)
        return None

    def _schedule(self, slug: str) -> None:
        if slug in self._scheduled:
            return
        self._scheduled.add(slug)
        loop = asyncio.get_running_loop()
        now = loop.time()
        due = max(now, self._last.get(slug, -1e9) + self.rs.tick)
        room_flush = self.chat.flush_at(slug, due + LEAD)
        if room_flush is not None:
            due = room_flush - LEAD
        loop.call_later(max(0.0, due - now), self._flush, slug)

    def _flush(self, slug: str) -> None:
        self._scheduled.discard(slug)
        counts = self._counts.pop(slug, None)
        if not counts:
            return
        loop = asyncio.get_running_loop()
        self._last[slug] = loop.time()
        if len(self._last) > PRUNE_AT:
            horizon = loop.time() - self.rs.tick
            self._last = {s: t for s, t in self._last.items() if t > horizon}
        task = loop.create_task(
            self.chat.publish(slug, [{"type": "reaction:burst", "counts": dict(counts)}])
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def join_events(self, state: ChannelChatState) -> list[dict[str, Any]]:
        """The room's reaction set for the bar (from memory)."""
        return [{"type": "reaction:set", "emojis": list(self.emojis)}]
