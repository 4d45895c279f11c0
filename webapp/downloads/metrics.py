"""Download metrics on the server's Prometheus registry (``/metrics``), registered once per
registry like the chat's and the webhooks' (the app factory may run twice against one
server's metrics)."""

from __future__ import annotations

import weakref

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, DownloadMetrics] = (
    weakref.WeakKeyDictionary()
)

OUTCOMES = ("completed", "client_left", "cut", "busy", "unreadable")


class DownloadMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        r = registry if registry is not None else CollectorRegistry()
        self.downloads = Counter(
            "aethex_downloads_total",
            "MP4 downloads of past broadcasts, by outcome: completed, client_left (the client "
            "went away), cut (the recording could not be read to the end), busy (503: "
            "downloads.max_concurrent running), unreadable (the recording cannot be remuxed).",
            ["outcome"],
            registry=r,
        )
        self.bytes = Counter(
            "aethex_download_bytes_total", "Bytes of MP4 downloads sent.", registry=r
        )
        self.running = Gauge(
            "aethex_downloads_running", "MP4 downloads being sent right now.", registry=r
        )
        self.plan_seconds = Histogram(
            "aethex_download_plan_seconds",
            "Seconds spent computing a download's moov (before its first byte), when not cached.",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
            registry=r,
        )


def download_metrics(registry: CollectorRegistry | None) -> DownloadMetrics:
    if registry is None:
        return DownloadMetrics(None)
    found = _BY_REGISTRY.get(registry)
    if found is None:
        found = _BY_REGISTRY[registry] = DownloadMetrics(registry)
    return found
