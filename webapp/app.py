"""The aiohttp application: HLS delivery, viewer pages, /metrics (API and chat follow).

Each area registers its routes from its own module through ``setup(app)``; shared objects live
in the application under typed keys so handlers never reach for globals.
"""

from __future__ import annotations

from aiohttp import web

from mediaserver.live import LiveRegistry
from mediaserver.metrics import Metrics
from mediaserver.settings import Settings
from storage import Database
from transcode.edge import EdgeRegistry

METRICS_KEY = web.AppKey("metrics", Metrics)
REGISTRY_KEY = web.AppKey("registry", LiveRegistry)
SETTINGS_KEY = web.AppKey("settings", Settings)
DB_KEY = web.AppKey("db", Database)
EDGES_KEY = web.AppKey("edges", EdgeRegistry)


def create_app(*, settings: Settings, db: Database, metrics: Metrics, registry: LiveRegistry,
               edges: EdgeRegistry) -> web.Application:
    from .errors import error_middleware, quiet_client_errors

    quiet_client_errors()

    # Uploads (avatars, banners) are the largest bodies the site takes; a small margin leaves
    # room for the multipart framing and the other form fields.
    app = web.Application(middlewares=[error_middleware],
                          client_max_size=max(1 << 20, settings.uploads.max_bytes + (64 << 10)))
    app[SETTINGS_KEY] = settings
    app[DB_KEY] = db
    app[METRICS_KEY] = metrics
    app[REGISTRY_KEY] = registry
    app[EDGES_KEY] = edges
    from . import scrape  # /metrics: access rules, unlisted channels folded

    scrape.setup(app, settings)
    from . import pages  # it imports the keys above, hence not at module level
    pages.setup(app)
    from . import channels, dashboard, openapi, streams_api  # creator dashboard and JSON API

    channels.setup(app)
    streams_api.setup(app)
    dashboard.setup(app)
    openapi.setup(app)
    from . import hls  # same reason

    hls.setup(app)
    from . import auth, identity  # accounts; identity needs the template environment of pages

    identity.setup(app)
    auth.setup(app)
    from . import chat  # real-time chat: WebSocket, its API and moderation pages

    chat.setup(app)
    from . import follows  # the Follow button's API; tells the chat service of changes

    follows.setup(app)
    return app
