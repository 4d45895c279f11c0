"""The aiohttp application. For now it serves the operator's ``/metrics``; pages, HLS, the
API and chat mount here as they land."""

from __future__ import annotations

from aiohttp import web

from mediaserver.live import LiveRegistry
from mediaserver.metrics import CONTENT_TYPE_LATEST, Metrics

METRICS_KEY = web.AppKey("metrics", Metrics)
REGISTRY_KEY = web.AppKey("registry", LiveRegistry)


async def metrics_view(request: web.Request) -> web.Response:
    body = request.app[METRICS_KEY].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_app(*, metrics: Metrics, registry: LiveRegistry) -> web.Application:
    app = web.Application()
    app[METRICS_KEY] = metrics
    app[REGISTRY_KEY] = registry
    app.router.add_get("/metrics", metrics_view)
    return app
