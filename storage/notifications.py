"""In-app notifications and the email owed for them: the go-live fan-out, the bell's counts,
the list and its marks as read, pruning, each user's email preferences and the sender's queue.

The fan-out is set-based: one ``INSERT ... SELECT`` from ``channel_follows`` per batch of
followers (walked in user order through the ``(channel_id, user_id)`` index), so 100,000
followers cost a few statements, never a row at a time through Python. Whether a row is owed
an email is decided as it is written (``emailed_at`` NULL: owed; set: nothing to send), so
the sender's partial index only ever holds what is really due.

The sender claims rows with a lease (``email_claimed_until``) in an ``UPDATE ... RETURNING``:
two processes never both get a row, and a sender that crashes between the claim and marking
the row sent leaves it due again when the lease runs out (mailed twice rather than lost).

Like ``storage.follows``: every function takes an ``AsyncSession``, flushes, never commits.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Integer,
    Select,
    String,
    and_,
    case,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import rowcount
from storage.discovery_models import Category, Notification, NotificationSettings
from storage.errors import NotFoundError
from storage.models import Channel, ChannelFollow, Stream, User, UTCDateTime

GO_LIVE = "stream.online"
# SQLite allows 32766 bound parameters (999 before 3.32); IN lists stay well under either.
_IN_CHUNK = 500


@dataclass(frozen=True)
class GoLive:
    """What a go-live fan-out writes: who is not notified (the owner) and what rows say."""

    channel_id: int
    stream_id: int
    owner_id: int
    payload: dict[str, Any]


@dataclass(frozen=True)
class FanoutBatch:
    inserted: int
    # Followers after ``after_user_id`` up to and including this id were covered; None: all
    # the remaining ones were (the fan-out is done).
    last_user_id: int | None


@dataclass(frozen=True)
class EmailPrefs:
    email_go_live: bool
    email_digest: bool


@dataclass(frozen=True)
class OwedEmail:
    """A claimed notification with what its email needs."""

    id: int
    user_id: int
    email: str
    username: str
    kind: str
    payload: dict[str, Any]
    created_at: datetime
    # Whether the user still wants it (preferences can change after the row was written).
    wanted: bool


def _chunks(ids: Sequence[int]) -> Iterable[Sequence[int]]:
    for i in range(0, len(ids), _IN_CHUNK):
        yield ids[i : i + _IN_CHUNK]


# -- the go-live fan-out ----------------------------------------------------------------------


async def go_live(session: AsyncSession, stream_id: int) -> GoLive | None:
    """The payload of a stream's go-live notifications (None: the stream row is gone)."""
    row = (
        await session.execute(
            select(
                Stream.channel_id,
                Stream.title,
                Channel.slug,
                Channel.name,
                Channel.owner_id,
                func.coalesce(Category.name, Stream.category),
                Category.slug,
            )
            .join(Channel, Channel.id == Stream.channel_id)
            .outerjoin(
                Category, Category.id == func.coalesce(Stream.category_id, Channel.category_id)
            )
            .where(Stream.id == stream_id)
        )
    ).first()
    if row is None:
        return None
    channel_id, title, slug, name, owner_id, category, category_slug = row
    return GoLive(
        channel_id=channel_id,
        stream_id=stream_id,
        owner_id=owner_id,
        payload={
            "channel_slug": slug,
            "channel_name": name,
            "title": title,
            "category": category,
            "category_slug": category_slug,
        },
    )


async def fanout_batch(
    session: AsyncSession,
    event: GoLive,
    *,
    after_user_id: int,
    batch_size: int,
    now: datetime,
    email: bool,
) -> FanoutBatch:
    """Notify the next ``batch_size`` followers (by user id, after ``after_user_id``) whose
    bell is on (not the owner), in one ``INSERT ... SELECT``.
    ``email``: whether this server sends email at all; a row is owed one only then and when
    its user has not turned go-live emails off."""
    follows = ChannelFollow.__table__
    bound = await session.scalar(
        select(follows.c.user_id)
        .where(follows.c.channel_id == event.channel_id, follows.c.user_id > after_user_id)
        .order_by(follows.c.user_id)
        .limit(1)
        .offset(batch_size - 1)
    )
    conditions = [
        follows.c.channel_id == event.channel_id,
        follows.c.notify.is_(True),
        follows.c.user_id > after_user_id,
        follows.c.user_id != event.owner_id,
    ]
    if bound is not None:
        conditions.append(follows.c.user_id <= bound)
    stamp = literal(now, UTCDateTime())
    # Disabled accounts are not filtered out here: joining users would cost a lookup (or a
    # scan of the whole table, as PostgreSQL plans it) per batch; they cannot log in to see
    # their rows, and the email sender skips them.
    source: Any = follows
    emailed: Any = stamp
    if email:
        settings = NotificationSettings.__table__
        emailed = case((func.coalesce(settings.c.email_go_live, True).is_(True), None), else_=stamp)
        source = source.outerjoin(settings, settings.c.user_id == follows.c.user_id)
    rows = (
        select(
            follows.c.user_id,
            literal(GO_LIVE, String()),
            literal(event.channel_id, Integer()),
            literal(event.stream_id, Integer()),
            literal(event.payload, JSON()),
            stamp,
            emailed,
        )
        .select_from(source)
        .where(*conditions)
    )
    columns = ["user_id", "kind", "channel_id", "stream_id", "payload", "created_at"]
    result = await session.execute(insert(Notification).from_select([*columns, "emailed_at"], rows))
    await session.flush()
    return FanoutBatch(rowcount(result), bound)


