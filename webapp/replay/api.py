"""Chat replay and chapters of a past broadcast, as JSON.

``GET /api/videos/{id}/chat?from=&to=&limit=&cursor=``: the stream's messages from ``from``
(inclusive) to ``to`` (exclusive) seconds into the video, oldest first, deleted ones left out,
each with its ``offset`` on the video. A window spans at most ``replay.chat_window_max``
seconds (``replay.chat_window_seconds`` when ``to`` is left out); one holding more than
``limit`` messages answers a ``next_cursor`` to ask for the same window again with, until it is
null. The player asks for the window ahead of the playback position as it plays, and for the
window at the new position after a seek.

``GET /api/videos/{id}/chapters``: where the title or category changed while it was live.

Both reach a video as its page does (``stream_links.find_video``: a private one is its
owner's and the admins'; deleted, unknown and unreachable ones are the same 404), and a chat
that only logged-in users may read is replayed to logged-in users only.
"""

from __future__ import annotations

import math
from typing import Any

from aiohttp import web

from storage import replay as replay_store
from storage.errors import ValidationError
from storage.models import Channel, Stream

from ..errors import ApiError
from ..identity import current_user
from ..keys import DB_KEY, SETTINGS_KEY
from ..openapi import error_response, json_response
from ..parsing import query_int
from ..stream_links import STREAM_REF_DESCRIPTION, STREAM_REF_SCHEMA, find_video

NO_STORE = {"Cache-Control": "private, no-store"}
# The longest video offset a request may name (a year): beyond any recording, within floats.
MAX_OFFSET = 366 * 86400.0


async def load_video(request: web.Request, session: Any) -> tuple[Stream, Channel]:
    """The video ``{id}`` names if this caller may watch it; the API's 404 otherwise."""
    raw = request.match_info["id"]
    found = await find_video(request, session, raw)
    if found is None:
        raise ApiError(404, "not_found", f"no video {raw[:40]!r}")
    return found


