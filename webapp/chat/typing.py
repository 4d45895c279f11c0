"""Typing indicators and the viewer list's roles (issue 16's chat extras).

Typing: a logged-in client sends ``{"type": "typing:start"}`` while its user types, at most
every ``chat.typing_interval`` seconds (more often is ignored here too). Each process gathers
the names that started typing in a room and publishes them once per ``chat.typing_flush``
seconds as one ``typing:active`` event ``{"users": [...], "ttl"}`` (never one event per
keystroke); readers show a name for ``ttl`` seconds unless it is renewed, and drop it when that
user's message arrives. Nothing is sent for a channel whose owner turned indicators off
(``channel_extras.typing_indicators``) nor in a room of more than ``chat.typing_max_room``
people. A joining socket learns which applies from ``typing:config`` in its first frame.

The channel's switch is read once per channel state: the state object is replaced on every
process when a setting changes (``ChatService.changed``), so a cached answer tied to the old
object is never used again, and joins are answered from memory.

Roles: each logged-in user's face in presence events carries ``role`` (owner, moderator,
follower or viewer, as of their join), so the viewer list can group people without a lookup.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mediaserver.tasks import stop_tasks
from storage import raids as raid_store
from storage.chat import ChannelChatState

from .principal import Principal
from .room import Client

if TYPE_CHECKING:
    from .service import ChatService


async def role_of(service: ChatService, state: ChannelChatState, user_id: int) -> str:
    """The user's group in the viewer list (follower from the cached follow dates)."""
    if user_id == state.owner_id:
        return "owner"
    if user_id in state.moderators:
        return "moderator"
    if await service.followers.since(state.channel_id, user_id) is not None:
        return "follower"
    return "viewer"


class TypingIndicators:
    def __init__(self, service: ChatService) -> None:
        self.service = service
        cs = service.cs
        self.interval = cs.typing_interval
        self.flush_after = cs.typing_flush
        self.ttl = cs.typing_ttl
        self.max_room = cs.typing_max_room
        self._switch: dict[str, tuple[ChannelChatState, bool]] = {}  # slug -> (state, on)
        self._last: dict[tuple[str, int], float] = {}  # (slug, user) -> last accepted
        self._pending: dict[str, dict[int, dict[str, Any]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.published = 0  # typing:active events published by this process (tests read it)

    def install(self) -> None:
        self.service.register_frame("typing:start", self.on_frame)
        self.service.join_hooks.append(self.on_join)

    async def enabled(self, state: ChannelChatState) -> bool:
        held = self._switch.get(state.slug)
        if held is not None and held[0] is state:
            return held[1]
        async with self.service.db.session() as session:
            on = (await raid_store.get_extras(session, state.channel_id)).typing_indicators
        if len(self._switch) > 10_000:
            self._switch.clear()
        self._switch[state.slug] = (state, on)
        return on

    def _crowded(self, slug: str) -> bool:
        room = self.service.rooms.get(slug)
        if room is None:
            return False
        return max(len(room.clients), len(room.presence)) > self.max_room

    async def on_join(
        self, service: ChatService, state: ChannelChatState, client: Client
    ) -> list[dict[str, Any]]:
        on = await self.enabled(state) and not self._crowded(state.slug)
        return [
            {"type": "typing:config", "enabled": on, "interval": self.interval, "ttl": self.ttl}
        ]

    async def on_frame(
        self,
        service: ChatService,
        state: ChannelChatState,
        client: Client,
        actor: Principal,
        frame: dict[str, Any],
    ) -> dict[str, Any] | None:
        """Note that ``actor`` is typing; never an error (a refused indicator is just not
        shown), so a client need not care whether indicators are on right now."""
        face = client.user
        if face is None or actor.id in state.bans:
            return None
        until = state.timeouts.get(actor.id)
        if until is not None and until > datetime.now(UTC):
            return None
        now = time.monotonic()
        key = (state.slug, actor.id)
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            return None
        if self._crowded(state.slug) or not await self.enabled(state):
            return None
        if len(self._last) > 100_000:
            self._last.clear()  # a memory bound: forgetting only lets one more through
        self._last[key] = now
        pending = self._pending.get(state.slug)
        if pending is None:
            pending = self._pending[state.slug] = {}
            task = asyncio.get_running_loop().create_task(self._flush(state.slug))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        pending[actor.id] = {
            "id": face["id"],
            "username": face["username"],
            "display_name": face["display_name"],
        }
        return None

    async def _flush(self, slug: str) -> None:
        await asyncio.sleep(self.flush_after)
        users = self._pending.pop(slug, {})
        if users:
            self.published += 1
            await self.service.publish(
                slug, [{"type": "typing:active", "users": list(users.values()), "ttl": self.ttl}]
            )

    async def stop(self) -> None:
        await stop_tasks(self._tasks)
