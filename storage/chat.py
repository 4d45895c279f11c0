"""Chat queries: messages (stored in batches), moderation state and blocks (reports are in
``storage.reports``).

Like ``storage.queries``: every function takes an ``AsyncSession``, flushes, never commits
(the caller owns the transaction), and bad input raises ``ValidationError`` /
``NotFoundError`` / ``ConflictError`` with a message fit for the person who typed it.

``insert_messages`` takes a whole batch: the chat's writer commits every message that
arrived while the previous commit ran in one transaction (group commit), so a busy room costs
one disk sync per batch instead of one per message.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.accounts import display_name
from storage.chat_models import (
    FILTER_MODES,
    ChannelBan,
    ChannelModerator,
    ChannelTimeout,
    ChatSettings,
)
from storage.db import rowcount
from storage.errors import NotFoundError, ValidationError
from storage.models import (
    ApiToken,
    Block,
    Channel,
    ChannelFollow,
    LoginSession,
    Message,
    Profile,
    User,
)

BAN_REASON_MAX = 200
FILTER_WORD_MAX = 64


@dataclass(frozen=True)
class NewMessage:
    channel_id: int
    stream_id: int | None
    user_id: int
    content: str
    created_at: datetime


@dataclass(frozen=True)
class StoredMessage:
    """A message joined with what a chat event shows of its author."""

    id: int
    channel_id: int
    stream_id: int | None
    user_id: int
    username: str
    display_name: str
    content: str
    created_at: datetime


# -- messages ------------------------------------------------------------------------------


async def insert_messages(session: AsyncSession, rows: Sequence[NewMessage]) -> list[int]:
    """Insert a batch of messages in order; their new ids in the same order."""
    if not rows:
        return []
    # One INSERT ... VALUES (...), (...) RETURNING id for the whole batch ("insertmanyvalues"),
    # ids handed back in parameter order.
    result = await session.execute(
        insert(Message).returning(Message.id, sort_by_parameter_order=True),
        [
            {
                "channel_id": r.channel_id,
                "stream_id": r.stream_id,
                "user_id": r.user_id,
                "content": r.content,
                "created_at": r.created_at,
            }
            for r in rows
        ],
    )
    return list(result.scalars().all())


def _stored(msg: Message, user: User, profile: Profile | None) -> StoredMessage:
    return StoredMessage(
        msg.id,
        msg.channel_id,
        msg.stream_id,
        msg.user_id,
        user.username,
        display_name(user, profile),
        msg.content,
        msg.created_at,
    )


def _message_query() -> Any:
    return (
        select(Message, User, Profile)
        .join(User, User.id == Message.user_id)
        .outerjoin(Profile, Profile.user_id == User.id)
        .where(Message.deleted_at.is_(None))
    )


async def recent_messages(
    session: AsyncSession, channel_id: int, limit: int, exclude_users: Sequence[int] = ()
) -> list[StoredMessage]:
    """The channel's newest ``limit`` visible messages, oldest first (the join history)."""
    q = _message_query().where(Message.channel_id == channel_id)
    if exclude_users:
        q = q.where(Message.user_id.not_in(list(exclude_users)))
    rows = (await session.execute(q.order_by(Message.id.desc()).limit(limit))).all()
    return [_stored(*row) for row in reversed(rows)]


async def stream_messages(
    session: AsyncSession, stream_id: int, *, before: int | None, limit: int
) -> list[StoredMessage]:
    """One page of a stream's visible messages with ids below ``before``, oldest first."""
    q = _message_query().where(Message.stream_id == stream_id)
    if before is not None:
        q = q.where(Message.id < before)
    rows = (await session.execute(q.order_by(Message.id.desc()).limit(limit))).all()
    return [_stored(*row) for row in reversed(rows)]


async def get_message(session: AsyncSession, message_id: int) -> Message | None:
    return await session.get(Message, message_id)


async def soft_delete_message(
    session: AsyncSession, message_id: int, by_user_id: int, now: datetime
) -> bool:
    """Hide a message (kept as evidence). False if it was already deleted."""
    result = await session.execute(
        update(Message)
        .where(Message.id == message_id, Message.deleted_at.is_(None))
        .values(deleted_at=now, deleted_by_id=by_user_id)
    )
    return bool(rowcount(result))


