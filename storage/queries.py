"""Queries the ingest server, the CLI and the web app share.

Every function takes an ``AsyncSession``, flushes so generated ids and constraint failures
show up here, and never commits: the caller decides the transaction. Input problems raise
``ValidationError``, clashes ``ConflictError``, missing rows ``NotFoundError``, each with a
message fit to show the person who typed the input. After a ``ConflictError`` raised from a
failed flush the session has been rolled back.

Secrets (stream keys, API tokens) are looked up by their SHA-256, which is indexed; API tokens
are stored only as that hash. Stream keys are also kept in clear for the owner's dashboard and
compared in constant time after the lookup.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from storage.db import rowcount
from storage.errors import ConflictError, NotFoundError, ValidationError
from storage.models import ApiToken, Channel, Profile, Stream, StreamStatus, User
from storage.passwords import hash_password, unusable_password_hash
from storage.replay import add_chapter

USERNAME_RE = re.compile(r"^[a-z0-9_]{3,32}$")
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,47}$")
# Shape only (something@domain.tld); whether the mailbox exists is not our business here.
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")
EMAIL_MAX = 254
PASSWORD_MIN = 8
PASSWORD_MAX = 1024
TITLE_MAX = 140
CHANNEL_NAME_MAX = 120
TOKEN_NAME_MAX = 64

STREAM_KEY_PREFIX = "live_"
API_TOKEN_PREFIX = "aethex_"
# token_urlsafe(30) is exactly 40 characters of [A-Za-z0-9_-]: 240 bits of randomness.
_SECRET_BYTES = 30
# Longest key/token worth hashing; anything longer cannot be ours.
_SECRET_MAX = 256
# Characters of an API token kept in clear so users can tell their tokens apart.
_TOKEN_DISPLAY_CHARS = 12
# A token's last-use time is refreshed at most this often.
TOKEN_LAST_USED_RESOLUTION = timedelta(minutes=1)


def sha256_hex(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None:
        return now.replace(tzinfo=UTC)
    return now.astimezone(UTC)


def new_stream_key() -> str:
    return STREAM_KEY_PREFIX + secrets.token_urlsafe(_SECRET_BYTES)


def new_api_token() -> str:
    return API_TOKEN_PREFIX + secrets.token_urlsafe(_SECRET_BYTES)


def validate_username(username: str) -> str:
    if not isinstance(username, str) or not USERNAME_RE.fullmatch(username):
        raise ValidationError(
            f"invalid username {username!r}: use 3-32 characters, lowercase letters a-z, "
            "digits and '_'"
        )
    return username


def validate_email(email: str) -> str:
    """Return the normalised (stripped, lower-cased) address or raise ValidationError."""
    normalised = email.strip().lower() if isinstance(email, str) else ""
    if len(normalised) > EMAIL_MAX or not EMAIL_RE.fullmatch(normalised):
        raise ValidationError(f"invalid email address {email!r}: expected name@example.org")
    return normalised


def validate_slug(slug: str) -> str:
    if not isinstance(slug, str) or not SLUG_RE.fullmatch(slug):
        raise ValidationError(
            f"invalid channel slug {slug!r}: use 2-48 characters, lowercase letters a-z, "
            "digits and '-', starting with a letter or digit"
        )
    return slug


def validate_password(password: str) -> str:
    if not isinstance(password, str) or not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise ValidationError(f"password must be {PASSWORD_MIN} to {PASSWORD_MAX} characters long")
    return password


def _validate_text(value: str, what: str, max_len: int) -> str:
    cleaned = value.strip() if isinstance(value, str) else ""
    if not cleaned:
        raise ValidationError(f"{what} must not be empty")
    if len(cleaned) > max_len:
        raise ValidationError(f"{what} is too long ({len(cleaned)} characters, at most {max_len})")
    if any(ord(c) < 32 for c in cleaned):
        raise ValidationError(f"{what} must not contain control characters")
    return cleaned


async def _flush_or_conflict(session: AsyncSession, message: str) -> None:
    """Flush; a unique-constraint race that slipped past our pre-checks becomes ConflictError."""
    try:
        await session.flush()
    except IntegrityError as exc:
        await session.rollback()
        raise ConflictError(message) from exc


# -- users -----------------------------------------------------------------------------------


async def get_user_by_username(session: AsyncSession, username: str) -> User | None:
    return (
        await session.execute(select(User).where(User.username == username))
    ).scalar_one_or_none()


async def get_user_by_email(session: AsyncSession, email: str) -> User | None:
    return (
        await session.execute(select(User).where(User.email == email.strip().lower()))
    ).scalar_one_or_none()


async def count_users(session: AsyncSession) -> int:
    return (await session.execute(select(func.count()).select_from(User))).scalar_one()


async def create_user(
    session: AsyncSession, username: str, email: str, password: str | None, is_admin: bool = False
) -> User:
    """Create a user and their profile. ``password=None`` gives an account no password opens."""
    username = validate_username(username)
    email = validate_email(email)
    if password is not None:
        validate_password(password)
    if await get_user_by_username(session, username) is not None:
        raise ConflictError(f"username {username!r} is already taken")
    if await get_user_by_email(session, email) is not None:
        raise ConflictError(f"email {email!r} is already registered")
    if password is None:
        password_hash = unusable_password_hash()
    else:
        # argon2 is deliberately slow; keep the event loop free meanwhile.
        password_hash = await asyncio.to_thread(hash_password, password)
    user = User(
        username=username, email=email, password_hash=password_hash, is_admin=bool(is_admin)
    )
    session.add(user)
    await _flush_or_conflict(session, f"username {username!r} or email {email!r} is taken")
    session.add(Profile(user_id=user.id, display_name=username, social_links={}))
    await session.flush()
    return user


async def _require_user(session: AsyncSession, username: str) -> User:
    user = await get_user_by_username(session, username)
    if user is None:
        raise NotFoundError(f"no user named {username!r}")
    return user


# -- channels --------------------------------------------------------------------------------


async def get_channel_by_slug(session: AsyncSession, slug: str) -> Channel | None:
    return (await session.execute(select(Channel).where(Channel.slug == slug))).scalar_one_or_none()


async def create_channel(
    session: AsyncSession, owner_username: str, slug: str, title: str | None = None
) -> Channel:
    """Create a channel with a fresh stream key. ``title`` (the channel name) defaults to slug."""
    slug = validate_slug(slug)
    name = slug if title is None else _validate_text(title, "channel title", CHANNEL_NAME_MAX)
    owner = await _require_user(session, owner_username)
    if await get_channel_by_slug(session, slug) is not None:
        raise ConflictError(f"channel slug {slug!r} is already taken")
    key = new_stream_key()
    channel = Channel(
        owner_id=owner.id,
        slug=slug,
        name=name,
        description="",
        tags=[],
        stream_key=key,
        stream_key_hash=sha256_hex(key),
    )
    session.add(channel)
    await _flush_or_conflict(session, f"channel slug {slug!r} is already taken")
    return channel


async def regenerate_stream_key(session: AsyncSession, channel_id: int) -> str:
    """Replace the channel's stream key (the old one stops working at commit) and return it."""
    channel = await session.get(Channel, channel_id)
    if channel is None:
        raise NotFoundError(f"no channel with id {channel_id}")
    key = new_stream_key()
    channel.stream_key = key
    channel.stream_key_hash = sha256_hex(key)
    await session.flush()
    return key


