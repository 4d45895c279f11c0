"""LL-HLS delivery of the live edge and of recorded VODs over HTTP.

Live (``/hls/{slug}/…``): everything is served from the in-memory ``LiveEdge``; names in URLs
are looked up in its maps, never joined onto a path. The master playlist links each media
playlist as ``{token}/{rendition}/index.m3u8?session={id}``:

* ``token`` is random per live edge. Segment and part numbers start again at 0 for a channel's
  next broadcast, so ``/hls/alice/720p/seg5.m4s`` would name different bytes tomorrow; under
  the token every URL names one immutable object and can be cached for a year. The shorter
  ``/hls/{slug}/{rendition}/…`` URLs work too, with revalidation instead of ``immutable``.
* ``session`` identifies one player for viewer counting. hls.js and Safari keep a playlist
  URL's query when they add the ``_HLS_*`` directives, so every reload says which player it
  is; cookies are not sent by hls.js by default and (IP, User-Agent) merges viewers behind one
  NAT. Players that come without a session are counted by a salted hash of (IP, User-Agent).
  Ids are made up by players, so a session counts only while its address fetches media, and
  at most ``hls.max_sessions_per_address`` per address (``ViewerCounter``).

Blocking playlist reloads (rfc8216bis 6.2.5.2) and preload-hinted parts are held until the
playlist says the awaited part exists, at most three Target Durations (then 503). Held
requests are grouped by what they wait for and one watcher task per edge wakes on each
``LiveEdge.notify``; a notify costs one check per distinct target, not one wake-up per viewer.
Each playlist is rendered once per change and the bytes shared by every response.

VOD (``/vod/{stream_id}/…``): the stream row must be ARCHIVED with a VOD, and ``{stream_id}``
must be a link that reaches it (``webapp.stream_links``: the id of a listed channel's stream,
or any stream's public id); the names a request may use are exactly those listed in the VOD's
own playlists, read once and cached.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any, Literal, TypeAlias

from aiohttp import web

from mediaserver.addresses import address_key
from mediaserver.metrics import Metrics
from mediaserver.settings import Settings
from storage import Database, queries
from storage.channels import parse_stream_ref, stream_by_ref
from storage.models import StreamStatus
from transcode.edge import EdgeRegistry, LiveEdge, RenditionEdge
from transcode.hls import INIT_URI, parse_segment_name
from webapp.forwarded import client_host
from webapp.keys import DB_KEY, EDGES_KEY, HLS_KEY, METRICS_KEY, SETTINGS_KEY
from webapp.stream_links import reachable

log = logging.getLogger(__name__)

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
MEDIA_TYPE = "video/mp4"
IMMUTABLE = "public, max-age=31536000, immutable"
# Live playlists change every part; the master also carries a per-viewer session id.
PLAYLIST_CACHE = "no-cache"
MASTER_CACHE = "private, no-cache"
# A response to _HLS_msn/_HLS_part is valid for its (unique) URL: a CDN may keep it briefly.
BLOCKING_CACHE = "public, max-age=1"
# Short-form live objects: the same URL names other bytes in the channel's next broadcast.
REVALIDATE = "no-cache"
VOD_PLAYLIST_CACHE = "public, max-age=60"
# Errors must never be cached: a part that is 404 now may exist in a moment.
ERROR_CACHE = "no-store"
EXPOSED_HEADERS = "Content-Length, Content-Range, Accept-Ranges, Age, Date, ETag"

_NUMBER_RE = re.compile(r"[0-9]{1,10}")
_SESSION_RE = re.compile(r"[A-Za-z0-9_-]{16,64}")
_RENDITION_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_RANGE_RE = re.compile(r"bytes=([0-9]{0,19})-([0-9]{0,19})", re.ASCII | re.IGNORECASE)
_MAP_URI_RE = re.compile(r'#EXT-X-MAP:.*?URI="([^"]*)"')
_REQUEST_HEADERS_RE = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+(\s*,\s*[A-Za-z0-9!#$%&'*+.^_`|~-]+)*")

VOD_CACHE_SIZE = 256
VOD_CACHE_SECONDS = 300.0
VOD_MISS_SECONDS = 5.0
# How long the answer to "which stream does this VOD URL reach, and may it" is kept: a channel
# made unlisted stops answering to its streams' ids within this time, on every process.
VOD_LINK_SECONDS = 5.0
# The watcher expires held requests at least this often: a 503 may come this much late.
DEADLINE_TICK = 0.5
# Shared object replies kept per live edge (a few playlist windows of parts per rendition).
OBJECT_REPLIES = 512
# Client addresses whose counting key (IPv6 /64) is remembered, so a media GET does not
# parse its address each time.
ADDRESS_KEYS = 4096

Hold = Literal["ready", "wait", "bad", "gone", "timeout"]


class _BadRequest(Exception):
    """A malformed delivery directive: 400 with this text."""


@dataclass(slots=True)
class HlsRequest:
    """What delivery needs to know of a request, whichever HTTP layer parsed it (aiohttp, or
    the lean path in ``webapp.fastpath``): both feed the same logic, so they cannot drift."""

    method: str
    # Route parameters: slug, token, rendition, name, stream_id (those the route has).
    params: Mapping[str, str]
    # Query parameters, every value of each (the _HLS_* directives must not repeat).
    query: Mapping[str, list[str]]
    # Request headers, looked up by lower-case name.
    headers: Mapping[str, str]
    remote: str | None


@dataclass(slots=True)
class Reply:
    """A response before any HTTP layer writes it; ``kind`` labels the request metric.

    The same Reply may answer many requests (every viewer released by one playlist update,
    every plain GET of one part): ``wire`` is where the fast path keeps its serialised head.
    """

    kind: str
    status: int
    headers: dict[str, str]
    body: bytes | memoryview = b""
    wire: Any = None




# -- viewers -------------------------------------------------------------------------------

@dataclass(slots=True)
class _Audience:
    """One channel's recent sessions, how many each address has, and when each address last
    fetched media."""

    # session key -> [last playlist poll, address key]
    sessions: dict[str | bytes, list[Any]] = field(default_factory=dict)
    per_address: dict[str, int] = field(default_factory=dict)
    media: dict[str, float] = field(default_factory=dict)


class ViewerCounter:
    """Playback sessions seen recently, per channel; counted and expired by ``sweep``.

    A session is one player: its ``session=`` id, or a salted hash of address and User-Agent.
    Players make the ids up, so two rules keep one client from posing as a crowd: at most
    ``per_address`` sessions are tracked per client address, and a session counts only while
    its address fetches media (parts or segments), because polling a playlist costs a faker
    nothing and is not watching. Media URLs carry no session (they are the same cacheable
    bytes for every viewer), hence media is credited to the address.

    ``seen`` is a few dict operations per playlist request, ``fetched_media`` one or two per
    media request; the rest (expiry, gauge, database) happens in ``sweep`` every
    ``hls.viewer_update_interval`` seconds.
    """

    def __init__(self, timeout: float, max_sessions: int, per_address: int) -> None:
        self.timeout = timeout
        self.max_sessions = max_sessions
        self.per_address = per_address
        self._salt = secrets.token_bytes(16)
        self._tables: dict[str, _Audience] = {}

    def session_key(self, request: HlsRequest, address: str) -> str | bytes:
        sids = request.query.get("session")
        if sids and _SESSION_RE.fullmatch(sids[0]):
            return sids[0]
        who = f"{address}\0{request.headers.get('user-agent', '')}".encode()
        return hashlib.blake2b(who, key=self._salt, digest_size=12).digest()

    def seen(self, slug: str, key: str | bytes, address: str, now: float) -> None:
        table = self._tables.get(slug)
        if table is None:
            table = self._tables[slug] = _Audience()
        entry = table.sessions.get(key)
        per_address = table.per_address
        if entry is not None:
            entry[0] = now
            if entry[1] != address and per_address.get(address, 0) < self.per_address:
                self._uncount(table, entry[1])  # the player's address changed (mobile)
                entry[1] = address
                per_address[address] = per_address.get(address, 0) + 1
            return
        if len(table.sessions) >= self.max_sessions:
            return
        n = per_address.get(address, 0)
        if n < self.per_address:
            table.sessions[key] = [now, address]
            per_address[address] = n + 1

    def fetched_media(self, slug: str, address: str, now: float) -> None:
        """A part or segment went to ``address``: its sessions are watching. Only addresses
        with a session are kept, so this map is bounded like the sessions."""
        table = self._tables.get(slug)
        if table is not None and address in table.per_address:
            table.media[address] = now

    @staticmethod
    def _uncount(table: _Audience, address: str) -> None:
        n = table.per_address[address] - 1
        if n:
            table.per_address[address] = n
        else:
            del table.per_address[address]

    def sweep(self, now: float) -> dict[str, int]:
        """Drop sessions older than the timeout; the count per channel of sessions whose
        address fetched media within the timeout (a channel whose last session left is
        reported once with 0, then forgotten)."""
        counts: dict[str, int] = {}
        limit = now - self.timeout
        for slug, table in list(self._tables.items()):
            sessions = table.sessions
            for key in [k for k, entry in sessions.items() if entry[0] < limit]:
                self._uncount(table, sessions.pop(key)[1])
            table.media = {a: t for a, t in table.media.items()
                           if t >= limit and a in table.per_address}
            media = table.media
            counts[slug] = sum(1 for entry in sessions.values() if entry[1] in media)
            if not sessions:
                del self._tables[slug]
        return counts


# -- per-edge state ------------------------------------------------------------------------

@dataclass(slots=True)
class _Rendered:
    """One media playlist's text for one playlist state."""

    playlist: Any
    version: tuple[Any, ...]
    full: bytes | None = None
    delta: bytes | None = None
    # The 200 answers to blocking reloads, shared by every viewer released at once.
    blocking: dict[bool, Reply] = field(default_factory=dict)


