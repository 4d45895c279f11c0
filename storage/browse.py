"""What the browse pages read: the catalogue by live viewers, a category's live channels and
past broadcasts, and a user's followed channels (live first, then when each was last live).

"Live" is the database's view, as on the home page: a stream row in status LIVE, with the
viewer count the server keeps on it. A live channel is in the category its broadcast runs
under (``Stream.category_id``: the channel's at the start, changed by a live edit). Lists of
channels leave unlisted ones out (``Channel.is_public``), always.

Every query is bounded by a ``limit`` its caller takes from settings, and reads through an
index: live streams by ``ix_streams_status_started_at`` (there are few, whatever the number of
channels), past broadcasts by ``ix_streams_category_id_started_at``, a channel's last stream
by ``ix_streams_channel_id_started_at``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, bindparam, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute, raiseload
from sqlalchemy.sql.elements import ColumnElement

from storage import videos
from storage.accounts import display_name
from storage.discovery_models import Category
from storage.models import Channel, ChannelFollow, Profile, Stream, StreamStatus, User

ENDED = (StreamStatus.OFFLINE, StreamStatus.ARCHIVED)
# The cards show the category's name (the display copy on the row), never its entry: skip the
# entry's load (a query per statement) that Channel and Stream otherwise do.
NO_ENTRIES = (raiseload(Stream.category_entry), raiseload(Channel.category_entry))


@dataclass(frozen=True)
class CategoryCard:
    category: Category
    viewers: int
    live_channels: int


@dataclass(frozen=True)
class LiveCard:
    """A live channel as a category page shows it: only the columns the card needs, so a page
    of them costs a few rows' worth of work, not a few hundred ORM objects."""

    stream_id: int
    slug: str
    title: str
    creator: str
    category: str | None
    language: str | None
    tags: list[str]
    viewers: int
    avatar_path: str | None


@dataclass(frozen=True)
class PastBroadcast:
    """An ended broadcast of a listed channel (so its id is how links name it)."""

    stream_id: int
    title: str
    channel_slug: str
    channel_name: str
    creator: str
    started_at: datetime | None
    duration_seconds: int | None
    vod_available: bool


@dataclass(frozen=True)
class FollowedCard:
    channel: Channel
    creator: str
    live: Stream | None
    last_live: datetime | None  # when its latest broadcast ended (or started, if still open)


async def categories_by_viewers(session: AsyncSession, limit: int) -> list[CategoryCard]:
    """Active entries, the most watched now first (then the most live channels, then by
    name), each with its live viewers and live listed channels."""
    live = (
        select(
            Stream.category_id.label("category_id"),
            func.sum(Stream.viewer_count).label("viewers"),
            func.count().label("channels"),
        )
        .join(Channel, Channel.id == Stream.channel_id)
        .where(
            Stream.status == StreamStatus.LIVE,
            Stream.category_id.is_not(None),
            Channel.is_public.is_(True),
        )
        .group_by(Stream.category_id)
        .subquery()
    )
    viewers = func.coalesce(live.c.viewers, 0)
    channels = func.coalesce(live.c.channels, 0)
    rows = (
        await session.execute(
            select(Category, viewers, channels)
            .outerjoin(live, live.c.category_id == Category.id)
            .where(Category.retired_at.is_(None))
            .order_by(viewers.desc(), channels.desc(), func.lower(Category.name), Category.id)
            .limit(limit)
        )
    ).all()
    return [CategoryCard(c, int(v or 0), int(n or 0)) for c, v, n in rows]


def _language_clause(kind: str) -> ColumnElement[bool]:
    """A channel in the ``language`` parameter: that exact tag, or (``kind`` "bare", a bare
    language such as "pt") any regional form of it (the ``regional`` parameter, "pt-%")."""
    same = func.lower(Channel.language) == bindparam("language")
    if kind == "exact":
        return same
    return or_(same, func.lower(Channel.language).like(bindparam("regional")))


def _not_indexed(column: InstrumentedAttribute[int | None]) -> ColumnElement[int | None]:
    """``column + 0``: the same value, but no index of ``column`` serves it. For live streams
    of one category: SQLite would otherwise walk the category's every past broadcast
    (ix_streams_category_id_started_at) instead of the few live rows (ix_streams_status_...)."""
    return column + 0


# The name others see (as accounts.display_name): the profile's display name, else the username.
_CREATOR = func.coalesce(func.nullif(func.trim(Profile.display_name), ""), User.username)


