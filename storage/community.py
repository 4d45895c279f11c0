"""Community channels' queries (issue 16): topics, their messages, read markers.

Like ``storage.chat``: every function takes an ``AsyncSession``, flushes, never commits, and
bad input raises ``ValidationError`` / ``ConflictError`` with a message for the person who typed
it. History pages go newest first through the ``(topic_id, id)`` index with an id cursor, so a
topic with a million messages costs what a small one does; deleted messages are never read.
Unread counts are bounded (``cap``): a user far behind costs a bounded scan per topic.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage.accounts import display_name
from storage.community_models import (
    KINDS,
    NAME_MAX,
    CommunityMessage,
    CommunityRead,
    CommunityTopic,
)
from storage.errors import ConflictError, ValidationError
from storage.models import Profile, User

NAME_RE = re.compile(rf"[a-z0-9][a-z0-9_-]{{0,{NAME_MAX - 1}}}")


@dataclass(frozen=True)
class TopicMessage:
    """A message joined with what a reader sees of its author."""

    id: int
    topic_id: int
    user_id: int
    username: str
    display_name: str
    content: str
    created_at: datetime


def check_name(name: object) -> str:
    """A topic name as stored: a leading "#" dropped, lower-cased; ValidationError if bad."""
    if not isinstance(name, str):
        raise ValidationError("name must be a string")
    cleaned = name.strip().removeprefix("#").lower()
    if not NAME_RE.fullmatch(cleaned):
        raise ValidationError(
            f"a topic name is 1-{NAME_MAX} lower-case letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return cleaned


def check_kind(kind: object) -> str:
    if kind not in KINDS:
        raise ValidationError(f"kind must be one of {', '.join(KINDS)}")
    assert isinstance(kind, str)
    return kind


# -- topics ---------------------------------------------------------------------------------


async def list_topics(session: AsyncSession, channel_id: int) -> list[CommunityTopic]:
    """The channel's topics in the owner's order."""
    rows = await session.scalars(
        select(CommunityTopic)
        .where(CommunityTopic.channel_id == channel_id)
        .order_by(CommunityTopic.position, CommunityTopic.id)
    )
    return list(rows.all())


async def get_topic(session: AsyncSession, channel_id: int, name: str) -> CommunityTopic | None:
    return (
        await session.scalars(
            select(CommunityTopic).where(
                CommunityTopic.channel_id == channel_id, CommunityTopic.name == name.lower()
            )
        )
    ).first()


async def _name_taken(session: AsyncSession, channel_id: int, name: str) -> bool:
    return await get_topic(session, channel_id, name) is not None


async def _flush_or_conflict(session: AsyncSession, name: str) -> None:
    """Flush; two requests racing to the same name get a ConflictError, not a 500."""
    try:
        await session.flush()
    except IntegrityError:
        await session.rollback()
        raise ConflictError(f"this channel already has #{name}") from None


async def create_topic(
    session: AsyncSession, channel_id: int, name: object, kind: object, max_topics: int
) -> CommunityTopic:
    """A new topic at the end of the channel's list; at most ``max_topics`` per channel."""
    clean = check_name(name)
    kind = check_kind(kind)
    topics = await list_topics(session, channel_id)
    if len(topics) >= max_topics:
        raise ValidationError(f"a channel has at most {max_topics} community topics")
    if any(t.name == clean for t in topics):
        raise ConflictError(f"this channel already has #{clean}")
    position = max((t.position for t in topics), default=-1) + 1
    topic = CommunityTopic(channel_id=channel_id, name=clean, kind=kind, position=position)
    session.add(topic)
    await _flush_or_conflict(session, clean)
    return topic


async def edit_topic(
    session: AsyncSession,
    topic: CommunityTopic,
    *,
    name: object = None,
    kind: object = None,
    position: int | None = None,
) -> CommunityTopic:
    """Rename, change the kind of, or move a topic (``position``: its 0-based place in the
    list, clamped; the others keep their order)."""
    if name is not None:
        clean = check_name(name)
        if clean != topic.name and await _name_taken(session, topic.channel_id, clean):
            raise ConflictError(f"this channel already has #{clean}")
        topic.name = clean
    if kind is not None:
        topic.kind = check_kind(kind)
    if position is not None:
        others = [t for t in await list_topics(session, topic.channel_id) if t.id != topic.id]
        others.insert(max(0, min(position, len(others))), topic)
        for index, t in enumerate(others):
            t.position = index
    await _flush_or_conflict(session, topic.name)
    return topic


async def delete_topic(session: AsyncSession, topic: CommunityTopic) -> None:
    """The topic with its messages and read markers (cascades)."""
    await session.delete(topic)
    await session.flush()


# -- messages -------------------------------------------------------------------------------


async def add_message(
    session: AsyncSession, topic_id: int, user_id: int, content: str, now: datetime
) -> int:
    msg = CommunityMessage(topic_id=topic_id, user_id=user_id, content=content, created_at=now)
    session.add(msg)
    await session.flush()
    return msg.id


