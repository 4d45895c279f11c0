"""The aiohttp application: HLS delivery, viewer pages, /metrics (API and chat follow).

Each area registers its routes from its own module through ``setup(app)``; shared objects live
in the application under typed keys so handlers never reach for globals.
"""

from __future__ import annotations

from aiohttp import web

from mediaserver.live import LiveRegistry
from mediaserver.metrics import CONTENT_TYPE_LATEST, Metrics
from mediaserver.settings import Settings
from storage import Database
from transcode.edge import EdgeRegistry

METRICS_KEY = web.AppKey("metrics", Metrics)
REGISTRY_KEY = web.AppKey("registry", LiveRegistry)
SETTINGS_KEY = web.AppKey("settings", Settings)
DB_KEY = web.AppKey("db", Database)
EDGES_KEY = web.AppKey("edges", EdgeRegistry)


async def metrics_view(request: web.Request) -> web.Response:
    body = request.app[METRICS_KEY].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_app(*, settings: Settings, db: Database, metrics: Metrics, registry: LiveRegistry,
               edges: EdgeRegistry) -> web.Application:
    app = web.Application()
    app[SETTINGS_KEY] = settings
    app[DB_KEY] = db
    app[METRICS_KEY] = metrics
    app[REGISTRY_KEY] = registry
    app[EDGES_KEY] = edges
    app.router.add_get("/metrics", metrics_view)
    from . import pages  # it imports the keys above, hence not at module level
    pages.setup(app)
    from . import hls  # same reason

    hls.setup(app)
    return app
