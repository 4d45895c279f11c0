"""Chat's JSON API: history, posting and deleting messages, moderation, blocks and reports.

Posting through the API runs exactly the socket's checks and is broadcast the same way. Errors
use the project's ``{"error": {"code", "message"}}`` shape; a refused send carries the same
``code`` a socket would get in its ``chat:error`` (``rate_limited``, ``slow_mode``,
``banned``…). Cookie callers need ``X-CSRF-Token`` on state-changing calls (the identity
middleware checks it); Bearer callers do not.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from storage import channels as channel_queries
from storage import chat as chat_store
from storage import queries
from storage import reports as report_store
from storage.chat import ChannelChatState
from storage.models import ReportStatus, User

from ..errors import ApiError
from ..identity import current_user, require_user
from ..keys import CHAT_KEY, DB_KEY
from ..openapi import SLUG_PARAM, error_response, json_body, json_response
from ..parsing import field, path_id, query_int, read_json
from ..stream_links import STREAM_REF_DESCRIPTION, STREAM_REF_SCHEMA, find_stream, load_stream
from .moderation import can_moderate
from .service import ChatService
from .socket import public_user

NO_STORE = {"Cache-Control": "no-store"}


def _service(request: web.Request) -> ChatService:
    return request.app[CHAT_KEY]


async def _channel_state(request: web.Request, slug: str | None = None) -> ChannelChatState:
    slug = slug if slug is not None else request.match_info["slug"]
    state = await _service(request).state(slug)
    if state is None:
        raise ApiError(404, "not_found", f"no channel {slug!r}")
    return state


async def _moderator(request: web.Request) -> tuple[ChannelChatState, User]:
    user = await require_user(request)
    state = await _channel_state(request)
    if not can_moderate(state, user):
        raise ApiError(
            403, "forbidden", "only the channel owner, its moderators and admins can do that"
        )
    return state, user


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, headers=NO_STORE)


# -- messages ------------------------------------------------------------------------------


async def stream_messages(request: web.Request) -> web.Response:
    service = _service(request)
    raw_stream = request.match_info["stream_id"]  # an id, or a public id (stream_links)
    limit_max = service.cs.history_page_max
    limit = query_int(request, "limit", min(50, limit_max), minimum=1, maximum=limit_max)
    before_id = query_int(request, "before", minimum=1)
    async with request.app[DB_KEY].session() as session:
        stream, channel = await load_stream(request, session, raw_stream)
        rows = await chat_store.stream_messages(session, stream.id, before=before_id, limit=limit)
        admins = await chat_store.admin_ids(session, {r.user_id for r in rows})
    state = await _channel_state(request, channel.slug)
    if state.logged_in_only and await current_user(request) is None:
        raise ApiError(401, "unauthenticated", "this chat is for logged-in users")
    messages = [service.message_event(state, r, r.user_id in admins) for r in rows]
    next_before = rows[0].id if len(rows) == limit else None
    return _json({"messages": messages, "next_before": next_before})


async def post_message(request: web.Request) -> web.Response:
    user = await require_user(request)
    body = await read_json(request)
    slug = field(body, "channel", str, required=False)
    stream_id = field(body, "stream_id", int, required=False)
    if slug is None and stream_id is None:
        raise ApiError(400, "missing_field", "give the channel (slug) or the stream_id")
    if slug is None:
        async with request.app[DB_KEY].session() as session:
            found = await find_stream(request, session, str(stream_id))
        if found is None:  # an unlisted channel's stream by its id, too (stream_links)
            raise ApiError(404, "not_found", f"no stream with id {stream_id}")
        slug = found[1].slug
    state = await _channel_state(request, slug)
    event = await _service(request).send(state, user, public_user(user), body.get("content"))
    return _json({"message": event}, status=201)


async def delete_message(request: web.Request) -> web.Response:
    user = await require_user(request)
    message_id = path_id(request, "message_id", "message")
    event = await _service(request).delete_message(user, message_id)
    return _json({"deleted": event["id"]})


# -- moderation ----------------------------------------------------------------------------


async def get_settings(request: web.Request) -> web.Response:
    state, _ = await _moderator(request)
    return _json({"settings": chat_store.chat_settings_dict(state)})


async def patch_settings(request: web.Request) -> web.Response:
    state, _ = await _moderator(request)
    cs = _service(request).cs
    values = chat_store.validate_chat_settings(
        await read_json(request),
        max_slow_mode=cs.max_slow_mode_seconds,
        max_words=cs.max_filter_words,
    )
    async with request.app[DB_KEY].session() as session:
        await chat_store.update_chat_settings(session, state.channel_id, values)
        await session.commit()
    new = await _service(request).changed(state.slug)
    assert new is not None
    return _json({"settings": chat_store.chat_settings_dict(new)})


async def _owner(request: web.Request) -> tuple[ChannelChatState, User]:
    user = await require_user(request)
    state = await _channel_state(request)
    if not (user.is_admin or user.id == state.owner_id):
        raise ApiError(403, "forbidden", "only the channel owner (or an admin) manages moderators")
    return state, user


async def list_moderators(request: web.Request) -> web.Response:
    state, _ = await _moderator(request)
    async with request.app[DB_KEY].session() as session:
        mods = await chat_store.list_moderators(session, state.channel_id)
    return _json({"moderators": mods})


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
    await _service(request).changed(state.slug)
    return _json({"user_id": target.id, "moderator": True}, status=201 if added else 200)


async def remove_moderator(request: web.Request) -> web.Response:
    state, _ = await _owner(request)
    user_id = path_id(request, "user_id", "user")
    async with request.app[DB_KEY].session() as session:
        removed = await chat_store.remove_moderator(session, state.channel_id, user_id)
        await session.commit()
    if not removed:
        raise ApiError(404, "not_found", f"user {user_id} is not a moderator here")
    await _service(request).changed(state.slug)
    return _json({"user_id": user_id, "moderator": False})


async def list_bans(request: web.Request) -> web.Response:
    state, _ = await _moderator(request)
    async with request.app[DB_KEY].session() as session:
        bans = await chat_store.list_bans(session, state.channel_id)
    return _json({"bans": bans})


async def add_ban(request: web.Request) -> web.Response:
    state, actor = await _moderator(request)
    body = await read_json(request)
    target = await _user_by_ref(request, body)
    result = await _service(request).ban(
        state, actor, target.id, field(body, "reason", str, required=False, default="")
    )
    return _json(result, status=201)


async def remove_ban(request: web.Request) -> web.Response:
    state, actor = await _moderator(request)
    user_id = path_id(request, "user_id", "user")
    done = await _service(request).unban(state, actor, user_id)
    if not done:
        raise ApiError(404, "not_found", f"user {user_id} is not banned here")
    return _json({"user_id": user_id, "banned": False})


async def add_timeout(request: web.Request) -> web.Response:
    state, actor = await _moderator(request)
    body = await read_json(request)
    target = await _user_by_ref(request, body)
    result = await _service(request).timeout(state, actor, target.id, field(body, "seconds", int))
    return _json(result, status=201)


async def remove_timeout(request: web.Request) -> web.Response:
    state, actor = await _moderator(request)
    user_id = path_id(request, "user_id", "user")
    done = await _service(request).untimeout(state, actor, user_id)
    if not done:
        raise ApiError(404, "not_found", f"user {user_id} is not timed out here")
    return _json({"user_id": user_id, "timed_out": False})


# -- blocks and reports --------------------------------------------------------------------


async def block_user(request: web.Request) -> web.Response:
    user = await require_user(request)
    target = path_id(request, "user_id", "user")
    async with request.app[DB_KEY].session() as session:
        added = await chat_store.block(session, user.id, target)
        await session.commit()
    _service(request).blocks_changed(user.id)
    return _json({"user_id": target, "blocked": True}, status=201 if added else 200)


async def unblock_user(request: web.Request) -> web.Response:
    user = await require_user(request)
    target = path_id(request, "user_id", "user")
    async with request.app[DB_KEY].session() as session:
        removed = await chat_store.unblock(session, user.id, target)
        await session.commit()
    if not removed:
        raise ApiError(404, "not_found", f"you have not blocked user {target}")
    _service(request).blocks_changed(user.id)
    return _json({"user_id": target, "blocked": False})


async def list_blocks(request: web.Request) -> web.Response:
    user = await require_user(request)
    async with request.app[DB_KEY].session() as session:
        ids = await chat_store.blocked_ids(session, user.id)
        users = await chat_store.user_public(session, sorted(ids))
    return _json({"blocked": [users[i] for i in sorted(users)]})


async def create_report(request: web.Request) -> web.Response:
    user = await require_user(request)
    body = await read_json(request)
    message_id = field(body, "message_id", int, required=False)
    target_id = field(body, "user_id", int, required=False)
    slug = field(body, "channel", str, required=False)
    reason = field(body, "reason", str)
    details = field(body, "details", str, required=False, default="")
    channel_id = None
    async with request.app[DB_KEY].session() as session:
        if message_id is not None:
            msg = await chat_store.get_message(session, message_id)
            if msg is None:
                raise ApiError(404, "not_found", f"no message with id {message_id}")
            channel_id, target_id = msg.channel_id, msg.user_id
        elif target_id is not None:
            if await chat_store.get_user(session, target_id) is None:
                raise ApiError(404, "not_found", f"no user with id {target_id}")
        else:
            raise ApiError(
                400, "missing_field", "report a message (message_id) or a user (user_id)"
            )
        if slug is not None and channel_id is None:
            found = await channel_queries.channel_with_owner(session, slug)
            if found is None:
                raise ApiError(404, "not_found", f"no channel {slug!r}")
            channel_id = found.channel.id
        if channel_id is None:
            raise ApiError(
                400, "missing_field", "a user report needs the channel (slug) it is about"
            )
        report = await report_store.create_report(
            session,
            reporter_id=user.id,
            channel_id=channel_id,
            message_id=message_id,
            target_user_id=target_id,
            reason=reason,
            details=details,
        )
        await session.commit()
    return _json({"id": report.id, "status": report.status.value}, status=201)


async def moderated_channel_ids(request: web.Request, user: User) -> list[int]:
    """Channels whose reports ``user`` may see: owned or moderated (all for an admin)."""
    async with request.app[DB_KEY].session() as session:
        return await report_store.moderated_channel_ids(session, user.id, is_admin=user.is_admin)


async def list_reports(request: web.Request) -> web.Response:
    user = await require_user(request)
    ids = await moderated_channel_ids(request, user)
    slug = request.query.get("channel")
    if slug:
        state = await _channel_state(request, slug)
        if state.channel_id not in ids:
            raise ApiError(403, "forbidden", "you do not moderate this channel")
        ids = [state.channel_id]
    wanted = request.query.get("status", "open")
    if wanted not in ("open", "resolved", "dismissed", "all"):
        raise ApiError(400, "invalid", "status must be open, resolved, dismissed or all")
    status = None if wanted == "all" else ReportStatus(wanted)
    async with request.app[DB_KEY].session() as session:
        reports = await report_store.channel_reports(session, ids, status=status)
    return _json({"reports": reports})


async def resolve_report(request: web.Request) -> web.Response:
    user = await require_user(request)
    report_id = path_id(request, "report_id", "report")
    body = await read_json(request)
    status = field(body, "status", str, required=False, default="resolved")
    if status not in ("resolved", "dismissed"):
        raise ApiError(400, "invalid", "status must be resolved or dismissed")
    async with request.app[DB_KEY].session() as session:
        report = await report_store.get_report(session, report_id)
    if report is None or report.channel_id not in await moderated_channel_ids(request, user):
        raise ApiError(404, "not_found", f"no report {report_id} in a channel you moderate")
    async with request.app[DB_KEY].session() as session:
        await report_store.resolve_report(
            session, report_id, ReportStatus(status), user.id, datetime.now(UTC)
        )
        await session.commit()
    return _json({"id": report_id, "status": status})


def setup_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/streams/{stream_id}/messages", stream_messages)
    r.add_post("/api/messages", post_message)
    r.add_delete("/api/messages/{message_id}", delete_message)
    r.add_get("/api/channels/{slug}/chat/settings", get_settings)
    r.add_patch("/api/channels/{slug}/chat/settings", patch_settings)
    r.add_get("/api/channels/{slug}/moderators", list_moderators)
    r.add_post("/api/channels/{slug}/moderators", add_moderator)
    r.add_delete("/api/channels/{slug}/moderators/{user_id}", remove_moderator)
    r.add_get("/api/channels/{slug}/bans", list_bans)
    r.add_post("/api/channels/{slug}/bans", add_ban)
    r.add_delete("/api/channels/{slug}/bans/{user_id}", remove_ban)
    r.add_post("/api/channels/{slug}/timeouts", add_timeout)
    r.add_delete("/api/channels/{slug}/timeouts/{user_id}", remove_timeout)
    r.add_get("/api/blocks", list_blocks)
    r.add_post("/api/users/{user_id}/block", block_user)
    r.add_delete("/api/users/{user_id}/block", unblock_user)
    r.add_post("/api/reports", create_report)
    r.add_get("/api/reports", list_reports)
    r.add_post("/api/reports/{report_id}/resolve", resolve_report)


# -- OpenAPI ---------------------------------------------------------------------------------

_USER = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "username": {"type": "string"},
        "display_name": {"type": "string"},
    },
}
_MESSAGE = {
    "type": "object",
    "required": ["type", "id", "user", "content", "created_at"],
    "properties": {
        "type": {"const": "chat:message"},
        "id": {"type": "integer"},
        "user": {
            **_USER,
            "properties": {
                **_USER["properties"],
                "badges": {"type": "array", "items": {"enum": ["owner", "moderator", "admin"]}},
            },
        },
        "content": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"},
    },
}
_SETTINGS = {
    "type": "object",
    "properties": {
        "slow_mode_seconds": {"type": "integer", "minimum": 0},
        "followers_only": {"type": "boolean"},
        "logged_in_only": {"type": "boolean"},
        "word_filter": {"type": "array", "items": {"type": "string"}},
        "filter_mode": {"enum": ["mask", "reject"]},
    },
}
_USER_REF = {
    "type": "object",
    "properties": {"user_id": {"type": "integer"}, "username": {"type": "string"}},
}
_UID = {"name": "user_id", "in": "path", "required": True, "schema": {"type": "integer"}}
_AUTH = error_response("Not logged in")
_FORBIDDEN = error_response("Not the owner, a moderator or an admin of this channel")
_OK = json_response("Done", {"type": "object"})
_REFUSED = error_response(
    "Refused: invalid, banned, timed out, slow mode, rate limited "
    "(Retry-After), filtered, or storing failed (503)"
)


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
        "parameters": [SLUG_PARAM] + ([_UID] if path_user else []),
        "responses": {
            "200": _OK,
            "401": _AUTH,
            "403": _FORBIDDEN,
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
    "/api/streams/{stream_id}/messages": {
        "get": {
            "summary": "A page of a stream's chat (oldest first); pass next_before as before",
            "tags": ["chat"],
            "parameters": [
                {
                    "name": "stream_id",
                    "in": "path",
                    "required": True,
                    "description": STREAM_REF_DESCRIPTION,
                    "schema": STREAM_REF_SCHEMA,
                },
                {"name": "before", "in": "query", "schema": {"type": "integer", "minimum": 1}},
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 100},
                },
            ],
            "responses": {
                "200": json_response(
                    "Messages",
                    {
                        "type": "object",
                        "properties": {
                            "messages": {"type": "array", "items": _MESSAGE},
                            "next_before": {"type": ["integer", "null"]},
                        },
                    },
                ),
                "404": error_response("No such stream"),
            },
        }
    },
    "/api/messages": {
        "post": {
            "summary": "Post a chat message (same checks as the WebSocket), then broadcast it",
            "tags": ["chat"],
            "requestBody": json_body(
                {
                    "type": "object",
                    "required": ["content"],
                    "properties": {
                        "channel": {"type": "string"},
                        "stream_id": {"type": "integer"},
                        "content": {"type": "string", "maxLength": 500},
                    },
                }
            ),
            "responses": {
                "201": json_response(
                    "Stored and broadcast", {"type": "object", "properties": {"message": _MESSAGE}}
                ),
                "400": _REFUSED,
                "401": _AUTH,
                "403": _REFUSED,
                "404": error_response("No such channel or stream"),
                "429": _REFUSED,
                "503": _REFUSED,
            },
        }
    },
    "/api/messages/{message_id}": {
        "delete": {
            "summary": "Soft-delete a message (owner, moderators, admins); chat:deleted to all",
            "tags": ["chat"],
            "parameters": [
                {
                    "name": "message_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "integer"},
                }
            ],
            "responses": {
                "200": _OK,
                "401": _AUTH,
                "403": _FORBIDDEN,
                "404": error_response("No such message"),
            },
        }
    },
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
    "/api/blocks": {
        "get": {
            "summary": "Users you blocked",
            "tags": ["chat"],
            "responses": {"200": _OK, "401": _AUTH},
        }
    },
    "/api/users/{user_id}/block": {
        "post": {
            "summary": "Block (ignore) a user: their messages are not delivered to you",
            "tags": ["chat"],
            "parameters": [_UID],
            "responses": {
                "201": _OK,
                "200": _OK,
                "400": error_response("Yourself"),
                "401": _AUTH,
                "404": error_response("No such user"),
            },
        },
        "delete": {
            "summary": "Unblock a user",
            "tags": ["chat"],
            "parameters": [_UID],
            "responses": {"200": _OK, "401": _AUTH, "404": error_response("Not blocked")},
        },
    },
    "/api/reports": {
        "post": {
            "summary": "Report a message or a user to the channel's moderators",
            "tags": ["chat"],
            "requestBody": json_body(
                {
                    "type": "object",
                    "required": ["reason"],
                    "properties": {
                        "message_id": {"type": "integer"},
                        "user_id": {"type": "integer"},
                        "channel": {"type": "string"},
                        "reason": {"type": "string", "maxLength": 64},
                        "details": {"type": "string", "maxLength": 1000},
                    },
                }
            ),
            "responses": {
                "201": _OK,
                "400": error_response("Missing or invalid field"),
                "401": _AUTH,
                "404": error_response("No such message/user"),
            },
        },
        "get": {
            "summary": "Reports about channels you own or moderate (?channel=&status=)",
            "tags": ["chat"],
            "parameters": [
                {"name": "channel", "in": "query", "schema": {"type": "string"}},
                {
                    "name": "status",
                    "in": "query",
                    "schema": {"enum": ["open", "resolved", "dismissed", "all"], "default": "open"},
                },
            ],
            "responses": {
                "200": _OK,
                "401": _AUTH,
                "403": _FORBIDDEN,
                "404": error_response("No such channel"),
            },
        },
    },
    "/api/reports/{report_id}/resolve": {
        "post": {
            "summary": "Resolve or dismiss a report",
            "tags": ["chat"],
            "parameters": [
                {"name": "report_id", "in": "path", "required": True, "schema": {"type": "integer"}}
            ],
            "requestBody": json_body(
                {"type": "object", "properties": {"status": {"enum": ["resolved", "dismissed"]}}}
            ),
            "responses": {"200": _OK, "401": _AUTH, "404": error_response("No such report")},
        }
    },
}