# -- the bell and the list --------------------------------------------------------------------


async def unread_count(session: AsyncSession, user_id: int) -> int:
    return (
        await session.scalar(
            select(func.count())
            .select_from(Notification)
            .where(Notification.user_id == user_id, Notification.read_at.is_(None))
        )
        or 0
    )


async def unread_counts(session: AsyncSession, user_ids: Sequence[int]) -> dict[int, int]:
    """Unread counts of many users (0 for those with none)."""
    counts = dict.fromkeys(user_ids, 0)
    for chunk in _chunks(list(user_ids)):
        rows = await session.execute(
            select(Notification.user_id, func.count())
            .where(Notification.user_id.in_(chunk), Notification.read_at.is_(None))
            .group_by(Notification.user_id)
        )
        for uid, n in rows:
            counts[uid] = n
    return counts


async def latest_id(session: AsyncSession) -> int:
    """The newest notification's id (0 when there is none): a cheap "anything new?" mark."""
    return (await session.execute(_latest_id())).scalar() or 0


@functools.cache
def _latest_id() -> Select[int]:
    """Built once: every process polls it every ``notifications.poll_interval``, and building
    the select and its cache key cost more than SQLite's answer."""
    return select(func.max(Notification.id))


async def users_notified_since(
    session: AsyncSession, after_id: int, user_ids: Sequence[int]
) -> set[int]:
    """Which of ``user_ids`` got a notification with an id above ``after_id``."""
    found: set[int] = set()
    for chunk in _chunks(list(user_ids)):
        rows = await session.scalars(
            select(Notification.user_id)
            .where(Notification.id > after_id, Notification.user_id.in_(chunk))
            .distinct()
        )
        found.update(rows)
    return found


async def page(
    session: AsyncSession, user_id: int, limit: int, before_id: int | None = None
) -> list[Notification]:
    """The user's notifications, newest first; ``before_id`` continues after a page."""
    query = select(Notification).where(Notification.user_id == user_id)
    if before_id is not None:
        query = query.where(Notification.id < before_id)
    return list((await session.scalars(query.order_by(Notification.id.desc()).limit(limit))).all())


async def mark_read(
    session: AsyncSession, user_id: int, notification_id: int, now: datetime
) -> Notification:
    """Mark one of the user's notifications read (a repeat keeps the first time).
    NotFoundError when there is none with that id for this user, whoever else owns it."""
    row = await session.get(Notification, notification_id)
    if row is None or row.user_id != user_id:
        raise NotFoundError(f"no notification {notification_id}")
    if row.read_at is None:
        row.read_at = now
        await session.flush()
    return row


async def mark_all_read(session: AsyncSession, user_id: int, now: datetime) -> int:
    result = await session.execute(
        update(Notification)
        .where(Notification.user_id == user_id, Notification.read_at.is_(None))
        .values(read_at=now)
    )
    await session.flush()
    return rowcount(result)


async def prune(session: AsyncSession, before: datetime, limit: int) -> int:
    """Delete up to ``limit`` notifications created before ``before``, oldest first; callers
    repeat (committing in between) until it returns less than ``limit``, so no single
    transaction holds the database for long."""
    ids = select(Notification.id).where(Notification.created_at < before).limit(limit)
    result = await session.execute(
        delete(Notification).where(Notification.id.in_(ids.scalar_subquery()))
    )
    await session.flush()
    return rowcount(result)


# -- email preferences --------------------------------------------------------------------------


async def email_prefs(session: AsyncSession, user_id: int) -> EmailPrefs:
    row = await session.get(NotificationSettings, user_id)
    if row is None:
        return EmailPrefs(email_go_live=True, email_digest=False)
    return EmailPrefs(row.email_go_live, row.email_digest)


async def set_email_prefs(
    session: AsyncSession,
    user_id: int,
    now: datetime,
    *,
    email_go_live: bool | None = None,
    email_digest: bool | None = None,
) -> EmailPrefs:
    """Change what was given. Turning the digest on starts its interval now (the first digest
    comes one interval later, not at once)."""
    row = await session.get(NotificationSettings, user_id)
    if row is None:
        row = NotificationSettings(
            user_id=user_id, email_go_live=True, email_digest=False, updated_at=now
        )
        session.add(row)
    if email_go_live is not None:
        row.email_go_live = email_go_live
    if email_digest is not None:
        if email_digest and not row.email_digest:
            row.last_digest_at = now
        row.email_digest = email_digest
    row.updated_at = now
    await session.flush()
    return EmailPrefs(row.email_go_live, row.email_digest)


