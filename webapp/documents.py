"""A channel and a stream as the API and the dashboard show them, and the API's lookup of the
channel a path names.

Several areas answer with these documents (the channels and streams APIs, the dashboard, the
follow button), so they live under all of them; who may see the private fields is
``identity.can_manage``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from sqlalchemy import inspect
from sqlalchemy.orm import InstanceState

from storage import channels as channel_queries
from storage.models import Channel, Stream, StreamStatus

from .errors import ApiError
from .identity import upload_url
from .keys import REGISTRY_KEY, RTMP_PORT_KEY, RTMPS_PORT_KEY, SETTINGS_KEY
from .stream_links import stream_ref


def rtmp_server(request: web.Request) -> str:
    """What a creator pastes into OBS as Server: ``rtmp.public_url`` when set, else the host
    the creator reached this site by (``http.public_url``, else the request) and our RTMP port."""
    settings = request.app[SETTINGS_KEY]
    if settings.rtmp.public_url:
        return settings.rtmp.public_url.rstrip("/")
    port = request.app[RTMP_PORT_KEY] or settings.rtmp.port
    suffix = "" if port == 1935 else f":{port}"
    return f"rtmp://{_ingest_host(request, '')}{suffix}/{settings.rtmp.app}"


def rtmps_server(request: web.Request) -> str | None:
    """The same over TLS (``rtmp.tls_port``), or None when RTMPS is off: the host of
    ``rtmp.public_url`` when set (the name its certificate is for), else as for RTMP."""
    port = request.app[RTMPS_PORT_KEY]
    if not port:
        return None
    settings = request.app[SETTINGS_KEY]
    host = _ingest_host(request, settings.rtmp.public_url)
    suffix = "" if port == 443 else f":{port}"  # 443: what encoders assume for rtmps://
    return f"rtmps://{host}{suffix}/{settings.rtmp.app}"


def _ingest_host(request: web.Request, public_url: str) -> str:
    settings = request.app[SETTINGS_KEY]
    host = (urlsplit(public_url).hostname or "") if public_url else ""
    if not host and settings.http.public_url:
        host = urlsplit(settings.http.public_url).hostname or ""
    if not host:
        host = request.url.host or "localhost"
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    return host


def obs_settings(request: web.Request, channel: Channel) -> dict[str, str]:
    server = rtmp_server(request)
    obs = {
        "server": server,
        "stream_key": channel.stream_key,
        "url": f"{server}/{channel.stream_key}",
    }
    tls_server = rtmps_server(request)
    if tls_server is not None:
        obs["rtmps_server"] = tls_server
        obs["rtmps_url"] = f"{tls_server}/{channel.stream_key}"
    return obs


def live_stream_id(request: web.Request, channel: Channel) -> int | None:
    """The id of the channel's stream if its publisher is connected right now."""
    live = request.app[REGISTRY_KEY].get(channel.slug)
    if live is None or live.ended or live.channel_id != channel.id:
        return None
    return live.stream_id


def category_slug(row: Channel | Stream) -> str | None:
    """The catalogue slug of a channel's or stream's category, as loaded with the row (never a
    query: storage loads the entry with the row and sets it with ``category_id``)."""
    state: InstanceState[Any] = inspect(row)
    if row.category_id is None or "category_entry" in state.unloaded:
        return None
    entry = row.category_entry
    return None if entry is None else entry.slug


def channel_json(
    request: web.Request, channel: Channel, owner: str, *, private: bool = False
) -> dict[str, Any]:
    """A channel as the API shows it; ``private`` adds the stream key and OBS settings."""
    stream_id = live_stream_id(request, channel)
    data: dict[str, Any] = {
        "id": channel.id,
        "slug": channel.slug,
        "name": channel.name,
        "description": channel.description,
        "category": channel.category,
        "category_slug": category_slug(channel),
        "language": channel.language,
        "tags": list(channel.tags or []),
        "is_public": channel.is_public,
        "owner": owner,
        "avatar_url": upload_url(channel.avatar_path),
        "banner_url": upload_url(channel.banner_path),
        "url": f"/streams/{channel.slug}",
        "hls_url": f"/hls/{channel.slug}/master.m3u8",
        "live": stream_id is not None,
        "stream_id": stream_id,
        "follower_count": channel.follower_count,
        "total_streams": channel.total_streams,
        "created_at": channel.created_at.isoformat(),
    }
    if private:
        obs = obs_settings(request, channel)
        data["stream_key"] = channel.stream_key
        data["rtmp"] = obs
    return data


async def load_channel(request: web.Request, session: Any) -> tuple[Channel, str]:
    """The channel named by ``{slug}`` and its owner's username, or a 404 ApiError."""
    slug = request.match_info["slug"]
    found = await channel_queries.channel_with_owner(session, slug)
    if found is None:
        raise ApiError(404, "not_found", f"no channel {slug!r}")
    return found.channel, found.owner.username


def stream_json(stream: Stream, channel: Channel) -> dict[str, Any]:
    vod = stream.vod_available and stream.status is StreamStatus.ARCHIVED
    ref = stream_ref(stream, channel)  # an unlisted channel's recordings: the public id
    return {
        "id": stream.id,
        "channel": channel.slug,
        "channel_name": channel.name,
        "title": stream.title,
        "category": stream.category,
        "category_slug": category_slug(stream),
        "tags": list(channel.tags or []),
        "status": stream.status.value,
        "started_at": stream.started_at.isoformat() if stream.started_at else None,
        "ended_at": stream.ended_at.isoformat() if stream.ended_at else None,
        "duration_seconds": stream.duration_seconds,
        "viewer_count": stream.viewer_count,
        "peak_viewers": stream.peak_viewers,
        "vod_available": bool(vod),
        "vod_url": f"/vod/{ref}/master.m3u8" if vod else None,
        "vod_duration_seconds": stream.vod_duration_seconds if vod else None,
        "watch_url": f"/videos/{ref}" if vod else f"/streams/{channel.slug}",
    }