@dataclass(slots=True)
class _Group:
    check: Callable[[], Hold]
    waiters: set[Held] = field(default_factory=set)


@dataclass
class _EdgeState:
    """What this module keeps about one live edge, in ``LiveEdge.delivery`` (dropped with it)."""

    token: str = field(default_factory=lambda: secrets.token_hex(5))
    rendered: dict[str, _Rendered] = field(default_factory=dict)
    master_version: tuple[Any, ...] | None = None
    master_template: str = ""
    groups: dict[tuple[Any, ...], _Group] = field(default_factory=dict)
    watcher: asyncio.Task[None] | None = None
    # When the watcher next looks for held requests past their deadline (one scan per
    # DEADLINE_TICK instead of a timer per request: a timer handle per request, or a heap
    # keeping released requests until their deadline, cost more than the scan).
    next_expiry: float = 0.0
    # Plain 200 answers for parts, segments and init sections (immutable bytes), by name.
    objects: dict[tuple[str, str, bool], Reply] = field(default_factory=dict)


def _playlist_version(playlist: Any) -> tuple[Any, ...]:
    """Changes whenever ``render`` would: every mutator of ``LivePlaylist`` (add_part,
    add_segment, end, resume, set_init_uri) moves one of these."""
    return (playlist.next_part(), playlist.ended, playlist.init_uri, playlist.media_sequence)