async def find_channel_by_stream_key(session: AsyncSession, key: str) -> Channel | None:
    """The channel a publisher's stream key belongs to, or None for any wrong key."""
    if not isinstance(key, str) or not key or len(key) > _SECRET_MAX:
        return None
    channel = (
        await session.execute(select(Channel).where(Channel.stream_key_hash == sha256_hex(key)))
    ).scalar_one_or_none()
    if channel is None:
        return None
    if not hmac.compare_digest(channel.stream_key.encode("utf-8"), key.encode("utf-8")):
        return None
    return channel


# -- API tokens ------------------------------------------------------------------------------


async def create_api_token(session: AsyncSession, username: str, name: str = "cli") -> str:
    """Create a token for ``username``; return the plaintext, which is not stored anywhere."""
    name = _validate_text(name, "token name", TOKEN_NAME_MAX)
    user = await _require_user(session, username)
    token = new_api_token()
    session.add(
        ApiToken(
            user_id=user.id,
            name=name,
            token_hash=sha256_hex(token),
            prefix=token[:_TOKEN_DISPLAY_CHARS],
        )
    )
    await _flush_or_conflict(session, "token collision; try again")
    return token


async def find_api_token(session: AsyncSession, token: str) -> tuple[ApiToken, User] | None:
    """An unrevoked API token's row and its enabled user (profile loaded), else None.

    Reads only. Recording the use (``record_token_use``) is a separate write on purpose: it is
    bookkeeping, and a failed write (a full disk) must not fail the request it belongs to.
    """
    if (
        not isinstance(token, str)
        or not token.startswith(API_TOKEN_PREFIX)
        or len(token) > _SECRET_MAX
    ):
        return None
    row = (
        await session.execute(
            select(ApiToken, User)
            .join(User, User.id == ApiToken.user_id)
            .options(joinedload(User.profile))
            .where(
                ApiToken.token_hash == sha256_hex(token),
                ApiToken.revoked_at.is_(None),
                User.is_disabled.is_(False),
            )
        )
    ).one_or_none()
    return None if row is None else (row[0], row[1])


