"""Clips (issue 13): short cuts of a live stream (from the DVR buffer the server keeps) or of a
past broadcast, trimmed by the clipper, cut frame-accurately by ``transcode.smart_cut`` and
shared on their own page, embed and JSON API. ``service`` runs captures and cuts, ``media``
owns the files, ``api`` and ``pages`` the routes; visibility rules live in ``storage.clips``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp_jinja2
from aiohttp import web

from ..keys import DB_KEY, OBJECTS_KEY, SETTINGS_KEY
from . import api, pages
from .api import CLIPS_KEY, OPENAPI_PATHS, OPENAPI_SCHEMAS
from .service import ClipService, lifetime

__all__ = ["CLIPS_KEY", "OPENAPI_PATHS", "OPENAPI_SCHEMAS", "setup"]


async def _lifetime(app: web.Application) -> AsyncIterator[None]:
    async with lifetime(app[CLIPS_KEY]):
        yield


def setup(app: web.Application) -> None:
    settings = app[SETTINGS_KEY]
    app[CLIPS_KEY] = ClipService(
        app[DB_KEY], settings.data_dir, settings.clips, app.get(OBJECTS_KEY)
    )
    api.setup_routes(app)
    pages.setup_routes(app)
    app.cleanup_ctx.append(_lifetime)
    # The partials other pages include (the Clip button, the video page's clip form) read
    # the limits from here.
    aiohttp_jinja2.get_env(app).globals["clip_limits"] = settings.clips
