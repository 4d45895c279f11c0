"""Channel points (issue 16): viewers earn points on a channel by really watching it
(``accrual``), spend them on the channel's rewards (``api``) and stake them on predictions
(``predictions``); the owner sets rates and rewards and works the redemption queue with the
moderators on ``/dashboard/channels/{slug}/points`` (``pages``). The ledger, limits and payouts
are ``storage.points``. Live events ride on the chat room (``common.PointsLive``); the
viewer's side is ``static/js/points.js`` in the chat column."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from mediaserver.tasks import stop_task

from ..keys import CHAT_KEY, DB_KEY, SETTINGS_KEY
from . import api, pages, predictions
from .accrual import ACCRUAL_KEY, Accrual
from .common import LIVE_KEY, PointsLive, defaults_of
from .openapi_doc import OPENAPI_PATHS, OPENAPI_SCHEMAS

__all__ = ["ACCRUAL_KEY", "LIVE_KEY", "OPENAPI_PATHS", "OPENAPI_SCHEMAS", "Accrual", "setup"]


async def _lifetime(app: web.Application) -> AsyncIterator[None]:
    live = app[LIVE_KEY]
    accrual = app[ACCRUAL_KEY]
    async with app[DB_KEY].session() as session:
        await live.load(session)
    loop = asyncio.get_running_loop()
    tasks = [
        loop.create_task(accrual.run(app[SETTINGS_KEY].points.flush_interval)),
        loop.create_task(live.run()),
    ]
    yield
    for task in tasks:
        await stop_task(task)
    with contextlib.suppress(Exception):
        await accrual.flush()  # what was watched since the last flush


def setup(app: web.Application) -> None:
    settings = app[SETTINGS_KEY].points
    app[ACCRUAL_KEY] = Accrual(
        app[DB_KEY],
        session_gap=settings.session_gap,
        max_tracked=settings.max_tracked,
        defaults=defaults_of(settings),
        chat_window=settings.chat_bonus_window,
    )
    live = app[LIVE_KEY] = PointsLive(app, settings.publish_interval)
    service = app.get(CHAT_KEY)
    if service is not None:
        service.join_hooks.append(live.join_hook)
        service.bus_listeners.append(live.bus_listener)
    api.setup_routes(app)
    predictions.setup_routes(app)
    pages.setup_routes(app)
    app.cleanup_ctx.append(_lifetime)
