"""Watch history (issue 12): the player page's heartbeats attributed to the logged-in viewer
(``tracker``), written in batches; ``/dashboard/history`` and ``/api/me/history`` to read and
clear it (``pages``, ``api``). Recommendations read the same rows (``storage.history``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from mediaserver.tasks import stop_task

from ..keys import DB_KEY, SETTINGS_KEY
from . import api, pages
from .api import OPENAPI_PATHS, OPENAPI_SCHEMAS, TRACKER_KEY
from .tracker import WatchTracker

__all__ = ["OPENAPI_PATHS", "OPENAPI_SCHEMAS", "TRACKER_KEY", "WatchTracker", "setup"]


async def _lifetime(app: web.Application) -> AsyncIterator[None]:
    tracker = app[TRACKER_KEY]
    task = asyncio.get_running_loop().create_task(
        tracker.run(app[SETTINGS_KEY].history.flush_interval)
    )
    yield
    await stop_task(task)
    with contextlib.suppress(Exception):
        await tracker.flush()  # what was watched since the last flush


def setup(app: web.Application) -> None:
    limits = app[SETTINGS_KEY].history
    app[TRACKER_KEY] = WatchTracker(
        app[DB_KEY],
        session_gap=limits.session_gap,
        max_tracked=limits.max_tracked,
        max_per_user=limits.max_tracked_per_user,
    )
    api.setup_routes(app)
    pages.setup_routes(app)
    app.cleanup_ctx.append(_lifetime)
