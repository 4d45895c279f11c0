"""The aiohttp application: every area of the site, set up in one place.

The top of the package. Below it, each feature area (pages, channels, streams, dashboard, HLS,
accounts, profile, uploads, admin, chat, follows, /metrics) registers its routes through its
own ``setup(app)`` and imports only the floor (``keys``, ``errors``, ``render``, ``openapi``,
``identity`` and the other leaves), never another area nor this module. Shared objects live in
the application under the typed keys of ``webapp.keys``, so handlers never reach for globals.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from mediaserver.cluster.counts import ClusterCounts
from mediaserver.live import LiveRegistry
from mediaserver.metrics import Metrics
from mediaserver.settings import Settings
from storage import Database
from storage.objects import LocalStore, ObjectStore
from transcode.edge import EdgeRegistry

from . import (
    admin,
    analytics,
    auth,
    categories,
    channel_page,
    channels,
    chat,
    clips,
    community,
    dashboard,
    destinations,
    downloads,
    emotes,
    follows,
    health,
    history,
    hls,
    home,
    identity,
    images,
    notifications,
    openapi,
    pages,
    points,
    polls,
    profile,
    raids,
    reactions,
    render,
    replay,
    scrape,
    search,
    stored,
    streams_api,
    uploads,
    user_page,
    videos,
    webhooks,
)
from .errors import error_middleware, quiet_client_errors
from .keys import (
    COUNTS_KEY,
    DB_KEY,
    EDGES_KEY,
    METRICS_KEY,
    OBJECTS_KEY,
    REGISTRY_KEY,
    RESTREAM_CHANGED_KEY,
    RESTREAM_STATUS_KEY,
    RTMP_PORT_KEY,
    RTMPS_PORT_KEY,
    SETTINGS_KEY,
    RestreamChanged,
    RestreamStatus,
)
from .timing import server_timing_middleware


def create_app(
    *,
    settings: Settings,
    db: Database,
    metrics: Metrics,
    registry: LiveRegistry,
    edges: EdgeRegistry,
    rtmp_port: int | None = None,
    rtmps_port: int = 0,
    restream_status: RestreamStatus | None = None,
    restream_changed: RestreamChanged | None = None,
    node: Mapping[str, str] | None = None,
    counts: ClusterCounts | None = None,
    objects: ObjectStore | None = None,
) -> web.Application:
    """The site, given what it shares with the rest of the process.

    ``rtmp_port`` is the port ingest actually listens on (the dashboard shows it as the OBS
    server); without it, the configured ``rtmp.port``. ``rtmps_port``: ingest's TLS port, 0
    when RTMPS is off.
    """
    quiet_client_errors()

    # Uploads (avatars, banners) are the largest bodies the site takes; a small margin leaves
    # room for the multipart framing and the other form fields.
    app = web.Application(
        middlewares=[server_timing_middleware, error_middleware],
        client_max_size=max(1 << 20, settings.uploads.max_bytes + (64 << 10)),
    )
    app[SETTINGS_KEY] = settings
    app[DB_KEY] = db
    app[METRICS_KEY] = metrics
    app[REGISTRY_KEY] = registry
    app[EDGES_KEY] = edges
    app[RTMP_PORT_KEY] = settings.rtmp.port if rtmp_port is None else rtmp_port
    app[RTMPS_PORT_KEY] = rtmps_port
    app[RESTREAM_STATUS_KEY] = restream_status or (lambda channel_id: {})
    app[RESTREAM_CHANGED_KEY] = restream_changed or (lambda channel_id: None)
    # Where media and uploads are kept (issue 15); without one, the files under data_dir.
    app[OBJECTS_KEY] = objects if objects is not None else LocalStore(settings.data_dir)
    stored.setup(app)  # S3 mode: the copies of recordings and clips from it, bounded
    if counts is not None:  # a cluster node: viewers, chat limits, logins, presence shared
        app[COUNTS_KEY] = counts

    scrape.setup(app, settings)  # /metrics: access rules, unlisted channels folded
    # /healthz for load balancers: role, node id, advertise URL (issue 15).
    node = node or {"role": settings.cluster.role, "node": "", "url": ""}
    health.setup(app, node)
    render.setup(app)  # the template environment every page renders with
    # Every role sets up every area: an origin's front routes only HLS, /metrics and /healthz
    # to it, but what reacts to a stream it ingests runs where the registry starts it (go-live
    # notifications, webhooks, chat stream:status on the bus, analytics samples).
    pages.setup(app)  # thumbnails and the static assets
    home.setup(app)  # /: followed live, recommended, popular, new creators
    history.setup(app)  # watch history: player heartbeats, /dashboard/history, its API
    channel_page.setup(app)  # /streams/{slug}: player, or the channel's home when offline
    user_page.setup(app)  # /u/{username}: public profiles
    channels.setup(app)  # creator dashboard and JSON API
    streams_api.setup(app)
    dashboard.setup(app)
    videos.setup(app)  # the video library: /videos/{id}, /dashboard/videos, API, retention
    openapi.setup(app)
    hls.setup(app)
    identity.setup(app)  # accounts; adds its helpers to the template environment
    auth.setup(app)
    profile.setup(app)
    images.setup(app)  # the decode gate of every image upload
    uploads.setup(app)
    admin.setup(app)
    chat.setup(app)  # real-time chat: WebSocket, its API and moderation pages
    follows.setup(app)  # the Follow button's API; tells the chat service of changes
    notifications.setup(app)  # go-live notifications: bell (SSE), list, emails, pruning
    categories.setup(app)  # the category catalogue (admin page, API) and the browse pages
    webhooks.setup(app)  # outgoing webhooks: sender, events, dashboard page and API
    search.setup(app)  # /search, its JSON API and the header's as-you-type suggestions
    analytics.setup(app)  # the sampler, /dashboard/analytics, its API and CSV export
    replay.setup(app)  # beside a video: chat replay, chapters, scrubbing previews
    downloads.setup(app)  # GET /videos/{id}/download: a past broadcast as one MP4
    clips.setup(app)  # clips of live streams and videos: pages, embed, media, JSON API
    destinations.setup(app)  # restreaming destinations: dashboard page, JSON API, status
    emotes.setup(app)  # emotes: admin and channel pages, API, the map in chat (after chat)
    community.setup(app)  # community channels: topics beside the chat, pages, JSON API
    points.setup(app)  # channel points: accrual, rewards, redemptions, predictions (after chat)
    raids.setup(app)  # raids between live channels: API, dashboard page (chat's bus)
    polls.setup(app)  # live polls in the chat room, their API (after chat.setup)
    reactions.setup(app)  # live reactions over the player (after chat.setup)
    return app