def _has_media(rendition: RenditionEdge) -> bool:
    return bool(rendition.parts or rendition.segments)


def _init_bytes(rendition: RenditionEdge, name: str) -> bytes | None:
    inits: Mapping[str, bytes] | None = getattr(rendition, "inits", None)
    if inits is not None:
        return inits.get(name)
    return rendition.init if name == INIT_URI else None


# -- byte ranges ---------------------------------------------------------------------------

def _etag_matches(header: str, etag: str) -> bool:
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == etag:
            return True
    return False


def plan_range(headers: Mapping[str, str], size: int, etag: str) -> tuple[int, int, int]:
    """(status, start, stop) for a GET of ``size`` bytes: 200 whole, 206 one range, 304 not
    modified, 416 unsatisfiable. Several ranges, or a Range we cannot read, get the whole
    object (RFC 9110 14.2 lets a server ignore Range)."""
    inm = headers.get("if-none-match")
    if inm is not None and _etag_matches(inm, etag):
        return 304, 0, 0
    value = headers.get("range")
    if value is None:
        return 200, 0, size
    if_range = headers.get("if-range")
    if if_range is not None and if_range.strip() != etag:
        return 200, 0, size
    m = _RANGE_RE.fullmatch(value.strip())
    if m is None or m.group(1) == m.group(2) == "":
        return 200, 0, size
    first, last = m.groups()
    if first == "":
        suffix = int(last)
        if suffix == 0 or size == 0:
            return 416, 0, 0
        return 206, max(0, size - suffix), size
    start = int(first)
    if last != "" and int(last) < start:
        return 200, 0, size
    if start >= size:
        return 416, 0, 0
    stop = size if last == "" else min(int(last) + 1, size)
    return 206, start, stop


def _object_response(kind: str, plan: tuple[int, int, int], size: int,
                     body: bytes | memoryview, etag: str, cache: str) -> Reply:
    status, start, stop = plan
    if status == 304:
        return Reply(kind, 304, {"ETag": etag, "Cache-Control": cache})
    headers = {"Content-Type": MEDIA_TYPE, "Cache-Control": cache, "Accept-Ranges": "bytes",
               "ETag": etag}
    if status == 416:
        headers["Content-Range"] = f"bytes */{size}"
        headers["Cache-Control"] = ERROR_CACHE
        return Reply(kind, 416, headers)
    if status == 206:
        headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
    return Reply(kind, status, headers, body)


def error_reply(kind: str, status: int, text: str = "") -> Reply:
    headers = {"Content-Type": "text/plain; charset=utf-8", "Cache-Control": ERROR_CACHE}
    if status == 503:
        headers["Retry-After"] = "1"
    return Reply(kind, status, headers, (text or HTTPStatus(status).phrase).encode())


# -- VOD -----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Vod:
    """A recorded stream's playlists and the only names its URLs may use."""

    directory: Path
    master: bytes
    playlists: dict[str, bytes]
    names: dict[str, frozenset[str]]


def _load_vod(directory: Path) -> _Vod | None:
    """Read the VOD's playlists (in a thread). Renditions and names come from the files the
    server wrote, each checked against the canonical patterns."""
    try:
        master = (directory / "master.m3u8").read_bytes()
        playlists: dict[str, bytes] = {}
        names: dict[str, frozenset[str]] = {}
        for line in master.decode().splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            rendition, _, rest = line.partition("/")
            if rest != "index.m3u8" or not _RENDITION_RE.fullmatch(rendition):
                continue
            text = (directory / rendition / "index.m3u8").read_bytes()
            allowed = set()
            for entry in text.decode().splitlines():
                entry = entry.strip()
                m = _MAP_URI_RE.match(entry)
                uri = m.group(1) if m else entry if entry and not entry.startswith("#") else ""
                if uri and parse_segment_name(uri) is not None:
                    allowed.add(uri)
            playlists[rendition] = text
            names[rendition] = frozenset(allowed)
    except (OSError, UnicodeDecodeError):
        return None
    if not playlists:
        return None
    return _Vod(directory, master, playlists, names)


def _vod_kind(name: str) -> str:
    """The request metric's kind for a name under a VOD rendition ("other": not servable)."""
    if name == "index.m3u8":
        return "vod_playlist"
    resource = parse_segment_name(name)
    return f"vod_{resource.kind}" if resource is not None else "other"


def _remember(cache: OrderedDict[Any, Any], key: Any, value: Any) -> None:
    """Store as the most recently used entry; the least recently used go past the size."""
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > VOD_CACHE_SIZE:
        cache.popitem(last=False)


