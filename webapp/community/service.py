"""The rules of the community channels: who may read and write, the send path, deletion.

The channel's chat rules are the community's: the chat's cached state (``CHAT_KEY``: owner,
moderators, bans, timeouts, followers-only, logged-in-only, word filter; the copy every chat
socket checks, reloaded on every moderation change) decides, and the content checks are the
chat's own (``webapp.chat_content``: length, control characters, the word filter, the rate
limiter with the chat's ``rate_limit_*`` settings: on one node a budget of its own per channel
and user; on a cluster node the chat's own count in Redis for that channel and user, shared with
the live chat across nodes). Slow mode is the live chat's pace and does not apply here.

Real time: a stored message is published as a ``community:message`` event into the channel's
chat room (``ChatService.publish``), so it reaches every open page of the channel on every
process through the chat's bus and tick, with no machinery of its own. The community page
reads the room's socket (``/ws/chat/{slug}``) for these events; the live viewer page sees them
too and marks its Community link. Events name their topic; a reader's blocks are applied by
the page (the history API leaves blocked authors out on the server).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from mediaserver.cluster.counts import ClusterCounts, CountsUnavailable
from mediaserver.settings import CommunitySettings
from storage import channels as channel_queries
from storage import chat as chat_store
from storage import community as store
from storage.chat import ChannelChatState
from storage.community import TopicMessage
from storage.community_models import CommunityTopic
from storage.models import Channel, User

from ..chat_content import ChatError, RateLimiter, apply_filter, clean_content
from ..errors import ApiError
from ..identity import current_user
from ..keys import CHAT_KEY, DB_KEY, SETTINGS_KEY


def iso_time(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def can_moderate(state: ChannelChatState, user: User | None) -> bool:
    return user is not None and (
        user.is_admin or user.id == state.owner_id or user.id in state.moderators
    )


def badges(state: ChannelChatState, user_id: int, is_admin: bool) -> list[str]:
    out = []
    if user_id == state.owner_id:
        out.append("owner")
    if user_id in state.moderators:
        out.append("moderator")
    if is_admin:
        out.append("admin")
    return out


def message_json(
    state: ChannelChatState, topic: CommunityTopic, m: TopicMessage, is_admin: bool
) -> dict[str, Any]:
    return {
        "type": "community:message",
        "topic": topic.name,
        "id": m.id,
        "user": {
            "id": m.user_id,
            "username": m.username,
            "display_name": m.display_name,
            "badges": badges(state, m.user_id, is_admin),
        },
        "content": m.content,
        "created_at": iso_time(m.created_at),
    }


def can_write(state: ChannelChatState, topic: CommunityTopic, user: User | None) -> bool:
    """Whether ``user`` may post in ``topic`` as far as roles go (bans and the rest are
    checked when they post)."""
    if user is None:
        return False
    return topic.kind != "announcements" or can_moderate(state, user)


def public_user(user: User) -> dict[str, Any]:
    profile = user.profile
    name = profile.display_name if profile is not None and profile.display_name.strip() else ""
    return {"id": user.id, "username": user.username, "display_name": name or user.username}


@dataclass
class Place:
    """A channel whose community the request may read, with who is reading."""

    channel: Channel
    state: ChannelChatState
    user: User | None


async def readable(request: web.Request, slug: str | None = None) -> Place:
    """The ``{slug}`` channel's community as this request may see it: 404 for no channel, 401
    when its chat is for logged-in users and nobody is. Unlisted channels are readable by
    their link, like their home page."""
    slug = slug if slug is not None else request.match_info["slug"]
    async with request.app[DB_KEY].session() as session:
        found = await channel_queries.channel_with_owner(session, slug)
    if found is None:
        raise ApiError(404, "not_found", f"no channel {slug!r}")
    state = await request.app[CHAT_KEY].state(found.channel.slug)
    if state is None:
        raise ApiError(404, "not_found", f"no channel {slug!r}")
    user = await current_user(request)
    if state.logged_in_only and user is None:
        raise ApiError(401, "unauthenticated", "this channel's community is for logged-in users")
    return Place(found.channel, state, user)


class CommunitySender:
    """The send and delete paths; one per process (its rate limiter is in memory)."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        cs = app[SETTINGS_KEY].chat
        self.settings: CommunitySettings = app[SETTINGS_KEY].community
        self.max_length = cs.max_length
        self.rate_messages, self.rate_window = cs.rate_limit_messages, cs.rate_limit_window
        self.mute = cs.mute_seconds
        self.limiter = RateLimiter(cs.rate_limit_messages, cs.rate_limit_window, cs.mute_seconds)

    async def _admit_shared(self, counts: ClusterCounts | None, key: tuple[int, int]) -> bool:
        """On a cluster node, the chat's rate limit in Redis for the same (channel, user): the
        live chat and the community share one budget there (slow mode, 0 here, stays the
        chat's). True once admitted and counted, ChatError if refused, False on one node or
        when Redis failed (this process's limiter decides then)."""
        if counts is None:
            return False
        try:
            verdict, wait = await counts.chat_admit(
                key[0], key[1], 0.0, self.rate_messages, self.rate_window, self.mute
            )
        except CountsUnavailable:
            return False
        if verdict == "ok":
            return True
        raise ChatError(
            "rate_limited",
            f"you are sending messages too fast: wait {wait:.0f} more seconds",
            status=429,
            retry_after=wait,
        )

    async def send(
        self, place: Place, topic: CommunityTopic, user: User, content: object
    ) -> dict[str, Any]:
        """Check (in the chat's order), store, commit, then publish; the event, or ChatError."""
        state = place.state
        text = clean_content(content, self.max_length)
        now = datetime.now(UTC)
        if user.id in state.bans:
            raise ChatError("banned", "you are banned from this channel's chat", status=403)
        until = state.timeouts.get(user.id)
        if until is not None and until > now:
            left = (until - now).total_seconds()
            raise ChatError(
                "timed_out",
                f"you are timed out for {left:.0f} more seconds",
                status=403,
                retry_after=left,
            )
        privileged = can_moderate(state, user)
        if topic.kind == "announcements" and not privileged:
            raise ChatError(
                "forbidden",
                f"only the owner and moderators write in #{topic.name}",
                status=403,
            )
        chat = self.app[CHAT_KEY]
        if (
            state.followers_only
            and not privileged
            and not await chat.followers.follows(state.channel_id, user.id)
        ):
            raise ChatError(
                "followers_only", "only followers of this channel can write right now", status=403
            )
        key = (state.channel_id, user.id)
        mono = time.monotonic()
        shared = await self._admit_shared(chat.counts, key)
        if not shared:
            self.limiter.check(key, mono)
        text = apply_filter(text, state.word_filter, state.filter_mode)
        self.limiter.record(key, mono)
        async with self.app[DB_KEY].session() as session:
            new_id = await store.add_message(session, topic.id, user.id, text, now)
            await session.commit()
        face = public_user(user)
        stored = TopicMessage(
            new_id, topic.id, user.id, face["username"], face["display_name"], text, now
        )
        event = message_json(state, topic, stored, user.is_admin)
        await chat.publish(state.slug, [event])
        return event

    async def delete(self, user: User, message_id: int) -> dict[str, Any]:
        """Soft-delete: the channel's owner, moderators and admins (moderators not the owner's
        messages), or the author their own."""
        async with self.app[DB_KEY].session() as session:
            found = await store.get_message(session, message_id)
            channel = (
                None
                if found is None
                else await channel_queries.get_channel(session, found[1].channel_id)
            )
        if found is None or channel is None:
            raise ApiError(404, "not_found", f"no message with id {message_id}")
        msg, topic = found
        state = await self.app[CHAT_KEY].state(channel.slug)
        if state is None:
            raise ApiError(404, "not_found", f"no message with id {message_id}")
        if msg.user_id != user.id:
            if not can_moderate(state, user):
                raise ApiError(
                    403, "forbidden", "only the channel owner, its moderators and admins may"
                )
            if msg.user_id == state.owner_id and user.id != state.owner_id and not user.is_admin:
                raise ApiError(
                    403, "forbidden", "moderators cannot delete the channel owner's messages"
                )
        async with self.app[DB_KEY].session() as session:
            await store.soft_delete(session, message_id, user.id, datetime.now(UTC))
            await session.commit()
        event = {"type": "community:deleted", "topic": topic.name, "id": message_id}
        await self.app[CHAT_KEY].publish(state.slug, [event])
        return event


async def page_json(
    place: Place, topic: CommunityTopic, rows: list[TopicMessage], session: Any
) -> list[dict[str, Any]]:
    admins = await chat_store.admin_ids(session, {r.user_id for r in rows})
    return [message_json(place.state, topic, r, r.user_id in admins) for r in rows]


__all__ = [
    "CommunitySender",
    "Place",
    "can_moderate",
    "can_write",
    "message_json",
    "page_json",
    "public_user",
    "readable",
]
