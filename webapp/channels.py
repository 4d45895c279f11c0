"""The channels JSON API: a user's channels, their settings, and their stream keys.

Routes: ``GET/POST /api/channels``, ``GET/PATCH/DELETE /api/channels/{slug}``,
``POST /api/channels/{slug}/stream-key``, ``POST/DELETE /api/channels/{slug}/avatar`` and
``/banner`` (images go through webapp.images, exactly like a profile's). Anyone may read a
channel's public fields (an
unlisted channel is reachable by its slug, only left out of lists); only its owner or an admin
sees the stream key and the OBS settings, or changes anything. A regenerated key works from the
commit on and the old one is refused by ingest at its next publish attempt, because ingest looks
keys up in the database each time. Keys never go to the log.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from storage import channels as channel_queries
from storage import queries
from storage.models import User

from . import images
from .documents import channel_json, live_stream_id, load_channel, obs_settings
from .errors import ApiError
from .identity import can_manage, current_user, require_manager, require_user
from .keys import CHAT_KEY, DB_KEY
from .openapi import SLUG_PARAM
from .parsing import field, query_int, read_json

CHANNEL_LIST_MAX = 100


# -- handlers ---------------------------------------------------------------------------------


async def list_channels(request: web.Request) -> web.Response:
    """``?owner=me`` lists the caller's channels (unlisted too, with keys); ``?owner=NAME``
    a user's public ones; without it every public channel."""
    owner = request.query.get("owner")
    limit = query_int(request, "limit", 50, minimum=1, maximum=CHANNEL_LIST_MAX)
    me = await require_user(request) if owner == "me" else await current_user(request)
    owner_id = None
    if owner == "me":
        assert me is not None
        owner_id = me.id
    async with request.app[DB_KEY].session() as session:
        rows = await channel_queries.list_channels(
            session, limit=limit, owner_id=owner_id, owner_username=owner
        )
    return web.json_response(
        {
            "channels": [
                channel_json(request, c, name, private=owner == "me" or can_manage(me, c))
                for c, name in rows
            ]
        }
    )


async def create_channel(request: web.Request) -> web.Response:
    user = await require_user(request)
    body = await read_json(request)
    slug = field(body, "slug", str)
    fields = {k: v for k, v in body.items() if k != "slug"}
    async with request.app[DB_KEY].session() as session:
        channel = await channel_queries.create_channel(session, user, slug, fields)
        await session.commit()
        data = channel_json(request, channel, user.username, private=True)
    return web.json_response(
        data, status=201, headers={"Location": f"/api/channels/{channel.slug}"}
    )


async def get_channel(request: web.Request) -> web.Response:
    user = await current_user(request)
    async with request.app[DB_KEY].session() as session:
        channel, owner = await load_channel(request, session)
    return web.json_response(
        channel_json(request, channel, owner, private=can_manage(user, channel))
    )


async def update_channel(request: web.Request) -> web.Response:
    user = await require_user(request)
    body = await read_json(request)
    async with request.app[DB_KEY].session() as session:
        channel, owner = await load_channel(request, session)
        require_manager(user, channel)
        await channel_queries.update_channel(session, channel, body)
        await session.commit()
        data = channel_json(request, channel, owner, private=True)
    return web.json_response(data)


async def delete_channel(request: web.Request) -> web.Response:
    user = await require_user(request)
    async with request.app[DB_KEY].session() as session:
        channel, _ = await load_channel(request, session)
        require_manager(user, channel)
        if live_stream_id(request, channel) is not None:
            raise ApiError(409, "live", f"channel {channel.slug!r} is live: end the stream first")
        files, slug = (channel.avatar_path, channel.banner_path), channel.slug
        await channel_queries.delete_channel(session, channel)
        await session.commit()
    # The chat service caches each channel's state (its id) by slug: a stale entry would let
    # the slug's next channel write chat settings under the deleted (or a reused) id.
    chat = request.app.get(CHAT_KEY)
    if chat is not None:
        await chat.changed(slug)
    for name in files:
        images.remove_upload(request.app, name)
    return web.Response(status=204)


async def regenerate_key(request: web.Request) -> web.Response:
    user = await require_user(request)
    async with request.app[DB_KEY].session() as session:
        channel, _ = await load_channel(request, session)
        require_manager(user, channel)
        await queries.regenerate_stream_key(session, channel.id)
        await session.commit()
        obs = obs_settings(request, channel)
    return web.json_response(
        {"stream_key": channel.stream_key, "rtmp": obs}, headers={"Cache-Control": "no-store"}
    )