async def find_user_by_token(session: AsyncSession, token: str) -> User | None:
    """The enabled user an unrevoked API token belongs to (profile loaded), else None."""
    found = await find_api_token(session, token)
    return None if found is None else found[1]


def token_use_due(api_token: ApiToken, now: datetime) -> bool:
    """Whether a use at ``now`` should be recorded: at most once per
    TOKEN_LAST_USED_RESOLUTION (a write per API call would be a write per request)."""
    last = api_token.last_used_at
    return last is None or _aware(now) - _aware(last) > TOKEN_LAST_USED_RESOLUTION


async def record_token_use(session: AsyncSession, token_id: int, now: datetime) -> None:
    """Set the token's last use to ``now``."""
    await session.execute(
        update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=_aware(now))
    )


async def revoke_api_token(session: AsyncSession, token: str, now: datetime) -> bool:
    """Revoke a token by its plaintext; False if it was unknown or already revoked."""
    if not isinstance(token, str) or len(token) > _SECRET_MAX:
        return False
    api_token = (
        await session.execute(
            select(ApiToken).where(
                ApiToken.token_hash == sha256_hex(token), ApiToken.revoked_at.is_(None)
            )
        )
    ).scalar_one_or_none()
    if api_token is None:
        return False
    api_token.revoked_at = _aware(now)
    await session.flush()
    return True


# -- streams ---------------------------------------------------------------------------------


async def live_stream_for_channel(session: AsyncSession, channel_id: int) -> Stream | None:
    return (
        await session.execute(
            select(Stream)
            .where(Stream.channel_id == channel_id, Stream.status == StreamStatus.LIVE)
            .order_by(Stream.started_at.desc(), Stream.id.desc())
            .limit(1)
        )
    ).scalar_one_or_none()


async def start_stream(
    session: AsyncSession, channel_id: int, now: datetime, title: str | None = None
) -> Stream:
    """Record a new LIVE broadcast of the channel.

    A channel has at most one LIVE stream (a partial unique index says so). The ingest decides
    who may publish, so a row still LIVE here is stale (a publisher taken over whose row has
    not been closed yet, or a crash): it is ended as OFFLINE at ``now`` first. Two concurrent
    calls for one channel still cannot both commit; the loser gets ConflictError.
    """
    channel = await session.get(Channel, channel_id)
    if channel is None:
        raise NotFoundError(f"no channel with id {channel_id}")
    title = channel.name if title is None else _validate_text(title, "stream title", TITLE_MAX)
    now = _aware(now)
    stale = (
        (
            await session.execute(
                select(Stream).where(
                    Stream.channel_id == channel_id, Stream.status == StreamStatus.LIVE
                )
            )
        )
        .scalars()
        .all()
    )
    for old in stale:
        _finish(old, now)
        old.status = StreamStatus.OFFLINE
    if stale:
        await session.flush()
    stream = Stream(
        channel_id=channel_id,
        title=title,
        category=channel.category,
        # The broadcast runs under the channel's category of now, kept if the channel changes.
        category_id=channel.category_id,
        status=StreamStatus.LIVE,
        started_at=now,
    )
    session.add(stream)
    await _flush_or_conflict(session, f"channel {channel.slug!r} is already live")
    # The recording's first chapter: what it starts with (storage.replay).
    await add_chapter(session, stream, now)
    # An UPDATE ... SET n = n + 1 so concurrent writers cannot lose an increment.
    await session.execute(
        update(Channel)
        .where(Channel.id == channel_id)
        .values(total_streams=Channel.total_streams + 1)
        .execution_options(synchronize_session=False)
    )
    await session.refresh(channel, ["total_streams"])
    return stream


