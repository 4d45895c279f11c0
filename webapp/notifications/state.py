"""What the notifications area keeps in the application: its hub, fan-out, mailer, pruner."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from .fanout import Fanout
from .hub import NotificationHub
from .mailer import Mailer
from .metrics import NotificationMetrics
from .pruning import Pruner


@dataclass
class NotificationsState:
    hub: NotificationHub
    fanout: Fanout
    mailer: Mailer
    pruner: Pruner
    metrics: NotificationMetrics


NOTIFY_KEY = web.AppKey("notifications", NotificationsState)
