"""Clips (issue 13): rows of ``creator_models.Clip``, who may see and delete them, their views.

A clip has no visibility of its own: it is its source's (``visibility``), so a clip of an
unlisted channel or of an unlisted or private video is exactly as reachable as what it was cut
from, and follows it if the owner changes the source's visibility later. Its link is its
``public_id`` (unguessable), never its sequential id.

Like ``storage.follows``: every function takes an ``AsyncSession``, flushes, never commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from storage.accounts import display_name
from storage.chat_models import ChannelModerator
from storage.creator_models import VISIBILITIES, Clip, MediaView, new_clip_id
from storage.db import rowcount
from storage.models import Channel, Profile, Stream, User, utcnow

PUBLIC, UNLISTED, PRIVATE = VISIBILITIES
PERIODS = ("7d", "all")
PERIOD_SECONDS = {"7d": 7 * 86400}


@dataclass(frozen=True)
class ClipInfo:
    """A clip with what its pages show beside it."""

    clip: Clip
    channel: Channel
    stream: Stream | None
    clipper: str | None  # the clipper's display name (None once the account is gone)
    clipper_username: str | None


def visibility(channel: Channel, stream: Stream | None) -> str:
    """The clip's visibility: its source video's, narrowed by its channel's listedness."""
    source = stream.visibility if stream is not None else PUBLIC
    if source not in (PUBLIC, UNLISTED):
        return PRIVATE  # private, or a value this code does not know: the safe answer
    return PUBLIC if source == PUBLIC and channel.is_public else UNLISTED


def can_view(info: ClipInfo, viewer_id: int | None, is_admin: bool) -> bool:
    """Whether this viewer may watch the clip (named by its public id, always its link).

    A draft is its clipper's (and the channel owner's) until it is published."""
    owner = viewer_id is not None and viewer_id == info.channel.owner_id
    if info.clip.status == "deleted":
        return False
    if info.clip.status == "draft" and not (
        is_admin or owner or (viewer_id is not None and viewer_id == info.clip.clipper_id)
    ):
        return False
    if is_admin or owner:
        return True
    return visibility(info.channel, info.stream) != PRIVATE


async def is_moderator(session: AsyncSession, channel_id: int, user_id: int) -> bool:
    found = await session.scalar(
        select(ChannelModerator.user_id).where(
            ChannelModerator.channel_id == channel_id, ChannelModerator.user_id == user_id
        )
    )
    return found is not None


async def can_delete(session: AsyncSession, info: ClipInfo, user: User) -> bool:
    """The channel's owner, its moderators, the clipper and admins may delete a clip."""
    if user.is_admin or user.id in (info.channel.owner_id, info.clip.clipper_id):
        return True
    return await is_moderator(session, info.channel.id, user.id)


async def create(
    session: AsyncSession,
    *,
    channel_id: int,
    stream_id: int | None,
    clipper_id: int,
    title: str,
    source: str,
    start: float,
    end: float,
    status: str,
    public_id: str | None = None,
) -> Clip:
    clip = Clip(
        public_id=public_id or new_clip_id(),
        channel_id=channel_id,
        stream_id=stream_id,
        clipper_id=clipper_id,
        title=title,
        source=source,
        status=status,
        start_seconds=start,
        end_seconds=end,
        created_at=utcnow(),
    )
    session.add(clip)
    await session.flush()
    return clip


async def created_since(session: AsyncSession, clipper_id: int, since: datetime) -> int:
    """Clips this user created since ``since`` (the rate limit's count)."""
    count = await session.scalar(
        select(func.count(Clip.id)).where(Clip.clipper_id == clipper_id, Clip.created_at >= since)
    )
    return int(count or 0)


def _info_query() -> Any:
    return (
        select(Clip, Channel, Stream, User, Profile)
        .join(Channel, Channel.id == Clip.channel_id)
        .outerjoin(Stream, Stream.id == Clip.stream_id)
        .outerjoin(User, User.id == Clip.clipper_id)
        .outerjoin(Profile, Profile.user_id == Clip.clipper_id)
    )