def _finish(stream: Stream, now: datetime) -> None:
    if stream.ended_at is None:
        stream.ended_at = now
        if stream.started_at is not None:
            stream.duration_seconds = max(0, int((now - stream.started_at).total_seconds()))
    stream.viewer_count = 0


async def end_stream(
    session: AsyncSession,
    stream_id: int,
    now: datetime,
    status: StreamStatus = StreamStatus.OFFLINE,
) -> Stream:
    """Mark a broadcast ended. The first call fixes ended_at/duration; later calls (ENDING ->
    OFFLINE/ARCHIVED) only move the status."""
    if status is StreamStatus.LIVE or not isinstance(status, StreamStatus):
        raise ValidationError(f"cannot end a stream with status {status!r}")
    stream = await session.get(Stream, stream_id)
    if stream is None:
        raise NotFoundError(f"no stream with id {stream_id}")
    _finish(stream, _aware(now))
    stream.status = status
    await session.flush()
    return stream


@dataclass(frozen=True, slots=True)
class OrphanedStream:
    """A stream an earlier run left open, to be closed by crash recovery."""

    id: int
    slug: str
    started_at: datetime | None


async def take_orphaned_streams(
    session: AsyncSession, keep_channels: Collection[int] = ()
) -> list[OrphanedStream]:
    """Streams a crash left LIVE or ENDING (call at startup, before ingest starts), except
    those of ``keep_channels`` (in a cluster: live on another origin, which holds their lease).

    LIVE ones move to ENDING now: the channel may go live again at once (a new publisher would
    otherwise close this row OFFLINE), while recovery decides from the disk whether it becomes
    ARCHIVED or OFFLINE. Their end time stays unset for recovery to give (``end_stream``); an
    ENDING row keeps the one it got when its publisher left.
    """
    rows = (
        await session.execute(
            select(Stream, Channel.slug)
            .join(Channel, Stream.channel_id == Channel.id)
            .where(Stream.status.in_([StreamStatus.LIVE, StreamStatus.ENDING]))
            .order_by(Stream.id)
        )
    ).all()
    rows = [row for row in rows if row[0].channel_id not in keep_channels]
    for stream, _ in rows:
        stream.status = StreamStatus.ENDING
        stream.viewer_count = 0
    await session.flush()
    return [OrphanedStream(stream.id, slug, stream.started_at) for stream, slug in rows]


async def live_stream_ids(session: AsyncSession, channel_id: int | None = None) -> list[int]:
    """The channel's LIVE stream rows (normally at most one), or every channel's."""
    query = select(Stream.id).where(Stream.status == StreamStatus.LIVE)
    if channel_id is not None:
        query = query.where(Stream.channel_id == channel_id)
    return list((await session.execute(query)).scalars())


async def take_streams(session: AsyncSession, stream_ids: Collection[int]) -> list[OrphanedStream]:
    """Move these rows, if still LIVE, to ENDING for crash recovery (in a cluster: streams of
    an origin that died), as ``take_orphaned_streams`` does at start. Rows locked, so of two
    nodes taking the same row only one gets it."""
    if not stream_ids:
        return []
    rows = (
        await session.execute(
            select(Stream, Channel.slug)
            .join(Channel, Stream.channel_id == Channel.id)
            .where(Stream.id.in_(list(stream_ids)), Stream.status == StreamStatus.LIVE)
            .order_by(Stream.id)
            .with_for_update(of=Stream)
        )
    ).all()
    for stream, _ in rows:
        stream.status = StreamStatus.ENDING
        stream.viewer_count = 0
    await session.flush()
    return [OrphanedStream(stream.id, slug, stream.started_at) for stream, slug in rows]


