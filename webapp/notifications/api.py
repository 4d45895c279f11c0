"""The notifications JSON API, the bell's event stream and the Follow button's bell toggle.

``GET /api/notifications`` (newest first, ``?before=`` continues), ``POST
/api/notifications/{id}/read``, ``POST /api/notifications/read-all``, ``GET
/api/notifications/unread-count``; ``GET/PUT /api/channels/{slug}/follow/notify`` (the follow's
bell). Only the logged-in user's own notifications exist for them: another user's id answers
404 like one that does not exist.

``GET /notifications/events`` is the bell's Server-Sent Events stream (``event: unread``, data
``{"unread": N}``), kept outside ``/api/`` because it never ends: the OpenAPI document and its
fuzzer describe request/response routes.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from storage import follows
from storage import notifications as store
from storage.discovery_models import Notification
from storage.errors import NotFoundError

from ..documents import load_channel
from ..errors import ApiError
from ..identity import require_user, still_signed_in
from ..keys import DB_KEY, SETTINGS_KEY
from ..openapi import SLUG_PARAM, json_body, json_response
from ..parsing import field, path_id, query_int, read_json
from .state import NOTIFY_KEY

NO_STORE = {"Cache-Control": "no-store"}


def notification_json(row: Notification) -> dict[str, Any]:
    p = row.payload or {}
    slug = p.get("channel_slug")
    return {
        "id": row.id,
        "kind": row.kind,
        "created_at": row.created_at.isoformat(),
        "read": row.read_at is not None,
        "channel_slug": slug,
        "channel_name": p.get("channel_name"),
        "title": p.get("title"),
        "category": p.get("category"),
        "url": f"/streams/{slug}" if slug else None,
    }


async def list_notifications(request: web.Request) -> web.Response:
    user = await require_user(request)
    n = request.app[SETTINGS_KEY].notifications
    limit = query_int(request, "limit", n.page_size, minimum=1, maximum=n.page_max)
    before = query_int(request, "before", minimum=1)
    async with request.app[DB_KEY].session() as session:
        rows = await store.page(session, user.id, limit + 1, before)
        unread = await store.unread_count(session, user.id)
    more = len(rows) > limit
    rows = rows[:limit]
    return web.json_response(
        {
            "notifications": [notification_json(r) for r in rows],
            "unread": unread,
            "next_before": rows[-1].id if more else None,
        },
        headers=NO_STORE,
    )


async def unread_count(request: web.Request) -> web.Response:
    user = await require_user(request)
    async with request.app[DB_KEY].session() as session:
        unread = await store.unread_count(session, user.id)
    return web.json_response({"unread": unread}, headers=NO_STORE)


async def mark_read(request: web.Request) -> web.Response:
    user = await require_user(request)
    notification_id = path_id(request, "id", "notification")
    async with request.app[DB_KEY].session() as session:
        row = await store.mark_read(session, user.id, notification_id, datetime.now(UTC))
        await session.commit()
        data = notification_json(row)
        unread = await store.unread_count(session, user.id)
    request.app[NOTIFY_KEY].hub.push(user.id, unread)
    return web.json_response({"notification": data, "unread": unread}, headers=NO_STORE)


async def mark_all_read(request: web.Request) -> web.Response:
    user = await require_user(request)
    async with request.app[DB_KEY].session() as session:
        marked = await store.mark_all_read(session, user.id, datetime.now(UTC))
        await session.commit()
        unread = await store.unread_count(session, user.id)
    request.app[NOTIFY_KEY].hub.push(user.id, unread)
    return web.json_response({"marked": marked, "unread": unread}, headers=NO_STORE)


# -- the follow's bell ------------------------------------------------------------------------


async def bell_state(request: web.Request) -> web.Response:
    user = await require_user(request)
    async with request.app[DB_KEY].session() as session:
        channel, _ = await load_channel(request, session)
        notify = await follows.follow_notify(session, user.id, channel.id)
    return web.json_response(
        {"following": notify is not None, "notify": bool(notify)}, headers=NO_STORE
    )


async def set_bell(request: web.Request) -> web.Response:
    user = await require_user(request)
    body = await read_json(request)
    notify = field(body, "notify", bool)
    async with request.app[DB_KEY].session() as session:
        channel, _ = await load_channel(request, session)
        try:
            await follows.set_notify(session, user.id, channel.id, notify)
        except NotFoundError as exc:
            raise ApiError(409, "not_following", str(exc)) from None
        await session.commit()
    return web.json_response({"following": True, "notify": notify}, headers=NO_STORE)


# -- the bell's event stream ------------------------------------------------------------------


def _event(count: int) -> bytes:
    return f"event: unread\ndata: {json.dumps({'unread': count})}\n\n".encode()


async def events(request: web.Request) -> web.StreamResponse:
    """The unread count now, then each time it changes; a comment every heartbeat."""
    user = await require_user(request)
    state = request.app[NOTIFY_KEY]
    settings = request.app[SETTINGS_KEY].notifications
    stream = state.hub.open(user.id)
    state.metrics.streams.inc()
    try:
        async with request.app[DB_KEY].session() as session:
            count = await store.unread_count(session, user.id)
        if stream.pending is None:
            stream.pending = count  # unless a fresher one arrived meanwhile
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",  # nginx: pass each event on at once
            }
        )
        await response.prepare(request)
        # The browser reconnects by itself after this many milliseconds if the stream drops.
        if not await _send(request, response, b"retry: 3000\n\n", settings):
            return response
        loop = asyncio.get_running_loop()
        checked = loop.time()
        while not stream.closed:
            # The login is checked again before anything is sent once a heartbeat has passed
            # since the last check: a logout or a disabled account ends the stream at the
            # latest a heartbeat later, at one lookup per heartbeat however busy the bell.
            if loop.time() - checked >= settings.heartbeat:
                if not await still_signed_in(request, user.id):
                    break
                checked = loop.time()
            if stream.pending is not None:
                data, stream.pending = _event(stream.pending), None
                if not await _send(request, response, data, settings):
                    break
                continue
            try:
                async with asyncio.timeout(settings.heartbeat):
                    await stream.wake.wait()
            except TimeoutError:
                if not await still_signed_in(request, user.id):
                    break
                checked = loop.time()
                if not await _send(request, response, b": ping\n\n", settings):
                    break
            stream.wake.clear()
        return response
    finally:
        state.hub.close(stream)
        state.metrics.streams.dec()


async def _send(
    request: web.Request, response: web.StreamResponse, data: bytes, settings: Any
) -> bool:
    """Write, or give up (False) on a gone client, a full buffer or a write that waits too
    long: a client that never reads must not hold memory or this handler for ever."""
    transport = request.transport
    if transport is None or transport.is_closing():
        return False
    if transport.get_write_buffer_size() > settings.send_buffer_bytes:
        transport.abort()
        return False
    try:
        async with asyncio.timeout(settings.write_timeout):
            await response.write(data)
    except (TimeoutError, ConnectionError):
        if not transport.is_closing():
            transport.abort()
        return False
    return True


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/api/notifications", list_notifications)
    app.router.add_get("/api/notifications/unread-count", unread_count)
    app.router.add_post("/api/notifications/read-all", mark_all_read)
    app.router.add_post("/api/notifications/{id}/read", mark_read)
    app.router.add_get("/api/channels/{slug}/follow/notify", bell_state)
    app.router.add_put("/api/channels/{slug}/follow/notify", set_bell)
    app.router.add_get("/notifications/events", events)


# -- OpenAPI -------------------------------------------------------------------------------

_NOTIFICATION = {
    "type": "object",
    "required": ["id", "kind", "created_at", "read", "channel_slug", "url"],
    "properties": {
        "id": {"type": "integer"},
        "kind": {"type": "string", "description": "stream.online: a followed channel went live"},
        "created_at": {"type": "string", "format": "date-time"},
        "read": {"type": "boolean"},
        "channel_slug": {"type": ["string", "null"]},
        "channel_name": {"type": ["string", "null"]},
        "title": {"type": ["string", "null"], "description": "The stream's title"},
        "category": {"type": ["string", "null"]},
        "url": {"type": ["string", "null"], "description": "The channel's page"},
    },
}
_UNREAD = {"type": "object", "required": ["unread"], "properties": {"unread": {"type": "integer"}}}
_BELL = {
    "type": "object",
    "required": ["following", "notify"],
    "properties": {
        "following": {"type": "boolean"},
        "notify": {
            "type": "boolean",
            "description": "Whether the channel's go-live notifications reach you",
        },
    },
}
_AUTH = {"401": {"$ref": "#/components/responses/Unauthenticated"}}
_WRITE = {**_AUTH, "403": {"$ref": "#/components/responses/Forbidden"}}

OPENAPI_PATHS: dict[str, Any] = {
    "/api/notifications": {
        "get": {
            "summary": "Your notifications, newest first",
            "tags": ["notifications"],
            "parameters": [
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1},
                    "description": "At most notifications.page_max",
                },
                {
                    "name": "before",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1},
                    "description": "Continue after this id (the previous page's next_before)",
                },
            ],
            "responses": {
                "200": json_response(
                    "A page of notifications",
                    {
                        "type": "object",
                        "required": ["notifications", "unread", "next_before"],
                        "properties": {
                            "notifications": {"type": "array", "items": _NOTIFICATION},
                            "unread": {"type": "integer"},
                            "next_before": {"type": ["integer", "null"]},
                        },
                    },
                ),
                **_AUTH,
            },
        }
    },
    "/api/notifications/unread-count": {
        "get": {
            "summary": "How many of your notifications are unread (the bell's count)",
            "tags": ["notifications"],
            "responses": {"200": json_response("Unread count", _UNREAD), **_AUTH},
        }
    },
    "/api/notifications/read-all": {
        "post": {
            "summary": "Mark all your notifications read",
            "tags": ["notifications"],
            "responses": {
                "200": json_response(
                    "Marked",
                    {
                        "type": "object",
                        "required": ["marked", "unread"],
                        "properties": {
                            "marked": {"type": "integer"},
                            "unread": {"type": "integer"},
                        },
                    },
                ),
                **_WRITE,
            },
        }
    },
    "/api/notifications/{id}/read": {
        "parameters": [
            {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
        ],
        "post": {
            "summary": "Mark one of your notifications read (idempotent)",
            "tags": ["notifications"],
            "responses": {
                "200": json_response(
                    "Marked",
                    {
                        "type": "object",
                        "required": ["notification", "unread"],
                        "properties": {
                            "notification": _NOTIFICATION,
                            "unread": {"type": "integer"},
                        },
                    },
                ),
                **_WRITE,
                "404": {"$ref": "#/components/responses/NotFound"},
            },
        },
    },
    "/api/channels/{slug}/follow/notify": {
        "parameters": [SLUG_PARAM],
        "get": {
            "summary": "Whether your follow of the channel has its bell on",
            "tags": ["follows"],
            "responses": {
                "200": json_response("Bell state", _BELL),
                **_AUTH,
                "404": {"$ref": "#/components/responses/NotFound"},
            },
        },
        "put": {
            "summary": "Turn the bell (go-live notifications) of your follow on or off",
            "tags": ["follows"],
            "requestBody": json_body(
                {
                    "type": "object",
                    "required": ["notify"],
                    "properties": {"notify": {"type": "boolean"}},
                }
            ),
            "responses": {
                "200": json_response("Bell state", _BELL),
                **_WRITE,
                "404": {"$ref": "#/components/responses/NotFound"},
                "409": {"$ref": "#/components/responses/Conflict"},
            },
        },
    },
}
