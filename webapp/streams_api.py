"""The streams JSON API: past and live broadcasts, live edits, status with health, and ending.

Routes: ``GET /api/streams`` (``?live=``, ``?channel=``), ``GET/PATCH /api/streams/{id}``,
``GET /api/streams/{id}/status``, ``POST /api/streams/{id}/end`` and ``GET /api/dashboard``
(everything the creator dashboard polls, for all of the caller's channels, in one request).

Status and viewers are public; the health figures (what the encoder sends, how the ladder
keeps up) only go to the channel's owner or an admin. Ending a stream closes the publisher's
RTMP connection; the row then moves LIVE -> ENDING -> ARCHIVED/OFFLINE through the broadcast
lifecycle exactly as when the encoder stops by itself, so the answer is 202 and clients follow
the status.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from mediaserver.live import LiveStream
from storage import channels as channel_queries
from storage import queries
from storage.models import Channel, Stream, StreamStatus, User

from .documents import category_slug, channel_json, stream_json
from .errors import ApiError
from .identity import can_manage, current_user, require_manager, require_user
from .keys import CHAT_KEY, DB_KEY, REGISTRY_KEY
from .parsing import INT64_MAX, query_int, read_json
from .stream_links import STREAM_REF_DESCRIPTION, STREAM_REF_SCHEMA, load_stream

STREAM_LIST_DEFAULT = 20


def live_of(request: web.Request, stream: Stream, channel: Channel) -> LiveStream | None:
    """The registry's live stream for this row, if its publisher is connected now."""
    live = request.app[REGISTRY_KEY].get(channel.slug)
    if live is None or live.ended or live.stream_id != stream.id:
        return None
    return live


def status_json(
    request: web.Request, stream: Stream, channel: Channel, user: User | None
) -> dict[str, Any]:
    live = live_of(request, stream, channel)
    status = stream.status.value
    if stream.status is StreamStatus.LIVE and live is None:
        status = "ending"  # the publisher is gone; the row catches up in a moment
    uptime = None
    if live is not None:
        uptime = max(0, int((datetime.now(UTC) - live.started_at).total_seconds()))
    data: dict[str, Any] = {
        "id": stream.id,
        "channel": channel.slug,
        "status": status,
        "live": live is not None,
        "title": stream.title,
        "category": stream.category,
        "category_slug": category_slug(stream),
        "viewers": stream.viewer_count if live is not None else 0,
        "peak_viewers": stream.peak_viewers,
        "started_at": stream.started_at.isoformat() if stream.started_at else None,
        "uptime_seconds": uptime,
        "duration_seconds": stream.duration_seconds,
    }
    if can_manage(user, channel):
        # A stream another node of a cluster ingests has its figures there, not here.
        local = live is not None and not live.remote
        data["health"] = live.health(time.monotonic()) if local and live is not None else None
    return data


async def _load(request: web.Request, session: Any) -> tuple[Stream, Channel]:
    """The stream ``{id}`` names, by the rule of ``stream_links`` (an unlisted channel's
    stream by its id: 404 unless the caller manages it)."""
    return await load_stream(request, session, request.match_info["id"])


def _bool_query(request: web.Request, name: str) -> bool | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    if raw.lower() in ("1", "true", "yes"):
        return True
    if raw.lower() in ("0", "false", "no"):
        return False
    raise ApiError(400, "invalid", f"{name} must be true or false")


# -- handlers ---------------------------------------------------------------------------------


async def list_streams(request: web.Request) -> web.Response:
    live = _bool_query(request, "live")
    limit = query_int(
        request, "limit", STREAM_LIST_DEFAULT, minimum=1, maximum=channel_queries.STREAM_LIST_MAX
    )
    before = query_int(request, "before", None, minimum=1, maximum=INT64_MAX)
    slug = request.query.get("channel")
    async with request.app[DB_KEY].session() as session:
        channel_ids = None
        public_only = listed_only = True
        if slug:
            channel = (
                await queries.get_channel_by_slug(session, slug)
                if queries.SLUG_RE.fullmatch(slug)
                else None
            )
            if channel is None:
                raise ApiError(404, "not_found", f"no channel {slug!r}")
            channel_ids = [channel.id]
            public_only = False  # named explicitly: unlisted channels are reachable by slug
            # Its unlisted, private and deleted videos: for its owner and admins only.
            listed_only = not can_manage(await current_user(request), channel)
        rows = await channel_queries.list_streams(
            session,
            channel_ids=channel_ids,
            live=live,
            public_only=public_only,
            listed_only=listed_only,
            limit=limit or STREAM_LIST_DEFAULT,
            before_id=before,
        )
    return web.json_response(
        {"streams": [stream_json(s, c) for s, c in rows]}, headers={"Cache-Control": "no-store"}
    )


async def get_stream(request: web.Request) -> web.Response:
    async with request.app[DB_KEY].session() as session:
        stream, channel = await _load(request, session)
    return web.json_response(stream_json(stream, channel), headers={"Cache-Control": "no-store"})


