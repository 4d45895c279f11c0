"""Webhook metrics on the server's Prometheus registry (``/metrics``), registered once per
registry like the chat's (the app factory may run twice against one server's metrics)."""

from __future__ import annotations

import weakref

from prometheus_client import CollectorRegistry, Counter, Gauge

_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, WebhookMetrics] = (
    weakref.WeakKeyDictionary()
)


class WebhookMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        r = registry if registry is not None else CollectorRegistry()
        self.attempts = Counter(
            "aethex_webhook_attempts_total",
            "Webhook delivery attempts, by outcome: succeeded, retry (failed, tried again "
            "later) or failed (out of attempts).",
            ["outcome"],
            registry=r,
        )
        self.in_flight = Gauge(
            "aethex_webhook_in_flight", "Webhook deliveries being sent right now.", registry=r
        )


def webhook_metrics(registry: CollectorRegistry | None) -> WebhookMetrics:
    if registry is None:
        return WebhookMetrics(None)
    found = _BY_REGISTRY.get(registry)
    if found is None:
        found = _BY_REGISTRY[registry] = WebhookMetrics(registry)
    return found