# -- moderation state ----------------------------------------------------------------------


@dataclass
class ChannelChatState:
    """Everything the send path checks, loaded once per channel and kept in memory."""

    channel_id: int
    slug: str
    owner_id: int
    moderators: set[int]
    bans: set[int]
    timeouts: dict[int, datetime]
    slow_mode_seconds: int = 0
    followers_only: bool = False
    logged_in_only: bool = False
    word_filter: tuple[str, ...] = ()
    filter_mode: str = "mask"
    # The channel's live stream (new messages belong to it), kept current by stream:status;
    # its title and viewer count (refreshed by the chat's viewer loop) are what a joining
    # socket's stream:status / stream:viewers say, without a query per join.
    stream_id: int | None = None
    stream_title: str | None = None
    viewers: int = 0


async def load_chat_state(
    session: AsyncSession, channel: Channel, now: datetime
) -> ChannelChatState:
    cid = channel.id
    mods = set(
        (
            await session.scalars(
                select(ChannelModerator.user_id).where(ChannelModerator.channel_id == cid)
            )
        ).all()
    )
    bans = set(
        (
            await session.scalars(select(ChannelBan.user_id).where(ChannelBan.channel_id == cid))
        ).all()
    )
    timeouts = dict(
        (
            await session.execute(
                select(ChannelTimeout.user_id, ChannelTimeout.until).where(
                    ChannelTimeout.channel_id == cid, ChannelTimeout.until > now
                )
            )
        ).all()
    )
    state = ChannelChatState(cid, channel.slug, channel.owner_id, mods, bans, timeouts)
    row = await session.get(ChatSettings, cid)
    if row is not None:
        state.slow_mode_seconds = row.slow_mode_seconds
        state.followers_only = row.followers_only
        state.logged_in_only = row.logged_in_only
        state.word_filter = tuple(row.word_filter or ())
        state.filter_mode = row.filter_mode
    return state


def chat_settings_dict(state: ChannelChatState) -> dict[str, Any]:
    return {
        "slow_mode_seconds": state.slow_mode_seconds,
        "followers_only": state.followers_only,
        "logged_in_only": state.logged_in_only,
        "word_filter": list(state.word_filter),
        "filter_mode": state.filter_mode,
    }


def validate_chat_settings(changes: Any, *, max_slow_mode: int, max_words: int) -> dict[str, Any]:
    """Check a partial settings document; the cleaned values, or ValidationError."""
    if not isinstance(changes, dict):
        raise ValidationError("expected a JSON object of chat settings")
    known = {"slow_mode_seconds", "followers_only", "logged_in_only", "word_filter", "filter_mode"}
    unknown = sorted(set(changes) - known)
    if unknown:
        raise ValidationError(f"unknown chat setting {unknown[0]!r}")
    out: dict[str, Any] = {}
    if "slow_mode_seconds" in changes:
        v = changes["slow_mode_seconds"]
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= max_slow_mode:
            raise ValidationError(f"slow_mode_seconds must be a whole number 0-{max_slow_mode}")
        out["slow_mode_seconds"] = v
    for key in ("followers_only", "logged_in_only"):
        if key in changes:
            if not isinstance(changes[key], bool):
                raise ValidationError(f"{key} must be true or false")
            out[key] = changes[key]
    if "filter_mode" in changes:
        if changes["filter_mode"] not in FILTER_MODES:
            raise ValidationError("filter_mode must be 'mask' or 'reject'")
        out["filter_mode"] = changes["filter_mode"]
    if "word_filter" in changes:
        words = changes["word_filter"]
        if isinstance(words, str):
            words = words.replace(",", "\n").splitlines()
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise ValidationError("word_filter must be a list of words")
        cleaned: list[str] = []
        for word in words:
            w = word.strip().lower()
            if not w:
                continue
            if len(w) > FILTER_WORD_MAX or any(ord(c) < 32 for c in w):
                raise ValidationError(
                    f"filter word {word[:20]!r}… is too long or has control characters"
                )
            if w not in cleaned:
                cleaned.append(w)
        if len(cleaned) > max_words:
            raise ValidationError(f"the word filter holds at most {max_words} words")
        out["word_filter"] = cleaned
    return out


