"""The video library (issue 13): the public video page, the creator's ``/dashboard/videos``
with its JSON API, views counted once per viewer session, and retention of old recordings.

Who may watch a video is ``storage.videos.can_view``, applied by ``stream_links.find_video``
(the floor), which every route serving a video's media asks.
"""

from __future__ import annotations

from aiohttp import web

from . import api, dashboard, pages, retention
from .api import OPENAPI_PATHS, OPENAPI_SCHEMAS

__all__ = ["OPENAPI_PATHS", "OPENAPI_SCHEMAS", "setup"]


def setup(app: web.Application) -> None:
    pages.setup_routes(app)
    dashboard.setup_routes(app)
    api.setup_routes(app)
    app.cleanup_ctx.append(retention.lifetime)