def _assign_image(request: web.Request, user: User, kind: str) -> images.Assign[dict[str, Any]]:
    """Sets the channel's ``kind`` column in its own transaction, re-checking that the channel
    still exists and that ``user`` may still change it (the upload took a while)."""
    column = f"{kind}_path"

    async def assign(name: str | None) -> tuple[str | None, dict[str, Any]]:
        async with request.app[DB_KEY].session() as session:
            channel, owner = await load_channel(request, session)
            require_manager(user, channel)
            old = getattr(channel, column)
            setattr(channel, column, name)
            await session.commit()
            return old, channel_json(request, channel, owner, private=True)

    return assign


def image_handlers(
    kind: str,
) -> tuple[
    Callable[[web.Request], Awaitable[web.Response]],
    Callable[[web.Request], Awaitable[web.Response]],
]:
    """The POST (upload) and DELETE (remove) handlers of a channel's avatar or banner."""

    async def upload(request: web.Request) -> web.Response:
        user = await require_user(request)
        async with request.app[DB_KEY].session() as session:
            channel, _ = await load_channel(request, session)
            require_manager(user, channel)  # before reading (and decoding) the body
        image = await images.read_image(request, kind)
        data = await images.replace_image(request.app, image, _assign_image(request, user, kind))
        return web.json_response(
            {
                "channel": data,
                "url": data[f"{kind}_url"],
                "width": image.width,
                "height": image.height,
            }
        )

    async def remove(request: web.Request) -> web.Response:
        user = await require_user(request)
        data = await images.replace_image(request.app, None, _assign_image(request, user, kind))
        return web.json_response({"channel": data})

    return upload, remove


async def _no_store(request: web.Request, response: web.StreamResponse) -> None:
    """Channel documents may carry a stream key: never let a cache keep one."""
    if request.path.startswith("/api/channels") and not request.path.endswith("/live"):
        response.headers["Cache-Control"] = "no-store"


def setup(app: web.Application) -> None:
    app.router.add_get("/api/channels", list_channels)
    app.router.add_post("/api/channels", create_channel)
    app.router.add_get("/api/channels/{slug}", get_channel)
    app.router.add_patch("/api/channels/{slug}", update_channel)
    app.router.add_delete("/api/channels/{slug}", delete_channel)
    app.router.add_post("/api/channels/{slug}/stream-key", regenerate_key)
    for kind in images.KINDS:
        upload, remove = image_handlers(kind)
        app.router.add_post(f"/api/channels/{{slug}}/{kind}", upload)
        app.router.add_delete(f"/api/channels/{{slug}}/{kind}", remove)
    app.on_response_prepare.append(_no_store)


# -- OpenAPI -------------------------------------------------------------------------------

_ERRORS = {
    str(code): {"$ref": f"#/components/responses/{name}"}
    for code, name in (
        (400, "BadRequest"),
        (401, "Unauthenticated"),
        (403, "Forbidden"),
        (404, "NotFound"),
    )
}
_CHANNEL = {"application/json": {"schema": {"$ref": "#/components/schemas/Channel"}}}
_CHANNEL_INPUT = {"application/json": {"schema": {"$ref": "#/components/schemas/ChannelInput"}}}

OPENAPI_SCHEMAS: dict[str, Any] = {
    "ChannelInput": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "slug": {
                "type": "string",
                "pattern": queries.SLUG_RE.pattern,
                "description": "Only when creating; cannot be changed.",
            },
            "name": {"type": "string", "maxLength": queries.CHANNEL_NAME_MAX},
            "description": {"type": "string", "maxLength": channel_queries.DESCRIPTION_MAX},
            "category": {
                "type": ["string", "null"],
                "maxLength": channel_queries.CATEGORY_MAX,
                "description": "A catalogue category's slug or name (any case; "
                "GET /api/categories); null or empty: none. Unknown or retired: 400.",
            },
            "language": {
                "type": ["string", "null"],
                "maxLength": channel_queries.LANGUAGE_MAX,
                "description": "BCP 47 language tag (en, pt-BR); null or empty: unset.",
            },
            "tags": {
                "type": "array",
                "maxItems": channel_queries.TAGS_MAX,
                "items": {"type": "string", "maxLength": channel_queries.TAG_MAX},
            },
            "is_public": {"type": "boolean", "description": "false: unlisted"},
        },
    },
    "Channel": {
        "type": "object",
        "required": ["id", "slug", "name", "owner", "live", "is_public"],
        "properties": {
            "id": {"type": "integer"},
            "slug": {"type": "string"},
            "name": {"type": "string"},
            "description": {"type": "string"},
            "category": {"type": ["string", "null"], "description": "The category's name."},
            "category_slug": {"type": ["string", "null"], "description": "/categories/{slug}"},
            "language": {"type": ["string", "null"]},
            "tags": {"type": "array", "items": {"type": "string"}},
            "is_public": {"type": "boolean"},
            "owner": {"type": "string"},
            "avatar_url": {"type": ["string", "null"]},
            "banner_url": {"type": ["string", "null"]},
            "url": {"type": "string"},
            "hls_url": {"type": "string"},
            "live": {"type": "boolean"},
            "stream_id": {"type": ["integer", "null"]},
            "follower_count": {"type": "integer"},
            "total_streams": {"type": "integer"},
            "created_at": {"type": "string", "format": "date-time"},
            "stream_key": {"type": "string", "description": "Owner or admin only."},
            "rtmp": {"$ref": "#/components/schemas/RtmpSettings"},
        },
    },
    "RtmpSettings": {
        "type": "object",
        "description": "What to paste into OBS (owner or admin only).",
        "properties": {
            "server": {"type": "string", "example": "rtmp://example.org/live"},
            "stream_key": {"type": "string"},
            "url": {"type": "string"},
            "rtmps_server": {
                "type": "string",
                "example": "rtmps://example.org:1936/live",
                "description": "The server over TLS; only when RTMPS (rtmp.tls_port) is on.",
            },
            "rtmps_url": {"type": "string", "description": "Only when RTMPS is on."},
        },
    },
}


