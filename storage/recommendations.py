"""What the home page's sections are computed from: the live channels now, a user's signals
(follows, recent watch history, blocks) and a recent sample of everybody's watch sessions for
"viewers of X also watch Y".

Every query is bounded by a ``limit`` the caller takes from settings, and each one walks an
index: live streams by ``uq_streams_channel_id_live`` / ``ix_streams_status_started_at``, a
user's follows by the ``channel_follows`` primary key, a user's history by
``ix_watch_sessions_user_id_started_at``, the co-viewing sample by the primary key (the newest
rows), a channel's first broadcast by ``ix_streams_channel_id_started_at``. The ranking itself
is the web layer's (pure code over these rows).

Like ``storage.follows``: every function takes an ``AsyncSession`` and never commits.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Integer, String, cast, func, literal, null, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from storage.discovery_models import Category, WatchSession
from storage.models import Block, Channel, ChannelFollow, Profile, Stream, StreamStatus, User


@dataclass(frozen=True)
class LiveCard:
    """A live stream of a listed channel, with what a card shows and what ranking reads."""

    stream_id: int
    title: str
    viewers: int
    started_at: datetime | None
    channel_id: int
    slug: str
    channel_name: str
    owner_id: int
    creator: str  # the owner's display name, else the username
    avatar_path: str | None
    category_id: int | None
    category: str | None  # the catalogue name, else the free-text category
    tags: tuple[str, ...]


@dataclass(frozen=True)
class ChannelSignal:
    """A channel the user follows or watched, and what it says about their taste."""

    channel_id: int
    name: str
    category_id: int | None
    category: str | None
    tags: tuple[str, ...]
    watched_seconds: int = 0  # 0 for a follow
    sessions: int = 0


def _category_name(catalogue: str | None, free_text: str | None) -> str | None:
    return catalogue or free_text or None


async def live_cards(session: AsyncSession, limit: int, chunk: int = 250) -> list[LiveCard]:
    """The live streams of listed channels, the most watched first (then the newest)."""
    category_id = func.coalesce(Stream.category_id, Channel.category_id)
    result = await session.stream(
        select(
            Stream.id,
            Stream.title,
            Stream.viewer_count,
            Stream.started_at,
            Channel.id,
            Channel.slug,
            Channel.name,
            Channel.owner_id,
            User.username,
            Profile.display_name,
            Channel.avatar_path,
            category_id,
            Category.name,
            func.coalesce(Stream.category, Channel.category),
            Channel.tags,
        )
        .join(Channel, Channel.id == Stream.channel_id)
        .join(User, User.id == Channel.owner_id)
        .outerjoin(Profile, Profile.user_id == User.id)
        .outerjoin(Category, Category.id == category_id)
        .where(Stream.status == StreamStatus.LIVE, Channel.is_public.is_(True))
        .order_by(Stream.viewer_count.desc(), Stream.started_at.desc(), Stream.id.desc())
        .limit(limit)
        .execution_options(yield_per=chunk)
    )
    rows: list[Any] = []
    async for part in result.partitions(chunk):
        rows.extend(part)
        await asyncio.sleep(0)  # a thousand rows: let the requests waiting meanwhile run
    return [
        LiveCard(
            stream_id=sid,
            title=title,
            viewers=viewers or 0,
            started_at=started,
            channel_id=cid,
            slug=slug,
            channel_name=name,
            owner_id=owner_id,
            creator=display if display and display.strip() else username,
            avatar_path=avatar,
            category_id=cat_id,
            category=_category_name(cat_name, free_cat),
            tags=tuple(t for t in (tags or ()) if isinstance(t, str)),
        )
        for (
            sid,
            title,
            viewers,
            started,
            cid,
            slug,
            name,
            owner_id,
            username,
            display,
            avatar,
            cat_id,
            cat_name,
            free_cat,
            tags,
        ) in rows
    ]


async def first_stream_times(
    session: AsyncSession, channel_ids: Collection[int]
) -> dict[int, datetime]:
    """When each of these channels first went live (channels that never did are absent)."""
    if not channel_ids:
        return {}
    rows = (
        await session.execute(
            select(Stream.channel_id, func.min(Stream.started_at))
            .where(Stream.channel_id.in_(list(channel_ids)))
            .group_by(Stream.channel_id)
        )
    ).all()
    return {cid: started for cid, started in rows if started is not None}


async def watched_signals(session: AsyncSession, user_id: int, limit: int) -> list[ChannelSignal]:
    """The channels of ``user_id``'s latest ``limit`` watch sessions, with the seconds and
    sessions spent on each, the most watched first."""
    recent = (
        select(WatchSession.channel_id, WatchSession.watched_seconds)
        .where(WatchSession.user_id == user_id)
        .order_by(WatchSession.started_at.desc())
        .limit(limit)
        .subquery()
    )
    per_channel = (
        select(
            recent.c.channel_id,
            func.sum(recent.c.watched_seconds).label("seconds"),
            func.count().label("sessions"),
        )
        .group_by(recent.c.channel_id)
        .subquery()
    )
    rows = (
        await session.execute(
            select(
                Channel.id,
                Channel.name,
                Channel.category_id,
                Category.name,
                Channel.category,
                Channel.tags,
                per_channel.c.seconds,
                per_channel.c.sessions,
            )
            .select_from(per_channel)
            .join(Channel, Channel.id == per_channel.c.channel_id)
            .outerjoin(Category, Category.id == Channel.category_id)
            .order_by(per_channel.c.seconds.desc(), Channel.id)
        )
    ).all()
    return [
        ChannelSignal(
            cid,
            name,
            cat_id,
            _category_name(cat, free),
            tuple(t for t in tags or () if t),
            int(total or 0),
            int(count),
        )
        for cid, name, cat_id, cat, free, tags, total, count in rows
    ]


async def follows_and_blocks(
    session: AsyncSession, user_id: int, max_follows: int, max_blocks: int
) -> tuple[list[ChannelSignal], set[int]]:
    """``followed_signals`` and ``blocked_user_ids`` in one round trip (a page view of a
    logged-in user reads both at every visit, so a follow or a block shows at once)."""
    follows = (
        select(
            literal(1).label("kind"),
            Channel.id.label("ref"),
            Channel.name.label("name"),
            Channel.category_id.label("category_id"),
            Category.name.label("category"),
            Channel.category.label("free"),
            Channel.tags.label("tags"),
        )
        .join(ChannelFollow, ChannelFollow.channel_id == Channel.id)
        .outerjoin(Category, Category.id == Channel.category_id)
        .where(ChannelFollow.user_id == user_id)
        .order_by(ChannelFollow.created_at.desc())
        .limit(max_follows)
        .subquery()
    )

    def blocks(mine: Any, theirs: Any) -> Any:
        return (
            select(
                literal(2).label("kind"),
                theirs.label("ref"),
                # Typed NULLs: PostgreSQL matches the UNION's column types.
                cast(null(), String).label("name"),
                cast(null(), Integer).label("category_id"),
                cast(null(), String).label("category"),
                cast(null(), String).label("free"),
                cast(null(), JSON).label("tags"),
            )
            .where(mine == user_id)
            .limit(max_blocks)
            .subquery()
        )

    query = union_all(
        select(follows),
        select(blocks(Block.blocker_id, Block.blocked_id)),
        select(blocks(Block.blocked_id, Block.blocker_id)),
    )
    followed: list[ChannelSignal] = []
    blocked: set[int] = set()
    for kind, ref, name, cat_id, cat, free, tags in (await session.execute(query)).all():
        if kind == 1:
            followed.append(
                ChannelSignal(ref, name, cat_id, _category_name(cat, free), _tags(tags))
            )
        else:
            blocked.add(ref)
    return followed, blocked


def _tags(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):  # a JSON column read through a UNION comes back as text
        try:
            value = json.loads(value)
        except ValueError:
            return ()
    if not isinstance(value, list):
        return ()
    return tuple(t for t in value if isinstance(t, str) and t)


async def recent_watch_pairs(
    session: AsyncSession, limit: int, chunk: int = 5000
) -> list[tuple[int, int]]:
    """``(user_id, channel_id)`` of the newest ``limit`` watch sessions (the co-viewing
    sample), read ``chunk`` rows at a time with a yield to the event loop between chunks, so
    a large sample never holds up the requests being served meanwhile."""
    out: list[tuple[int, int]] = []
    result = await session.stream(
        select(WatchSession.user_id, WatchSession.channel_id)
        .order_by(WatchSession.id.desc())
        .limit(limit)
        .execution_options(yield_per=chunk)
    )
    async for rows in result.partitions(chunk):
        out.extend((u, c) for u, c in rows)
        await asyncio.sleep(0)
    return out


__all__ = [
    "LiveCard",
    "ChannelSignal",
    "live_cards",
    "first_stream_times",
    "watched_signals",
    "follows_and_blocks",
    "recent_watch_pairs",
]