def _read_file(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


class _ByteCache:
    """Recently served VOD objects in memory, least recently used out first, within a byte
    budget: a thread hop and a file read per request held VOD GETs to a fifth of nginx's rate.
    Recorded files never change, so entries need no revalidation."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.total = 0
        self._items: OrderedDict[tuple[Path, str, str], bytes] = OrderedDict()

    def get(self, key: tuple[Path, str, str]) -> bytes | None:
        data = self._items.get(key)
        if data is not None:
            self._items.move_to_end(key)
        return data

    def put(self, key: tuple[Path, str, str], data: bytes) -> None:
        if len(data) > self.budget // 8 or key in self._items:
            return  # a few huge objects must not flush everything else
        self._items[key] = data
        self.total += len(data)
        while self.total > self.budget:
            _, old = self._items.popitem(last=False)
            self.total -= len(old)


# -- held requests -------------------------------------------------------------------------

class Held:
    """A request held until the live edge has what it asks for, or until its deadline.

    Not a task per request: a callback registered in the edge's group for its target (one
    group per distinct target, however many viewers wait on it), released by the edge's
    watcher. ``then`` turns the outcome into the reply; ``start`` delivers it to a callback
    (the fast path writes it straight to the socket), ``wait`` to a coroutine (aiohttp).
    """

    __slots__ = ("service", "edge", "state", "key", "check", "timeout", "then", "observe",
                 "started", "deadline", "done", "group")

    def __init__(self, service: HlsService, edge: LiveEdge, state: _EdgeState,
                 key: tuple[Any, ...], check: Callable[[], Hold], timeout: float,
                 then: Callable[[Hold], Reply], observe: bool = True) -> None:
        self.service = service
        self.edge = edge
        self.state = state
        self.key = key
        self.check = check
        self.timeout = timeout
        self.then = then
        self.observe = observe
        self.started = self.deadline = 0.0
        self.done: Callable[[Reply], None] | None = None
        self.group: _Group | None = None

    def start(self, done: Callable[[Reply], None]) -> None:
        loop = asyncio.get_running_loop()
        self.done = done
        self.started = loop.time()
        self.deadline = self.started + self.timeout
        if self.service.closing:
            self._finish("timeout")
        else:
            self._register(loop)

    async def wait(self) -> Reply:
        fut: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()

        def done(reply: Reply) -> None:
            if not fut.done():
                fut.set_result(reply)

        self.start(done)
        try:
            return await fut
        finally:
            self.cancel()

    def cancel(self) -> None:
        """Forget the request (its client went away); nothing is delivered."""
        self.done = None
        self._unregister()

    def _register(self, loop: asyncio.AbstractEventLoop) -> None:
        state = self.state
        group = state.groups.get(self.key)
        if group is None:
            group = state.groups[self.key] = _Group(self.check)
        group.waiters.add(self)
        self.group = group
        if state.watcher is None:
            self.service._states[id(state)] = state
            state.watcher = loop.create_task(self.service._watch(self.edge, state))

    def _unregister(self) -> None:
        group = self.group
        if group is not None:
            self.group = None
            group.waiters.discard(self)
            if not group.waiters and self.state.groups.get(self.key) is group:
                del self.state.groups[self.key]

    def release(self, ready: bool) -> None:
        """The watcher saw the target arrive (``ready``), or the deadline or shutdown came."""
        self._unregister()
        if self.done is None:
            return
        result = self.check()
        if result == "wait":
            loop = asyncio.get_running_loop()
            if ready and not self.service.closing and loop.time() < self.deadline:
                self._register(loop)  # woken early: the edge moved, not to our target yet
                return
            result = "timeout"
        self._finish(result)

    def _finish(self, result: Hold) -> None:
        done, self.done = self.done, None
        if self.observe:
            waited = asyncio.get_running_loop().time() - self.started
            self.service.metrics.hls_blocking_wait.observe(waited)
        if done is not None:
            done(self.then(result))


# What a route method returns when it cannot answer at once: a request held for the live
# edge, or (VOD loads) a coroutine.
Pending: TypeAlias = "Held | Coroutine[Any, Any, Reply]"


# -- the service ---------------------------------------------------------------------------

class HlsService:
    """The delivery logic and the state it shares (one per web application).

    Route methods take an ``HlsRequest`` and return a ``Reply`` at once when they can (nearly
    always), or a coroutine to await when the request must be held; ``finish`` adds CORS and
    counts the response. aiohttp's handlers (``endpoint``) and the fast path both use them.
    """

    def __init__(self, settings: Settings, metrics: Metrics, edges: EdgeRegistry,
                 db: Database) -> None:
        self.settings = settings
        self.metrics = metrics
        self.edges = edges
        self.db = db
        hls = settings.hls
        self.viewers = ViewerCounter(hls.viewer_timeout, hls.max_viewer_sessions,
                                     hls.max_sessions_per_address)
        self._trust_forwarded = settings.http.trust_forwarded_for
        self._address_keys: dict[str, str] = {}
        self.master_wait = 3.0 * max(1, math.ceil(hls.segment_duration - 1e-6))
        self.closing = False
        self._states: dict[int, _EdgeState] = {}  # by id(): only to release on shutdown
        self._counters: dict[tuple[str, int], Any] = {}
        # VOD URL reference -> (until, the stream id it reaches or None); stream id ->
        # (until, its playlists or None).
        self._vod_links: OrderedDict[str, tuple[float, int | None]] = OrderedDict()
        self._vods: OrderedDict[int, tuple[float, _Vod | None]] = OrderedDict()
        self._vod_loads: dict[str, asyncio.Future[_Vod | None]] = {}
        self._written: dict[int, int] = {}
        self._vod_bytes = _ByteCache(hls.vod_cache_mb << 20)
        origins = [o.strip() for o in settings.http.cors_origins.split(",") if o.strip()]
        self._cors_any = "*" in origins
        self._cors_origins = frozenset(origins)

    # -- plumbing -------------------------------------------------------------------------

    def finish(self, request: HlsRequest, reply: Reply) -> Reply:
        """CORS headers and the request metric, for every HLS/VOD response (the same Reply
        may answer many requests: anything request-specific goes on a copy)."""
        headers = reply.headers
        if self._cors_any:
            if "Access-Control-Allow-Origin" not in headers:
                headers["Access-Control-Allow-Origin"] = "*"
                headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        elif self._cors_origins:
            reply = Reply(reply.kind, reply.status, dict(headers), reply.body)
            headers = reply.headers
            headers["Vary"] = "Origin"
            origin = request.headers.get("origin")
            if origin is not None and origin in self._cors_origins:
                headers["Access-Control-Allow-Origin"] = origin
                headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        counter = self._counters.get((reply.kind, reply.status))
        if counter is None:
            counter = self._counters[(reply.kind, reply.status)] = \
                self.metrics.hls_requests.labels(reply.kind, str(reply.status))
        counter.inc()
        return reply

    def endpoint(self, fn: Callable[[HlsRequest], Reply | Pending]
                 ) -> Callable[[web.Request], Coroutine[Any, Any, web.StreamResponse]]:
        """An aiohttp handler for one route method."""
        async def handler(request: web.Request) -> web.StreamResponse:
            q = request.query
            req = HlsRequest(request.method, request.match_info,
                             {key: q.getall(key) for key in q.keys()}, request.headers,
                             request.remote)
            reply = fn(req)
            if isinstance(reply, Held):
                reply = await reply.wait()
            elif not isinstance(reply, Reply):
                reply = await reply
            reply = self.finish(req, reply)
            return web.Response(status=reply.status, headers=reply.headers,
                                body=reply.body if reply.status not in (204, 304) else None)
        return handler

    def _state(self, edge: LiveEdge) -> _EdgeState:
        state = edge.delivery
        if state is None:
            state = edge.delivery = _EdgeState()
        return state

    # -- holding requests -----------------------------------------------------------------

    async def _watch(self, edge: LiveEdge, state: _EdgeState) -> None:
        """Release the groups whose wait is over: when it starts, on every change of the
        edge, and at least every DEADLINE_TICK.

        Each wake-up checks every group, whatever woke it: a notify is only a hint that can
        be lost. A tick that comes due in the loop iteration of a notify cancels the wait the
        notify had ended (``asyncio.timeout`` raises TimeoutError, not the wake-up), and a
        notify between this task's creation and its first wait sets an event it never waits
        on. Checking only after a notify held such requests until their own deadline (30 s
        for 10 s segments); checking each tick costs one check per distinct target."""
        try:
            loop = asyncio.get_running_loop()
            while True:
                self._expire(state, loop.time())
                self._release_ready(state)
                if not state.groups or self.closing:
                    break
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(DEADLINE_TICK):
                        await edge.changed()
        finally:
            state.watcher = None
            self._states.pop(id(state), None)

    @staticmethod
    def _release_ready(state: _EdgeState) -> None:
        """Release every group whose target has come (or can no longer come)."""
        for key, group in list(state.groups.items()):
            try:
                done = group.check() != "wait"
            except Exception:  # noqa: BLE001 - the handler finds out; the watcher must live
                done = True
            if not done:
                continue
            del state.groups[key]
            for held in list(group.waiters):
                try:
                    held.release(True)
                except Exception:  # one broken reply must not strand the others
                    log.exception("releasing a held HLS request failed")

    @staticmethod
    def _expire(state: _EdgeState, now: float) -> None:
        """Answer the held requests whose deadline has passed (at most once a tick)."""
        if now < state.next_expiry:
            return
        state.next_expiry = now + DEADLINE_TICK
        for group in list(state.groups.values()):
            for held in [h for h in group.waiters if h.deadline <= now]:
                held.release(False)

    # -- live -----------------------------------------------------------------------------

    def master(self, request: HlsRequest) -> Reply | Pending:
        edge = self.edges.get(request.params["slug"])
        if edge is None:
            return error_reply("master", 404)
        state = self._state(edge)

        def ready() -> Hold:
            renditions = edge.renditions
            if renditions and edge.announced() and all(map(_has_media, renditions.values())):
                return "ready"
            return "gone" if edge.ended else "wait"

        if ready() == "wait":
            def then(result: Hold) -> Reply:
                if result == "timeout":
                    # A planned rung that never came (its encoder failed) must not keep
                    # the stream unwatchable: offer the renditions that do have media.
                    names = {r.name for r in edge if _has_media(r)}
                    if not names:
                        return error_reply("master", 503, "the stream has no media yet")
                    return self._master_reply(request, edge, state, names)
                return self._master_reply(request, edge, state)

            return Held(self, edge, state, ("master",), ready, self.master_wait, then,
                        observe=False)
        return self._master_reply(request, edge, state)

    def _master_reply(self, request: HlsRequest, edge: LiveEdge, state: _EdgeState,
                      names: set[str] | None = None) -> Reply:
        if not edge.renditions:
            return error_reply("master", 404)
        sids = request.query.get("session")
        sid = sids[0] if sids and _SESSION_RE.fullmatch(sids[0]) else secrets.token_urlsafe(12)
        version = tuple((r.name, r.bandwidth, r.average_bandwidth, r.width, r.height,
                         r.frame_rate, r.codecs) for r in edge.renditions.values()
                        if names is None or r.name in names)
        if version != state.master_version:
            lines = edge.master(names).split("\n")
            state.master_template = "\n".join(
                f"{state.token}/{line}?session=\0" if line and not line.startswith("#") else line
                for line in lines)
            state.master_version = version
        body = state.master_template.replace("\0", sid).encode()
        return Reply("master", 200, {"Content-Type": PLAYLIST_TYPE,
                                     "Cache-Control": MASTER_CACHE}, body)

    def live(self, request: HlsRequest) -> Reply | Pending:
        params = request.params
        name = params["name"]
        resource = None if name == "index.m3u8" else parse_segment_name(name)
        kind = "playlist" if name == "index.m3u8" else resource.kind if resource else "other"
        if resource is None and kind == "other":
            return error_reply(kind, 404)
        edge = self.edges.get(params["slug"])
        if edge is None:
            return error_reply(kind, 404)
        state = self._state(edge)
        token = params.get("token")
        if token is not None and token != state.token:
            return error_reply(kind, 404)
        rendition = edge.renditions.get(params["rendition"])
        if rendition is None:
            return error_reply(kind, 404)
        if resource is None:
            return self._media_playlist(request, edge, state, rendition)
        return self._media_object(request, edge, state, rendition, name, resource,
                                  token is not None)

    @staticmethod
    def _directives(query: Mapping[str, list[str]]) -> tuple[int | None, int | None, bool]:
        def number(key: str) -> int | None:
            values = query.get(key)
            if not values:
                return None
            if len(values) > 1 or not _NUMBER_RE.fullmatch(values[0]):
                raise _BadRequest(f"{key} must be one non-negative integer")
            return int(values[0])

        msn, part = number("_HLS_msn"), number("_HLS_part")
        if part is not None and msn is None:
            raise _BadRequest("_HLS_part needs _HLS_msn")
        skips = query.get("_HLS_skip") or ()
        if len(skips) > 1 or (skips and skips[0] not in ("YES", "v2")):
            raise _BadRequest("_HLS_skip must be YES or v2")
        return msn, part, bool(skips)

    def _render(self, edge: LiveEdge, state: _EdgeState, rendition: RenditionEdge,
                skip: bool) -> bytes:
        playlist = rendition.playlist
        # The other renditions' reports are part of the text, so of its version too.
        reports = tuple(report for other in edge.renditions.values() if other is not rendition
                        if (report := other.playlist.report(f"../{other.name}/index.m3u8")))
        version = (_playlist_version(playlist), reports)
        cached = state.rendered.get(rendition.name)
        if cached is None or cached.playlist is not playlist or cached.version != version:
            cached = state.rendered[rendition.name] = _Rendered(playlist, version)
        if skip:
            if cached.delta is None:
                cached.delta = playlist.render(skip=True, reports=reports).encode()
            return cached.delta
        if cached.full is None:
            cached.full = playlist.render(reports=reports).encode()
        return cached.full

    def _media_playlist(self, request: HlsRequest, edge: LiveEdge, state: _EdgeState,
                        rendition: RenditionEdge) -> Reply | Pending:
        try:
            msn, part, skip = self._directives(request.query)
        except _BadRequest as exc:
            kind = "blocking_playlist" if "_HLS_msn" in request.query else "playlist"
            return error_reply(kind, 400, str(exc))
        if request.method == "GET":
            address = self.client_address(request)
            self.viewers.seen(edge.slug, self.viewers.session_key(request, address), address,
                              time.monotonic())
        if msn is None:
            body = self._render(edge, state, rendition, skip)
            return Reply("playlist", 200, {"Content-Type": PLAYLIST_TYPE,
                                           "Cache-Control": PLAYLIST_CACHE}, body)
        name = rendition.name

        def check() -> Hold:
            current = edge.renditions.get(name)
            return "gone" if current is None else current.playlist.blocking_state(msn, part)

        result = check()
        if result == "wait":
            return Held(self, edge, state, ("playlist", name, msn, part), check,
                        3.0 * rendition.playlist.target_duration,
                        lambda result: self._blocking_reply(edge, state, rendition, skip,
                                                            result))
        self.metrics.hls_blocking_wait.observe(0.0)
        return self._blocking_reply(edge, state, rendition, skip, result)

    def _blocking_reply(self, edge: LiveEdge, state: _EdgeState, rendition: RenditionEdge,
                        skip: bool, result: Hold) -> Reply:
        if result == "bad":
            return error_reply("blocking_playlist", 400, "_HLS_msn/_HLS_part too far ahead")
        if result == "timeout":
            return error_reply("blocking_playlist", 503, "the requested part did not come")
        if result == "gone":
            return error_reply("blocking_playlist", 404)
        body = self._render(edge, state, rendition, skip)
        rendered = state.rendered[rendition.name]
        reply = rendered.blocking.get(skip)
        if reply is None or reply.body is not body:
            reply = rendered.blocking[skip] = Reply(
                "blocking_playlist", 200,
                {"Content-Type": PLAYLIST_TYPE, "Cache-Control": BLOCKING_CACHE}, body)
        return reply

    def _media_object(self, request: HlsRequest, edge: LiveEdge, state: _EdgeState,
                      rendition: RenditionEdge, name: str, resource: Any,
                      tokened: bool) -> Reply | Pending:
        kind = resource.kind
        data: bytes | None
        if kind == "init":
            data = _init_bytes(rendition, name)
        elif kind == "segment":
            data = rendition.segments.get(resource.msn)
        else:
            key = (resource.msn, resource.part)
            data = rendition.parts.get(key)
            playlist = rendition.playlist
            if data is None and resource.msn >= playlist.next_msn and not playlist.ended:
                # The preload hint (or a part just after it): hold until it is complete.
                rname = rendition.name

                def check() -> Hold:
                    current = edge.renditions.get(rname)
                    if current is None:
                        return "gone"
                    if key in current.parts:
                        return "ready"
                    return current.playlist.blocking_state(*key)

                if check() == "wait":
                    def then(result: Hold) -> Reply:
                        if result == "timeout":
                            return error_reply("part", 503, "the part did not come")
                        return self._object_reply(request, state, rendition, "part", name,
                                                  rendition.parts.get(key), tokened)

                    self._watching(request, edge)
                    return Held(self, edge, state, ("part", rname, key), check,
                                3.0 * playlist.target_duration, then)
        if data is not None and kind != "init":
            self._watching(request, edge)
        return self._object_reply(request, state, rendition, kind, name, data, tokened)

    def _watching(self, request: HlsRequest, edge: LiveEdge) -> None:
        """Media went to this client: its sessions count as viewers (``ViewerCounter``)."""
        if request.method == "GET":
            self.viewers.fetched_media(edge.slug, self.client_address(request),
                                       time.monotonic())

    def client_address(self, request: HlsRequest) -> str:
        """The key viewers are counted under: the client's address (behind a trusted proxy,
        the last X-Forwarded-For entry, which the proxy appended), IPv6 grouped by /64."""
        host = client_host(request.remote, request.headers, self._trust_forwarded)
        if not host:
            return "unknown"
        keys = self._address_keys
        key = keys.get(host)
        if key is None:
            if len(keys) >= ADDRESS_KEYS:
                keys.clear()
            key = keys[host] = address_key(host) or host
        return key

    @staticmethod
    def _object_reply(request: HlsRequest, state: _EdgeState, rendition: RenditionEdge,
                      kind: str, name: str, data: bytes | None, tokened: bool) -> Reply:
        if data is None:
            return error_reply(kind, 404)
        headers = request.headers
        plain = "range" not in headers and "if-none-match" not in headers
        if plain:  # every viewer's GET of the part: one Reply for all of them
            key = (rendition.name, name, tokened)
            reply = state.objects.get(key)
            if reply is not None and reply.body is data:
                return reply
        etag = f'"{state.token}-{rendition.name}-{name}"'
        plan = plan_range(headers, len(data), etag)
        if plain:
            if len(state.objects) >= OBJECT_REPLIES:
                state.objects.clear()  # old parts are gone from the window anyway
            reply = state.objects[key] = _object_response(
                kind, plan, len(data), data, etag, IMMUTABLE if tokened else REVALIDATE)
            return reply
        body = data if plan[0] != 206 else memoryview(data)[plan[1]:plan[2]]
        return _object_response(kind, plan, len(data), body, etag,
                                IMMUTABLE if tokened else REVALIDATE)

    # -- VOD ------------------------------------------------------------------------------

    def _vod_cached(self, raw: str) -> _Vod | None | str:
        """The VOD the URL's ``{stream_id}`` reaches if known (None: known to reach none);
        else the reference to look up."""
        now = time.monotonic()
        link = self._vod_links.get(raw)
        if link is None or link[0] <= now:
            return raw if parse_stream_ref(raw) is not None else None
        self._vod_links.move_to_end(raw)
        if link[1] is None:
            return None
        hit = self._vods.get(link[1])
        if hit is None or hit[0] <= now:
            return raw
        self._vods.move_to_end(link[1])
        return hit[1]

    async def _vod(self, raw: str) -> _Vod | None:
        loading = self._vod_loads.get(raw)
        if loading is None:
            loading = self._vod_loads[raw] = asyncio.ensure_future(self._load_vod(raw))
            loading.add_done_callback(lambda _: self._vod_loads.pop(raw, None))
        return await asyncio.shield(loading)

    async def _load_vod(self, raw: str) -> _Vod | None:
        """Which stream the reference reaches (the rule of ``stream_links``, for a caller with
        no identity: VOD answers are cacheable by anyone), then its playlists."""
        ref = parse_stream_ref(raw)
        stream_id = vod = None
        try:
            found = None
            if ref is not None:
                async with self.db.session() as session:
                    found = await stream_by_ref(session, ref)
            if ref is not None and found is not None:
                stream, channel = found
                if (stream.status is StreamStatus.ARCHIVED and stream.vod_available
                        and reachable(ref, channel, None)):
                    stream_id = stream.id
            if stream_id is not None:
                hit = self._vods.get(stream_id)
                if hit is not None and hit[0] > time.monotonic():
                    vod = hit[1]
                else:
                    directory = self.settings.data_dir / "streams" / str(stream_id)
                    vod = await asyncio.to_thread(_load_vod, directory)
                    ttl = VOD_CACHE_SECONDS if vod is not None else VOD_MISS_SECONDS
                    _remember(self._vods, stream_id, (time.monotonic() + ttl, vod))
        except Exception:
            log.exception("could not load VOD %r", raw)
            stream_id = vod = None
        _remember(self._vod_links, raw, (time.monotonic() + VOD_LINK_SECONDS, stream_id))
        return vod

    async def _vod_loaded(self, request: HlsRequest, raw: str,
                          then: Callable[[HlsRequest, _Vod | None], Reply | Pending]) -> Reply:
        reply = then(request, await self._vod(raw))
        assert not isinstance(reply, Held)  # VOD requests are never held
        return reply if isinstance(reply, Reply) else await reply

    def vod_master(self, request: HlsRequest) -> Reply | Pending:
        vod = self._vod_cached(request.params["stream_id"])
        if isinstance(vod, str):
            return self._vod_loaded(request, vod, self._vod_master)
        return self._vod_master(request, vod)

    @staticmethod
    def _vod_master(request: HlsRequest, vod: _Vod | None) -> Reply:
        if vod is None:
            return error_reply("vod_master", 404)
        return Reply("vod_master", 200, {"Content-Type": PLAYLIST_TYPE,
                                         "Cache-Control": VOD_PLAYLIST_CACHE}, vod.master)

    def vod_resource(self, request: HlsRequest) -> Reply | Pending:
        kind = _vod_kind(request.params["name"])
        if kind == "other":
            return error_reply(kind, 404)
        vod = self._vod_cached(request.params["stream_id"])
        if isinstance(vod, str):
            return self._vod_loaded(request, vod, self._vod_resource)
        return self._vod_resource(request, vod)

    def _vod_resource(self, request: HlsRequest, vod: _Vod | None) -> Reply | Pending:
        params = request.params
        name, rendition = params["name"], params["rendition"]
        kind = _vod_kind(name)
        if vod is None or rendition not in vod.names:
            return error_reply(kind, 404)
        if kind == "vod_playlist":
            return Reply(kind, 200, {"Content-Type": PLAYLIST_TYPE,
                                     "Cache-Control": VOD_PLAYLIST_CACHE},
                         vod.playlists[rendition])
        if name not in vod.names[rendition]:
            return error_reply(kind, 404)
        # Both parts of the path are names the VOD's own playlists list, checked against the
        # canonical patterns: nothing from the URL reaches the filesystem unvetted.
        key = (vod.directory, rendition, name)
        data = self._vod_bytes.get(key)
        if data is None:
            return self._vod_read(request, kind, vod, key)
        return self._vod_object(request, kind, data)

    async def _vod_read(self, request: HlsRequest, kind: str, vod: _Vod,
                        key: tuple[Path, str, str]) -> Reply:
        data = await asyncio.to_thread(_read_file, vod.directory / key[1] / key[2])
        if data is None:
            return error_reply(kind, 404)
        self._vod_bytes.put(key, data)
        return self._vod_object(request, kind, data)

    @staticmethod
    def _vod_object(request: HlsRequest, kind: str, data: bytes) -> Reply:
        params = request.params
        size = len(data)
        etag = f'"{params["stream_id"]}-{params["rendition"]}-{params["name"]}-{size:x}"'
        plan = plan_range(request.headers, size, etag)
        status, start, stop = plan
        body = data[start:stop] if status in (200, 206) else b""
        return _object_response(kind, plan, size, body, etag, IMMUTABLE)

    # -- CORS preflight -------------------------------------------------------------------

    def fallback(self, request: HlsRequest) -> Reply:
        """Any other method or path under /hls/ and /vod/: preflight, 405 or 404."""
        if request.method == "OPTIONS":
            return self.preflight(request)
        if request.method not in ("GET", "HEAD"):
            reply = error_reply("other", 405)
            reply.headers["Allow"] = "GET, HEAD, OPTIONS"
            return reply
        return error_reply("other", 404)

    def preflight(self, request: HlsRequest) -> Reply:
        headers = {"Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
                   "Access-Control-Max-Age": "86400", "Cache-Control": "public, max-age=86400"}
        wanted = request.headers.get("access-control-request-headers", "").strip()
        if wanted and _REQUEST_HEADERS_RE.fullmatch(wanted):
            headers["Access-Control-Allow-Headers"] = wanted
        return Reply("preflight", 204, headers)

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
        """Publish the counts: the gauge always, a live stream's row when its count changed."""
        counts = self.viewers.sweep(now)
        writes: dict[int, int] = {}
        live: set[int] = set()
        for slug, count in counts.items():
            self.metrics.viewers.labels(slug).set(count)
            edge = self.edges.get(slug)
            if edge is None or edge.ended:
                continue  # ending a stream zeroes its row; a late count must not undo that
            live.add(edge.stream_id)
            if self._written.get(edge.stream_id) != count:
                writes[edge.stream_id] = count
        self._written = {k: v for k, v in self._written.items() if k in live}
        if not writes:
            return
        async with self.db.session() as session:
            await queries.update_live_viewer_counts(session, writes)
            await session.commit()
        self._written.update(writes)

    async def lifetime(self, app: web.Application) -> AsyncIterator[None]:
        task = asyncio.get_running_loop().create_task(self._viewer_loop())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def shutdown(self, app: web.Application) -> None:
        """Answer held requests now (503) instead of keeping the server's shutdown waiting."""
        self.closing = True
        for state in list(self._states.values()):
            groups = list(state.groups.values())
            state.groups.clear()
            for group in groups:
                for held in list(group.waiters):
                    held.release(False)
            if state.watcher is not None:
                state.watcher.cancel()


def setup(app: web.Application) -> HlsService:
    """Register the live and VOD routes, the CORS preflight and the viewer counter."""
    service = HlsService(app[SETTINGS_KEY], app[METRICS_KEY], app[EDGES_KEY], app[DB_KEY])
    app[HLS_KEY] = service
    add = app.router.add_get
    ep = service.endpoint
    # The tokened form first: nearly every request is one of these (routes are tried in order).
    add("/hls/{slug}/{token}/{rendition}/{name}", ep(service.live))
    add("/hls/{slug}/master.m3u8", ep(service.master))
    add("/hls/{slug}/{rendition}/{name}", ep(service.live))
    add("/vod/{stream_id}/master.m3u8", ep(service.vod_master))
    add("/vod/{stream_id}/{rendition}/{name}", ep(service.vod_resource))
    # Last, so the routes above win: preflights, other methods and unknown paths.
    app.router.add_route("*", "/hls/{tail:.*}", ep(service.fallback))
    app.router.add_route("*", "/vod/{tail:.*}", ep(service.fallback))
    app.cleanup_ctx.append(service.lifetime)
    app.on_shutdown.append(service.shutdown)
    return service
