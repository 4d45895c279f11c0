"""Chat messages through the JSON API: a stream's history page by page, posting, deleting.

Posting runs exactly the socket's checks (``ChatService.send``) and is broadcast the same way; a
refused send answers with the ``code`` a socket would get in its ``chat:error``
(``rate_limited``, ``slow_mode``, ``banned``…).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from storage import chat as chat_store
from storage import raids as raid_store

from ..errors import ApiError
from ..identity import current_user, require_user
from ..keys import DB_KEY
from ..openapi import error_response, json_body, json_response
from ..parsing import field, path_id, query_int, read_json
from ..stream_links import STREAM_REF_DESCRIPTION, STREAM_REF_SCHEMA, find_stream, load_stream
from .api_context import (
    DONE,
    NOT_MODERATOR,
    UNAUTHENTICATED,
    channel_state,
    chat_service,
    json_reply,
)
from .socket import public_user


async def stream_messages(request: web.Request) -> web.Response:
    service = chat_service(request)
    raw_stream = request.match_info["stream_id"]  # an id, or a public id (stream_links)
    limit_max = service.cs.history_page_max
    limit = query_int(request, "limit", min(50, limit_max), minimum=1, maximum=limit_max)
    before_id = query_int(request, "before", minimum=1)
    async with request.app[DB_KEY].session() as session:
        stream, channel = await load_stream(request, session, raw_stream)
        rows = await chat_store.stream_messages(session, stream.id, before=before_id, limit=limit)
        admins = await chat_store.admin_ids(session, {r.user_id for r in rows})
        since = await raid_store.follow_dates(session, channel.id, {r.user_id for r in rows})
    state = await channel_state(request, channel.slug)
    if state.logged_in_only and await current_user(request) is None:
        raise ApiError(401, "unauthenticated", "this chat is for logged-in users")
    messages = [
        service.message_event(state, r, r.user_id in admins, since.get(r.user_id)) for r in rows
    ]
    next_before = rows[0].id if len(rows) == limit else None
    return json_reply({"messages": messages, "next_before": next_before})


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
    state = await channel_state(request, slug)
    event = await chat_service(request).send(state, user, public_user(user), body.get("content"))
    return json_reply({"message": event}, status=201)


async def delete_message(request: web.Request) -> web.Response:
    user = await require_user(request)
    message_id = path_id(request, "message_id", "message")
    event = await chat_service(request).delete_message(user, message_id)
    return json_reply({"deleted": event["id"]})


# -- OpenAPI ---------------------------------------------------------------------------------

_USER: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "username": {"type": "string"},
        "display_name": {"type": "string"},
    },
}
_MESSAGE: dict[str, Any] = {
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
_REFUSED = error_response(
    "Refused: invalid, banned, timed out, slow mode, rate limited "
    "(Retry-After), filtered, or storing failed (503)"
)


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
                "401": UNAUTHENTICATED,
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
                "200": DONE,
                "401": UNAUTHENTICATED,
                "403": NOT_MODERATOR,
                "404": error_response("No such message"),
            },
        }
    },
}
