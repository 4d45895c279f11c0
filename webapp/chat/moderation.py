"""Chat moderation: who moderates a channel's chat, and what they do (delete a message, time a
user out, ban, and lift either).

Permissions are checked from the channel's cached chat state (``ChannelChatState``), so a socket's
refused frame costs no query. Each act commits, then the host reloads the channel's state and
tells the other processes (``changed``); a timed-out or banned user hears of it through a
``chat:error`` addressed to them (``to_user``) on the room's topic.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from mediaserver.settings import ChatSettings
from storage import Database
from storage import channels as channel_queries
from storage import chat as chat_store
from storage.chat import ChannelChatState
from storage.models import User

from .bus import ChatBus
from .content import ChatError
from .frames import iso_time


class Actor(Protocol):
    """Who acts: a ``User`` (API requests, resolved per request) or a socket's ``Principal``
    (kept current while the socket is open). Read-only properties, so both fit."""

    @property
    def id(self) -> int: ...

    @property
    def username(self) -> str: ...

    @property
    def is_admin(self) -> bool: ...


class Host(Protocol):
    """What moderation needs of the chat service: the database, the chat settings, the bus, and
    the channel state cache (``changed`` reloads it here and in every other process)."""

    db: Database
    cs: ChatSettings
    bus: ChatBus

    async def state(self, slug: str) -> ChannelChatState | None: ...

    async def changed(self, slug: str) -> ChannelChatState | None: ...


def badges(state: ChannelChatState, user_id: int, is_admin: bool) -> list[str]:
    out = []
    if user_id == state.owner_id:
        out.append("owner")
    if user_id in state.moderators:
        out.append("moderator")
    if is_admin:
        out.append("admin")
    return out


def can_moderate(state: ChannelChatState, user: Actor) -> bool:
    return user.is_admin or user.id == state.owner_id or user.id in state.moderators


def require_moderator(state: ChannelChatState, actor: Actor) -> None:
    if not can_moderate(state, actor):
        raise ChatError(
            "forbidden", "only the channel owner, its moderators and admins can do that", status=403
        )


class ChatModeration:
    def __init__(self, host: Host) -> None:
        self.host = host

    async def _check_target(self, state: ChannelChatState, actor: Actor, target_id: object) -> User:
        if isinstance(target_id, bool) or not isinstance(target_id, int):
            raise ChatError("invalid", "user_id must be a user's numeric id")
        async with self.host.db.session() as session:
            target = await chat_store.get_user(session, target_id)
        if target is None:
            raise ChatError("not_found", f"no user with id {target_id}", status=404)
        if target.id == actor.id:
            raise ChatError("invalid", "you cannot do that to yourself")
        if target.id == state.owner_id or (target.is_admin and not actor.is_admin):
            raise ChatError(
                "forbidden", "the channel owner and admins cannot be moderated", status=403
            )
        if target.id in state.moderators and not (actor.is_admin or actor.id == state.owner_id):
            raise ChatError(
                "forbidden", "only the channel owner can act on a moderator", status=403
            )
        return target

    async def delete_message(
        self, actor: Actor, message_id: object, room_state: ChannelChatState | None = None
    ) -> dict[str, Any]:
        """Soft-delete; ``room_state`` (a socket's room) must be the message's channel, and
        with it the permission is checked from memory before anything is read."""
        if isinstance(message_id, bool) or not isinstance(message_id, int):
            raise ChatError("invalid", "id must be a message's numeric id")
        if room_state is not None:
            require_moderator(room_state, actor)
        async with self.host.db.session() as session:
            msg = await chat_store.get_message(session, message_id)
            if msg is None or msg.deleted_at is not None:
                raise ChatError("not_found", f"no message with id {message_id}", status=404)
            channel = (
                None
                if room_state is not None
                else await channel_queries.get_channel(session, msg.channel_id)
            )
        if room_state is not None:
            if room_state.channel_id != msg.channel_id:
                raise ChatError(
                    "not_found", f"no message with id {message_id} in this chat", status=404
                )
            state = room_state
        else:
            if channel is None:
                raise ChatError("not_found", f"no message with id {message_id}", status=404)
            found = await self.host.state(channel.slug)
            assert found is not None
            state = found
        require_moderator(state, actor)
        if msg.user_id == state.owner_id and actor.id != state.owner_id and not actor.is_admin:
            raise ChatError(
                "forbidden", "moderators cannot delete the channel owner's messages", status=403
            )
        async with self.host.db.session() as session:
            await chat_store.soft_delete_message(session, message_id, actor.id, datetime.now(UTC))
            await session.commit()
        event = {"type": "chat:deleted", "id": message_id, "by": actor.username}
        await self.host.bus.publish(state.slug, [event])
        return event

    async def timeout(
        self, state: ChannelChatState, actor: Actor, target_id: object, seconds: object
    ) -> dict[str, Any]:
        require_moderator(state, actor)
        most = self.host.cs.max_timeout_seconds
        if isinstance(seconds, bool) or not isinstance(seconds, int) or not 1 <= seconds <= most:
            raise ChatError("invalid", f"seconds must be a whole number 1-{most}")
        target = await self._check_target(state, actor, target_id)
        until = datetime.now(UTC) + timedelta(seconds=seconds)
        async with self.host.db.session() as session:
            await chat_store.set_timeout(session, state.channel_id, target.id, until, actor.id)
            await session.commit()
        await self.host.changed(state.slug)
        await self.host.bus.publish(
            state.slug,
            [
                {
                    "type": "chat:error",
                    "to_user": target.id,
                    "code": "timed_out",
                    "message": f"you were timed out for {seconds} seconds",
                    "retry_after": seconds,
                }
            ],
        )
        return {"user_id": target.id, "until": iso_time(until)}

    async def _lift(
        self, state: ChannelChatState, actor: Actor, target_id: object, clear: Any
    ) -> bool:
        """End a timeout or a ban (``clear`` is the storage function); False if none."""
        require_moderator(state, actor)
        target = await self._check_target(state, actor, target_id)
        async with self.host.db.session() as session:
            done = await clear(session, state.channel_id, target.id)
            await session.commit()
        await self.host.changed(state.slug)
        return bool(done)

    async def untimeout(self, state: ChannelChatState, actor: Actor, target_id: object) -> bool:
        return await self._lift(state, actor, target_id, chat_store.clear_timeout)

    async def ban(
        self, state: ChannelChatState, actor: Actor, target_id: object, reason: object = ""
    ) -> dict[str, Any]:
        require_moderator(state, actor)
        target = await self._check_target(state, actor, target_id)
        if not isinstance(reason, str) or len(reason) > chat_store.BAN_REASON_MAX:
            raise ChatError(
                "invalid", f"reason must be at most {chat_store.BAN_REASON_MAX} characters"
            )
        async with self.host.db.session() as session:
            await chat_store.ban(session, state.channel_id, target.id, actor.id, reason)
            await session.commit()
        await self.host.changed(state.slug)
        await self.host.bus.publish(
            state.slug,
            [
                {
                    "type": "chat:error",
                    "to_user": target.id,
                    "code": "banned",
                    "message": "you were banned from this chat",
                }
            ],
        )
        return {"user_id": target.id, "banned": True}

    async def unban(self, state: ChannelChatState, actor: Actor, target_id: object) -> bool:
        return await self._lift(state, actor, target_id, chat_store.unban)