async def set_stream_source_info(
    session: AsyncSession, stream_id: int, info: dict[str, Any]
) -> None:
    """Store what the publisher sends (codecs, size, frame rate...) as a JSON document."""
    if not isinstance(info, dict):
        raise ValidationError("stream source info must be a JSON object")
    try:
        document = json.loads(json.dumps(info, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"stream source info is not JSON-serialisable: {exc}") from exc
    stream = await session.get(Stream, stream_id)
    if stream is None:
        raise NotFoundError(f"no stream with id {stream_id}")
    stream.source_info = document
    await session.flush()


async def update_viewer_count(session: AsyncSession, stream_id: int, viewers: int) -> None:
    """Set the current viewer count and raise the peak if it was passed."""
    if viewers < 0:
        raise ValidationError("viewer count cannot be negative")
    result = await session.execute(
        update(Stream)
        .where(Stream.id == stream_id)
        .values(
            viewer_count=viewers,
            peak_viewers=case((Stream.peak_viewers < viewers, viewers), else_=Stream.peak_viewers),
        )
        .execution_options(synchronize_session=False)
    )
    if rowcount(result) == 0:
        raise NotFoundError(f"no stream with id {stream_id}")
    # Bring a loaded Stream object up to date without an implicit (async-illegal) lazy load.
    await session.get(Stream, stream_id, populate_existing=True)


async def update_live_viewer_counts(session: AsyncSession, counts: dict[int, int]) -> int:
    """``update_viewer_count`` for several streams at once, touching only rows still LIVE.

    The HTTP layer counts viewers in memory and writes here every few seconds; a count taken
    just as a stream ends must not overwrite the zero ``end_stream`` wrote, and a stream row
    that went away is simply skipped. Returns how many rows were updated.
    """
    updated = 0
    for stream_id, viewers in counts.items():
        if viewers < 0:
            raise ValidationError("viewer count cannot be negative")
        result = await session.execute(
            update(Stream)
            .where(Stream.id == stream_id, Stream.status == StreamStatus.LIVE)
            .values(
                viewer_count=viewers,
                peak_viewers=case(
                    (Stream.peak_viewers < viewers, viewers), else_=Stream.peak_viewers
                ),
            )
            .execution_options(synchronize_session=False)
        )
        updated += rowcount(result)
    return updated


@dataclass(frozen=True, slots=True)
class LiveViewers:
    """A channel's live stream and its viewer count as its row has it."""

    slug: str
    stream_id: int
    title: str
    viewers: int


@dataclass(frozen=True)
class LiveRow:
    channel_id: int
    slug: str
    stream_id: int
    started_at: datetime


async def live_streams_of(session: AsyncSession, channel_ids: Collection[int]) -> list[LiveRow]:
    """The LIVE stream of each of these channels (in a cluster: those an origin holds a lease
    on), for a node that does not ingest them to know them, in one query."""
    if not channel_ids:
        return []
    rows = await session.execute(
        select(Stream.channel_id, Channel.slug, Stream.id, Stream.started_at)
        .join(Channel, Stream.channel_id == Channel.id)
        .where(Stream.channel_id.in_(list(channel_ids)), Stream.status == StreamStatus.LIVE)
    )
    return [
        LiveRow(channel_id, slug, stream_id, _aware(started_at or datetime.now(UTC)))
        for channel_id, slug, stream_id, started_at in rows
    ]


async def live_viewer_counts(session: AsyncSession, slugs: list[str]) -> list[LiveViewers]:
    """The LIVE stream of each of these channels, with its title and viewer count, in one
    query: for a process's chat rooms whose viewers another process counts (that process
    writes the row, ``update_live_viewer_counts``)."""
    if not slugs:
        return []
    rows = await session.execute(
        select(Channel.slug, Stream.id, Stream.title, Stream.viewer_count)
        .join(Stream, Stream.channel_id == Channel.id)
        .where(Channel.slug.in_(slugs), Stream.status == StreamStatus.LIVE)
    )
    return [LiveViewers(*row) for row in rows]