async def update_stream(request: web.Request) -> web.Response:
    user = await require_user(request)
    body = await read_json(request)
    async with request.app[DB_KEY].session() as session:
        stream, channel = await _load(request, session)
        require_manager(user, channel)
        await channel_queries.update_stream(session, stream, channel, body)
        await session.commit()
        data = stream_json(stream, channel)
    chat = request.app.get(CHAT_KEY)
    if chat is not None and stream.status is StreamStatus.LIVE:
        await chat.stream_edited(channel.slug)  # joining sockets are told the new title
    return web.json_response(data)


async def stream_status(request: web.Request) -> web.Response:
    user = await current_user(request)
    async with request.app[DB_KEY].session() as session:
        stream, channel = await _load(request, session)
    return web.json_response(
        status_json(request, stream, channel, user), headers={"Cache-Control": "no-store"}
    )


async def end_stream(request: web.Request) -> web.Response:
    user = await require_user(request)
    async with request.app[DB_KEY].session() as session:
        stream, channel = await _load(request, session)
        require_manager(user, channel)
        if stream.status is not StreamStatus.LIVE:
            raise ApiError(
                409, "not_live", f"stream {stream.id} is not live (it is {stream.status.value})"
            )
        live = live_of(request, stream, channel)
        if live is None or not live.stop_publisher("ended"):
            # A LIVE row with no publisher behind it (left over): close it here.
            await queries.end_stream(session, stream.id, datetime.now(UTC), StreamStatus.OFFLINE)
            await session.commit()
        data = stream_json(stream, channel)
    if live is not None:
        data["status"] = "ending"
    return web.json_response(data, status=202)


async def dashboard_status(request: web.Request) -> web.Response:
    """The caller's channels with, for each live one, its status and health."""
    user = await require_user(request)
    async with request.app[DB_KEY].session() as session:
        channels = await channel_queries.user_channels(session, user.id)
        out = []
        for channel in channels:
            entry = channel_json(request, channel, user.username)
            entry["stream"] = None
            if entry["stream_id"] is not None:
                stream = await channel_queries.get_stream(session, entry["stream_id"])
                if stream is not None:
                    entry["stream"] = status_json(request, stream, channel, user)
            out.append(entry)
    return web.json_response({"channels": out}, headers={"Cache-Control": "no-store"})


def setup(app: web.Application) -> None:
    app.router.add_get("/api/streams", list_streams)
    app.router.add_get("/api/streams/{id}", get_stream)
    app.router.add_patch("/api/streams/{id}", update_stream)
    app.router.add_get("/api/streams/{id}/status", stream_status)
    app.router.add_post("/api/streams/{id}/end", end_stream)
    app.router.add_get("/api/dashboard", dashboard_status)


# -- OpenAPI -------------------------------------------------------------------------------

_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": STREAM_REF_DESCRIPTION,
    "schema": STREAM_REF_SCHEMA,
}
# A live channel's stream on the dashboard, or null when it is offline.
_STREAM_STATUS = {"$ref": "#/components/schemas/StreamStatus"}
_NULL = {"type": "null"}
_ERRORS = {
    str(code): {"$ref": f"#/components/responses/{name}"}
    for code, name in (
        (400, "BadRequest"),
        (401, "Unauthenticated"),
        (403, "Forbidden"),
        (404, "NotFound"),
    )
}
_STREAM = {"application/json": {"schema": {"$ref": "#/components/schemas/Stream"}}}

