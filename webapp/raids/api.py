"""Raids' JSON API: start a raid, a channel's raids, the live channels a raid may go to, one
raid it received (the arrival notice), and the channel's raid policy and typing-indicator switch.

Errors use the project's ``{"error": {"code", "message"}}`` shape. A refused raid says why in
``code``: ``target_offline``, ``not_live`` (the raiding channel is past its window),
``raids_refused`` / ``raids_followed_only`` (the target's policy), ``rate_limited`` (cooldown,
with Retry-After), ``invalid`` (raiding yourself).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from storage import raids as raid_store

from ..errors import ApiError
from ..identity import require_user
from ..keys import CHAT_KEY, DB_KEY, SETTINGS_KEY
from ..openapi import SLUG_PARAM, error_response, json_body, json_response
from ..parsing import field, path_id, query_int, read_json
from .raiding import chat_state, require_moderator, require_owner, start_raid

NO_STORE = {"Cache-Control": "no-store"}
QUERY_MAX = 100


def _reply(data: dict[str, Any], status: int = 200) -> web.Response:
    return web.json_response(data, status=status, headers=NO_STORE)


async def post_raid(request: web.Request) -> web.Response:
    user = await require_user(request)
    state = await chat_state(request)
    require_owner(state, user)  # before reading the body
    body = await read_json(request)
    target = field(body, "target", str).strip().lower()
    if not target or len(target) > QUERY_MAX:
        raise ApiError(400, "invalid", "target must be a channel's address (its slug)")
    raid = await start_raid(request, state, user, target)
    return _reply({"raid": raid}, status=201)


async def list_raids(request: web.Request) -> web.Response:
    user = await require_user(request)
    state = await chat_state(request)
    require_moderator(state, user)
    limit = request.app[SETTINGS_KEY].raids.history_max
    async with request.app[DB_KEY].session() as session:
        raids = await raid_store.list_raids(session, state.channel_id, limit)
    return _reply({"raids": raids})


async def raid_targets(request: web.Request) -> web.Response:
    user = await require_user(request)
    state = await chat_state(request)
    require_owner(state, user)
    most = request.app[SETTINGS_KEY].raids.targets_max
    limit = query_int(request, "limit", most, minimum=1, maximum=most)
    text = request.query.get("q", "")
    if len(text) > QUERY_MAX:
        raise ApiError(400, "invalid", f"q must be at most {QUERY_MAX} characters")
    async with request.app[DB_KEY].session() as session:
        rows = await raid_store.live_channels(
            session, text, exclude_id=state.channel_id, limit=limit
        )
    return _reply({"channels": [r.as_dict() for r in rows]})


async def get_raid(request: web.Request) -> web.Response:
    """One raid on this channel, for the arrival notice. Only under its target: what it shows
    is what the target's room was told, and ids cannot be walked to learn which channels
    (unlisted ones too) raided which."""
    raid_id = path_id(request, "raid_id", "raid")
    async with request.app[DB_KEY].session() as session:
        raid = await raid_store.get_raid(session, raid_id)
    if raid is None or raid["to"]["slug"] != request.match_info["slug"]:
        raise ApiError(404, "not_found", f"no raid with id {raid_id} on this channel")
    return _reply({"raid": raid})


async def get_extras(request: web.Request) -> web.Response:
    user = await require_user(request)
    state = await chat_state(request)
    require_moderator(state, user)
    async with request.app[DB_KEY].session() as session:
        extras = await raid_store.get_extras(session, state.channel_id)
    return _reply({"settings": extras.as_dict()})


async def patch_extras(request: web.Request) -> web.Response:
    user = await require_user(request)
    state = await chat_state(request)
    require_owner(state, user)
    values = raid_store.validate_extras(await read_json(request))
    async with request.app[DB_KEY].session() as session:
        extras = await raid_store.update_extras(session, state.channel_id, values)
        await session.commit()
    # Every process drops its copy of the channel's state, and with it the typing switch.
    await request.app[CHAT_KEY].changed(state.slug)
    return _reply({"settings": extras.as_dict()})


def setup_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/api/channels/{slug}/raids", post_raid)
    r.add_get("/api/channels/{slug}/raids", list_raids)
    r.add_get("/api/channels/{slug}/raid-targets", raid_targets)
    r.add_get("/api/channels/{slug}/extras", get_extras)
    r.add_patch("/api/channels/{slug}/extras", patch_extras)
    r.add_get("/api/channels/{slug}/raids/{raid_id}", get_raid)


# -- OpenAPI -------------------------------------------------------------------------------

_CHANNEL_REF = {
    "type": "object",
    "required": ["slug", "name"],
    "properties": {"slug": {"type": "string"}, "name": {"type": "string"}},
}
_RAID = {
    "type": "object",
    "required": ["id", "from", "to", "viewers", "created_at"],
    "properties": {
        "id": {"type": "integer"},
        "from": _CHANNEL_REF,
        "to": _CHANNEL_REF,
        "by": {"type": ["string", "null"]},
        "viewers": {"type": "integer"},
        "created_at": {"type": "string", "format": "date-time"},
    },
}
_LISTED = {
    "type": "object",
    "required": ["id", "direction", "from", "to", "viewers", "created_at"],
    "properties": {
        "id": {"type": "integer"},
        "direction": {"type": "string", "enum": ["in", "out"]},
        "from": {"type": "string"},
        "to": {"type": "string"},
        "by": {"type": ["string", "null"]},
        "viewers": {"type": "integer"},
        "created_at": {"type": "string", "format": "date-time"},
    },
}
_EXTRAS = {
    "type": "object",
    "properties": {
        "raid_policy": {"type": "string", "enum": ["anyone", "followed", "nobody"]},
        "typing_indicators": {"type": "boolean"},
    },
}
_ERRORS = {
    "401": error_response("Not logged in"),
    "403": error_response("Not allowed on this channel"),
    "404": error_response("No such channel"),
}


def _envelope(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": [name], "properties": {name: schema}}


OPENAPI_PATHS: dict[str, Any] = {
    "/api/channels/{slug}/raids": {
        "parameters": [SLUG_PARAM],
        "post": {
            "summary": "Raid: send this channel's viewers to a live channel (owner or admin)",
            "tags": ["raids"],
            "requestBody": json_body(
                {
                    "type": "object",
                    "required": ["target"],
                    "properties": {"target": {"type": "string", "description": "A slug"}},
                }
            ),
            "responses": {
                "201": json_response("Raided", _envelope("raid", _RAID)),
                "400": error_response("Bad input, or raiding yourself"),
                "409": error_response("The target is offline, or this channel's window passed"),
                "429": error_response("The channel raided less than raids.cooldown_seconds ago"),
                **_ERRORS,
                "403": error_response("Not the owner, or the target refuses this raid"),
                "404": error_response("No such channel or target"),
            },
        },
        "get": {
            "summary": "The channel's raids, made and received (owner, moderators, admins)",
            "tags": ["raids"],
            "responses": {
                "200": json_response(
                    "Raids", _envelope("raids", {"type": "array", "items": _LISTED})
                ),
                **_ERRORS,
            },
        },
    },
    "/api/channels/{slug}/raid-targets": {
        "parameters": [SLUG_PARAM],
        "get": {
            "summary": "Live channels this channel may raid, the most watched first (owner)",
            "tags": ["raids"],
            "parameters": [
                {"name": "q", "in": "query", "schema": {"type": "string", "maxLength": 100}},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1}},
            ],
            "responses": {
                "200": json_response(
                    "Live channels",
                    _envelope("channels", {"type": "array", "items": {"type": "object"}}),
                ),
                **_ERRORS,
            },
        },
    },
    "/api/channels/{slug}/extras": {
        "parameters": [SLUG_PARAM],
        "get": {
            "summary": "Raid policy and typing indicators (owner, moderators, admins)",
            "tags": ["raids"],
            "responses": {
                "200": json_response("Settings", _envelope("settings", _EXTRAS)),
                **_ERRORS,
            },
        },
        "patch": {
            "summary": "Who may raid the channel; typing indicators on or off (owner)",
            "tags": ["raids"],
            "requestBody": json_body(_EXTRAS),
            "responses": {
                "200": json_response("Settings", _envelope("settings", _EXTRAS)),
                **_ERRORS,
            },
        },
    },
    "/api/channels/{slug}/raids/{raid_id}": {
        "parameters": [
            SLUG_PARAM,
            {"name": "raid_id", "in": "path", "required": True, "schema": {"type": "integer"}},
        ],
        "get": {
            "summary": "One raid on this channel (what its page shows on arrival)",
            "tags": ["raids"],
            "responses": {
                "200": json_response("The raid", _envelope("raid", _RAID)),
                "404": error_response("No such raid on this channel"),
            },
        },
    },
}
