"""Channel follows: who follows which channel, and the channel's follower count.

``Channel.follower_count`` is a denormalised copy of the number of ``channel_follows`` rows so
channel lists and pages can show it without counting. It stays exact because it only moves
in the same transaction as a row that really appeared or disappeared: the insert skips a row
that already exists (``ON CONFLICT DO NOTHING``, so two concurrent clicks cannot both count)
and the delete reports how many rows it removed. A count can never go below zero, even if a
row was removed behind our back.

Like ``storage.queries``: every function takes an ``AsyncSession``, flushes, never commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import rowcount
from storage.errors import NotFoundError
from storage.models import Channel, ChannelFollow, Stream, StreamStatus, utcnow


@dataclass(frozen=True)
class FollowState:
    following: bool
    followers: int
    changed: bool  # False when the call found the follow already as asked (idempotent repeat)


@dataclass(frozen=True)
class FollowedChannel:
    id: int
    slug: str
    name: str
    live: bool
    followed_at: datetime


async def _count(session: AsyncSession, channel_id: int) -> int:
    count = await session.scalar(select(Channel.follower_count).where(Channel.id == channel_id))
    if count is None:
        raise NotFoundError(f"no channel with id {channel_id}")
    return count


def _insert_ignoring_duplicates(session: AsyncSession, user_id: int, channel_id: int) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING`` in the dialect of the session's database."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (
        insert(ChannelFollow)
        .values(
            user_id=user_id,
            channel_id=channel_id,
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=[ChannelFollow.user_id, ChannelFollow.channel_id])
    )


async def follow(session: AsyncSession, user_id: int, channel_id: int) -> FollowState:
    """``user_id`` follows the channel; a repeat changes nothing. NotFoundError: no channel."""
    await _count(session, channel_id)  # a clear NotFoundError rather than an FK failure
    result = await session.execute(_insert_ignoring_duplicates(session, user_id, channel_id))
    added = bool(rowcount(result))
    if added:
        await session.execute(
            update(Channel)
            .where(Channel.id == channel_id)
            .values(follower_count=Channel.follower_count + 1)
        )
    await session.flush()
    return FollowState(True, await _count(session, channel_id), added)


async def unfollow(session: AsyncSession, user_id: int, channel_id: int) -> FollowState:
    """``user_id`` stops following the channel; a repeat changes nothing."""
    await _count(session, channel_id)
    result = await session.execute(
        delete(ChannelFollow).where(
            ChannelFollow.user_id == user_id, ChannelFollow.channel_id == channel_id
        )
    )
    removed = bool(rowcount(result))
    if removed:
        await session.execute(
            update(Channel)
            .where(Channel.id == channel_id)
            .values(
                follower_count=case(
                    (Channel.follower_count > 0, Channel.follower_count - 1), else_=0
                )
            )
        )
    await session.flush()
    return FollowState(False, await _count(session, channel_id), removed)


async def is_following(session: AsyncSession, user_id: int, channel_id: int) -> bool:
    return await session.get(ChannelFollow, (user_id, channel_id)) is not None


async def follower_count(session: AsyncSession, channel_id: int) -> int:
    return await _count(session, channel_id)


async def followed_channels(session: AsyncSession, user_id: int) -> list[FollowedChannel]:
    """The channels ``user_id`` follows, live ones first, then the most recently followed.

    "Live" is the database's view (a stream row in status LIVE); at most one per channel, as
    the unique partial index on streams guarantees, so the outer join adds no duplicates.
    """
    rows = (
        await session.execute(
            select(Channel.id, Channel.slug, Channel.name, Stream.id, ChannelFollow.created_at)
            .join(ChannelFollow, ChannelFollow.channel_id == Channel.id)
            .outerjoin(
                Stream, and_(Stream.channel_id == Channel.id, Stream.status == StreamStatus.LIVE)
            )
            .where(ChannelFollow.user_id == user_id)
            .order_by(Stream.id.is_(None), ChannelFollow.created_at.desc(), Channel.id)
        )
    ).all()
    return [
        FollowedChannel(cid, slug, name, stream_id is not None, followed_at)
        for cid, slug, name, stream_id, followed_at in rows
    ]


async def follow_notify(session: AsyncSession, user_id: int, channel_id: int) -> bool | None:
    """The follow's bell (go-live notifications on), or None when ``user_id`` does not follow."""
    follow = await session.get(ChannelFollow, (user_id, channel_id))
    return None if follow is None else follow.notify


async def set_notify(session: AsyncSession, user_id: int, channel_id: int, notify: bool) -> None:
    """Turn the bell of ``user_id``'s follow of the channel on or off (a repeat changes nothing).
    NotFoundError when they do not follow it: the bell belongs to a follow."""
    result = await session.execute(
        update(ChannelFollow)
        .where(ChannelFollow.user_id == user_id, ChannelFollow.channel_id == channel_id)
        .values(notify=notify)
        .execution_options(synchronize_session=False)
    )
    if not rowcount(result):
        raise NotFoundError("you do not follow this channel: follow it first")
    await session.flush()