OPENAPI_SCHEMAS: dict[str, Any] = {
    "Stream": {
        "type": "object",
        "required": ["id", "channel", "title", "status"],
        "properties": {
            "id": {"type": "integer"},
            "channel": {"type": "string"},
            "channel_name": {"type": "string"},
            "title": {"type": "string"},
            "category": {"type": ["string", "null"], "description": "The category's name."},
            "category_slug": {"type": ["string", "null"], "description": "/categories/{slug}"},
            "tags": {
                "type": "array",
                "items": {"type": "string"},
                "description": "The channel's tags.",
            },
            "status": {"type": "string", "enum": ["live", "ending", "archived", "offline"]},
            "started_at": {"type": ["string", "null"], "format": "date-time"},
            "ended_at": {"type": ["string", "null"], "format": "date-time"},
            "duration_seconds": {"type": ["integer", "null"]},
            "viewer_count": {"type": "integer"},
            "peak_viewers": {"type": "integer"},
            "vod_available": {"type": "boolean"},
            "vod_url": {
                "type": ["string", "null"],
                "description": "/vod/{id}/master.m3u8; an unlisted channel's: "
                "/vod/{public id}/master.m3u8",
            },
            "vod_duration_seconds": {"type": ["number", "null"]},
            "watch_url": {"type": "string"},
        },
    },
    "StreamInput": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "title": {"type": "string", "maxLength": queries.TITLE_MAX},
            "category": {
                "type": ["string", "null"],
                "maxLength": channel_queries.CATEGORY_MAX,
                "description": "A catalogue category's slug or name (any case; "
                "GET /api/categories); null or empty: none. Unknown or retired: 400.",
            },
            "tags": {
                "type": "array",
                "maxItems": channel_queries.TAGS_MAX,
                "items": {"type": "string"},
            },
        },
    },
    "StreamStatus": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "channel": {"type": "string"},
            "status": {"type": "string"},
            "live": {"type": "boolean"},
            "title": {"type": "string"},
            "category": {"type": ["string", "null"]},
            "category_slug": {"type": ["string", "null"]},
            "viewers": {"type": "integer"},
            "peak_viewers": {"type": "integer"},
            "started_at": {"type": ["string", "null"]},
            "uptime_seconds": {"type": ["integer", "null"]},
            "duration_seconds": {"type": ["integer", "null"]},
            "health": {"$ref": "#/components/schemas/StreamHealth"},
        },
    },
    "StreamHealth": {
        "type": ["object", "null"],
        "description": "Owner or admin only; null when the publisher is not connected.",
        "properties": {
            "ingest": {
                "type": "object",
                "properties": {
                    "bitrate_kbps": {"type": "number"},
                    "video_kbps": {"type": "number"},
                    "frame_rate": {"type": "number"},
                    "keyframe_interval_s": {"type": ["number", "null"]},
                    "width": {"type": ["integer", "null"]},
                    "height": {"type": ["integer", "null"]},
                    "video_codec": {"type": ["string", "null"]},
                    "audio_codec": {"type": ["string", "null"]},
                    "audio_sample_rate": {"type": ["integer", "null"]},
                    "audio_channels": {"type": ["integer", "null"]},
                    "encoder": {"type": ["string", "null"]},
                    "bytes_total": {"type": "integer"},
                    "media_seconds": {"type": "number"},
                    "last_packet_age_s": {"type": ["number", "null"]},
                },
            },
            "transcode": {
                "type": ["object", "null"],
                "properties": {
                    "running": {"type": "boolean"},
                    "speed": {"type": "number"},
                    "dropped_frames": {"type": "integer"},
                    "decode_errors": {"type": "integer"},
                    "renditions": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "name": {"type": "string"},
                                "width": {"type": "integer"},
                                "height": {"type": "integer"},
                                "passthrough": {"type": "boolean"},
                                "fps": {"type": "number"},
                                "speed": {"type": "number", "description": "x real time"},
                                "frames": {"type": "integer"},
                                "dropped_frames": {"type": "integer"},
                                "video_kbps": {"type": ["integer", "null"]},
                            },
                        },
                    },
                },
            },
            "warnings": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                },
            },
            "segment_duration": {"type": "number"},
        },
    },
}

OPENAPI_PATHS: dict[str, Any] = {
    "/api/streams": {
        "get": {
            "summary": "Streams, newest first",
            "tags": ["streams"],
            "parameters": [
                {"name": "live", "in": "query", "schema": {"type": "boolean"}},
                {
                    "name": "channel",
                    "in": "query",
                    "schema": {"type": "string"},
                    "description": "A channel slug (unlisted channels too).",
                },
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": channel_queries.STREAM_LIST_MAX,
                    },
                },
                {
                    "name": "before",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1},
                    "description": "Only streams with a smaller id (paging).",
                },
            ],
            "responses": {
                "200": {
                    "description": "Streams",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "streams": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/Stream"},
                                    }
                                },
                            }
                        }
                    },
                },
                **_ERRORS,
            },
        },
    },
    "/api/streams/{id}": {
        "parameters": [_ID],
        "get": {
            "summary": "A stream",
            "tags": ["streams"],
            "responses": {"200": {"description": "The stream", "content": _STREAM}, **_ERRORS},
        },
        "patch": {
            "summary": "Edit title, category or tags (live too: viewers see it)",
            "tags": ["streams"],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/StreamInput"}}
                },
            },
            "responses": {"200": {"description": "Updated", "content": _STREAM}, **_ERRORS},
        },
    },
    "/api/streams/{id}/status": {
        "parameters": [_ID],
        "get": {
            "summary": "Live status and viewers; health for the owner or an admin",
            "tags": ["streams"],
            "responses": {
                "200": {
                    "description": "Status",
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/StreamStatus"}
                        }
                    },
                },
                **_ERRORS,
            },
        },
    },
    "/api/streams/{id}/end": {
        "parameters": [_ID],
        "post": {
            "summary": "End a live stream: disconnects the publisher",
            "tags": ["streams"],
            "responses": {
                "202": {"description": "Ending; follow /status", "content": _STREAM},
                "409": {"$ref": "#/components/responses/Conflict"},
                **_ERRORS,
            },
        },
    },
    "/api/dashboard": {
        "get": {
            "summary": "The caller's channels with live status and health (what the "
            "dashboard polls)",
            "tags": ["streams"],
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
                                        "items": {
                                            "allOf": [
                                                {"$ref": "#/components/schemas/Channel"},
                                                {
                                                    "type": "object",
                                                    "properties": {
                                                        "stream": {"oneOf": [_STREAM_STATUS, _NULL]}
                                                    },
                                                },
                                            ]
                                        },
                                    }
                                },
                            }
                        }
                    },
                },
                **_ERRORS,
            },
        },
    },
}
