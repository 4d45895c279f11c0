"""LL-HLS delivery of the live edge and of recorded VODs over HTTP.

Live (``/hls/{slug}/…``, ``live.py``): everything is served from the in-memory ``LiveEdge``;
names in URLs are looked up in its maps, never joined onto a path. The master playlist links
each media playlist as ``{token}/{rendition}/index.m3u8?session={id}``: the token makes every
URL name one immutable object, the session identifies one player for viewer counting
(``viewers.py``: a session counts only while its address fetches media, and at most
``hls.max_sessions_per_address`` per address).

Blocking playlist reloads (rfc8216bis 6.2.5.2) and preload-hinted parts are held until the
playlist says the awaited part exists, at most three Target Durations (then 503): ``held.py``
groups them by what they wait for, and one watcher task per edge wakes on each
``LiveEdge.notify``.

VOD (``/vod/{stream_id}/…``, ``vod.py``): an ARCHIVED stream's recording, reached by a link
``webapp.stream_links`` allows; only the names its own playlists list are served.

``reply.py`` is the request/reply model both HTTP layers share (aiohttp here, the lean path in
``webapp.fastpath``), ``service.py`` the ``HlsService`` they call.
"""

from __future__ import annotations

from aiohttp import web

from webapp.keys import (
    COUNTS_KEY,
    DB_KEY,
    EDGES_KEY,
    HLS_KEY,
    METRICS_KEY,
    OBJECTS_KEY,
    REGISTRY_KEY,
    SECRET_KEY,
    SETTINGS_KEY,
)

from .held import DEADLINE_TICK, Held, Hold, Pending
from .reply import HlsRequest, Reply, error_reply, plan_range
from .service import HlsService
from .viewers import ViewerCounter
from .vod import _ByteCache

__all__ = [
    "DEADLINE_TICK",
    "HLS_KEY",
    "Held",
    "HlsRequest",
    "HlsService",
    "Hold",
    "Pending",
    "Reply",
    "VOD_LINK_SECONDS",
    "ViewerCounter",
    "_ByteCache",
    "error_reply",
    "plan_range",
    "setup",
]

# How long the answer to "which stream does this VOD URL reach, and may it" is kept: a channel
# made unlisted stops answering to its streams' ids within this time, on every process.
VOD_LINK_SECONDS = 5.0


def _vod_link_seconds() -> float:
    """Read at each use, so a change of this module's ``VOD_LINK_SECONDS`` (a test shortens
    it on a running server) takes effect at once."""
    return VOD_LINK_SECONDS


def setup(app: web.Application) -> HlsService:
    """Register the live and VOD routes, the CORS preflight and the viewer counter (whose
    counts reach this process's chat through the live registry, ``ViewerPublisher``)."""
    service = HlsService(
        app[SETTINGS_KEY],
        app[METRICS_KEY],
        app[EDGES_KEY],
        app[REGISTRY_KEY],
        app[DB_KEY],
        vod_link_seconds=_vod_link_seconds,
        # A private video's grants (stream_links.vod_grant); the key is loaded later by
        # identity.setup, so it is read at use.
        vod_grant_key=lambda: app[SECRET_KEY],
        counts=app.get(COUNTS_KEY),
        objects=app.get(OBJECTS_KEY),  # S3 mode: VODs not on this disk come from the bucket
    )
    app[HLS_KEY] = service
    add = app.router.add_get
    ep = service.endpoint
    # The tokened form first: nearly every request is one of these (routes are tried in order).
    add("/hls/{slug}/{token}/{rendition}/{name}", ep(service.live))
    add("/hls/{slug}/master.m3u8", ep(service.master))
    add("/hls/{slug}/watching", ep(service.watching))
    add("/hls/{slug}/{rendition}/{name}", ep(service.live))
    add("/vod/{stream_id}/master.m3u8", ep(service.vod_master))
    add("/vod/{stream_id}/{rendition}/{name}", ep(service.vod_resource))
    # Last, so the routes above win: preflights, other methods and unknown paths.
    app.router.add_route("*", "/hls/{tail:.*}", ep(service.fallback))
    app.router.add_route("*", "/vod/{tail:.*}", ep(service.fallback))
    app.cleanup_ctx.append(service.lifetime)
    app.on_shutdown.append(service.shutdown)
    return service
