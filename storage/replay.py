"""Replaying a past broadcast beside its recording: its chat, a time window at a time, and its
chapters (where the title or category changed while it was live).

Times on the video are seconds from the stream's ``started_at`` (the recording starts with the
stream). A chat window is read through the index on ``messages(stream_id, created_at)``: a
bounded range of it, in (created_at, id) order, at most ``limit`` rows, continued by a cursor
(the last row's time and id) when a busy window holds more. So a ten-hour stream with a million
messages is only ever read a window at a time.

Like the other query modules: functions take an ``AsyncSession``, flush, never commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Select, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.chat_models import ChatSettings
from storage.creator_models import StreamChapter
from storage.errors import ValidationError
from storage.models import Message, Profile, Stream, User, utcnow

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class ReplayMessage:
    """A chat message as the replay shows it: where it falls on the video, and its author."""

    id: int
    offset: float  # seconds from the start of the stream
    user_id: int
    username: str
    display_name: str
    content: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ChatCursor:
    """Where a window's page ended: the last message's time and id."""

    created_at: datetime
    id: int

    def encode(self) -> str:
        micros = (self.created_at.astimezone(UTC) - _EPOCH) // timedelta(microseconds=1)
        return f"{micros}_{self.id}"

    @staticmethod
    def decode(raw: str) -> ChatCursor:
        """The cursor a previous page handed out; ValidationError for anything else."""
        micros, sep, ident = raw.partition("_")
        if (
            not sep
            or not micros.isdigit()
            or not ident.isdigit()
            or len(micros) > 18
            or len(ident) > 18
        ):
            raise ValidationError("cursor must be the next_cursor of a previous page")
        try:
            when = _EPOCH + timedelta(microseconds=int(micros))
        except OverflowError:
            raise ValidationError("cursor must be the next_cursor of a previous page") from None
        return ChatCursor(when, int(ident))


def _display_name(user: User, profile: Profile | None) -> str:
    # As storage.accounts.display_name (which imports storage.queries, which imports this).
    if profile is not None and profile.display_name.strip():
        return profile.display_name
    return user.username


def _offset(started_at: datetime, at: datetime) -> float:
    return round(max(0.0, (at - started_at).total_seconds()), 3)


def window_query(
    stream_id: int, origin: datetime, start: float, end: float, cursor: ChatCursor | None
) -> Select[Message, User, Profile]:
    """The SELECT of a chat window: a range of ``ix_messages_stream_id_created_at``, in its
    order (ties on a microsecond broken by id), continued after ``cursor``."""
    q = (
        select(Message, User, Profile)
        .join(User, User.id == Message.user_id)
        .outerjoin(Profile, Profile.user_id == User.id)
        .where(
            Message.stream_id == stream_id,
            Message.created_at >= origin + timedelta(seconds=start),
            Message.created_at < origin + timedelta(seconds=end),
            Message.deleted_at.is_(None),
        )
    )
    if cursor is not None:
        q = q.where(
            or_(
                Message.created_at > cursor.created_at,
                and_(Message.created_at == cursor.created_at, Message.id > cursor.id),
            )
        )
    return q.order_by(Message.created_at, Message.id)


async def chat_window(
    session: AsyncSession,
    stream: Stream,
    start: float,
    end: float,
    *,
    limit: int,
    cursor: ChatCursor | None = None,
) -> tuple[list[ReplayMessage], ChatCursor | None]:
    """The stream's visible (not deleted) messages from ``start`` (inclusive) to ``end``
    (exclusive) seconds into it, oldest first, at most ``limit``; and the cursor to continue
    the same window from when more are left in it (None: the window is complete)."""
    if stream.started_at is None or end <= start:
        return [], None
    origin = stream.started_at
    q = window_query(stream.id, origin, start, end, cursor).limit(limit + 1)
    rows = (await session.execute(q)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    out = [
        ReplayMessage(
            msg.id,
            _offset(origin, msg.created_at),
            msg.user_id,
            user.username,
            _display_name(user, profile),
            msg.content,
            msg.created_at,
        )
        for msg, user, profile in rows
    ]
    last = rows[-1][0] if more and rows else None
    return out, (ChatCursor(last.created_at, last.id) if last is not None else None)


async def chat_for_logged_in_only(session: AsyncSession, channel_id: int) -> bool:
    """Whether the channel's chat is readable by logged-in users only (the live rule)."""
    value = await session.scalar(
        select(ChatSettings.logged_in_only).where(ChatSettings.channel_id == channel_id)
    )
    return bool(value)


# -- chapters --------------------------------------------------------------------------------


async def add_chapter(session: AsyncSession, stream: Stream, now: datetime | None = None) -> None:
    """A chapter starting ``now`` with the stream's current title and category (the first at 0
    when the stream starts). Two changes in the same second make one chapter: the last wins."""
    now = now or utcnow()
    offset = 0.0 if stream.started_at is None else _offset(stream.started_at, now)
    latest = (
        await session.execute(
            select(StreamChapter)
            .where(StreamChapter.stream_id == stream.id)
            .order_by(StreamChapter.offset_seconds.desc(), StreamChapter.id.desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    fields = {
        "title": stream.title,
        "category_id": stream.category_id,
        "category_name": stream.category,
    }
    if latest is not None and offset - latest.offset_seconds < 1.0:
        for key, value in fields.items():
            setattr(latest, key, value)
        await session.flush()
        return
    if latest is not None and all(getattr(latest, k) == v for k, v in fields.items()):
        return  # nothing a viewer would see changed
    session.add(StreamChapter(stream_id=stream.id, offset_seconds=offset, **fields))
    await session.flush()


@dataclass(frozen=True, slots=True)
class Chapter:
    offset: float
    title: str
    category_id: int | None
    category_name: str | None


async def list_chapters(session: AsyncSession, stream: Stream) -> list[Chapter]:
    """The stream's chapters in order. A broadcast from before chapters were recorded has
    one: its title and category from the start."""
    rows = (
        (
            await session.execute(
                select(StreamChapter)
                .where(StreamChapter.stream_id == stream.id)
                .order_by(StreamChapter.offset_seconds, StreamChapter.id)
            )
        )
        .scalars()
        .all()
    )
    if not rows:
        return [Chapter(0.0, stream.title, stream.category_id, stream.category)]
    return [Chapter(r.offset_seconds, r.title, r.category_id, r.category_name) for r in rows]
