"""The watch-history JSON API: the player page's heartbeat, and a user's own history.

Routes: ``POST /api/watch/heartbeat`` (``{"slug": ...}`` while a logged-in player plays),
``GET /api/me/history`` (newest first, ``?limit=&before=``), ``DELETE /api/me/history``
(clear all) and ``DELETE /api/me/history/{id}`` (one entry). Every route needs a login (cookie
with the CSRF header for writes, or a bearer token) and acts on the caller's rows only: an
entry of another user answers 404 like one that does not exist.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from storage import history as history_queries
from storage.history import HistoryEntry

from ..errors import ApiError
from ..identity import require_user
from ..keys import DB_KEY, REGISTRY_KEY, SETTINGS_KEY
from ..openapi import error_response, json_body, json_response
from ..parsing import field, path_id, query_int, read_json
from .tracker import WatchTracker

TRACKER_KEY = web.AppKey("watch_tracker", WatchTracker)
NO_STORE = {"Cache-Control": "no-store"}


def entry_json(entry: HistoryEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "channel": {
            "slug": entry.channel_slug,
            "name": entry.channel_name,
            "url": f"/streams/{entry.channel_slug}",
        },
        "stream_id": entry.stream_id,
        "stream_title": entry.stream_title,
        "started_at": entry.started_at.isoformat(),
        "last_seen_at": entry.last_seen_at.isoformat(),
        "watched_seconds": entry.watched_seconds,
    }


async def heartbeat(request: web.Request) -> web.Response:
    user = await require_user(request)
    body = await read_json(request)
    slug = field(body, "slug", str)
    live = request.app[REGISTRY_KEY].get(slug)
    if live is None or live.ended:
        raise ApiError(409, "not_live", f"channel {slug[:64]!r} is not live")
    recorded = request.app[TRACKER_KEY].beat(user.id, live.channel_id, live.stream_id)
    return web.json_response(
        {
            "recorded": recorded,
            "stream_id": live.stream_id,
            "next_in": request.app[SETTINGS_KEY].history.heartbeat_interval,
        },
        headers=NO_STORE,
    )


async def history_list(request: web.Request) -> web.Response:
    user = await require_user(request)
    limits = request.app[SETTINGS_KEY].history
    limit = query_int(request, "limit", limits.page_size, minimum=1, maximum=limits.page_max)
    before = query_int(request, "before", minimum=1)
    async with request.app[DB_KEY].session() as session:
        entries = await history_queries.list_history(
            session, user.id, limit=limit + 1, before_id=before
        )
    more = len(entries) > limit
    entries = entries[:limit]
    return web.json_response(
        {
            "entries": [entry_json(e) for e in entries],
            "next_before": entries[-1].id if more and entries else None,
        },
        headers=NO_STORE,
    )


async def clear_all(request: web.Request, user_id: int) -> int:
    """Delete every entry of ``user_id`` (in memory and in the database); how many rows."""
    deleted = 0

    async def delete() -> None:
        nonlocal deleted
        async with request.app[DB_KEY].session() as session:
            deleted = await history_queries.clear_history(session, user_id)
            await session.commit()

    await request.app[TRACKER_KEY].forget(user_id, None, delete)
    return deleted


async def delete_one(request: web.Request, user_id: int, entry_id: int) -> bool:
    """Delete one entry of ``user_id``; False when they have none with that id."""
    found = False

    async def delete() -> None:
        nonlocal found
        async with request.app[DB_KEY].session() as session:
            found = await history_queries.delete_entry(session, user_id, entry_id)
            await session.commit()

    await request.app[TRACKER_KEY].forget(user_id, entry_id, delete)
    return found


async def history_clear(request: web.Request) -> web.Response:
    user = await require_user(request)
    deleted = await clear_all(request, user.id)
    return web.json_response({"deleted": deleted}, headers=NO_STORE)


async def history_delete(request: web.Request) -> web.Response:
    user = await require_user(request)
    entry_id = path_id(request, "id", "history entry")
    if not await delete_one(request, user.id, entry_id):
        raise ApiError(404, "not_found", f"no history entry with id {entry_id}")
    return web.json_response({"deleted": 1}, headers=NO_STORE)


def setup_routes(app: web.Application) -> None:
    app.router.add_post("/api/watch/heartbeat", heartbeat)
    app.router.add_get("/api/me/history", history_list)
    app.router.add_delete("/api/me/history", history_clear)
    app.router.add_delete("/api/me/history/{id}", history_delete)


# -- OpenAPI -------------------------------------------------------------------------------

_AUTH_ERRORS = {
    "401": {"$ref": "#/components/responses/Unauthenticated"},
    "403": {"$ref": "#/components/responses/Forbidden"},
}
_DELETED = {
    "type": "object",
    "required": ["deleted"],
    "properties": {"deleted": {"type": "integer", "minimum": 0}},
}

OPENAPI_SCHEMAS: dict[str, Any] = {
    "HistoryEntry": {
        "type": "object",
        "required": [
            "id",
            "channel",
            "stream_id",
            "stream_title",
            "started_at",
            "last_seen_at",
            "watched_seconds",
        ],
        "properties": {
            "id": {"type": "integer"},
            "channel": {
                "type": "object",
                "required": ["slug", "name", "url"],
                "properties": {
                    "slug": {"type": "string"},
                    "name": {"type": "string"},
                    "url": {"type": "string"},
                },
            },
            "stream_id": {"type": ["integer", "null"]},
            "stream_title": {"type": ["string", "null"]},
            "started_at": {"type": "string", "format": "date-time"},
            "last_seen_at": {"type": "string", "format": "date-time"},
            "watched_seconds": {"type": "integer", "minimum": 0},
        },
    }
}

OPENAPI_PATHS: dict[str, Any] = {
    "/api/watch/heartbeat": {
        "post": {
            "summary": "Say that you are playing a channel's live stream (the player page "
            "sends this while it plays; it becomes your watch history)",
            "tags": ["history"],
            "requestBody": json_body(
                {
                    "type": "object",
                    "required": ["slug"],
                    "properties": {"slug": {"type": "string"}},
                }
            ),
            "responses": {
                "200": json_response(
                    "Heartbeat taken",
                    {
                        "type": "object",
                        "required": ["recorded", "stream_id", "next_in"],
                        "properties": {
                            "recorded": {
                                "type": "boolean",
                                "description": "False when the server tracks too many "
                                "sessions (yours or in all) to record this one.",
                            },
                            "stream_id": {"type": "integer"},
                            "next_in": {
                                "type": "number",
                                "description": "Seconds until the next heartbeat is due.",
                            },
                        },
                    },
                ),
                "409": error_response("The channel is not live (or does not exist)"),
                **_AUTH_ERRORS,
            },
        }
    },
    "/api/me/history": {
        "get": {
            "summary": "Your watch history, newest first",
            "tags": ["history"],
            "parameters": [
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 1},
                },
                {
                    "name": "before",
                    "in": "query",
                    "required": False,
                    "description": "The next_before of the previous page.",
                    "schema": {"type": "integer", "minimum": 1},
                },
            ],
            "responses": {
                "200": json_response(
                    "History entries",
                    {
                        "type": "object",
                        "required": ["entries", "next_before"],
                        "properties": {
                            "entries": {
                                "type": "array",
                                "items": {"$ref": "#/components/schemas/HistoryEntry"},
                            },
                            "next_before": {"type": ["integer", "null"]},
                        },
                    },
                ),
                "401": {"$ref": "#/components/responses/Unauthenticated"},
            },
        },
        "delete": {
            "summary": "Clear your watch history",
            "tags": ["history"],
            "responses": {"200": json_response("Cleared", _DELETED), **_AUTH_ERRORS},
        },
    },
    "/api/me/history/{id}": {
        "parameters": [
            {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
        ],
        "delete": {
            "summary": "Delete one entry of your watch history",
            "tags": ["history"],
            "responses": {
                "200": json_response("Deleted", _DELETED),
                "404": {"$ref": "#/components/responses/NotFound"},
                **_AUTH_ERRORS,
            },
        },
    },
}
