"""The emotes JSON API: the global set (``/api/emotes``: anyone reads, admins add) and a
channel's (``/api/channels/{slug}/emotes``: anyone reads, the owner or an admin adds); one
emote is renamed, switched to follower-only or deleted at ``/api/emotes/{emote_id}`` by whoever
may change its set. Adding is multipart (``code``, ``file``, ``follower_only``); bad input is
400 in the error shape, someone else's channel 403, a taken code 409."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.web_request import FileField

from ..errors import ApiError
from ..identity import require_admin, require_user
from ..images import image_upload_errors
from ..keys import CHAT_KEY, DB_KEY, SETTINGS_KEY
from ..openapi import SLUG_PARAM, error_response, json_body, json_response
from ..parsing import field, path_id, read_form, read_json
from .common import GLOBAL, Scope, add_emote, change_emote, flag, managed_channel, remove_emote
from .sets import SETS_KEY

NO_STORE = {"Cache-Control": "no-store"}


async def _upload(request: web.Request) -> tuple[Any, bytes | None, bool]:
    """The multipart fields of an add: code, the file's bytes (None: no file), follower_only."""
    if request.content_type != "multipart/form-data":
        raise ApiError(
            415, "unsupported_media_type", "send the emote as multipart/form-data (code, file)"
        )
    form = await read_form(request)
    code = form.get("code")
    if not isinstance(code, str):
        raise ApiError(400, "missing_field", "the form field 'code' is required")
    value = form.get("file")
    data: bytes | None = None
    if isinstance(value, FileField):
        data = value.file.read(request.app[SETTINGS_KEY].emotes.max_bytes + 1)
    elif value is not None:
        raise ApiError(400, "invalid", "the field 'file' must be a file")
    follower_only = flag(form.get("follower_only", ""), "follower_only")
    return code, data, follower_only


async def list_global(request: web.Request) -> web.Response:
    emotes = await request.app[SETS_KEY].global_emotes()
    return web.json_response({"emotes": emotes}, headers=NO_STORE)


async def add_global(request: web.Request) -> web.Response:
    user = await require_user(request)
    require_admin(user)
    code, data, follower_only = await _upload(request)
    emote = await add_emote(request.app, user, GLOBAL, code, data, follower_only)
    return web.json_response({"emote": emote}, status=201, headers=NO_STORE)


async def list_channel(request: web.Request) -> web.Response:
    state = await request.app[CHAT_KEY].state(request.match_info["slug"])
    if state is None:
        raise ApiError(404, "not_found", "no such channel")
    sets = request.app[SETS_KEY]
    return web.json_response(
        {
            "emotes": await sets.channel_emotes(state.channel_id),
            "global": await sets.global_emotes(),
        },
        headers=NO_STORE,
    )


async def add_channel(request: web.Request) -> web.Response:
    user = await require_user(request)
    async with request.app[DB_KEY].session() as session:
        channel = await managed_channel(session, request.match_info["slug"], user)
    scope = Scope(channel.id, channel.slug)
    code, data, follower_only = await _upload(request)
    emote = await add_emote(request.app, user, scope, code, data, follower_only)
    return web.json_response({"emote": emote}, status=201, headers=NO_STORE)


async def update(request: web.Request) -> web.Response:
    user = await require_user(request)
    emote_id = path_id(request, "emote_id", "emote")
    body = await read_json(request)
    code = field(body, "code", str, required=False)
    follower_only = field(body, "follower_only", bool, required=False)
    emote = await change_emote(request.app, user, emote_id, code, follower_only)
    return web.json_response({"emote": emote}, headers=NO_STORE)


async def delete(request: web.Request) -> web.Response:
    user = await require_user(request)
    emote_id = path_id(request, "emote_id", "emote")
    await remove_emote(request.app, user, emote_id)
    return web.Response(status=204, headers=NO_STORE)


GLOBAL_PATH = "/api/emotes"
ONE = "/api/emotes/{emote_id}"
CHANNEL_PATH = "/api/channels/{slug}/emotes"


def setup_routes(app: web.Application) -> None:
    app.router.add_get(GLOBAL_PATH, list_global)
    app.router.add_post(GLOBAL_PATH, add_global)
    app.router.add_patch(ONE, update)
    app.router.add_delete(ONE, delete)
    app.router.add_get(CHANNEL_PATH, list_channel)
    app.router.add_post(CHANNEL_PATH, add_channel)