async def update_chat_settings(
    session: AsyncSession, channel_id: int, values: dict[str, Any]
) -> None:
    row = await session.get(ChatSettings, channel_id)
    if row is None:
        row = ChatSettings(channel_id=channel_id, word_filter=[])
        session.add(row)
    for key, value in values.items():
        setattr(row, key, value)
    await session.flush()


async def get_user(session: AsyncSession, user_id: int) -> User | None:
    return await session.get(User, user_id)


async def admin_ids(session: AsyncSession, user_ids: Collection[int]) -> set[int]:
    """Those of ``user_ids`` that are admins (the badge on their messages)."""
    if not user_ids:
        return set()
    return set(
        (
            await session.scalars(
                select(User.id).where(User.id.in_(list(user_ids)), User.is_admin.is_(True))
            )
        ).all()
    )


async def user_public(
    session: AsyncSession, user_ids: Collection[int]
) -> dict[int, dict[str, Any]]:
    """id -> {id, username, display_name} for the given users."""
    if not user_ids:
        return {}
    rows = (
        await session.execute(
            select(User, Profile)
            .outerjoin(Profile, Profile.user_id == User.id)
            .where(User.id.in_(list(user_ids)))
        )
    ).all()
    return {
        u.id: {"id": u.id, "username": u.username, "display_name": display_name(u, p)}
        for u, p in rows
    }


async def add_moderator(
    session: AsyncSession, channel_id: int, user_id: int, by_user_id: int
) -> bool:
    """Appoint; False if the user already moderates this channel."""
    if await session.get(ChannelModerator, (channel_id, user_id)) is not None:
        return False
    session.add(
        ChannelModerator(channel_id=channel_id, user_id=user_id, appointed_by_id=by_user_id)
    )
    await session.flush()
    return True


async def remove_moderator(session: AsyncSession, channel_id: int, user_id: int) -> bool:
    result = await session.execute(
        delete(ChannelModerator).where(
            ChannelModerator.channel_id == channel_id, ChannelModerator.user_id == user_id
        )
    )
    return bool(rowcount(result))


async def list_moderators(session: AsyncSession, channel_id: int) -> list[dict[str, Any]]:
    ids = (
        await session.scalars(
            select(ChannelModerator.user_id).where(ChannelModerator.channel_id == channel_id)
        )
    ).all()
    users = await user_public(session, ids)
    return [users[i] for i in sorted(users)]


async def ban(
    session: AsyncSession, channel_id: int, user_id: int, by_user_id: int, reason: str
) -> None:
    if not isinstance(reason, str) or len(reason) > BAN_REASON_MAX:
        raise ValidationError(f"reason must be text of at most {BAN_REASON_MAX} characters")
    row = await session.get(ChannelBan, (channel_id, user_id))
    if row is None:
        session.add(
            ChannelBan(
                channel_id=channel_id,
                user_id=user_id,
                banned_by_id=by_user_id,
                reason=reason.strip(),
            )
        )
    else:
        row.reason, row.banned_by_id = reason.strip(), by_user_id
    await session.flush()


async def unban(session: AsyncSession, channel_id: int, user_id: int) -> bool:
    result = await session.execute(
        delete(ChannelBan).where(ChannelBan.channel_id == channel_id, ChannelBan.user_id == user_id)
    )
    return bool(rowcount(result))


async def list_bans(session: AsyncSession, channel_id: int) -> list[dict[str, Any]]:
    rows = (
        (
            await session.execute(
                select(ChannelBan)
                .where(ChannelBan.channel_id == channel_id)
                .order_by(ChannelBan.created_at)
            )
        )
        .scalars()
        .all()
    )
    users = await user_public(session, [r.user_id for r in rows])
    return [
        {"user": users.get(r.user_id), "reason": r.reason, "created_at": r.created_at.isoformat()}
        for r in rows
    ]


async def set_timeout(
    session: AsyncSession, channel_id: int, user_id: int, until: datetime, by_user_id: int
) -> None:
    row = await session.get(ChannelTimeout, (channel_id, user_id))
    if row is None:
        session.add(
            ChannelTimeout(
                channel_id=channel_id, user_id=user_id, until=until, created_by_id=by_user_id
            )
        )
    else:
        row.until, row.created_by_id = until, by_user_id
    await session.flush()


