"""The checks and the effects of one raid, shared by the API and nothing else.

Order: who asks (the raiding channel's owner or an admin), the target (exists, is not the
raiding channel, is live), the raiding channel's window (live, or ended at most
``raids.after_end_seconds`` ago), the target's policy (anyone, followed channels only, nobody),
the raiding channel's cooldown (``raids.cooldown_seconds``, from the raids table so it holds
across a cluster). Then the raid is recorded and committed, and only then announced.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from storage import queries
from storage import raids as raid_store
from storage.chat import ChannelChatState
from storage.models import Channel, User

from ..errors import ApiError
from ..keys import CHAT_KEY, DB_KEY, REGISTRY_KEY, SETTINGS_KEY


async def chat_state(request: web.Request, slug: str | None = None) -> ChannelChatState:
    """The channel's cached chat state (owner, moderators): 404 for no channel."""
    slug = slug if slug is not None else request.match_info["slug"]
    state = await request.app[CHAT_KEY].state(slug)
    if state is None:
        raise ApiError(404, "not_found", f"no channel {slug!r}")
    return state


def require_owner(state: ChannelChatState, user: User) -> None:
    if not (user.is_admin or user.id == state.owner_id):
        raise ApiError(403, "forbidden", "only the channel owner (or an admin) can do that")


def require_moderator(state: ChannelChatState, user: User) -> None:
    if not (user.is_admin or user.id == state.owner_id or user.id in state.moderators):
        raise ApiError(
            403, "forbidden", "only the channel owner, its moderators and admins can do that"
        )


def _viewers(request: web.Request, slug: str, live: bool, counted: int) -> int:
    """The raiding channel's viewers: the stream's count while live (this process's registry
    when it serves the stream, else the row another process writes); after the broadcast,
    the chat sockets still open on its page here."""
    if live:
        stream = request.app[REGISTRY_KEY].get(slug)
        if stream is not None and stream.viewers is not None:
            return int(stream.viewers)
        return counted
    room = request.app[CHAT_KEY].rooms.get(slug)
    return 0 if room is None else len(room.clients)


async def start_raid(
    request: web.Request, state: ChannelChatState, user: User, target_slug: str
) -> dict[str, Any]:
    require_owner(state, user)
    rs = request.app[SETTINGS_KEY].raids
    now = datetime.now(UTC)
    async with request.app[DB_KEY].session() as session:
        target: Channel | None = await queries.get_channel_by_slug(session, target_slug)
        if target is None:
            raise ApiError(404, "not_found", f"no channel {target_slug!r}")
        if target.id == state.channel_id:
            raise ApiError(400, "invalid", "a channel cannot raid itself")
        if await queries.live_stream_for_channel(session, target.id) is None:
            raise ApiError(409, "target_offline", f"{target.name} is not live: pick a live channel")
        mine = await raid_store.broadcast_of(session, state.channel_id)
        window = rs.after_end_seconds
        if mine is None or (
            not mine.live
            and (mine.ended_at is None or (now - mine.ended_at).total_seconds() > window)
        ):
            raise ApiError(
                409,
                "not_live",
                f"a channel raids while live or up to {rs.after_end_seconds / 60:g} minutes "
                "after its broadcast ends",
            )
        policy = (await raid_store.get_extras(session, target.id)).raid_policy
        if policy == "nobody":
            raise ApiError(403, "raids_refused", f"{target.name} does not accept raids")
        if policy == "followed" and not await raid_store.follows_channel(
            session, target.owner_id, state.channel_id
        ):
            raise ApiError(
                403,
                "raids_followed_only",
                f"{target.name} accepts raids only from channels its owner follows",
            )
        last = await raid_store.last_raid_at(session, state.channel_id)
        if last is not None and (now - last).total_seconds() < rs.cooldown_seconds:
            wait = rs.cooldown_seconds - (now - last).total_seconds()
            raise ApiError(
                429,
                "rate_limited",
                f"this channel raided moments ago: wait {wait:.0f} more seconds",
                {"Retry-After": str(max(1, round(wait)))},
            )
        source = await session.get(Channel, state.channel_id)
        assert source is not None
        viewers = _viewers(request, state.slug, mine.live, mine.viewers)
        raid = await raid_store.record_raid(
            session, state.channel_id, target.id, user.id, viewers, now
        )
        await session.commit()
        raid_id, source_name, target_name = raid.id, source.name, target.name
    out = {
        "id": raid_id,
        "from": {"slug": state.slug, "name": source_name},
        "to": {"slug": target.slug, "name": target_name},
        "by": user.username,
        "viewers": viewers,
        "created_at": now.isoformat(),
    }
    chat = request.app[CHAT_KEY]
    await chat.publish(
        target.slug,
        [{"type": "raid:incoming", "raid_id": raid_id, "from": out["from"], "viewers": viewers}],
    )
    await chat.publish(
        state.slug,
        [
            {
                "type": "raid:go",
                "raid_id": raid_id,
                "to": out["to"],
                "viewers": viewers,
                "url": f"/streams/{target.slug}?raid={raid_id}",
            }
        ],
    )
    return out
