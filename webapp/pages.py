"""The assets every page loads: ``/thumbnails/{slug}.jpg`` and ``/static/``. The home page
(``/``) is ``webapp.home``; the channel page (``/streams/{slug}``) and what it polls are
``webapp.channel_page``. hls.js is served from ``/static/vendor/`` as copied there from npm
by ``make`` (never from a CDN: the site must work on a LAN with no internet, and a
third-party script would see every viewer).
"""

from __future__ import annotations

import logging
from pathlib import Path

from aiohttp import web

from storage import queries

from .keys import SETTINGS_KEY
from .render import STATIC_DIR
from .sharing import thumbnail_from_store
from .stored import stored_file

log = logging.getLogger(__name__)

HLS_JS = STATIC_DIR / "vendor" / "hls.min.js"

# Thumbnails are rewritten every transcode.thumbnail_interval (10 s by default).
THUMBNAIL_CACHE = "public, max-age=10"
STATIC_CACHE = "public, max-age=3600"


def thumbnail_file(app: web.Application, slug: str) -> Path:
    return app[SETTINGS_KEY].data_dir / "thumbnails" / f"{slug}.jpg"


# -- handlers -----------------------------------------------------------------------------


async def thumbnail(request: web.Request) -> web.StreamResponse:
    slug = request.match_info["slug"]
    if not queries.SLUG_RE.fullmatch(slug):
        raise web.HTTPNotFound()
    # The slug is checked against the slug pattern above, so it cannot leave the directory.
    headers = {
        "Cache-Control": THUMBNAIL_CACHE,
        "Content-Type": "image/jpeg",
        "X-Content-Type-Options": "nosniff",
    }
    # This node's file, or (S3 mode) the one the channel's origin sent to the bucket: that
    # one first unless the channel is transcoded here (this node's copy may be of a broadcast
    # it transcoded before the channel went live on another origin).
    store_first = thumbnail_from_store(request.app, slug)
    response = await stored_file(
        request, f"thumbnails/{slug}.jpg", headers, store_first=store_first
    )
    if response is None:
        raise web.HTTPNotFound()
    return response


async def _static_cache_headers(request: web.Request, response: web.StreamResponse) -> None:
    if request.path.startswith("/static/") and response.status == 200:
        response.headers.setdefault("Cache-Control", STATIC_CACHE)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")


def setup(app: web.Application) -> None:
    """Register the thumbnails and static assets on ``app``."""
    if not HLS_JS.is_file():
        log.warning(
            "%s is missing: the player page cannot play video until `make run` "
            "(npm ci) copies hls.js there",
            HLS_JS,
        )
    app.router.add_get("/thumbnails/{slug}.jpg", thumbnail, name="thumbnail")
    app.router.add_static("/static/", STATIC_DIR, name="static", append_version=False)
    app.on_response_prepare.append(_static_cache_headers)
