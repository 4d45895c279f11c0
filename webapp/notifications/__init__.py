"""Notifications: a followed channel went live. In the app (the header's bell, fed by a
Server-Sent Events stream, and ``/notifications``) and by email (one per stream or a digest,
with a signed one-click unsubscribe).

``setup(app)`` makes the area's state under ``NOTIFY_KEY``: the hub of open bells, the go-live
fan-out (listening to this process's live registry: the process that took the publish fans
out), the email sender (only when ``email.smtp_host`` is set) and the pruner. They start with
the app and stop before the database closes; open bells are closed at shutdown so aiohttp does
not wait on them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from ..keys import DB_KEY, METRICS_KEY, REGISTRY_KEY, SECRET_KEY, SETTINGS_KEY
from . import api, pages
from .fanout import Fanout, FanoutResult
from .hub import NotificationHub
from .mailer import Mailer
from .metrics import metrics_for
from .pruning import Pruner
from .state import NOTIFY_KEY, NotificationsState


def setup(app: web.Application) -> NotificationsState:
    """After ``identity.setup`` (the mailer signs with the server's secret)."""
    settings, db = app[SETTINGS_KEY], app[DB_KEY]
    metrics = metrics_for(app[METRICS_KEY].registry)
    hub = NotificationHub(db, settings.notifications)
    state = NotificationsState(
        hub=hub,
        fanout=Fanout(settings, db, hub, metrics),
        mailer=Mailer(settings, db, app[SECRET_KEY], metrics),
        pruner=Pruner(db, settings.notifications, metrics),
        metrics=metrics,
    )
    app[NOTIFY_KEY] = state
    api.setup_routes(app)
    pages.setup_routes(app)

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        await hub.start()
        state.fanout.listen(app[REGISTRY_KEY])
        state.mailer.start()
        state.pruner.start()
        yield
        await state.fanout.stop()
        await state.mailer.stop()
        await state.pruner.stop()
        await hub.stop()

    async def shutdown(app: web.Application) -> None:
        hub.close_all()  # open bells end before aiohttp waits on its handlers

    app.cleanup_ctx.append(lifetime)
    app.on_shutdown.append(shutdown)
    return state


__all__ = ["NOTIFY_KEY", "FanoutResult", "NotificationsState", "setup"]