async def page_messages(
    session: AsyncSession,
    topic_id: int,
    *,
    before: int | None,
    limit: int,
    exclude_users: Collection[int] = (),
) -> list[TopicMessage]:
    """Up to ``limit`` messages of the topic, newest first, older than id ``before``; deleted
    ones and those of ``exclude_users`` (the reader's blocks) left out."""
    query = (
        select(CommunityMessage, User, Profile)
        .join(User, User.id == CommunityMessage.user_id)
        .outerjoin(Profile, Profile.user_id == User.id)
        .where(CommunityMessage.topic_id == topic_id, CommunityMessage.deleted_at.is_(None))
        .order_by(CommunityMessage.id.desc())
        .limit(limit)
    )
    if before is not None:
        query = query.where(CommunityMessage.id < before)
    if exclude_users:
        query = query.where(CommunityMessage.user_id.not_in(list(exclude_users)))
    rows = (await session.execute(query)).all()
    return [
        TopicMessage(
            m.id,
            m.topic_id,
            m.user_id,
            u.username,
            display_name(u, p),
            m.content,
            m.created_at,
        )
        for m, u, p in rows
    ]


async def get_message(
    session: AsyncSession, message_id: int
) -> tuple[CommunityMessage, CommunityTopic] | None:
    """A message that is not deleted, with its topic."""
    row = (
        await session.execute(
            select(CommunityMessage, CommunityTopic)
            .join(CommunityTopic, CommunityTopic.id == CommunityMessage.topic_id)
            .where(CommunityMessage.id == message_id, CommunityMessage.deleted_at.is_(None))
        )
    ).first()
    return None if row is None else (row[0], row[1])


async def soft_delete(session: AsyncSession, message_id: int, by: int, now: datetime) -> None:
    await session.execute(
        update(CommunityMessage)
        .where(CommunityMessage.id == message_id)
        .values(deleted_at=now, deleted_by_id=by)
    )
    await session.flush()


# -- read markers ---------------------------------------------------------------------------


async def newest_id(session: AsyncSession, topic_id: int) -> int:
    """The id of the topic's newest message (deleted or not), 0 for none."""
    found = await session.scalar(
        select(func.max(CommunityMessage.id)).where(CommunityMessage.topic_id == topic_id)
    )
    return int(found or 0)


async def mark_read(session: AsyncSession, user_id: int, topic_id: int, last_id: int | None) -> int:
    """Mark the topic read up to message ``last_id`` (None: its newest). A marker only moves
    forward and never past the newest message; the marker stored."""
    newest = await newest_id(session, topic_id)
    target = newest if last_id is None else max(0, min(last_id, newest))
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(CommunityRead).values(user_id=user_id, topic_id=topic_id, last_read_id=target)
    larger = func.greatest if dialect == "postgresql" else func.max  # SQLite's max(a, b)
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=["user_id", "topic_id"],
            set_={"last_read_id": larger(CommunityRead.last_read_id, stmt.excluded.last_read_id)},
        )
    )
    await session.flush()
    return int(
        await session.scalar(
            select(CommunityRead.last_read_id).where(
                CommunityRead.user_id == user_id, CommunityRead.topic_id == topic_id
            )
        )
        or 0
    )


async def unread_counts(
    session: AsyncSession,
    user_id: int,
    topic_ids: Sequence[int],
    *,
    exclude_users: Collection[int] = (),
    cap: int,
) -> dict[int, int]:
    """Per topic, the messages above the user's read marker (not deleted, not their own, not
    by ``exclude_users``), counting at most ``cap`` each. A topic never read counts from its
    start."""
    if not topic_ids:
        return {}
    marks = dict(
        (
            await session.execute(
                select(CommunityRead.topic_id, CommunityRead.last_read_id).where(
                    CommunityRead.user_id == user_id, CommunityRead.topic_id.in_(list(topic_ids))
                )
            )
        ).all()
    )
    excluded = [user_id, *exclude_users]
    counts: dict[int, int] = {}
    for topic_id in topic_ids:
        inner = (
            select(CommunityMessage.id)
            .where(
                CommunityMessage.topic_id == topic_id,
                CommunityMessage.id > marks.get(topic_id, 0),
                CommunityMessage.deleted_at.is_(None),
                CommunityMessage.user_id.not_in(excluded),
            )
            .limit(cap)
            .subquery()
        )
        counts[topic_id] = int(await session.scalar(select(func.count()).select_from(inner)) or 0)
    return counts


__all__ = [
    "NAME_RE",
    "TopicMessage",
    "add_message",
    "check_kind",
    "check_name",
    "create_topic",
    "delete_topic",
    "edit_topic",
    "get_message",
    "get_topic",
    "list_topics",
    "mark_read",
    "newest_id",
    "page_messages",
    "soft_delete",
    "unread_counts",
]
