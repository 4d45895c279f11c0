"""Emotes: the checks of a code as typed, and the queries of the global and channel sets.

A code is what chat replaces with the image where a message has it as a whole word, so it must
be a word: a letter, then letters, digits or ``_`` (2 to ``CODE_MAX`` characters); codes are
case-sensitive. Global codes are unique among globals, a channel's among its own, and a
channel's new or renamed code may not be a global one (it would hide the global emote in that
chat). An admin may still add a global code some channel already has: in that channel's chat
the channel's emote wins (the channel's set is applied over the global one).

Like ``storage.follows``: every function takes an ``AsyncSession``, flushes, never commits.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage.emote_models import CODE_MAX, Emote
from storage.errors import ConflictError, NotFoundError, ValidationError
from storage.models import utcnow

CODE_MIN = 2
CODE_RE = re.compile(rf"[A-Za-z][A-Za-z0-9_]{{{CODE_MIN - 1},{CODE_MAX - 1}}}")
CODE_RULE = (
    f"{CODE_MIN} to {CODE_MAX} characters: a letter, then letters, digits or _ "
    "(no spaces or punctuation)"
)
_FILE_KEY_RE = re.compile(r"[0-9a-f]{32}")


def check_code(code: Any) -> str:
    if not isinstance(code, str) or not code.strip():
        raise ValidationError("the emote code is required")
    code = code.strip()
    if not CODE_RE.fullmatch(code):
        raise ValidationError(f"the emote code must be {CODE_RULE}")
    return code


def check_file_key(key: str) -> str:
    if not _FILE_KEY_RE.fullmatch(key):
        raise ValueError(f"bad emote file key {key!r}")  # made by the caller, never typed
    return key


async def list_emotes(session: AsyncSession, channel_id: int | None) -> list[Emote]:
    """A channel's emotes (None: the global ones), by code."""
    where = Emote.channel_id.is_(None) if channel_id is None else Emote.channel_id == channel_id
    rows = await session.scalars(select(Emote).where(where).order_by(Emote.code, Emote.id))
    return list(rows)


async def count_emotes(session: AsyncSession, channel_id: int | None) -> int:
    where = Emote.channel_id.is_(None) if channel_id is None else Emote.channel_id == channel_id
    return int(await session.scalar(select(func.count()).select_from(Emote).where(where)) or 0)


async def get_emote(session: AsyncSession, emote_id: int) -> Emote:
    row = await session.get(Emote, emote_id)
    if row is None:
        raise NotFoundError("no such emote")
    return row


async def _check_free(
    session: AsyncSession, channel_id: int | None, code: str, emote_id: int | None
) -> None:
    where = Emote.channel_id.is_(None) if channel_id is None else Emote.channel_id == channel_id
    clash = await session.scalar(
        select(Emote.id).where(where, Emote.code == code, Emote.id != (emote_id or 0)).limit(1)
    )
    if clash is not None:
        where_text = "a global emote" if channel_id is None else "an emote of this channel"
        raise ConflictError(f"{where_text} already has the code {code!r}")
    if channel_id is not None:
        shadowed = await session.scalar(
            select(Emote.id).where(Emote.channel_id.is_(None), Emote.code == code).limit(1)
        )
        if shadowed is not None:
            raise ConflictError(
                f"{code!r} is a global emote's code: a channel emote may not hide it"
            )


async def _flush_or_conflict(session: AsyncSession, code: str) -> None:
    """Flush; two uploads racing to the same code get a ConflictError, not a 500."""
    try:
        await session.flush()
    except IntegrityError:
        await session.rollback()
        raise ConflictError(f"an emote with the code {code!r} was just added") from None


async def create_emote(
    session: AsyncSession,
    *,
    channel_id: int | None,
    code: Any,
    file_key: str,
    animated: bool,
    follower_only: bool = False,
    created_by_id: int | None = None,
    limit: int,
) -> Emote:
    """A new emote of a channel (None: global). ``limit``: most emotes in that set; one more
    is a ValidationError. Follower-only is a channel emote's option (globals have no
    followers)."""
    code = check_code(code)
    if follower_only and channel_id is None:
        raise ValidationError("only a channel's emotes can be follower-only")
    if await count_emotes(session, channel_id) >= limit:
        where = "global emotes" if channel_id is None else "emotes in a channel"
        raise ValidationError(f"there can be at most {limit} {where}; delete one first")
    await _check_free(session, channel_id, code, None)
    row = Emote(
        channel_id=channel_id,
        code=code,
        file_key=check_file_key(file_key),
        animated=animated,
        follower_only=follower_only,
        created_by_id=created_by_id,
        created_at=utcnow(),
    )
    session.add(row)
    await _flush_or_conflict(session, code)
    return row


async def update_emote(
    session: AsyncSession, row: Emote, *, code: Any = None, follower_only: bool | None = None
) -> Emote:
    """Rename (``code``) and/or change ``follower_only``; None leaves a field as it is."""
    if code is not None:
        code = check_code(code)
        if code != row.code:
            await _check_free(session, row.channel_id, code, row.id)
            row.code = code
    if follower_only is not None:
        if follower_only and row.channel_id is None:
            raise ValidationError("only a channel's emotes can be follower-only")
        row.follower_only = follower_only
    await _flush_or_conflict(session, row.code)
    return row


async def delete_emote(session: AsyncSession, row: Emote) -> None:
    await session.delete(row)
    await session.flush()


async def all_file_keys(session: AsyncSession) -> set[str]:
    """Every file key a row names (the orphan sweep keeps exactly these files)."""
    return set(await session.scalars(select(Emote.file_key)))


__all__ = [
    "CODE_MAX",
    "CODE_MIN",
    "CODE_RULE",
    "check_code",
    "count_emotes",
    "create_emote",
    "delete_emote",
    "get_emote",
    "list_emotes",
    "update_emote",
]
