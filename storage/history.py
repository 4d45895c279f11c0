"""Watch history: the playback sessions of logged-in viewers (``WatchSession`` rows).

The web layer keeps the sessions being watched in memory and writes them here in batches
(``write_batch``: the new ones inserted, the running ones updated, one transaction per flush),
so a heartbeat never costs a write of its own. A user reads and deletes only their own rows:
every query here takes the owner's id and puts it in the WHERE clause, so a session id that
belongs to someone else behaves exactly like one that does not exist.

Like ``storage.follows``: every function takes an ``AsyncSession``, flushes, never commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Table, bindparam, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import rowcount
from storage.discovery_models import WatchSession
from storage.models import Channel, Stream


@dataclass(frozen=True)
class NewWatch:
    """A session first written by this flush."""

    user_id: int
    channel_id: int
    stream_id: int | None
    started_at: datetime
    last_seen_at: datetime
    watched_seconds: int


@dataclass(frozen=True)
class WatchUpdate:
    """A session already written: its running totals (absolute, so a retried flush is
    harmless)."""

    id: int
    last_seen_at: datetime
    watched_seconds: int


@dataclass(frozen=True)
class HistoryEntry:
    id: int
    channel_id: int
    channel_slug: str
    channel_name: str
    stream_id: int | None
    stream_title: str | None
    started_at: datetime
    last_seen_at: datetime
    watched_seconds: int


async def write_batch(
    session: AsyncSession, new: Sequence[NewWatch], updates: Sequence[WatchUpdate]
) -> list[int]:
    """Insert ``new`` and update ``updates``; the ids of the inserted rows, in order."""
    rows = [
        WatchSession(
            user_id=w.user_id,
            channel_id=w.channel_id,
            stream_id=w.stream_id,
            started_at=w.started_at,
            last_seen_at=w.last_seen_at,
            watched_seconds=w.watched_seconds,
        )
        for w in new
    ]
    session.add_all(rows)
    if updates:
        table = WatchSession.__table__
        assert isinstance(table, Table)
        await session.execute(
            update(table)
            .where(table.c.id == bindparam("b_id"))
            .values(
                last_seen_at=bindparam("b_seen"),
                watched_seconds=bindparam("b_seconds"),
            ),
            [
                {"b_id": u.id, "b_seen": u.last_seen_at, "b_seconds": u.watched_seconds}
                for u in updates
            ],
        )
    await session.flush()
    return [row.id for row in rows]


async def list_history(
    session: AsyncSession, user_id: int, *, limit: int, before_id: int | None = None
) -> list[HistoryEntry]:
    """``user_id``'s sessions, newest first (by start); ``before_id`` pages on (the id of
    the last entry of the previous page)."""
    q = (
        select(
            WatchSession.id,
            WatchSession.channel_id,
            Channel.slug,
            Channel.name,
            WatchSession.stream_id,
            Stream.title,
            WatchSession.started_at,
            WatchSession.last_seen_at,
            WatchSession.watched_seconds,
        )
        .join(Channel, Channel.id == WatchSession.channel_id)
        .outerjoin(Stream, Stream.id == WatchSession.stream_id)
        .where(WatchSession.user_id == user_id)
    )
    if before_id is not None:
        anchor = await session.scalar(
            select(WatchSession.started_at).where(
                WatchSession.id == before_id, WatchSession.user_id == user_id
            )
        )
        if anchor is None:
            return []
        q = q.where(
            (WatchSession.started_at < anchor)
            | ((WatchSession.started_at == anchor) & (WatchSession.id < before_id))
        )
    rows = (
        await session.execute(
            q.order_by(WatchSession.started_at.desc(), WatchSession.id.desc()).limit(limit)
        )
    ).all()
    return [HistoryEntry(*row) for row in rows]


async def delete_entry(session: AsyncSession, user_id: int, entry_id: int) -> bool:
    """Delete one of ``user_id``'s sessions; False when they have no such session."""
    result = await session.execute(
        delete(WatchSession).where(WatchSession.id == entry_id, WatchSession.user_id == user_id)
    )
    await session.flush()
    return bool(rowcount(result))


async def clear_history(session: AsyncSession, user_id: int) -> int:
    """Delete all of ``user_id``'s sessions; how many there were."""
    result = await session.execute(delete(WatchSession).where(WatchSession.user_id == user_id))
    await session.flush()
    return rowcount(result)


__all__ = [
    "NewWatch",
    "WatchUpdate",
    "HistoryEntry",
    "write_batch",
    "list_history",
    "delete_entry",
    "clear_history",
]