# -- the email sender's queue ------------------------------------------------------------------


def _due(now: datetime) -> Any:
    return and_(
        Notification.emailed_at.is_(None),
        or_(Notification.email_claimed_until.is_(None), Notification.email_claimed_until < now),
    )


async def _claim(
    session: AsyncSession, ids: Sequence[int], now: datetime, until: datetime
) -> list[int]:
    """Take the lease on those of ``ids`` still due; returns the ones this call got."""
    claimed: list[int] = []
    for chunk in _chunks(list(ids)):
        result = await session.execute(
            update(Notification)
            .where(Notification.id.in_(chunk), _due(now))
            .values(email_claimed_until=until)
            .returning(Notification.id)
            .execution_options(synchronize_session=False)
        )
        claimed.extend(result.scalars())
    await session.flush()
    return claimed


async def _owed(session: AsyncSession, ids: Sequence[int]) -> list[OwedEmail]:
    if not ids:
        return []
    settings = NotificationSettings.__table__
    rows = await session.execute(
        select(
            Notification.id,
            Notification.user_id,
            User.email,
            User.username,
            Notification.kind,
            Notification.payload,
            Notification.created_at,
            User.is_disabled,
            func.coalesce(settings.c.email_go_live, True),
        )
        .join(User, User.id == Notification.user_id)
        .outerjoin(settings, settings.c.user_id == Notification.user_id)
        .where(Notification.id.in_(list(ids)))
        .order_by(Notification.id)
    )
    return [
        OwedEmail(nid, uid, email, username, kind, payload or {}, created, bool(go) and not off)
        for nid, uid, email, username, kind, payload, created, off, go in rows
    ]


async def claim_single_emails(
    session: AsyncSession, now: datetime, until: datetime, limit: int
) -> list[OwedEmail]:
    """Claim up to ``limit`` due notifications of users who get one email per notification."""
    settings = NotificationSettings.__table__
    ids = list(
        await session.scalars(
            select(Notification.id)
            .outerjoin(settings, settings.c.user_id == Notification.user_id)
            .where(_due(now), func.coalesce(settings.c.email_digest, False).is_(False))
            .order_by(Notification.id)
            .limit(limit)
        )
    )
    return await _owed(session, await _claim(session, ids, now, until))


async def digest_users_due(
    session: AsyncSession, now: datetime, cutoff: datetime, limit: int
) -> list[int]:
    """Users on digests with notifications due whose last digest went out before ``cutoff``."""
    settings = NotificationSettings.__table__
    return list(
        await session.scalars(
            select(settings.c.user_id)
            .where(
                settings.c.email_digest.is_(True),
                or_(settings.c.last_digest_at.is_(None), settings.c.last_digest_at <= cutoff),
                select(Notification.id)
                .where(Notification.user_id == settings.c.user_id, _due(now))
                .exists(),
            )
            .order_by(settings.c.last_digest_at)
            .limit(limit)
        )
    )


async def claim_digest(
    session: AsyncSession, user_id: int, now: datetime, until: datetime
) -> list[OwedEmail]:
    """Claim every due notification of one user (their digest; ``digest_sent`` after)."""
    ids = list(
        await session.scalars(
            select(Notification.id)
            .where(Notification.user_id == user_id, _due(now))
            .order_by(Notification.id)
        )
    )
    return await _owed(session, await _claim(session, ids, now, until))


async def digest_sent(session: AsyncSession, user_id: int, now: datetime) -> None:
    """Start the user's next digest interval (only once a digest went out: a failed one is
    tried again at the next look)."""
    await session.execute(
        update(NotificationSettings)
        .where(NotificationSettings.user_id == user_id)
        .values(last_digest_at=now)
    )
    await session.flush()


async def mark_emailed(session: AsyncSession, ids: Sequence[int], now: datetime) -> None:
    for chunk in _chunks(list(ids)):
        await session.execute(
            update(Notification)
            .where(Notification.id.in_(chunk))
            .values(emailed_at=now, email_claimed_until=None)
            .execution_options(synchronize_session=False)
        )
    await session.flush()


async def release_claims(session: AsyncSession, ids: Sequence[int]) -> None:
    """Give back a lease (sending failed): the rows are due again at the next look."""
    for chunk in _chunks(list(ids)):
        await session.execute(
            update(Notification)
            .where(Notification.id.in_(chunk), Notification.emailed_at.is_(None))
            .values(email_claimed_until=None)
            .execution_options(synchronize_session=False)
        )
    await session.flush()


async def user_for_unsubscribe(session: AsyncSession, user_id: int) -> User | None:
    return await session.get(User, user_id)
