"""Analytics (issue 13): the sampler that records every live stream every few seconds and
rolls the samples up (``sampler``; the design is in ``storage.analytics``), the JSON API
(``api``) and ``/dashboard/analytics`` with its charts and CSV export (``pages``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from mediaserver.tasks import stop_task

from ..keys import DB_KEY, REGISTRY_KEY, SETTINGS_KEY
from . import api, pages
from .api import OPENAPI_PATHS, OPENAPI_SCHEMAS
from .sampler import AnalyticsService

ANALYTICS_KEY = web.AppKey("analytics", AnalyticsService)

__all__ = ["ANALYTICS_KEY", "OPENAPI_PATHS", "OPENAPI_SCHEMAS", "AnalyticsService", "setup"]


async def _lifetime(app: web.Application) -> AsyncIterator[None]:
    service = app[ANALYTICS_KEY]
    task = asyncio.get_running_loop().create_task(service.run())
    yield
    await stop_task(task)
    with contextlib.suppress(Exception):
        await service.flush_watch()  # the watch time gathered since the last write


def setup(app: web.Application) -> None:
    app[ANALYTICS_KEY] = AnalyticsService(
        app[DB_KEY], app[REGISTRY_KEY], app[SETTINGS_KEY].analytics
    )
    api.setup_routes(app)
    pages.setup_routes(app)
    app.cleanup_ctx.append(_lifetime)