def _info(row: Any) -> ClipInfo:
    clip, channel, stream, user, profile = row
    return ClipInfo(
        clip,
        channel,
        stream,
        display_name(user, profile) if user is not None else None,
        user.username if user is not None else None,
    )


async def get(session: AsyncSession, public_id: str) -> ClipInfo | None:
    row = (await session.execute(_info_query().where(Clip.public_id == public_id))).first()
    return None if row is None else _info(row)


async def update_fields(
    session: AsyncSession, clip_id: int, *, when_status: str | None = None, **fields: Any
) -> bool:
    """Set columns of one clip (title, range, status, files, error, timestamps); with
    ``when_status``, only while the clip is in that state. Whether a row changed."""
    q = update(Clip).where(Clip.id == clip_id)
    if when_status is not None:
        q = q.where(Clip.status == when_status)
    result = await session.execute(q.values(**fields))
    await session.flush()
    return rowcount(result) > 0


async def mark_deleted(session: AsyncSession, clip_id: int) -> bool:
    """Mark the clip deleted (its files are the caller's to remove); False if it already was."""
    result = await session.execute(
        update(Clip)
        .where(Clip.id == clip_id, Clip.status != "deleted")
        .values(status="deleted", deleted_at=utcnow(), path=None, thumbnail_path=None)
    )
    await session.flush()
    return rowcount(result) > 0


async def top(
    session: AsyncSession, channel_id: int, *, period: str, limit: int, now: datetime | None = None
) -> list[ClipInfo]:
    """The channel's most viewed listed clips: published in the last 7 days, or ever.

    Listed: ready, of a listed channel, from a public video (or a stream row since removed)."""
    q = (
        _info_query()
        .where(
            Clip.channel_id == channel_id,
            Clip.status == "ready",
            Channel.is_public.is_(True),
            (Stream.id.is_(None)) | (Stream.visibility == PUBLIC),
        )
        .order_by(Clip.views.desc(), Clip.id.desc())
        .limit(limit)
    )
    if period in PERIOD_SECONDS:
        since = (now or utcnow()).timestamp() - PERIOD_SECONDS[period]
        q = q.where(Clip.published_at >= datetime.fromtimestamp(since, tz=(now or utcnow()).tzinfo))
    return [_info(row) for row in (await session.execute(q)).all()]


async def record_view(session: AsyncSession, clip_id: int, viewer_key: str) -> bool:
    """Count one view per viewer session: True (and ``views`` + 1) only for a new viewer."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    result = await session.execute(
        insert(MediaView)
        .values(kind="clip", ref_id=clip_id, viewer_key=viewer_key, created_at=utcnow())
        .on_conflict_do_nothing()
    )
    added = rowcount(result) > 0
    if added:
        await session.execute(
            update(Clip).where(and_(Clip.id == clip_id)).values(views=Clip.views + 1)
        )
    await session.flush()
    return added


async def stale_drafts(session: AsyncSession, before: datetime, limit: int = 500) -> list[str]:
    """Public ids of drafts created before ``before`` (never published: their files go)."""
    rows = await session.scalars(
        select(Clip.public_id)
        .where(Clip.status == "draft", Clip.created_at < before)
        .order_by(Clip.id)
        .limit(limit)
    )
    return list(rows)


async def mark_deleted_by_public_id(session: AsyncSession, public_ids: list[str]) -> int:
    if not public_ids:
        return 0
    result = await session.execute(
        update(Clip)
        .where(Clip.public_id.in_(public_ids), Clip.status == "draft")
        .values(status="deleted", deleted_at=utcnow(), path=None, thumbnail_path=None)
    )
    await session.flush()
    return rowcount(result)


async def fail_interrupted(session: AsyncSession) -> int:
    """Clips a stopped server left being cut: failed (their cut is gone with the process)."""
    result = await session.execute(
        update(Clip)
        .where(Clip.status == "processing")
        .values(status="failed", error="the server stopped while this clip was being cut")
    )
    await session.flush()
    return rowcount(result)
