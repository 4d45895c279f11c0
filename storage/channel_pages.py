"""What a channel's home and a user's public profile show: past broadcasts a page at a time,
when the channel was last live, its category's name, and a user's listed channels.

Every query is bounded (a LIMIT on the page asked for) and walks an index: past broadcasts
page along ``ix_streams_channel_id_started_at`` by keyset, never by OFFSET, so the hundredth
page costs what the first does. The keyset breaks ties of ``started_at`` with the stream's
public id, so a page link never carries the sequential id (an unlisted channel's streams are
reachable only by public id, see ``webapp.stream_links``).

Same rules as ``storage.queries``: every function takes an ``AsyncSession``, never commits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import videos
from storage.discovery_models import Category
from storage.errors import ValidationError
from storage.models import Channel, Profile, Stream, StreamStatus, User
from storage.queries import USERNAME_RE

# The ended states: a broadcast that is over (ENDING is still flushing; it shows once done).
ENDED = (StreamStatus.OFFLINE, StreamStatus.ARCHIVED)
# Most rows one page may ask for (the settings pick the page size under this).
PAGE_MAX = 100
# ``<microseconds since the epoch>.<public id>``: where the next page starts.
CURSOR_RE = re.compile(r"([0-9]{1,20})\.([A-Za-z0-9_-]{22})")


@dataclass(frozen=True)
class Cursor:
    """The last broadcast of a page: the next page holds those strictly older."""

    started_at: datetime
    public_id: str

    def encode(self) -> str:
        delta = self.started_at.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
        micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
        return f"{micros}.{self.public_id}"


def parse_cursor(raw: str) -> Cursor:
    """A cursor from a page link; ``ValidationError`` for anything else."""
    m = CURSOR_RE.fullmatch(raw)
    if m is None:
        raise ValidationError("before must be a cursor from a page link")
    micros = int(m.group(1))
    try:
        started = datetime.fromtimestamp(micros // 1_000_000, UTC).replace(
            microsecond=micros % 1_000_000
        )
    except (OverflowError, OSError, ValueError):
        raise ValidationError("before must be a cursor from a page link") from None
    return Cursor(started, m.group(2))


@dataclass(frozen=True)
class BroadcastPage:
    broadcasts: list[Stream]
    next_cursor: Cursor | None  # None: this is the last page


async def past_broadcasts(
    session: AsyncSession, channel_id: int, *, limit: int, before: Cursor | None = None
) -> BroadcastPage:
    """The channel's ended broadcasts, newest first, ``limit`` at most (one more is read to
    know whether another page follows)."""
    if not 1 <= limit <= PAGE_MAX:
        raise ValidationError(f"limit must be 1 to {PAGE_MAX}")
    q = select(Stream).where(
        Stream.channel_id == channel_id,
        Stream.status.in_(ENDED),
        Stream.started_at.is_not(None),
        videos.listed_clause(),  # unlisted, private and deleted videos are not shown
    )
    if before is not None:
        # The plain bound lets the index range stop at the cursor; the OR breaks ties.
        q = q.where(
            Stream.started_at <= before.started_at,
            or_(
                Stream.started_at < before.started_at,
                and_(Stream.started_at == before.started_at, Stream.public_id < before.public_id),
            ),
        )
    rows = list(
        (
            await session.scalars(
                q.order_by(Stream.started_at.desc(), Stream.public_id.desc()).limit(limit + 1)
            )
        ).all()
    )
    more = len(rows) > limit
    rows = rows[:limit]
    cursor = None
    if more and rows[-1].started_at is not None:
        cursor = Cursor(rows[-1].started_at, rows[-1].public_id)
    return BroadcastPage(rows, cursor)


async def last_live_at(session: AsyncSession, channel_id: int) -> datetime | None:
    """When the channel's most recent ended broadcast ended (or started, if its end was never
    written); None for a channel that never went live. One row along the index."""
    row = (
        await session.execute(
            select(Stream.ended_at, Stream.started_at)
            .where(
                Stream.channel_id == channel_id,
                Stream.status.in_(ENDED),
                Stream.started_at.is_not(None),
            )
            .order_by(Stream.started_at.desc())
            .limit(1)
        )
    ).one_or_none()
    if row is None:
        return None
    return row[0] or row[1]


@dataclass(frozen=True)
class ChannelCategory:
    name: str
    slug: str | None  # None: a free-text category, or a retired one (no page to link to)


async def channel_category(session: AsyncSession, channel: Channel) -> ChannelCategory | None:
    """The channel's category as the catalogue names it (``Channel.category_entry``, loaded
    with the row), else its free-text category; None when it has none."""
    entry = channel.category_entry
    if entry is None and channel.category_id is not None:
        entry = await session.get(Category, channel.category_id)
    if entry is not None:
        return ChannelCategory(entry.name, None if entry.retired_at else entry.slug)
    return ChannelCategory(channel.category, None) if channel.category else None


@dataclass(frozen=True)
class PublicProfile:
    user: User
    profile: Profile | None
    channels: list[Channel]  # listed ones only, the most followed first


async def public_profile(
    session: AsyncSession, username: str, *, max_channels: int
) -> PublicProfile | None:
    """An enabled user's public face; None for an unknown or disabled user (the same answer,
    so a disabled account cannot be told from one that never existed)."""
    if not isinstance(username, str) or not USERNAME_RE.fullmatch(username):
        return None
    row = (
        await session.execute(
            select(User, Profile)
            .outerjoin(Profile, Profile.user_id == User.id)
            .where(User.username == username, User.is_disabled.is_(False))
        )
    ).one_or_none()
    if row is None:
        return None
    user, profile = row[0], row[1]
    channels = list(
        (
            await session.scalars(
                select(Channel)
                .where(Channel.owner_id == user.id, Channel.is_public.is_(True))
                .order_by(Channel.follower_count.desc(), Channel.id)
                .limit(max_channels)
            )
        ).all()
    )
    return PublicProfile(user, profile, channels)
