"""``HlsService``: the one object both HTTP layers call (aiohttp through ``endpoint``, the fast
path in ``webapp.fastpath`` directly), wiring the live and VOD routes, held requests, viewer
counting and the per-response plumbing (CORS, the request metric)."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, TypeAlias

from aiohttp import web

from mediaserver.cluster.counts import ClusterCounts
from mediaserver.cluster.node import NodeIdentity
from mediaserver.cluster.redis import make_redis
from mediaserver.cluster.routing import LiveRoutes
from mediaserver.live import LiveRegistry
from mediaserver.metrics import Metrics
from mediaserver.settings import Settings
from mediaserver.tasks import stop_task
from storage import Database
from storage.objects import ObjectStore
from transcode.edge import EdgeRegistry

from . import reply as replies
from .held import Held, Holding, Pending
from .live import LiveDelivery
from .remote import Elsewhere
from .reply import FILL_HEADER, Cors, HlsRequest, Reply
from .viewers import ClientAddresses, ViewerCounter, ViewerPublisher
from .vod import VodDelivery

log = logging.getLogger(__name__)

# A route method: a reply now, or something to wait for.
Route: TypeAlias = "Callable[[HlsRequest], Reply | Pending]"


class HlsService:
    """The delivery logic and the state it shares (one per web application).

    Route methods take an ``HlsRequest`` and return a ``Reply`` at once when they can (nearly
    always), or something to wait for when the request must be held (``Held``) or read
    (a coroutine); ``finish`` adds CORS and counts the response.
    """

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        edges: EdgeRegistry,
        registry: LiveRegistry,
        db: Database,
        *,
        vod_link_seconds: Callable[[], float],
        vod_grant_key: Callable[[], bytes] | None = None,
        counts: ClusterCounts | None = None,
        objects: ObjectStore | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.edges = edges
        self.db = db
        hls = settings.hls
        self.viewers = ViewerCounter(
            hls.viewer_timeout, hls.max_viewer_sessions, hls.max_sessions_per_address
        )
        self.addresses = ClientAddresses(settings.http.trust_forwarded_for)
        self.holding = Holding(metrics)
        self._publisher = ViewerPublisher(metrics, edges, registry, db, counts)
        self._cors = Cors(settings.http.cors_origins)
        self._counters: dict[tuple[str, int], Any] = {}
        # Cluster mode: streams owned by another origin are fetched from it (issue 15), through
        # the process's one Redis client (the counts' one); a client of its own only when the
        # app was made without it (then closed with the app).
        self._own_redis = make_redis(settings) if counts is None else None
        redis = counts.redis if counts is not None else self._own_redis
        self.routes = (
            LiveRoutes(redis, NodeIdentity.from_settings(settings).advertise_url, settings)
            if redis is not None
            else None
        )
        live = LiveDelivery(
            metrics,
            edges,
            self.holding,
            self.viewers,
            self.addresses,
            3.0 * max(1, math.ceil(hls.segment_duration - 1e-6)),
            Elsewhere(self.routes, settings.http.trust_forwarded_for),
        )
        vod = VodDelivery(settings, db, vod_link_seconds, vod_grant_key, objects)
        # The routes, bound once: the fast path calls them per request.
        self.master: Route = live.master
        self.live: Route = live.live
        self.watching: Route = live.watching
        self.vod_master: Route = vod.master
        self.vod_resource: Route = vod.resource
        self.fallback: Callable[[HlsRequest], Reply] = replies.fallback
        self.preflight: Callable[[HlsRequest], Reply] = replies.preflight

    def finish(self, request: HlsRequest, reply: Reply) -> Reply:
        """CORS headers and the request metric, for every HLS/VOD response (the same Reply
        may answer many requests: anything request-specific goes on a copy)."""
        reply = self._cors.apply(request, reply)
        counter = self._counters.get((reply.kind, reply.status))
        if counter is None:
            counter = self._counters[(reply.kind, reply.status)] = self.metrics.hls_requests.labels(
                reply.kind, str(reply.status)
            )
        counter.inc()
        if FILL_HEADER in request.headers:
            self.metrics.hls_cache_fills.labels(reply.kind).inc()
        return reply

    def endpoint(
        self, fn: Callable[[HlsRequest], Reply | Pending]
    ) -> Callable[[web.Request], Coroutine[Any, Any, web.StreamResponse]]:
        """An aiohttp handler for one route method."""

        async def handler(request: web.Request) -> web.StreamResponse:
            q = request.query
            req = HlsRequest(
                request.method,
                request.match_info,
                {key: q.getall(key) for key in q.keys()},
                request.headers,
                request.remote,
            )
            reply = fn(req)
            if isinstance(reply, Held):
                reply = await reply.wait()
            elif not isinstance(reply, Reply):
                reply = await reply
            reply = self.finish(req, reply)
            return web.Response(
                status=reply.status,
                headers=reply.headers,
                body=reply.body if reply.status not in (204, 304) else None,
            )

        return handler

    # -- viewers and lifecycle ------------------------------------------------------------

    async def _viewer_loop(self) -> None:
        interval = self.settings.hls.viewer_update_interval
        while True:
            await asyncio.sleep(interval)
            try:
                await self.update_viewers(time.monotonic())
            except Exception:
                log.exception("viewer count update failed")

    async def update_viewers(self, now: float) -> None:
        """Recount (``ViewerCounter.sweep``) and publish the counts (``ViewerPublisher``)."""
        counts = self.viewers.sweep(now)
        await self._publisher.publish(counts, self.viewers.audiences)

    async def lifetime(self, app: web.Application) -> AsyncIterator[None]:
        task = asyncio.get_running_loop().create_task(self._viewer_loop())
        yield
        await stop_task(task)
        if self.routes is not None:
            await self.routes.close()
        if self._own_redis is not None:
            await self._own_redis.aclose()

    async def shutdown(self, app: web.Application) -> None:
        """Answer held requests now (503) instead of keeping the server's shutdown waiting."""
        self.holding.shutdown()