def query_seconds(request: web.Request, name: str, default: float | None) -> float | None:
    """A query parameter as seconds into the video (0 to ``MAX_OFFSET``); 400 otherwise."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw) if len(raw) <= 32 else math.nan
    except ValueError:
        value = math.nan
    if not 0 <= value <= MAX_OFFSET:  # NaN fails too
        raise ApiError(
            400,
            "invalid",
            f"the query parameter {name!r} must be seconds from 0 to {MAX_OFFSET:.0f}",
        )
    return value


def message_json(m: replay_store.ReplayMessage) -> dict[str, Any]:
    return {
        "id": m.id,
        "offset": m.offset,
        "user": {"id": m.user_id, "username": m.username, "display_name": m.display_name},
        "content": m.content,
        "created_at": m.created_at.isoformat(),
    }


async def chat_replay(request: web.Request) -> web.Response:
    limits = request.app[SETTINGS_KEY].replay
    start = query_seconds(request, "from", 0.0)
    assert start is not None
    end = query_seconds(request, "to", None)
    end = start + limits.chat_window_seconds if end is None else end
    if end <= start:
        raise ApiError(400, "invalid", "'to' must be after 'from'")
    if end - start > limits.chat_window_max + 1e-9:
        raise ApiError(
            400,
            "invalid",
            f"a window spans at most {limits.chat_window_max:g} seconds ('to' minus 'from')",
        )
    limit = query_int(
        request, "limit", limits.chat_page_size, minimum=1, maximum=limits.chat_page_max
    )
    raw_cursor = request.query.get("cursor") or None
    try:
        cursor = replay_store.ChatCursor.decode(raw_cursor) if raw_cursor else None
    except ValidationError as exc:
        raise ApiError(400, "invalid", str(exc)) from None
    async with request.app[DB_KEY].session() as session:
        stream, channel = await load_video(request, session)
        if await replay_store.chat_for_logged_in_only(session, channel.id):
            if await current_user(request) is None:
                raise ApiError(401, "unauthenticated", "this chat is for logged-in users")
        rows, more = await replay_store.chat_window(
            session, stream, start, end, limit=limit, cursor=cursor
        )
    return web.json_response(
        {
            "from": start,
            "to": end,
            "duration": stream.vod_duration_seconds,
            "messages": [message_json(m) for m in rows],
            "next_cursor": more.encode() if more is not None else None,
        },
        headers=NO_STORE,
    )


async def chapters(request: web.Request) -> web.Response:
    async with request.app[DB_KEY].session() as session:
        stream, _ = await load_video(request, session)
        found = await replay_store.list_chapters(session, stream)
    return web.json_response(
        {
            "duration": stream.vod_duration_seconds,
            "chapters": [
                {
                    "offset": c.offset,
                    "title": c.title,
                    "category": (
                        {"id": c.category_id, "name": c.category_name}
                        if c.category_name is not None
                        else None
                    ),
                }
                for c in found
            ],
        },
        headers=NO_STORE,
    )


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/api/videos/{id}/chat", chat_replay)
    app.router.add_get("/api/videos/{id}/chapters", chapters)


# -- OpenAPI ---------------------------------------------------------------------------------

_ID_PARAM = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": STREAM_REF_DESCRIPTION,
    "schema": STREAM_REF_SCHEMA,
}


def _seconds(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"type": "number", "minimum": 0, "maximum": MAX_OFFSET},
    }


OPENAPI_SCHEMAS: dict[str, Any] = {
    "ReplayMessage": {
        "type": "object",
        "required": ["id", "offset", "user", "content", "created_at"],
        "properties": {
            "id": {"type": "integer"},
            "offset": {
                "type": "number",
                "minimum": 0,
                "description": "Seconds from the start of the video.",
            },
            "user": {
                "type": "object",
                "required": ["id", "username", "display_name"],
                "properties": {
                    "id": {"type": "integer"},
                    "username": {"type": "string"},
                    "display_name": {"type": "string"},
                },
            },
            "content": {"type": "string"},
            "created_at": {"type": "string", "format": "date-time"},
        },
    },
    "Chapter": {
        "type": "object",
        "required": ["offset", "title", "category"],
        "properties": {
            "offset": {
                "type": "number",
                "minimum": 0,
                "description": "Seconds from the start of the video.",
            },
            "title": {"type": "string"},
            "category": {
                "type": ["object", "null"],
                "required": ["id", "name"],
                "properties": {
                    "id": {"type": ["integer", "null"]},
                    "name": {"type": "string"},
                },
            },
        },
    },
}

OPENAPI_PATHS: dict[str, Any] = {
    "/api/videos/{id}/chat": {
        "parameters": [_ID_PARAM],
        "get": {
            "summary": "A past broadcast's chat, a time window at a time (chat replay)",
            "description": "Messages from `from` (inclusive) to `to` (exclusive) seconds into "
            "the video, oldest first, deleted ones left out. A window holding more than "
            "`limit` messages answers a `next_cursor`: ask for the same window with it.",
            "tags": ["videos"],
            "parameters": [
                _seconds("from", "Start of the window, seconds into the video (default 0)."),
                _seconds(
                    "to",
                    "End of the window (exclusive); default `from` plus the server's window "
                    "(replay.chat_window_seconds), at most replay.chat_window_max after `from`.",
                ),
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "description": "Most messages in this answer (replay.chat_page_max).",
                    "schema": {"type": "integer", "minimum": 1},
                },
                {
                    "name": "cursor",
                    "in": "query",
                    "required": False,
                    "description": "The next_cursor of the previous answer for this window.",
                    "schema": {"type": "string", "maxLength": 40},
                },
            ],
            "responses": {
                "200": json_response(
                    "A window of the chat",
                    {
                        "type": "object",
                        "required": ["from", "to", "duration", "messages", "next_cursor"],
                        "properties": {
                            "from": {"type": "number"},
                            "to": {"type": "number"},
                            "duration": {"type": ["number", "null"]},
                            "messages": {
                                "type": "array",
                                "items": {"$ref": "#/components/schemas/ReplayMessage"},
                            },
                            "next_cursor": {"type": ["string", "null"]},
                        },
                    },
                ),
                "401": error_response("The channel's chat is for logged-in users"),
                "404": {"$ref": "#/components/responses/NotFound"},
            },
        },
    },
    "/api/videos/{id}/chapters": {
        "parameters": [_ID_PARAM],
        "get": {
            "summary": "A past broadcast's chapters: where its title or category changed",
            "tags": ["videos"],
            "responses": {
                "200": json_response(
                    "Chapters in order (the first at 0)",
                    {
                        "type": "object",
                        "required": ["duration", "chapters"],
                        "properties": {
                            "duration": {"type": ["number", "null"]},
                            "chapters": {
                                "type": "array",
                                "items": {"$ref": "#/components/schemas/Chapter"},
                            },
                        },
                    },
                ),
                "404": {"$ref": "#/components/responses/NotFound"},
            },
        },
    },
}
