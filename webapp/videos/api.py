"""The video library's JSON API (issue 13), what ``/dashboard/videos`` does its work through.

* ``GET /api/channels/{slug}/videos``: a channel's past broadcasts (every visibility, deleted
  ones too) with its storage used and its video settings; the owner or an admin only.
* ``PATCH /api/channels/{slug}/video-settings``: its retention limits (null: the server's)
  and whether viewers may download and clip its videos.
* ``GET /api/videos/{id}``: one video, for whoever may reach it (``stream_links``).
* ``PATCH /api/videos/{id}``: title, description, visibility, pinned (the owner or an admin).
* ``DELETE /api/videos/{id}``: removes its files; the row stays, marked deleted.

A video someone may not reach answers 404 as one that does not exist; one they may reach but
not manage answers 403. Writes need the CSRF header with the session cookie, as every API.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from storage import queries
from storage import videos as video_queries
from storage.models import Channel, Stream, StreamStatus, User

from ..errors import ApiError
from ..identity import can_manage, current_user, require_manager, require_user
from ..keys import DB_KEY, OBJECTS_KEY, SETTINGS_KEY
from ..openapi import SLUG_PARAM, json_body, json_response
from ..parsing import INT64_MAX, query_int, read_json
from ..stream_links import STREAM_REF_DESCRIPTION, STREAM_REF_SCHEMA, find_stream
from .common import video_json

log = logging.getLogger(__name__)
NO_STORE = {"Cache-Control": "no-store"}
ENDED = (StreamStatus.OFFLINE, StreamStatus.ARCHIVED)


def settings_json(request: web.Request, channel: Channel) -> dict[str, Any]:
    defaults = request.app[SETTINGS_KEY].videos
    return {
        "retention_days": channel.retention_days,
        "retention_max_gb": channel.retention_max_gb,
        "allow_downloads": channel.allow_downloads,
        "allow_vod_clips": channel.allow_vod_clips,
        "default_retention_days": defaults.retention_days,
        "default_retention_max_gb": defaults.retention_max_gb,
    }


async def managed_channel(request: web.Request, session: Any) -> tuple[User, Channel]:
    """The ``{slug}`` channel, for its owner or an admin (401 / 403 / 404 otherwise)."""
    user = await require_user(request)
    slug = request.match_info["slug"]
    channel = None
    if queries.SLUG_RE.fullmatch(slug):
        channel = await queries.get_channel_by_slug(session, slug)
    if channel is None:
        raise ApiError(404, "not_found", f"no channel {slug[:64]!r}")
    require_manager(user, channel)
    return user, channel


async def _video(
    request: web.Request, session: Any, *, manage: bool
) -> tuple[Stream, Channel, User | None]:
    """The ``{id}`` video as this caller may reach it; with ``manage`` only for its owner or
    an admin (403 for others who can reach it)."""
    user = await (require_user(request) if manage else current_user(request))
    found = await find_stream(request, session, request.match_info["id"])
    if found is None or found[0].status not in ENDED:
        raise ApiError(404, "not_found", f"no video {request.match_info['id'][:40]!r}")
    stream, channel = found
    manager = can_manage(user, channel)
    if stream.deleted_at is not None and not manager:
        raise ApiError(404, "not_found", f"no video {request.match_info['id'][:40]!r}")
    if manage and user is not None:
        require_manager(user, channel)
    return stream, channel, user


async def list_channel_videos(request: web.Request) -> web.Response:
    page_max = request.app[SETTINGS_KEY].videos.page_size
    limit = query_int(request, "limit", page_max, minimum=1, maximum=page_max)
    before = query_int(request, "before", None, minimum=1, maximum=INT64_MAX)
    async with request.app[DB_KEY].session() as session:
        _, channel = await managed_channel(request, session)
        rows = await video_queries.channel_videos(
            session, channel.id, limit=limit + 1, before_id=before
        )
        used = await video_queries.storage_used(session, channel.id)
    more = len(rows) > limit
    rows = rows[:limit]
    return web.json_response(
        {
            "channel": channel.slug,
            "videos": [video_json(s, channel, private=True) for s in rows],
            "next_before": rows[-1].id if more and rows else None,
            "storage_bytes": used,
            "settings": settings_json(request, channel),
        },
        headers=NO_STORE,
    )


async def update_channel_settings(request: web.Request) -> web.Response:
    body = await read_json(request)
    async with request.app[DB_KEY].session() as session:
        _, channel = await managed_channel(request, session)
        await video_queries.update_channel_video_settings(session, channel, body)
        await session.commit()
        data = settings_json(request, channel)
    return web.json_response(data, headers=NO_STORE)


async def get_video(request: web.Request) -> web.Response:
    async with request.app[DB_KEY].session() as session:
        stream, channel, user = await _video(request, session, manage=False)
    data = video_json(stream, channel, private=can_manage(user, channel))
    return web.json_response(data, headers=NO_STORE)


async def update_video(request: web.Request) -> web.Response:
    body = await read_json(request)
    async with request.app[DB_KEY].session() as session:
        stream, channel, _ = await _video(request, session, manage=True)
        if stream.deleted_at is not None:
            raise ApiError(409, "deleted", "this video was deleted")
        await video_queries.update_video(session, stream, body)
        await session.commit()
        data = video_json(stream, channel, private=True)
    return web.json_response(data, headers=NO_STORE)


async def delete_video(request: web.Request) -> web.Response:
    data_dir = request.app[SETTINGS_KEY].data_dir
    async with request.app[DB_KEY].session() as session:
        stream, channel, user = await _video(request, session, manage=True)
        thumbnail = stream.thumbnail_path
        # The row first: from its commit on no route reaches the files being removed.
        await video_queries.mark_deleted(session, stream)
        await session.commit()
        data = video_json(stream, channel, private=True)
    await asyncio.to_thread(video_queries.remove_recording, data_dir, stream.id, thumbnail)
    await video_queries.remove_stored_recording(request.app[OBJECTS_KEY], stream.id, thumbnail)
    log.info(
        "video %d of %s deleted by %s", stream.id, channel.slug, user.username if user else "?"
    )
    return web.json_response(data, headers=NO_STORE)


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/api/channels/{slug}/videos", list_channel_videos)
    app.router.add_patch("/api/channels/{slug}/video-settings", update_channel_settings)
    app.router.add_get("/api/videos/{id}", get_video)
    app.router.add_patch("/api/videos/{id}", update_video)
    app.router.add_delete("/api/videos/{id}", delete_video)


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
_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": STREAM_REF_DESCRIPTION,
    "schema": STREAM_REF_SCHEMA,
}
_VIDEO = {"$ref": "#/components/schemas/Video"}
_NULLABLE_STRING = {"type": ["string", "null"]}
_SETTINGS_FIELDS: dict[str, Any] = {
    "retention_days": {
        "type": ["integer", "null"],
        "minimum": 0,
        "maximum": video_queries.RETENTION_DAYS_MAX,
        "description": "Keep videos at most this many days (0: forever; null: the server's).",
    },
    "retention_max_gb": {
        "type": ["number", "null"],
        "minimum": 0,
        "maximum": video_queries.RETENTION_GB_MAX,
        "description": "Keep at most this many GB of videos (0: no limit; null: the server's).",
    },
    "allow_downloads": {"type": "boolean"},
    "allow_vod_clips": {"type": "boolean"},
}

OPENAPI_SCHEMAS: dict[str, Any] = {
    "Video": {
        "type": "object",
        "required": ["id", "public_id", "ref", "title", "visibility", "views", "channel", "url"],
        "properties": {
            "id": {"type": "integer"},
            "public_id": {"type": "string"},
            "ref": {"type": "string", "description": "How the site's URLs name it."},
            "title": {"type": "string"},
            "description": {"type": "string"},
            "duration": {"type": ["number", "null"]},
            "vod_duration_seconds": {"type": ["number", "null"]},
            "started_at": {**_NULLABLE_STRING, "format": "date-time"},
            "ended_at": {**_NULLABLE_STRING, "format": "date-time"},
            "views": {"type": "integer", "minimum": 0},
            "peak_viewers": {"type": "integer"},
            "category": _NULLABLE_STRING,
            "category_slug": _NULLABLE_STRING,
            "channel": {"type": "string"},
            "channel_name": {"type": "string"},
            "visibility": {"type": "string", "enum": list(video_queries.VISIBILITIES)},
            "status": {"type": "string"},
            "deleted": {"type": "boolean"},
            "url": {"type": "string"},
            "vod_url": _NULLABLE_STRING,
            "thumbnail_url": _NULLABLE_STRING,
            "pinned": {"type": "boolean", "description": "Owner and admins only."},
            "size_bytes": {
                "type": ["integer", "null"],
                "description": "Bytes on disk (owner and admins only; null: not measured).",
            },
            "deleted_at": {**_NULLABLE_STRING, "format": "date-time"},
        },
    },
    "ChannelVideoSettings": {
        "type": "object",
        "properties": {
            **_SETTINGS_FIELDS,
            "default_retention_days": {"type": "integer"},
            "default_retention_max_gb": {"type": "number"},
        },
    },
}

OPENAPI_PATHS: dict[str, Any] = {
    "/api/channels/{slug}/videos": {
        "parameters": [SLUG_PARAM],
        "get": {
            "summary": "A channel's past broadcasts for its owner (every visibility, deleted "
            "ones too), newest first, with the storage they use and the channel's video "
            "settings",
            "tags": ["videos"],
            "parameters": [
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1}},
                {
                    "name": "before",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1},
                    "description": "Only videos with a smaller id (paging: next_before).",
                },
            ],
            "responses": {
                "200": json_response(
                    "The channel's videos",
                    {
                        "type": "object",
                        "required": ["videos", "storage_bytes", "settings"],
                        "properties": {
                            "channel": {"type": "string"},
                            "videos": {"type": "array", "items": _VIDEO},
                            "next_before": {"type": ["integer", "null"]},
                            "storage_bytes": {"type": "integer", "minimum": 0},
                            "settings": {"$ref": "#/components/schemas/ChannelVideoSettings"},
                        },
                    },
                ),
                **_ERRORS,
            },
        },
    },
    "/api/channels/{slug}/video-settings": {
        "parameters": [SLUG_PARAM],
        "patch": {
            "summary": "Set a channel's retention limits and what viewers may do with its "
            "videos (download, clip)",
            "tags": ["videos"],
            "requestBody": json_body(
                {"type": "object", "additionalProperties": False, "properties": _SETTINGS_FIELDS}
            ),
            "responses": {
                "200": json_response(
                    "The settings now", {"$ref": "#/components/schemas/ChannelVideoSettings"}
                ),
                **_ERRORS,
            },
        },
    },
    "/api/videos/{id}": {
        "parameters": [_ID],
        "get": {
            "summary": "A past broadcast (a private one for its owner and admins only)",
            "tags": ["videos"],
            "responses": {"200": json_response("The video", _VIDEO), **_ERRORS},
        },
        "patch": {
            "summary": "Edit a video's title, description, visibility or pin (owner or admin)",
            "tags": ["videos"],
            "requestBody": json_body(
                {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "title": {"type": "string", "minLength": 1, "maxLength": 140},
                        "description": {"type": ["string", "null"], "maxLength": 5000},
                        "visibility": {
                            "type": "string",
                            "enum": list(video_queries.VISIBILITIES),
                        },
                        "pinned": {"type": "boolean"},
                    },
                }
            ),
            "responses": {
                "200": json_response("The video now", _VIDEO),
                "409": {"$ref": "#/components/responses/Conflict"},
                **_ERRORS,
            },
        },
        "delete": {
            "summary": "Delete a video's files (owner or admin); the row stays, marked deleted",
            "tags": ["videos"],
            "responses": {"200": json_response("The video, deleted", _VIDEO), **_ERRORS},
        },
    },
}
