"""Outgoing webhooks: a creator's endpoints for their channel's events, signed deliveries
with retries, the dashboard page and the JSON API.

``setup(app)`` makes the process's sender and event listeners, starts them with the app and
stops them before the database closes. Events come from the live registry (stream.online,
stream.offline: the process that holds the publish) and from the follows area's listener
hook (``FOLLOW_LISTENERS_KEY``); this area imports neither.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from ..keys import DB_KEY, FOLLOW_LISTENERS_KEY, METRICS_KEY, REGISTRY_KEY, SETTINGS_KEY
from . import api, pages
from .events import WebhookEvents
from .metrics import webhook_metrics
from .sender import SENDER_KEY, WebhookSender


def setup(app: web.Application) -> None:
    settings = app[SETTINGS_KEY]
    metrics = webhook_metrics(app[METRICS_KEY].registry)
    sender = WebhookSender(settings.webhooks, app[DB_KEY], metrics)
    events = WebhookEvents(settings, app[DB_KEY], app[REGISTRY_KEY], sender)
    app[SENDER_KEY] = sender
    app.setdefault(FOLLOW_LISTENERS_KEY, []).append(events.follow_changed)
    api.setup_routes(app)
    pages.setup_routes(app)

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        events.start()
        await sender.start()
        yield
        await events.stop()
        await sender.stop()

    app.cleanup_ctx.append(lifetime)


__all__ = ["setup"]
