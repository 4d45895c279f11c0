"""Notification metrics on the server's Prometheus registry (``/metrics``).

Registered once per registry, like the chat's: the app factory may run twice against one
server's metrics (a test builds a second app to read its routes).
"""

from __future__ import annotations

import weakref

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, NotificationMetrics] = (
    weakref.WeakKeyDictionary()
)


class NotificationMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.created = Counter(
            "aethex_notifications_created_total",
            "In-app notifications written by go-live fan-outs of this process.",
            registry=r,
        )
        self.fanout_seconds = Histogram(
            "aethex_notification_fanout_seconds",
            "Seconds from a go-live to its last follower's notification written.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.streams = Gauge(
            "aethex_notification_streams", "Open bell event streams (SSE).", registry=r
        )
        self.emails = Counter(
            "aethex_notification_emails_total",
            "Emails sent, by kind (single, digest) and outcome (sent, failed).",
            ["kind", "outcome"],
            registry=r,
        )
        self.pruned = Counter(
            "aethex_notifications_pruned_total",
            "Notifications deleted past notifications.retention_days.",
            registry=r,
        )


def metrics_for(registry: CollectorRegistry) -> NotificationMetrics:
    found = _BY_REGISTRY.get(registry)
    if found is None:
        found = _BY_REGISTRY[registry] = NotificationMetrics(registry)
    return found
