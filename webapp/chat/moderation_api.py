"""A channel's chat moderation through the JSON API: its chat settings, moderators, bans and
timeouts.

The channel's owner, its moderators and admins read and change the settings, bans and
timeouts; only the owner (or an admin) appoints and removes moderators. Bans and timeouts go
through ``ChatService`` like a moderator's socket frames, so they reach the sockets at once;
every other change reloads the channel's chat state in every process (``ChatService.changed``).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from storage import chat as chat_store
from storage import queries
from storage.chat import ChannelChatState
from storage.models import User

from ..errors import ApiError
from ..identity import require_user
from ..keys import DB_KEY
from ..openapi import SLUG_PARAM, error_response, json_body, json_response
from ..parsing import field, path_id, read_json
from .api_context import (
    DONE,
    NOT_MODERATOR,
    UNAUTHENTICATED,
    USER_ID_PARAM,
    channel_state,
    chat_service,
    json_reply,
)
from .moderation import can_moderate


async def _moderator(request: web.Request) -> tuple[ChannelChatState, User]:
    user = await require_user(request)
    state = await channel_state(request)
    if not can_moderate(state, user):
        raise ApiError(
            403, "forbidden", "only the channel owner, its moderators and admins can do that"
        )
    return state, user


async def get_settings(request: web.Request) -> web.Response:
    state, _ = await _moderator(request)
    return json_reply({"settings": chat_store.chat_settings_dict(state)})


async def patch_settings(request: web.Request) -> web.Response:
    state, _ = await _moderator(request)
    cs = chat_service(request).cs
    values = chat_store.validate_chat_settings(
        await read_json(request),
        max_slow_mode=cs.max_slow_mode_seconds,
        max_words=cs.max_filter_words,
    )
    async with request.app[DB_KEY].session() as session:
        await chat_store.update_chat_settings(session, state.channel_id, values)
        await session.commit()
    new = await chat_service(request).changed(state.slug)
    assert new is not None
    return json_reply({"settings": chat_store.chat_settings_dict(new)})


async def _owner(request: web.Request) -> tuple[ChannelChatState, User]:
    user = await require_user(request)
    state = await channel_state(request)
    if not (user.is_admin or user.id == state.owner_id):
        raise ApiError(403, "forbidden", "only the channel owner (or an admin) manages moderators")
    return state, user


async def list_moderators(request: web.Request) -> web.Response:
    state, _ = await _moderator(request)
    async with request.app[DB_KEY].session() as session:
        mods = await chat_store.list_moderators(session, state.channel_id)
    return json_reply({"moderators": mods})


async def _user_by_ref(request: web.Request, body: dict[str, Any]) -> User:
    """The user a body names by ``user_id`` or ``username``."""
    user_id = field(body, "user_id", int, required=False)
    username = field(body, "username", str, required=False)
    async with request.app[DB_KEY].session() as session:
        if user_id is not None:
            target = await chat_store.get_user(session, user_id)
        elif username is not None:
            target = await queries.get_user_by_username(session, username.strip().lower())
        else:
            raise ApiError(400, "missing_field", "give the user_id or the username")
    if target is None:
        raise ApiError(404, "not_found", "no such user")
    return target


async def add_moderator(request: web.Request) -> web.Response:
    state, actor = await _owner(request)
    target = await _user_by_ref(request, await read_json(request))
    if target.id == state.owner_id:
        raise ApiError(400, "invalid", "the owner already moderates their channel")
    async with request.app[DB_KEY].session() as session:
        added = await chat_store.add_moderator(session, state.channel_id, target.id, actor.id)
        await session.commit()
    await chat_service(request).changed(state.slug)
    return json_reply({"user_id": target.id, "moderator": True}, status=201 if added else 200)


async def remove_moderator(request: web.Request) -> web.Response:
    state, _ = await _owner(request)
    user_id = path_id(request, "user_id", "user")
    async with request.app[DB_KEY].session() as session:
        removed = await chat_store.remove_moderator(session, state.channel_id, user_id)
        await session.commit()
    if not removed:
        raise ApiError(404, "not_found", f"user {user_id} is not a moderator here")
    await chat_service(request).changed(state.slug)
    return json_reply({"user_id": user_id, "moderator": False})


async def list_bans(request: web.Request) -> web.Response:
    state, _ = await _moderator(request)
    async with request.app[DB_KEY].session() as session:
        bans = await chat_store.list_bans(session, state.channel_id)
    return json_reply({"bans": bans})


async def add_ban(request: web.Request) -> web.Response:
    state, actor = await _moderator(request)
    body = await read_json(request)
    target = await _user_by_ref(request, body)
    result = await chat_service(request).ban(
        state, actor, target.id, field(body, "reason", str, required=False, default="")
    )
    return json_reply(result, status=201)


async def remove_ban(request: web.Request) -> web.Response:
    state, actor = await _moderator(request)
    user_id = path_id(request, "user_id", "user")
    done = await chat_service(request).unban(state, actor, user_id)
    if not done:
        raise ApiError(404, "not_found", f"user {user_id} is not banned here")
    return json_reply({"user_id": user_id, "banned": False})


async def add_timeout(request: web.Request) -> web.Response:
    state, actor = await _moderator(request)
    body = await read_json(request)
    target = await _user_by_ref(request, body)
    result = await chat_service(request).timeout(
        state, actor, target.id, field(body, "seconds", int)
    )
    return json_reply(result, status=201)


async def remove_timeout(request: web.Request) -> web.Response:
    state, actor = await _moderator(request)
    user_id = path_id(request, "user_id", "user")
    done = await chat_service(request).untimeout(state, actor, user_id)
    if not done:
        raise ApiError(404, "not_found", f"user {user_id} is not timed out here")
    return json_reply({"user_id": user_id, "timed_out": False})


# -- OpenAPI ---------------------------------------------------------------------------------

_SETTINGS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "slow_mode_seconds": {"type": "integer", "minimum": 0},
        "followers_only": {"type": "boolean"},
        "logged_in_only": {"type": "boolean"},
        "word_filter": {"type": "array", "items": {"type": "string"}},
        "filter_mode": {"enum": ["mask", "reject"]},
    },
}
_USER_REF: dict[str, Any] = {
    "type": "object",
    "properties": {"user_id": {"type": "integer"}, "username": {"type": "string"}},
}


def _mod_op(
    summary: str,
    body: dict[str, Any] | None = None,
    *,
    path_user: bool = False,
    creates: bool = False,
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "tags": ["chat"],
        "parameters": [SLUG_PARAM] + ([USER_ID_PARAM] if path_user else []),
        "responses": {
            "200": DONE,
            "401": UNAUTHENTICATED,
            "403": NOT_MODERATOR,
            "404": error_response("No such channel or user"),
        },
    }
    if path_user:
        op["responses"]["400"] = error_response("Not to yourself")
    if creates:
        op["responses"]["201"] = json_response("Added", {"type": "object"})
    if body is not None:
        op["requestBody"] = json_body(body)
    return op


OPENAPI_PATHS: dict[str, Any] = {
    "/api/channels/{slug}/chat/settings": {
        "get": _mod_op("The channel's chat rules"),
        "patch": _mod_op(
            "Change slow mode, followers-only, logged-in-only, word filter", _SETTINGS
        ),
    },
    "/api/channels/{slug}/moderators": {
        "get": _mod_op("The channel's moderators"),
        "post": _mod_op("Appoint a moderator (owner or admin)", _USER_REF, creates=True),
    },
    "/api/channels/{slug}/moderators/{user_id}": {
        "delete": _mod_op("Remove a moderator (owner or admin)", path_user=True)
    },
    "/api/channels/{slug}/bans": {
        "get": _mod_op("Users banned from the chat"),
        "post": _mod_op(
            "Ban a user from the chat",
            {
                **_USER_REF,
                "properties": {
                    **_USER_REF["properties"],
                    "reason": {"type": "string", "maxLength": 200},
                },
            },
            creates=True,
        ),
    },
    "/api/channels/{slug}/bans/{user_id}": {"delete": _mod_op("Unban", path_user=True)},
    "/api/channels/{slug}/timeouts": {
        "post": _mod_op(
            "Time a user out for N seconds",
            {
                **_USER_REF,
                "required": ["seconds"],
                "properties": {
                    **_USER_REF["properties"],
                    "seconds": {"type": "integer", "minimum": 1},
                },
            },
            creates=True,
        )
    },
    "/api/channels/{slug}/timeouts/{user_id}": {
        "delete": _mod_op("End a timeout early", path_user=True)
    },
}
