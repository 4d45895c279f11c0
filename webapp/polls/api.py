"""The polls' JSON API: ``GET /api/channels/{slug}/polls`` (newest first; ``?stream=ID`` for
one broadcast's) and ``GET /api/channels/{slug}/polls/current`` (the running poll with its
counts, or null). Public, like the chat a poll runs in. Polls are started, voted in and ended
over the chat socket (``poll:start``, ``poll:vote``, ``poll:end`` frames; see live.py)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from storage import polls as store

from ..documents import load_channel
from ..keys import DB_KEY, SETTINGS_KEY
from ..openapi import json_response
from ..parsing import query_int
from .live import now_ms, poll_document, row_document

NO_STORE = {"Cache-Control": "no-store"}


async def list_polls(request: web.Request) -> web.Response:
    stream_id = query_int(request, "stream", None, minimum=1)
    limit = request.app[SETTINGS_KEY].polls.list_limit
    async with request.app[DB_KEY].session() as session:
        channel, _ = await load_channel(request, session)
        rows = await store.channel_polls(session, channel.id, stream_id=stream_id, limit=limit)
        live = {r.id: len(r.options) for r in rows if r.result is None}
        counts = await store.tallies(session, live)
    polls = [
        row_document(r)
        if r.result is not None
        else poll_document(r.id, r.question, r.options, counts[r.id], r.started_ms, r.ends_ms, None)
        for r in rows
    ]
    return web.json_response({"channel": channel.slug, "polls": polls}, headers=NO_STORE)


async def current_poll(request: web.Request) -> web.Response:
    async with request.app[DB_KEY].session() as session:
        channel, _ = await load_channel(request, session)
        row = await store.running_poll(session, channel.id)
        doc: dict[str, Any] | None = None
        if row is not None and row.ends_ms > now_ms():
            counts = (await store.tallies(session, {row.id: len(row.options)}))[row.id]
            doc = poll_document(
                row.id, row.question, row.options, counts, row.started_ms, row.ends_ms, None
            )
    return web.json_response({"channel": channel.slug, "poll": doc}, headers=NO_STORE)


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/api/channels/{slug}/polls", list_polls)
    app.router.add_get("/api/channels/{slug}/polls/current", current_poll)


# -- OpenAPI -------------------------------------------------------------------------------

_SLUG = {"name": "slug", "in": "path", "required": True, "schema": {"type": "string"}}
_ERRORS = {
    "400": {"$ref": "#/components/responses/BadRequest"},
    "404": {"$ref": "#/components/responses/NotFound"},
}
_TIME = {"type": "string", "format": "date-time"}

OPENAPI_SCHEMAS: dict[str, Any] = {
    "Poll": {
        "type": "object",
        "required": [
            "id",
            "question",
            "options",
            "total",
            "started_at",
            "ends_at",
            "ended_at",
            "running",
        ],
        "properties": {
            "id": {"type": "integer"},
            "question": {"type": "string"},
            "options": {
                "type": "array",
                "minItems": 2,
                "maxItems": 5,
                "items": {
                    "type": "object",
                    "required": ["text", "votes"],
                    "properties": {
                        "text": {"type": "string"},
                        "votes": {"type": "integer", "minimum": 0},
                    },
                },
            },
            "total": {"type": "integer", "minimum": 0},
            "started_at": _TIME,
            "ends_at": _TIME,
            "ended_at": {"anyOf": [_TIME, {"type": "null"}]},
            "running": {"type": "boolean"},
        },
    },
}

OPENAPI_PATHS: dict[str, Any] = {
    "/api/channels/{slug}/polls": {
        "parameters": [_SLUG],
        "get": {
            "summary": "A channel's polls, newest first, with their results",
            "tags": ["polls"],
            "parameters": [
                {
                    "name": "stream",
                    "in": "query",
                    "required": False,
                    "description": "Only the polls run during this broadcast (a stream id)",
                    "schema": {"type": "integer", "minimum": 1},
                }
            ],
            "responses": {
                "200": json_response(
                    "The polls (at most polls.list_limit); a running poll's counts so far",
                    {
                        "type": "object",
                        "required": ["channel", "polls"],
                        "properties": {
                            "channel": {"type": "string"},
                            "polls": {
                                "type": "array",
                                "items": {"$ref": "#/components/schemas/Poll"},
                            },
                        },
                    },
                ),
                **_ERRORS,
            },
        },
    },
    "/api/channels/{slug}/polls/current": {
        "parameters": [_SLUG],
        "get": {
            "summary": "The channel's running poll and its counts, or null",
            "tags": ["polls"],
            "responses": {
                "200": json_response(
                    "The running poll",
                    {
                        "type": "object",
                        "required": ["channel", "poll"],
                        "properties": {
                            "channel": {"type": "string"},
                            "poll": {
                                "anyOf": [{"$ref": "#/components/schemas/Poll"}, {"type": "null"}]
                            },
                        },
                    },
                ),
                "404": {"$ref": "#/components/responses/NotFound"},
            },
        },
    },
}