# -- OpenAPI -------------------------------------------------------------------------------

_EMOTE = {"$ref": "#/components/schemas/Emote"}
_LIST = {"type": "array", "items": _EMOTE}
_CODE = {
    "type": "string",
    "description": "2 to 32 characters: a letter, then letters, digits or _ (case-sensitive)",
}
_ADD_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["code", "file"],
                "properties": {
                    "code": _CODE,
                    "file": {
                        "type": "string",
                        "format": "binary",
                        "description": "PNG, GIF or WebP (animated GIF/WebP stay animated)",
                    },
                    "follower_only": {
                        "type": "string",
                        "enum": ["true", "false"],
                        "description": "Channel emotes only: shown only in followers' messages",
                    },
                },
            }
        }
    },
}
_ADDED = json_response(
    "Added",
    {"type": "object", "required": ["emote"], "properties": {"emote": _EMOTE}},
)
_ADD_ERRORS = {
    **image_upload_errors(),
    "400": error_response(
        "Bad code, not an image, damaged, too many frames, no file, or the set is full"
    ),
    "409": error_response("The code is taken in this set (or is a global emote's)"),
}
_ID_PARAM = {"name": "emote_id", "in": "path", "required": True, "schema": {"type": "integer"}}
_WHO = {
    "401": {"$ref": "#/components/responses/Unauthenticated"},
    "403": {"$ref": "#/components/responses/Forbidden"},
    "404": {"$ref": "#/components/responses/NotFound"},
}

OPENAPI_SCHEMAS: dict[str, Any] = {
    "Emote": {
        "type": "object",
        "required": ["id", "code", "scope", "animated", "follower_only", "urls"],
        "properties": {
            "id": {"type": "integer"},
            "code": {"type": "string"},
            "scope": {"type": "string", "enum": ["global", "channel"]},
            "animated": {"type": "boolean"},
            "follower_only": {"type": "boolean"},
            "urls": {
                "type": "object",
                "description": "The image at 28, 56 and 112 px (PNG, animated WebP if animated)",
                "required": ["28", "56", "112"],
                "properties": {k: {"type": "string"} for k in ("28", "56", "112")},
            },
        },
    },
}

OPENAPI_PATHS: dict[str, Any] = {
    GLOBAL_PATH: {
        "get": {
            "summary": "The global emotes (usable in every chat)",
            "tags": ["emotes"],
            "responses": {
                "200": json_response(
                    "Global emotes",
                    {"type": "object", "required": ["emotes"], "properties": {"emotes": _LIST}},
                )
            },
        },
        "post": {
            "summary": "Add a global emote (admins)",
            "tags": ["emotes"],
            "requestBody": _ADD_BODY,
            "responses": {"201": _ADDED, **_ADD_ERRORS},
        },
    },
    ONE: {
        "parameters": [_ID_PARAM],
        "patch": {
            "summary": "Rename an emote or switch follower-only (admins for global emotes, "
            "the channel's owner or an admin for a channel's)",
            "tags": ["emotes"],
            "requestBody": json_body(
                {
                    "type": "object",
                    "properties": {"code": _CODE, "follower_only": {"type": "boolean"}},
                }
            ),
            "responses": {
                "200": _ADDED | {"description": "Changed"},
                "400": error_response("Bad code, or follower-only asked of a global emote"),
                "409": error_response("The code is taken in this set (or is a global emote's)"),
                **_WHO,
            },
        },
        "delete": {
            "summary": "Delete an emote (who may change its set)",
            "tags": ["emotes"],
            "responses": {"204": {"description": "Deleted"}, **_WHO},
        },
    },
    CHANNEL_PATH: {
        "parameters": [SLUG_PARAM],
        "get": {
            "summary": "A channel's emotes, and the global ones",
            "tags": ["emotes"],
            "responses": {
                "200": json_response(
                    "The channel's and the global emotes",
                    {
                        "type": "object",
                        "required": ["emotes", "global"],
                        "properties": {"emotes": _LIST, "global": _LIST},
                    },
                ),
                "404": {"$ref": "#/components/responses/NotFound"},
            },
        },
        "post": {
            "summary": "Add an emote to the channel (its owner or an admin)",
            "tags": ["emotes"],
            "requestBody": _ADD_BODY,
            "responses": {
                "201": _ADDED,
                **_ADD_ERRORS,
                "404": {"$ref": "#/components/responses/NotFound"},
            },
        },
    },
}
