"""Every object the web application shares, each under one typed key.

The keys live here, apart from the modules that make the objects, so that any module can read
``app[DB_KEY]`` without importing the module that fills it: the feature areas import this
leaf, never each other nor ``app.py``. Types defined inside an area are named for the type
checker only (``TYPE_CHECKING``), so this module imports nothing from ``webapp`` at run time.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from mediaserver.cluster.counts import ClusterCounts
from mediaserver.live import LiveRegistry
from mediaserver.metrics import Metrics
from mediaserver.settings import Settings
from storage import Database
from storage.objects import ObjectStore
from transcode.edge import EdgeRegistry

if TYPE_CHECKING:
    from .answers import AnswerCache
    from .auth.limiter import LoginLimiter
    from .chat.service import ChatService
    from .hls import HlsService
    from .images import DecodeGate
    from .page_cache import PageCache
    from .scrape import ScrapeAccess

# Given to create_app by the composition root (mediaserver/app.py).
SETTINGS_KEY = web.AppKey("settings", Settings)
DB_KEY = web.AppKey("db", Database)
METRICS_KEY = web.AppKey("metrics", Metrics)
REGISTRY_KEY = web.AppKey("registry", LiveRegistry)
EDGES_KEY = web.AppKey("edges", EdgeRegistry)
# Where recordings, clips, thumbnails and uploads are kept: data_dir or S3 (issue 15).
OBJECTS_KEY: web.AppKey[ObjectStore] = web.AppKey("objects")
# The port ingest listens on: the OBS "Server" the dashboard shows.
RTMP_PORT_KEY = web.AppKey("rtmp_port", int)
# The port of ingest's TLS listener (the dashboard's rtmps:// server); 0 when RTMPS is off.
RTMPS_PORT_KEY = web.AppKey("rtmps_port", int)
# A channel id -> {destination id: relay status} of its live stream's restreams (issue 14).
RestreamStatus = Callable[[int], dict[int, dict[str, Any]]]
RESTREAM_STATUS_KEY: web.AppKey[RestreamStatus] = web.AppKey("restream_status")
# Told a channel id after its destinations were edited here, so the relays follow at once.
RestreamChanged = Callable[[int], None]
RESTREAM_CHANGED_KEY: web.AppKey[RestreamChanged] = web.AppKey("restream_changed")
# Counters shared by the nodes of a cluster through Redis (issue 15); absent on one node,
# where every counter stays in memory as it always was.
COUNTS_KEY = web.AppKey("cluster_counts", ClusterCounts)

# Made by the areas' setup.
SECRET_KEY = web.AppKey("aethex_secret_key", bytes)  # identity: keys the CSRF tokens
OPENAPI_DOC_KEY = web.AppKey("openapi_document", dict)  # openapi: built once
HLS_KEY: web.AppKey[HlsService] = web.AppKey("hls")
CHAT_KEY: web.AppKey[ChatService] = web.AppKey("chat")
DECODE_GATE_KEY: web.AppKey[DecodeGate] = web.AppKey("upload_decode_gate")
LIMITER_KEY: web.AppKey[LoginLimiter] = web.AppKey("login_limiter")
# Answers the same for every visitor, reused for a moment (webapp.answers).
SEARCH_ANSWERS_KEY: web.AppKey[AnswerCache] = web.AppKey("search_answers")
BROWSE_ANSWERS_KEY: web.AppKey[AnswerCache] = web.AppKey("browse_answers")
# Whole pages shared by anonymous visitors for a moment (webapp.page_cache).
PAGE_CACHE_KEY: web.AppKey[PageCache] = web.AppKey("anonymous_pages")
REGISTER_LIMITER_KEY: web.AppKey[LoginLimiter] = web.AppKey("register_limiter")
SCRAPE_KEY: web.AppKey[ScrapeAccess] = web.AppKey("scrape_access")


@dataclass(frozen=True)
class FollowChange:
    """A follow or unfollow, told after its commit to whoever listens (webhooks, ...).
    ``changed`` is False for an idempotent repeat (the follow was already as asked)."""

    channel_id: int
    user_id: int
    following: bool
    changed: bool


FollowListener = Callable[[FollowChange], None]
# Listeners the follows area calls after each follow change; areas that care append theirs in
# their setup (``app.setdefault(FOLLOW_LISTENERS_KEY, []).append(...)``). A listener must not
# block: it schedules its work.
FOLLOW_LISTENERS_KEY: web.AppKey[list[FollowListener]] = web.AppKey("follow_listeners")

# Reaction codes a room accepts beyond reactions.emojis (issue 16): each source answers, from
# memory, the extra codes of a channel's room by its slug (the channel's emotes, say). The
# emotes area appends one in its setup (``app.setdefault(REACTION_CODES_KEY, []).append(...)``).
RoomCodes = Callable[[str], Collection[str]]
REACTION_CODES_KEY: web.AppKey[list[RoomCodes]] = web.AppKey("reaction_codes")