def _image_ops(kind: str) -> dict[str, Any]:
    """Upload and removal of a channel's avatar or banner."""
    return {
        "parameters": [SLUG_PARAM],
        "post": {
            "summary": f"Upload the channel's {kind} (owner or admin; re-encoded to a "
            "bounded size, metadata dropped; the old image is removed)",
            "tags": ["channels"],
            "requestBody": images.IMAGE_REQUEST_BODY,
            "responses": {
                "200": {
                    "description": "Stored",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["channel", "url", "width", "height"],
                                "properties": {
                                    "channel": {"$ref": "#/components/schemas/Channel"},
                                    "url": {"type": "string"},
                                    "width": {"type": "integer"},
                                    "height": {"type": "integer"},
                                },
                            }
                        }
                    },
                },
                **images.image_upload_errors(),
                "404": {"$ref": "#/components/responses/NotFound"},
            },
        },
        "delete": {
            "summary": f"Remove the channel's {kind} (owner or admin)",
            "tags": ["channels"],
            "responses": {
                "200": {
                    "description": "Removed (also when there was none)",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["channel"],
                                "properties": {"channel": {"$ref": "#/components/schemas/Channel"}},
                            }
                        }
                    },
                },
                **_ERRORS,
            },
        },
    }


OPENAPI_PATHS: dict[str, Any] = {
    "/api/channels": {
        "get": {
            "summary": "List channels",
            "tags": ["channels"],
            "parameters": [
                {
                    "name": "owner",
                    "in": "query",
                    "schema": {"type": "string"},
                    "description": "`me`: the caller's channels (unlisted too, with stream keys); "
                    "a username: that user's public channels.",
                },
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": CHANNEL_LIST_MAX},
                },
            ],
            "responses": {
                "200": {
                    "description": "Channels",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "channels": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/Channel"},
                                    }
                                },
                            }
                        }
                    },
                },
                **_ERRORS,
            },
        },
        "post": {
            "summary": "Create a channel (you own it; a stream key is made)",
            "tags": ["channels"],
            "requestBody": {"required": True, "content": _CHANNEL_INPUT},
            "responses": {
                "201": {"description": "Created, with its stream key", "content": _CHANNEL},
                "409": {"$ref": "#/components/responses/Conflict"},
                **_ERRORS,
            },
        },
    },
    "/api/channels/{slug}": {
        "parameters": [SLUG_PARAM],
        "get": {
            "summary": "A channel (stream key only for its owner or an admin)",
            "tags": ["channels"],
            "responses": {"200": {"description": "The channel", "content": _CHANNEL}, **_ERRORS},
        },
        "patch": {
            "summary": "Change name, description, category, tags or visibility",
            "tags": ["channels"],
            "requestBody": {"required": True, "content": _CHANNEL_INPUT},
            "responses": {"200": {"description": "Updated", "content": _CHANNEL}, **_ERRORS},
        },
        "delete": {
            "summary": "Delete a channel with its past streams (not while live)",
            "tags": ["channels"],
            "responses": {
                "204": {"description": "Deleted"},
                "409": {"$ref": "#/components/responses/Conflict"},
                **_ERRORS,
            },
        },
    },
    "/api/channels/{slug}/stream-key": {
        "parameters": [SLUG_PARAM],
        "post": {
            "summary": "Regenerate the stream key; the old key is refused from now on",
            "tags": ["channels"],
            "responses": {
                "200": {
                    "description": "The new key",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "stream_key": {"type": "string"},
                                    "rtmp": {"$ref": "#/components/schemas/RtmpSettings"},
                                },
                            }
                        }
                    },
                },
                **_ERRORS,
            },
        },
    },
    **{f"/api/channels/{{slug}}/{kind}": _image_ops(kind) for kind in images.KINDS},
}
