"""The destinations JSON API, under ``/api/channels/{slug}/destinations``: the channel's owner
(or an admin) lists destinations with their live status, adds, edits and deletes them. The
stream key is write-only: answers carry ``key_hint`` (its last four characters). Bad fields:
400 in the error shape; someone else's channel: 403."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from mediaserver.settings import RestreamSettings
from storage import restream as store
from storage.errors import ValidationError
from storage.restream_models import ORIGINAL, PRESETS

from ..identity import require_user
from ..keys import DB_KEY, RESTREAM_CHANGED_KEY, SETTINGS_KEY
from ..openapi import SLUG_PARAM, error_response, json_body, json_response
from ..parsing import field, path_id, read_json
from .common import destination_json, managed_channel, rung_names, statuses

NO_STORE = {"Cache-Control": "no-store"}


def _reply(data: dict[str, Any], status: int = 200) -> web.Response:
    return web.json_response(data, status=status, headers=NO_STORE)


async def list_destinations(request: web.Request) -> web.Response:
    user = await require_user(request)
    async with request.app[DB_KEY].session() as session:
        channel = await managed_channel(request, session, user)
        rows = await store.list_destinations(session, channel.id)
    live = statuses(request, channel)
    return _reply({"destinations": [destination_json(r, live.get(r.id)) for r in rows]})


def _ca_file(settings: RestreamSettings, name: str | None) -> str | None:
    """A CA file the operator put in restream.ca_dir, by its name (checked as typed, then
    that it is there)."""
    name = store.check_ca_file(name)
    if name is None:
        return None
    if not settings.ca_dir:
        raise ValidationError(
            "this server trusts no extra CA files (its operator has not set restream.ca_dir)"
        )
    if not (Path(settings.ca_dir) / name).is_file():
        raise ValidationError(f"there is no CA file named {name!r} in the server's CA directory")
    return name


async def create_destination(request: web.Request) -> web.Response:
    user = await require_user(request)
    body = await read_json(request)
    name = field(body, "name", str)
    preset = field(body, "preset", str, required=False, default="custom")
    url = field(body, "ingest_url", str, required=False)
    key = field(body, "stream_key", str)
    enabled = field(body, "enabled", bool, required=False, default=True)
    source = field(body, "source", str, required=False, default=ORIGINAL)
    ca_file = field(body, "ca_file", str, required=False)
    settings = request.app[SETTINGS_KEY].restream
    async with request.app[DB_KEY].session() as session:
        channel = await managed_channel(request, session, user)
        source = store.check_source(source, rung_names(request, channel))
        store.check_key(key, settings.max_key_length)
        if url is not None:
            store.check_url(url, settings.max_url_length)
        ca_file = _ca_file(settings, ca_file)
        row = await store.create_destination(
            session,
            channel.id,
            name=name,
            preset=preset,
            ingest_url=url,
            stream_key=key,
            enabled=enabled,
            source=source,
            ca_file=ca_file,
            max_per_channel=settings.max_per_channel,
        )
        await session.commit()
        request.app[RESTREAM_CHANGED_KEY](channel.id)
        return _reply({"destination": destination_json(row, None)}, 201)


async def update_destination(request: web.Request) -> web.Response:
    user = await require_user(request)
    destination_id = path_id(request, "destination_id", "destination")
    body = await read_json(request)
    name = field(body, "name", str, required=False)
    preset = field(body, "preset", str, required=False)
    url = field(body, "ingest_url", str, required=False)
    key = field(body, "stream_key", str, required=False)
    enabled = field(body, "enabled", bool, required=False)
    source = field(body, "source", str, required=False)
    ca_file = field(body, "ca_file", str, required=False)
    clear_ca = "ca_file" in body and body["ca_file"] in (None, "")
    settings = request.app[SETTINGS_KEY].restream
    async with request.app[DB_KEY].session() as session:
        channel = await managed_channel(request, session, user)
        row = await store.get_destination(session, channel.id, destination_id)
        if source is not None:
            source = store.check_source(source, rung_names(request, channel))
        if key is not None:
            store.check_key(key, settings.max_key_length)
        if url is not None:
            store.check_url(url, settings.max_url_length)
        ca_file = _ca_file(settings, ca_file or None)
        await store.update_destination(
            session,
            row,
            name=name,
            preset=preset,
            ingest_url=url,
            stream_key=key,
            enabled=enabled,
            source=source,
            ca_file=ca_file or None,
            clear_ca_file=clear_ca,
        )
        await session.commit()
        request.app[RESTREAM_CHANGED_KEY](channel.id)
        data = destination_json(row, statuses(request, channel).get(row.id))
    return _reply({"destination": data})


async def delete_destination(request: web.Request) -> web.Response:
    user = await require_user(request)
    destination_id = path_id(request, "destination_id", "destination")
    async with request.app[DB_KEY].session() as session:
        channel = await managed_channel(request, session, user)
        await store.delete_destination(session, channel.id, destination_id)
        await session.commit()
        request.app[RESTREAM_CHANGED_KEY](channel.id)
    return web.Response(status=204, headers=NO_STORE)


BASE = "/api/channels/{slug}/destinations"
ONE = BASE + "/{destination_id}"


def setup_routes(app: web.Application) -> None:
    app.router.add_get(BASE, list_destinations)
    app.router.add_post(BASE, create_destination)
    app.router.add_patch(ONE, update_destination)
    app.router.add_delete(ONE, delete_destination)


# -- OpenAPI -------------------------------------------------------------------------------

_DEST = {"$ref": "#/components/schemas/RestreamDestination"}
_ERRORS = {
    "401": {"$ref": "#/components/responses/Unauthenticated"},
    "403": {"$ref": "#/components/responses/Forbidden"},
    "404": {"$ref": "#/components/responses/NotFound"},
}
_BAD = {
    "400": error_response(
        "Bad name, preset, ingest URL (rtmp:// or rtmps:// with an application), stream key, "
        "source (original or a rung of the channel's ladder) or CA file, or too many destinations"
    )
}
_FIELDS: dict[str, Any] = {
    "name": {"type": "string", "maxLength": 64},
    "preset": {
        "type": "string",
        "enum": list(PRESETS),
        "description": "A platform whose ingest URL is filled in, or custom",
    },
    "ingest_url": {
        "type": "string",
        "description": "rtmp://host[:port]/app or rtmps://... (custom preset only)",
    },
    "enabled": {"type": "boolean"},
    "source": {
        "type": "string",
        "description": "original (copied, no re-encode) or the name of a rung of the ladder",
    },
    "ca_file": {
        "type": ["string", "null"],
        "description": "Name of a PEM CA file in the server's restream.ca_dir, trusted for "
        "this rtmps destination",
    },
}
_KEY = {"type": "string", "description": "The destination's stream key (write-only)"}
_STATUS: dict[str, Any] = {
    "type": "object",
    "required": ["state"],
    "properties": {
        "state": {"type": "string", "enum": ["connecting", "live", "retrying", "stopped"]},
        "since_seconds": {"type": ["number", "null"]},
        "uptime_seconds": {"type": ["number", "null"]},
        "bitrate_kbps": {"type": ["number", "null"]},
        "bytes_sent": {"type": "integer"},
        "dropped_packets": {"type": "integer"},
        "reconnects": {"type": "integer"},
        "next_attempt_in": {"type": ["number", "null"]},
        "last_error": {"type": ["string", "null"]},
        "sending": {
            "type": ["string", "null"],
            "description": "While live: original, or the rung sent (a platform preset gets "
            "the top rung when the source is not H.264)",
        },
    },
}


def _envelope(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": [name], "properties": {name: schema}}


OPENAPI_SCHEMAS: dict[str, Any] = {
    "RestreamDestination": {
        "type": "object",
        "required": [
            "id",
            "name",
            "preset",
            "ingest_url",
            "key_hint",
            "enabled",
            "source",
            "created_at",
            "status",
        ],
        "properties": {
            "id": {"type": "integer"},
            **_FIELDS,
            "key_hint": {
                "type": "string",
                "description": "The stream key's last 4 characters (empty for short keys)",
            },
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
            "status": _STATUS,
        },
    },
}

OPENAPI_PATHS: dict[str, Any] = {
    BASE: {
        "parameters": [SLUG_PARAM],
        "get": {
            "summary": "The channel's restream destinations with their live status "
            "(owner or admin)",
            "tags": ["destinations"],
            "responses": {
                "200": json_response(
                    "Destinations",
                    _envelope("destinations", {"type": "array", "items": _DEST}),
                ),
                **_ERRORS,
            },
        },
        "post": {
            "summary": "Add a restream destination (owner or admin)",
            "tags": ["destinations"],
            "requestBody": json_body(
                {
                    "type": "object",
                    "required": ["name", "stream_key"],
                    "properties": {**_FIELDS, "stream_key": _KEY},
                }
            ),
            "responses": {
                "201": json_response("Created", _envelope("destination", _DEST)),
                **_BAD,
                **_ERRORS,
            },
        },
    },
    ONE: {
        "parameters": [
            SLUG_PARAM,
            {
                "name": "destination_id",
                "in": "path",
                "required": True,
                "schema": {"type": "integer", "minimum": 1},
            },
        ],
        "patch": {
            "summary": "Change a destination; takes effect on a live relay at once, or within "
            "restream.refresh_interval when the relay runs on another node (owner or admin)",
            "tags": ["destinations"],
            "requestBody": json_body(
                {"type": "object", "properties": {**_FIELDS, "stream_key": _KEY}}
            ),
            "responses": {
                "200": json_response("Changed", _envelope("destination", _DEST)),
                **_BAD,
                **_ERRORS,
            },
        },
        "delete": {
            "summary": "Delete a destination (owner or admin)",
            "tags": ["destinations"],
            "responses": {"204": {"description": "Deleted"}, **_ERRORS},
        },
    },
}
