"""What the emotes API and pages share: who may change which set, and the changes themselves.

A global emote is an admin's; a channel's emote is its owner's (or an admin's). Each change
is: the image prepared and its files written first, then the row committed (a refused row
removes the new files), then the set published to chat (``sets.publish_*``); a deleted
emote's files go after its row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from storage import channels as channel_queries
from storage import emotes as store
from storage.errors import ValidationError
from storage.models import Channel, User

from ..errors import ApiError
from ..identity import require_admin, require_manager
from ..keys import DB_KEY, SETTINGS_KEY
from . import pictures
from .sets import emote_json, publish_channel, publish_global

TRUE = frozenset({"1", "true", "on", "yes"})
FALSE = frozenset({"", "0", "false", "off", "no"})


@dataclass(frozen=True)
class Scope:
    """The set a change is in: a channel's (its id and slug) or the global one (None)."""

    channel_id: int | None
    slug: str | None = None


GLOBAL = Scope(None)


async def managed_channel(session: AsyncSession, slug: str, user: User) -> Channel:
    """The ``slug`` channel if ``user`` owns it or is an admin: 404 unknown, 403 otherwise."""
    found = await channel_queries.channel_with_owner(session, slug)
    if found is None:
        raise ApiError(404, "not_found", "no such channel")
    require_manager(user, found.channel)
    return found.channel


def flag(value: Any, name: str) -> bool:
    """A form's checkbox or a JSON boolean."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in TRUE | FALSE:
        return value.strip().lower() in TRUE
    raise ApiError(400, "invalid", f"the field {name!r} must be true or false")


async def _scope_of_row(session: AsyncSession, user: User, channel_id: int | None) -> Scope:
    if channel_id is None:
        require_admin(user)
        return GLOBAL
    channel = await channel_queries.get_channel(session, channel_id)
    if channel is None:
        raise ApiError(404, "not_found", "no such emote")
    require_manager(user, channel)
    return Scope(channel.id, channel.slug)


async def _published(app: web.Application, scope: Scope) -> None:
    if scope.channel_id is None:
        await publish_global(app)
    else:
        assert scope.slug is not None
        await publish_channel(app, scope.channel_id, scope.slug)


async def add_emote(
    app: web.Application,
    user: User,
    scope: Scope,
    code: Any,
    data: bytes | None,
    follower_only: bool = False,
) -> dict[str, Any]:
    """A new emote in ``scope`` (the caller checked the user may change it)."""
    code = store.check_code(code)  # a bad code is refused before the image is decoded
    if data is None:
        raise ApiError(400, "missing_field", "the form field 'file' (the image) is required")
    if follower_only and scope.channel_id is None:
        raise ValidationError("only a channel's emotes can be follower-only")
    prepared = await pictures.prepare(app, data)
    limits = app[SETTINGS_KEY].emotes
    limit = limits.global_limit if scope.channel_id is None else limits.channel_limit
    key = await pictures.store(app, prepared)
    try:
        async with app[DB_KEY].session() as session:
            row = await store.create_emote(
                session,
                channel_id=scope.channel_id,
                code=code,
                file_key=key,
                animated=prepared.animated,
                follower_only=follower_only,
                created_by_id=user.id,
                limit=limit,
            )
            await session.commit()
            result = emote_json(row)
    except BaseException:
        pictures.remove(app, key, prepared.animated)
        raise
    await _published(app, scope)
    return result


async def change_emote(
    app: web.Application, user: User, emote_id: int, code: Any, follower_only: bool | None
) -> dict[str, Any]:
    async with app[DB_KEY].session() as session:
        row = await store.get_emote(session, emote_id)
        scope = await _scope_of_row(session, user, row.channel_id)
        await store.update_emote(session, row, code=code, follower_only=follower_only)
        await session.commit()
        result = emote_json(row)
    await _published(app, scope)
    return result


async def remove_emote(app: web.Application, user: User, emote_id: int) -> None:
    async with app[DB_KEY].session() as session:
        row = await store.get_emote(session, emote_id)
        scope = await _scope_of_row(session, user, row.channel_id)
        key, animated = row.file_key, row.animated
        await store.delete_emote(session, row)
        await session.commit()
    pictures.remove(app, key, animated)
    await _published(app, scope)
