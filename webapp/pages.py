"""Viewer pages: the player page and what it polls (the home page is ``webapp.home``).

Routes: ``/streams/{slug}`` (Jinja2, autoescaped), ``/api/channels/{slug}/live`` (the
small JSON document the player page polls to go from offline to playing and back by itself),
``/thumbnails/{slug}.jpg`` and ``/static/``. hls.js is served from ``/static/vendor/`` as
copied there from npm by ``make`` (never from a CDN: the site must work on a LAN with no
internet, and a third-party script would see every viewer).

Whether a channel is live comes from the live registry (the publisher is connected right
now); titles, creators and viewer counts come from the database. "Playable" additionally
needs the live edge to hold at least one whole segment of every rendition, so a player that
starts then sees the full ladder in the master playlist and its first request succeeds.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from storage import channels as channel_queries
from storage import follows, queries
from storage.channels import ChannelWithOwner
from transcode.edge import LiveEdge

from .errors import json_error
from .identity import current_user, upload_url
from .keys import DB_KEY, EDGES_KEY, REGISTRY_KEY, SETTINGS_KEY
from .render import STATIC_DIR, not_found_page, render

log = logging.getLogger(__name__)

HLS_JS = STATIC_DIR / "vendor" / "hls.min.js"

# Thumbnails are rewritten every transcode.thumbnail_interval (10 s by default).
THUMBNAIL_CACHE = "public, max-age=10"
STATIC_CACHE = "public, max-age=3600"


def edge_playable(edge: LiveEdge | None, stream_id: int) -> bool:
    """The edge of this stream has every rendition announced so far with a whole segment."""
    if edge is None or edge.ended or edge.stream_id != stream_id:
        return False
    renditions = list(edge)
    return bool(renditions) and edge.announced() and all(r.segments for r in renditions)


async def live_status(
    app: web.Application, session: AsyncSession, info: ChannelWithOwner
) -> dict[str, Any]:
    """What the player page shows and polls: ``{"live", "stream_id", "title", ...}``."""
    channel = info.channel
    status: dict[str, Any] = {
        "live": False,
        "playable": False,
        "stream_id": None,
        "title": channel.name,
        "category": channel.category,
        "tags": list(channel.tags or []),
        "viewers": 0,
        "started_at": None,
        "creator": info.creator,
        "hls_url": f"/hls/{channel.slug}/master.m3u8",
    }
    live = app[REGISTRY_KEY].get(channel.slug)
    if live is None or live.ended or live.channel_id != channel.id:
        return status
    status.update(
        live=True,
        stream_id=live.stream_id,
        started_at=live.started_at.isoformat(),
        playable=edge_playable(app[EDGES_KEY].get(channel.slug), live.stream_id),
    )
    row = await channel_queries.get_stream(session, live.stream_id)
    if row is not None:
        status.update(
            title=row.title, category=row.category or channel.category, viewers=row.viewer_count
        )
    return status


def thumbnail_file(app: web.Application, slug: str) -> Path:
    return app[SETTINGS_KEY].data_dir / "thumbnails" / f"{slug}.jpg"


# -- handlers -----------------------------------------------------------------------------


async def stream_page(request: web.Request) -> web.Response:
    slug = request.match_info["slug"]
    async with request.app[DB_KEY].session() as session:
        info = await channel_queries.channel_with_owner(session, slug)
        if info is None:
            return not_found_page(request, "channel")
        status = await live_status(request.app, session, info)
        # The identity middleware already resolved who is viewing (pages with a session cookie).
        viewer = await current_user(request)
        following = viewer is not None and await follows.is_following(
            session, viewer.id, info.channel.id
        )
    return render(
        request,
        "stream.html",
        {
            "following": following,
            "follower_count": info.channel.follower_count,
            "slug": info.channel.slug,
            "channel_name": info.channel.name,
            "creator": info.creator,
            "status": status,
            "avatar_url": upload_url(info.channel.avatar_path),
            "banner_url": upload_url(info.channel.banner_path),
            # Seconds the server keeps the playlists open for a publisher to come back.
            "reconnect_grace": request.app[SETTINGS_KEY].hls.reconnect_grace,
        },
    )


async def live_api(request: web.Request) -> web.Response:
    slug = request.match_info["slug"]
    async with request.app[DB_KEY].session() as session:
        info = await channel_queries.channel_with_owner(session, slug)
        if info is None:
            return json_error(404, "not_found", f"no channel {slug!r}")
        status = await live_status(request.app, session, info)
    return web.json_response(status, headers={"Cache-Control": "no-store"})


async def thumbnail(request: web.Request) -> web.StreamResponse:
    slug = request.match_info["slug"]
    if not queries.SLUG_RE.fullmatch(slug):
        raise web.HTTPNotFound()
    # The slug is checked against the slug pattern above, so it cannot leave the directory.
    path = thumbnail_file(request.app, slug)
    if not path.is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(
        path,
        headers={
            "Cache-Control": THUMBNAIL_CACHE,
            "Content-Type": "image/jpeg",
            "X-Content-Type-Options": "nosniff",
        },
    )


async def _static_cache_headers(request: web.Request, response: web.StreamResponse) -> None:
    if request.path.startswith("/static/") and response.status == 200:
        response.headers.setdefault("Cache-Control", STATIC_CACHE)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")


def setup(app: web.Application) -> None:
    """Register the viewer pages and their assets on ``app``."""
    if not HLS_JS.is_file():
        log.warning(
            "%s is missing: the player page cannot play video until `make run` "
            "(npm ci) copies hls.js there",
            HLS_JS,
        )
    app.router.add_get("/streams/{slug}", stream_page, name="stream")
    app.router.add_get("/api/channels/{slug}/live", live_api, name="channel-live")
    app.router.add_get("/thumbnails/{slug}.jpg", thumbnail, name="thumbnail")
    app.router.add_static("/static/", STATIC_DIR, name="static", append_version=False)
    app.on_response_prepare.append(_static_cache_headers)
