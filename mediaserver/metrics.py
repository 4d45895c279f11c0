"""Prometheus metrics, one registry per server instance.

A registry per instance (instead of prometheus_client's global one) lets tests run several
servers in one process and read exact values. Names are a public contract: ``aethex_`` prefix.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.rtmp_connections = Gauge(
            "aethex_rtmp_connections", "Open RTMP connections.", registry=r
        )
        self.rtmp_rejected = Counter(
            "aethex_rtmp_rejected",
            "RTMP connections or publishes refused, by reason.",
            ["reason"],
            registry=r,
        )
        self.http_connections = Gauge(
            "aethex_http_connections", "Open HTTP connections.", registry=r
        )
        self.http_rejected = Counter(
            "aethex_http_rejected",
            "HTTP connections refused at accept (too_many_connections, too_many_from_address) "
            "or closed because a request head took too long (head_timeout), by reason.",
            ["reason"],
            registry=r,
        )
        self.ingest_bytes = Counter(
            "aethex_ingest_bytes",
            "Bytes received from publishers, by channel.",
            ["channel"],
            registry=r,
        )
        self.streams_live = Gauge("aethex_streams_live", "Streams live right now.", registry=r)
        # Issue 15: the channel leases this origin holds in Redis, and the lease calls that
        # failed (claim: a publisher refused; renew: retried; release: left to expire).
        self.cluster_leases = Gauge(
            "aethex_cluster_leases", "Channel leases this node holds.", ["node"], registry=r
        )
        self.cluster_lease_errors = Counter(
            "aethex_cluster_lease_errors",
            "Channel lease calls to Redis that failed, by operation (claim, renew, release).",
            ["op"],
            registry=r,
        )
        self.live_dropped = Counter(
            "aethex_live_dropped_packets",
            "Packets a slow consumer of a live stream lost, by channel and consumer.",
            ["channel", "consumer"],
            registry=r,
        )

        self.transcode_fps = Gauge(
            "aethex_transcode_fps",
            "Frames per second each rendition encodes.",
            ["channel", "rendition"],
            registry=r,
        )
        self.transcode_speed = Gauge(
            "aethex_transcode_speed",
            "Media seconds transcoded per wall-clock second (below 1: falling behind).",
            ["channel"],
            registry=r,
        )
        self.transcode_dropped = Counter(
            "aethex_transcode_dropped_frames",
            "Frames a rendition dropped because its encoder fell behind.",
            ["channel", "rendition"],
            registry=r,
        )
        self.hls_segments = Counter(
            "aethex_hls_segments", "HLS segments produced.", ["channel", "rendition"], registry=r
        )

        self.hls_requests = Counter(
            "aethex_hls_requests",
            "HLS and VOD HTTP requests, by kind (master, playlist, blocking_playlist, part, "
            "segment, init, vod_master, vod_playlist, vod_segment, vod_init, preflight, other) "
            "and status code.",
            ["kind", "status"],
            registry=r,
        )
        self.hls_cache_fills = Counter(
            "aethex_hls_cache_fills",
            "HLS requests a cache in front sent to fill itself (X-AeThex-Cache-Fill, set by "
            "config/varnish/aethex.vcl), by kind: what the origin pays per part behind Varnish.",
            ["kind"],
            registry=r,
        )
        self.hls_blocking_wait = Histogram(
            "aethex_hls_blocking_wait_seconds",
            "Seconds a blocking playlist reload or a preload-hinted part request was held.",
            buckets=(0.005, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 2.0, 4.0, 8.0, 16.0),
            registry=r,
        )
        self.viewers = Gauge(
            "aethex_viewers",
            "Playback sessions that polled a live playlist recently, by channel.",
            ["channel"],
            registry=r,
        )
        self.http_request_seconds = Histogram(
            "aethex_http_request_duration_seconds",
            "Seconds the application took for a page or API request (the Server-Timing app "
            "figure; media delivery and WebSockets excluded), by kind (page or api).",
            ["kind"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=r,
        )
        # Issue 15: a Redis call of the cluster that failed (the node fell back to what it
        # knows locally), by what it was for (viewers, chat_limits, logins, presence, ...).
        self.cluster_redis_errors = Counter(
            "aethex_cluster_redis_errors",
            "Redis calls of the cluster that failed (the node used its local state), by purpose.",
            ["what"],
            registry=r,
        )
        # Issue 15: the object store (local files or an S3 bucket) and the uploads to it.
        self.object_store_errors = Counter(
            "aethex_object_store_errors",
            "Object store operations that failed (missing keys excluded), by operation.",
            ["op"],
            registry=r,
        )
        self.object_uploads_pending = Gauge(
            "aethex_object_uploads_pending",
            "Files waiting for (or being) uploaded to the object store.",
            registry=r,
        )
        self.object_uploads_dropped = Counter(
            "aethex_object_uploads_dropped",
            "Files not uploaded to the object store (queue full, or retried for "
            "objects.retry_for and given up), by reason; they stay on the node's disk.",
            ["reason"],
            registry=r,
        )
        # Every operation and reason is exported from the start (at 0), so dashboards and
        # alert rules find the series before the first failure.
        for op in ("put", "get", "head", "delete", "list"):
            self.object_store_errors.labels(op)
        for reason in ("queue_full", "gave_up", "no_file"):
            self.object_uploads_dropped.labels(reason)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def sample(self, name: str, **labels: str) -> float | None:
        """Current value of one sample (tests and the dashboard read metrics this way)."""
        return self.registry.get_sample_value(name, labels or None)
