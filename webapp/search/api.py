"""``GET /api/search`` and ``GET /api/search/suggest``: search as JSON (``storage.search``).

Anyone may search; only what anyone may see is found (listed channels, their broadcasts,
enabled users, current categories). Answers may be cached briefly by the browser: the same
query typed twice in a few seconds need not reach the database twice.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from storage import search as search_store
from storage.search import SEARCH_TYPES, InvalidCursor

from ..keys import DB_KEY, SEARCH_ANSWERS_KEY
from ..openapi import error_response, json_response
from .common import (
    SearchParams,
    bad_cursor,
    hit_json,
    limits_of,
    read_params,
    read_query,
    settings_of,
)

CACHE = {"Cache-Control": "private, max-age=5"}


async def search_page_json(request: web.Request, params: SearchParams) -> dict[str, Any]:
    """One page of results as JSON-ready data (the API's ``items`` and ``next_cursor``; the
    page renders the same), through the cache."""

    async def run() -> dict[str, Any]:
        limits = limits_of(settings_of(request))
        async with request.app[DB_KEY].session() as session:
            try:
                page = await search_store.search(
                    session, params.q, params.kind, params.limit, params.cursor, limits
                )
            except InvalidCursor:
                raise bad_cursor() from None
        return {
            "items": [hit_json(request.app, hit) for hit in page.items],
            "next_cursor": page.next_cursor,
        }

    key = ("search", params.q, params.kind, params.limit, params.cursor)
    answer: dict[str, Any] = await request.app[SEARCH_ANSWERS_KEY].get(key, run)
    return answer


async def search_api(request: web.Request) -> web.Response:
    params = read_params(request)
    found = await search_page_json(request, params)
    return web.json_response({"query": params.q, "type": params.kind, **found}, headers=CACHE)


async def suggest_api(request: web.Request) -> web.Response:
    q = read_query(request)
    s = settings_of(request)

    async def run() -> dict[str, Any]:
        async with request.app[DB_KEY].session() as session:
            found = await search_store.suggest(session, q, s.suggest_per_type, limits_of(s))
        return {kind: [hit_json(request.app, hit) for hit in found[kind]] for kind in SEARCH_TYPES}

    answer = await request.app[SEARCH_ANSWERS_KEY].get(("suggest", q), run)
    return web.json_response({"query": q, **answer}, headers=CACHE)


def setup(app: web.Application) -> None:
    app.router.add_get("/api/search", search_api, name="api-search")
    app.router.add_get("/api/search/suggest", suggest_api, name="api-search-suggest")


# -- OpenAPI -------------------------------------------------------------------------------

_NULLABLE_STRING = {"type": ["string", "null"]}
_CHANNEL = {
    "type": "object",
    "required": ["type", "id", "slug", "name", "title", "live", "viewers", "followers", "url"],
    "properties": {
        "type": {"const": "channel"},
        "id": {"type": "integer"},
        "slug": {"type": "string"},
        "name": {"type": "string"},
        "title": {"type": "string", "description": "The live or last broadcast's title."},
        "owner": {"type": "string"},
        "live": {"type": "boolean"},
        "viewers": {"type": "integer", "minimum": 0},
        "followers": {"type": "integer", "minimum": 0},
        "category": _NULLABLE_STRING,
        "tags": {"type": "array", "items": {"type": "string"}},
        "url": {"type": "string"},
        "avatar_url": _NULLABLE_STRING,
        "thumbnail_url": _NULLABLE_STRING,
    },
}
_USER = {
    "type": "object",
    "required": ["type", "id", "username", "display_name", "url"],
    "properties": {
        "type": {"const": "user"},
        "id": {"type": "integer"},
        "username": {"type": "string"},
        "display_name": {"type": "string"},
        "url": {"type": "string"},
        "avatar_url": _NULLABLE_STRING,
    },
}
_CATEGORY = {
    "type": "object",
    "required": ["type", "id", "slug", "name", "url"],
    "properties": {
        "type": {"const": "category"},
        "id": {"type": "integer"},
        "slug": {"type": "string"},
        "name": {"type": "string"},
        "url": {"type": "string"},
        "box_art_url": _NULLABLE_STRING,
    },
}
_VIDEO = {
    "type": "object",
    "required": ["type", "id", "title", "channel", "channel_name", "url"],
    "properties": {
        "type": {"const": "video"},
        "id": {"type": "integer"},
        "title": {"type": "string"},
        "channel": {"type": "string"},
        "channel_name": {"type": "string"},
        "category": _NULLABLE_STRING,
        "started_at": {"type": ["string", "null"], "format": "date-time"},
        "duration_seconds": {"type": ["number", "null"]},
        "duration": _NULLABLE_STRING,
        "url": {"type": "string"},
        "thumbnail_url": _NULLABLE_STRING,
    },
}
_Q = {
    "name": "q",
    "in": "query",
    "schema": {"type": "string"},
    "description": "What to look for (at most `search.max_query_chars` characters). Only its "
    "letters and digits count; a query without any finds nothing.",
}
_BAD = error_response("A parameter is out of range (type, limit, cursor, q too long)")

OPENAPI_PATHS: dict[str, Any] = {
    "/api/search": {
        "get": {
            "summary": "Search channels, users, categories or past broadcasts",
            "description": "Exact and prefix matches of the name first, then other matches, "
            "then near misses (typos); channels live before offline, then by followers. "
            "Pages follow `next_cursor`.",
            "tags": ["search"],
            "parameters": [
                _Q,
                {
                    "name": "type",
                    "in": "query",
                    "schema": {"type": "string", "enum": list(SEARCH_TYPES)},
                },
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1}},
                {
                    "name": "cursor",
                    "in": "query",
                    "schema": {"type": "string"},
                    "description": "The previous page's `next_cursor`, as it was.",
                },
            ],
            "responses": {
                "200": json_response(
                    "One page of results",
                    {
                        "type": "object",
                        "required": ["query", "type", "items", "next_cursor"],
                        "properties": {
                            "query": {"type": "string"},
                            "type": {"type": "string", "enum": list(SEARCH_TYPES)},
                            "items": {
                                "type": "array",
                                "items": {"oneOf": [_CHANNEL, _USER, _CATEGORY, _VIDEO]},
                            },
                            "next_cursor": _NULLABLE_STRING,
                        },
                    },
                ),
                "400": _BAD,
            },
        }
    },
    "/api/search/suggest": {
        "get": {
            "summary": "A few results of each type, for a search box as the user types",
            "tags": ["search"],
            "parameters": [_Q],
            "responses": {
                "200": json_response(
                    "Suggestions",
                    {
                        "type": "object",
                        "required": ["query", *SEARCH_TYPES],
                        "properties": {
                            "query": {"type": "string"},
                            "channels": {"type": "array", "items": _CHANNEL},
                            "users": {"type": "array", "items": _USER},
                            "categories": {"type": "array", "items": _CATEGORY},
                            "videos": {"type": "array", "items": _VIDEO},
                        },
                    },
                ),
                "400": _BAD,
            },
        }
    },
}