async def clear_timeout(session: AsyncSession, channel_id: int, user_id: int) -> bool:
    result = await session.execute(
        delete(ChannelTimeout).where(
            ChannelTimeout.channel_id == channel_id, ChannelTimeout.user_id == user_id
        )
    )
    return bool(rowcount(result))


async def is_follower(session: AsyncSession, channel_id: int, user_id: int) -> bool:
    return await session.get(ChannelFollow, (user_id, channel_id)) is not None


# -- standing of a chat socket's account ---------------------------------------------------


@dataclass(frozen=True)
class Standing:
    """What an open chat socket's account may do now: its admin flag, and ``ended`` (why it
    may no longer act: "account_disabled", "session_ended", "token_revoked") or None."""

    is_admin: bool
    ended: str | None


# Credentials read per statement by credential_standings (bound parameters stay well under
# SQLite's limit whatever the batch).
STANDINGS_CHUNK = 500


async def credential_standings(
    session: AsyncSession, credentials: Collection[tuple[int, str, str]], now: datetime
) -> dict[tuple[int, str, str], Standing]:
    """Re-read users and the credentials their sockets opened with: per (user id, kind, token
    hash), where ``kind`` is "session" (a login cookie, valid until it expires or is deleted by
    logout/disable) or "token" (an API token, valid until revoked) and the hash is its SHA-256;
    ``now`` is timezone-aware. A few statements whatever their number: a wave of sockets
    re-checked together (after a Redis bus reconnect, or a room that joined together) costs
    three reads per ``STANDINGS_CHUNK``, not one each."""
    creds = list(credentials)
    users: dict[int, tuple[bool, bool]] = {}
    live: set[tuple[int, str, str]] = set()
    for start in range(0, len(creds), STANDINGS_CHUNK):
        chunk = creds[start : start + STANDINGS_CHUNK]
        ids = {uid for uid, _, _ in chunk}
        for uid, is_admin, is_disabled in await session.execute(
            select(User.id, User.is_admin, User.is_disabled).where(User.id.in_(ids))
        ):
            users[int(uid)] = (bool(is_admin), bool(is_disabled))
        sessions = {h for _, kind, h in chunk if kind == "session"}
        if sessions:
            for uid, h in await session.execute(
                select(LoginSession.user_id, LoginSession.token_hash).where(
                    LoginSession.token_hash.in_(sessions), LoginSession.expires_at > now
                )
            ):
                live.add((int(uid), "session", h))
        tokens = {h for _, kind, h in chunk if kind != "session"}
        if tokens:
            for uid, h in await session.execute(
                select(ApiToken.user_id, ApiToken.token_hash).where(
                    ApiToken.token_hash.in_(tokens), ApiToken.revoked_at.is_(None)
                )
            ):
                live.add((int(uid), "token", h))
    out: dict[tuple[int, str, str], Standing] = {}
    for uid, kind, h in creds:
        user = users.get(uid)
        if user is None or user[1]:
            out[(uid, kind, h)] = Standing(False, "account_disabled")
            continue
        gone = "session_ended" if kind == "session" else "token_revoked"
        key = (uid, "session" if kind == "session" else "token", h)
        out[(uid, kind, h)] = Standing(user[0], None if key in live else gone)
    return out


# -- blocks --------------------------------------------------------------------------------


async def block(session: AsyncSession, blocker_id: int, blocked_id: int) -> bool:
    if blocker_id == blocked_id:
        raise ValidationError("you cannot block yourself")
    if await session.get(User, blocked_id) is None:
        raise NotFoundError(f"no user with id {blocked_id}")
    if await session.get(Block, (blocker_id, blocked_id)) is not None:
        return False
    session.add(Block(blocker_id=blocker_id, blocked_id=blocked_id))
    await session.flush()
    return True


async def unblock(session: AsyncSession, blocker_id: int, blocked_id: int) -> bool:
    result = await session.execute(
        delete(Block).where(Block.blocker_id == blocker_id, Block.blocked_id == blocked_id)
    )
    return bool(rowcount(result))


async def blocked_ids(session: AsyncSession, blocker_id: int) -> set[int]:
    return set(
        (
            await session.scalars(select(Block.blocked_id).where(Block.blocker_id == blocker_id))
        ).all()
    )
