"""What the destinations API and page share: who may manage (the channel's owner or an
admin), the rung names a destination may ask for, and the JSON shape, in which the stream key
is only ever its last four characters (``key_hint``)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from mediaserver.settings import SettingsError, parse_ladder
from storage import channels as channel_queries
from storage.models import Channel, User
from storage.restream import key_hint
from storage.restream_models import RestreamDestination

from ..errors import ApiError
from ..identity import require_manager
from ..keys import RESTREAM_STATUS_KEY, SETTINGS_KEY

STOPPED: dict[str, Any] = {
    "state": "stopped",
    "since_seconds": None,
    "uptime_seconds": None,
    "bitrate_kbps": None,
    "bytes_sent": 0,
    "dropped_packets": 0,
    "reconnects": 0,
    "next_attempt_in": None,
    "last_error": None,
    "sending": None,
}


async def managed_channel(request: web.Request, session: AsyncSession, user: User) -> Channel:
    """The ``{slug}`` channel if ``user`` owns it or is an admin: 404 unknown, 403 otherwise."""
    found = await channel_queries.channel_with_owner(session, request.match_info["slug"])
    if found is None:
        raise ApiError(404, "not_found", "no such channel")
    require_manager(user, found.channel)
    return found.channel


def rung_names(request: web.Request, channel: Channel) -> list[str]:
    """The channel's ladder (its own if valid, else the server's), by name."""
    rungs = request.app[SETTINGS_KEY].transcode.ladder
    if channel.ladder:
        try:
            rungs = parse_ladder(channel.ladder, "channel ladder")
        except SettingsError:
            pass
    return [r.name for r in rungs]


def destination_json(row: RestreamDestination, status: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "preset": row.preset,
        "ingest_url": row.ingest_url,
        "key_hint": key_hint(row.stream_key),
        "enabled": row.enabled,
        "source": row.source,
        "ca_file": row.ca_file,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
        "status": status or STOPPED,
    }


def statuses(request: web.Request, channel: Channel) -> dict[int, dict[str, Any]]:
    return request.app[RESTREAM_STATUS_KEY](channel.id)