async def live_in_category(
    session: AsyncSession,
    category_id: int,
    *,
    limit: int,
    scan: int,
    language: str | None = None,
    tag: str | None = None,
) -> list[LiveCard]:
    """The category's live listed channels, the most watched first. ``tag`` (without regard
    to case) is matched here on at most ``scan`` rows: tags are a JSON list, which neither
    database indexes the same way, and live rows are few."""
    params: dict[str, Any] = {"category_id": category_id, "limit": scan if tag else limit}
    if language:
        params.update(language=language.lower(), regional=f"{language.lower()}-%")
    rows = (await session.execute(_live_in_category(_language_kind(language)), params)).all()
    cards = [
        LiveCard(sid, slug, title, creator, cat, lang, list(tags or []), viewers, avatar)
        for sid, slug, title, creator, cat, lang, tags, viewers, avatar in rows
    ]
    if tag:
        wanted = tag.strip().lower()
        cards = [c for c in cards if any(t.lower() == wanted for t in c.tags)][:limit]
    return cards


def _language_kind(language: str | None) -> str:
    """Which language clause a filter needs: none, an exact regional tag, or a bare language
    (any of its regional forms too)."""
    if not language:
        return ""
    return "exact" if "-" in language else "bare"


@functools.cache
def _live_in_category(
    language: str,
) -> Select[int, str, str, Any, str, str | None, list[str], int, str | None]:
    """Built once per kind of language filter (building it cost more than running it)."""
    q = (
        select(
            Stream.id,
            Channel.slug,
            Stream.title,
            _CREATOR,
            func.coalesce(Stream.category, Channel.category),
            Channel.language,
            Channel.tags,
            Stream.viewer_count,
            Channel.avatar_path,
        )
        .join(Channel, Channel.id == Stream.channel_id)
        .join(User, User.id == Channel.owner_id)
        .outerjoin(Profile, Profile.user_id == User.id)
        .where(
            Stream.status == StreamStatus.LIVE,
            _not_indexed(Stream.category_id) == bindparam("category_id"),
            Channel.is_public.is_(True),
        )
        .order_by(Stream.viewer_count.desc(), Stream.started_at.desc(), Stream.id.desc())
    )
    if language:
        q = q.where(_language_clause(language))
    return q.limit(bindparam("limit"))


async def past_in_category(
    session: AsyncSession, category_id: int, limit: int
) -> list[PastBroadcast]:
    """The category's broadcasts that ended, newest first, of listed channels only."""
    rows = await session.execute(_past_in_category(), {"category_id": category_id, "limit": limit})
    return [
        PastBroadcast(sid, title, slug, name, creator, started, duration, bool(vod))
        for sid, title, slug, name, creator, started, duration, vod in rows.all()
    ]


@functools.cache
def _past_in_category() -> Select[int, str, str, str, Any, datetime | None, int | None, bool]:
    """Built once (building it cost SQLAlchemy ten times what SQLite took to run it)."""
    return (
        select(
            Stream.id,
            Stream.title,
            Channel.slug,
            Channel.name,
            _CREATOR,
            Stream.started_at,
            Stream.duration_seconds,
            and_(Stream.vod_available, Stream.status == StreamStatus.ARCHIVED),
        )
        .join(Channel, Channel.id == Stream.channel_id)
        .join(User, User.id == Channel.owner_id)
        .outerjoin(Profile, Profile.user_id == User.id)
        .where(
            Stream.category_id == bindparam("category_id"),
            Stream.status.in_(ENDED),
            Stream.started_at.is_not(None),
            Channel.is_public.is_(True),
            videos.listed_clause(),
        )
        .order_by(Stream.started_at.desc(), Stream.id.desc())
        .limit(bindparam("limit"))
    )


async def followed(session: AsyncSession, user_id: int, limit: int) -> list[FollowedCard]:
    """The channels ``user_id`` follows: live ones first (most watched first), then the others
    by when they were last live (never-live ones last), then by name."""
    last = (
        select(func.coalesce(Stream.ended_at, Stream.started_at))
        .where(Stream.channel_id == Channel.id)
        .order_by(Stream.started_at.desc(), Stream.id.desc())
        .limit(1)
        .correlate(Channel)
        .scalar_subquery()
    )
    rows = await session.execute(
        select(Channel, User, Profile, Stream, last)
        .join(ChannelFollow, ChannelFollow.channel_id == Channel.id)
        .join(User, User.id == Channel.owner_id)
        .outerjoin(Profile, Profile.user_id == User.id)
        .outerjoin(
            Stream, and_(Stream.channel_id == Channel.id, Stream.status == StreamStatus.LIVE)
        )
        .where(ChannelFollow.user_id == user_id)
        .order_by(
            Stream.id.is_(None),
            Stream.viewer_count.desc(),
            last.is_(None),
            last.desc(),
            func.lower(Channel.name),
            Channel.id,
        )
        .limit(limit)
        .options(*NO_ENTRIES)
    )
    return [
        FollowedCard(channel, display_name(user, profile), stream, last_live)
        for channel, user, profile, stream, last_live in rows.all()
    ]


__all__ = [
    "CategoryCard",
    "LiveCard",
    "PastBroadcast",
    "FollowedCard",
    "categories_by_viewers",
    "live_in_category",
    "past_in_category",
    "followed",
]
