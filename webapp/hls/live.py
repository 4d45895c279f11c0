"""Live delivery (``/hls/{slug}/…``): the master and media playlists and the media objects of
the in-memory ``LiveEdge``.

Names in URLs are looked up in the edge's maps, never joined onto a path. The master playlist
links each media playlist as ``{token}/{rendition}/index.m3u8?session={id}``: ``token`` is
random per live edge, because segment and part numbers start again at 0 for a channel's next
broadcast, so under the token every URL names one immutable object and can be cached for a
year (the shorter ``/hls/{slug}/{rendition}/…`` URLs work too, with revalidation instead of
``immutable``); ``session`` identifies one player for viewer counting (``viewers``).

Each playlist is rendered once per change and the bytes shared by every response; plain GETs
of one part share one Reply.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mediaserver.metrics import Metrics
from transcode.edge import EdgeRegistry, LiveEdge, RenditionEdge
from transcode.hls import INIT_URI, parse_segment_name

from .held import Held, Hold, Holding, Pending, Waiting
from .remote import Elsewhere
from .reply import (
    BEACON_CACHE,
    BLOCKING_CACHE,
    FILL_HEADER,
    IMMUTABLE,
    MASTER_CACHE,
    PLAYLIST_CACHE,
    PLAYLIST_TYPE,
    REVALIDATE,
    SHARED_MASTER_CACHE,
    SHARED_PLAYLIST_CACHE,
    HlsRequest,
    Reply,
    error_reply,
    object_response,
    plan_range,
)
from .viewers import SESSION_RE, ClientAddresses, ViewerCounter

_NUMBER_RE = re.compile(r"[0-9]{1,10}")
# Shared object replies kept per live edge (a few playlist windows of parts per rendition).
OBJECT_REPLIES = 512


class _BadRequest(Exception):
    """A malformed delivery directive: 400 with this text."""


@dataclass(slots=True)
class _Rendered:
    """One media playlist's text for one playlist state."""

    playlist: Any
    version: tuple[Any, ...]
    full: bytes | None = None
    delta: bytes | None = None
    # The 200 answers to blocking reloads, shared by every viewer released at once.
    blocking: dict[bool, Reply] = field(default_factory=dict)


@dataclass
class _EdgeState(Waiting):
    """What delivery keeps about one live edge, in ``LiveEdge.delivery`` (dropped with it):
    the requests held on it, and the text and replies shared by its viewers."""

    token: str = field(default_factory=lambda: secrets.token_hex(5))
    rendered: dict[str, _Rendered] = field(default_factory=dict)
    master_version: tuple[Any, ...] | None = None
    master_template: str = ""
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


class LiveDelivery:
    """The live routes: ``master``, ``live`` (media playlists and objects) and ``watching``
    (the viewer beacon); a stream held by another origin goes to ``elsewhere``."""

    def __init__(
        self,
        metrics: Metrics,
        edges: EdgeRegistry,
        holding: Holding,
        viewers: ViewerCounter,
        addresses: ClientAddresses,
        master_wait: float,
        elsewhere: Elsewhere,
    ) -> None:
        self.elsewhere = elsewhere
        self.metrics = metrics
        self.edges = edges
        self.holding = holding
        self.viewers = viewers
        self.addresses = addresses
        self.master_wait = master_wait

    @staticmethod
    def _state(edge: LiveEdge) -> _EdgeState:
        state = edge.delivery
        if state is None:
            state = edge.delivery = _EdgeState()
        return state

    def master(self, request: HlsRequest) -> Reply | Pending:
        edge = self.edges.get(request.params["slug"])
        if edge is None:
            return self.elsewhere.reply(request, "master")
        if (edge.retiring or edge.ended) and self.elsewhere.can_forward(request):
            # The publisher left: the channel may be live on another origin by now.
            return self.elsewhere.unless_moved(
                request, "master", lambda: self._master(request, edge)
            )
        return self._master(request, edge)

    def _master(self, request: HlsRequest, edge: LiveEdge) -> Reply | Pending:
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

            return Held(
                self.holding, edge, state, ("master",), ready, self.master_wait, then, observe=False
            )
        return self._master_reply(request, edge, state)

    def _master_reply(
        self, request: HlsRequest, edge: LiveEdge, state: _EdgeState, names: set[str] | None = None
    ) -> Reply:
        if not edge.renditions:
            return error_reply("master", 404)
        sids = request.query.get("session")
        sid = sids[0] if sids and SESSION_RE.fullmatch(sids[0]) else secrets.token_urlsafe(12)
        version = tuple(
            (r.name, r.bandwidth, r.average_bandwidth, r.width, r.height, r.frame_rate, r.codecs)
            for r in edge.renditions.values()
            if names is None or r.name in names
        )
        if version != state.master_version:
            lines = edge.master(names).split("\n")
            state.master_template = "\n".join(
                f"{state.token}/{line}?session=\0" if line and not line.startswith("#") else line
                for line in lines
            )
            state.master_version = version
        if FILL_HEADER in request.headers:
            # For a cache to share: no session (its players count by beacon, ``watching``).
            body = state.master_template.replace("?session=\0", "").encode()
            cache = SHARED_MASTER_CACHE
        else:
            body = state.master_template.replace("\0", sid).encode()
            cache = MASTER_CACHE
        return Reply("master", 200, {"Content-Type": PLAYLIST_TYPE, "Cache-Control": cache}, body)

    def watching(self, request: HlsRequest) -> Reply | Pending:
        """The player's beacon (``GET /hls/{slug}/watching?session=ID&rendition=NAME``, 204,
        never cached): behind a cache the origin sees no player's playlist or part requests,
        so the beacon stands for both (still under the per-address cap of ``ViewerCounter``)."""
        edge = self.edges.get(request.params["slug"])
        if edge is None:
            return self.elsewhere.reply(request, "beacon")
        if (edge.retiring or edge.ended) and self.elsewhere.can_forward(request):
            # A player of the channel's broadcast on another origin (its master came from
            # there, through this node): counted there.
            return self.elsewhere.unless_moved(
                request, "beacon", lambda: self._beacon(request, edge)
            )
        return self._beacon(request, edge)

    def _beacon(self, request: HlsRequest, edge: LiveEdge) -> Reply:
        sids = request.query.get("session") or ()
        if len(sids) != 1 or not SESSION_RE.fullmatch(sids[0]):
            return error_reply("beacon", 400, "session must be 16-64 letters, digits, - or _")
        if edge.ended:
            return error_reply("beacon", 404)
        names = request.query.get("rendition") or ()
        rendition = names[0] if len(names) == 1 and names[0] in edge.renditions else ""
        if not rendition and edge.renditions:
            rendition = next(iter(edge.renditions))
        if request.method == "GET":
            address = self.addresses.key(request)
            now = time.monotonic()
            self.viewers.seen(edge.slug, sids[0], address, now, rendition)
            self.viewers.fetched_media(edge.slug, address, now)
        return Reply("beacon", 204, {"Cache-Control": BEACON_CACHE})

    def live(self, request: HlsRequest) -> Reply | Pending:
        params = request.params
        name = params["name"]
        resource = None if name == "index.m3u8" else parse_segment_name(name)
        kind = "playlist" if name == "index.m3u8" else resource.kind if resource else "other"
        if resource is None and kind == "other":
            return error_reply(kind, 404)
        edge = self.edges.get(params["slug"])
        if edge is None:
            return self.elsewhere.reply(request, kind)
        state = self._state(edge)
        token = params.get("token")
        if token is not None and token != state.token:
            # Not this edge's broadcast: the channel's live one on another origin (this one's
            # publisher left and came back there), or nothing.
            return self.elsewhere.reply(request, kind)
        rendition = edge.renditions.get(params["rendition"])
        if rendition is None:
            return error_reply(kind, 404)
        if resource is None:
            return self._media_playlist(request, edge, state, rendition)
        return self._media_object(
            request, edge, state, rendition, name, resource, token is not None
        )

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

    @staticmethod
    def _render(edge: LiveEdge, state: _EdgeState, rendition: RenditionEdge, skip: bool) -> bytes:
        playlist = rendition.playlist
        # The other renditions' reports are part of the text, so of its version too.
        reports = tuple(
            report
            for other in edge.renditions.values()
            if other is not rendition
            if (report := other.playlist.report(f"../{other.name}/index.m3u8"))
        )
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

    def _media_playlist(
        self, request: HlsRequest, edge: LiveEdge, state: _EdgeState, rendition: RenditionEdge
    ) -> Reply | Pending:
        try:
            msn, part, skip = self._directives(request.query)
        except _BadRequest as exc:
            kind = "blocking_playlist" if "_HLS_msn" in request.query else "playlist"
            return error_reply(kind, 400, str(exc))
        fill = FILL_HEADER in request.headers
        if request.method == "GET" and not fill:
            address = self.addresses.key(request)
            self.viewers.seen(
                edge.slug,
                self.viewers.session_key(request, address),
                address,
                time.monotonic(),
                rendition.name,
            )
        if msn is None:
            body = self._render(edge, state, rendition, skip)
            cache = SHARED_PLAYLIST_CACHE if fill else PLAYLIST_CACHE
            return Reply(
                "playlist", 200, {"Content-Type": PLAYLIST_TYPE, "Cache-Control": cache}, body
            )
        name = rendition.name

        def check() -> Hold:
            current = edge.renditions.get(name)
            return "gone" if current is None else current.playlist.blocking_state(msn, part)

        result = check()
        if result == "wait":
            return Held(
                self.holding,
                edge,
                state,
                ("playlist", name, msn, part),
                check,
                3.0 * rendition.playlist.target_duration,
                lambda result: self._blocking_reply(edge, state, rendition, skip, result),
            )
        self.metrics.hls_blocking_wait.observe(0.0)
        return self._blocking_reply(edge, state, rendition, skip, result)

    def _blocking_reply(
        self, edge: LiveEdge, state: _EdgeState, rendition: RenditionEdge, skip: bool, result: Hold
    ) -> Reply:
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
                "blocking_playlist",
                200,
                {"Content-Type": PLAYLIST_TYPE, "Cache-Control": BLOCKING_CACHE},
                body,
            )
        return reply

    def _media_object(
        self,
        request: HlsRequest,
        edge: LiveEdge,
        state: _EdgeState,
        rendition: RenditionEdge,
        name: str,
        resource: Any,
        tokened: bool,
    ) -> Reply | Pending:
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
                        return self._object_reply(
                            request,
                            state,
                            rendition,
                            "part",
                            name,
                            rendition.parts.get(key),
                            tokened,
                        )

                    self._watching(request, edge)
                    return Held(
                        self.holding,
                        edge,
                        state,
                        ("part", rname, key),
                        check,
                        3.0 * playlist.target_duration,
                        then,
                    )
        if data is not None and kind != "init":
            self._watching(request, edge)
        return self._object_reply(request, state, rendition, kind, name, data, tokened)

    def _watching(self, request: HlsRequest, edge: LiveEdge) -> None:
        """Media went to this client: its sessions count as viewers (``ViewerCounter``)."""
        if request.method == "GET" and FILL_HEADER not in request.headers:
            self.viewers.fetched_media(
                edge.slug,
                self.addresses.key(request),
                time.monotonic(),
                request.headers.get("cookie"),
            )

    @staticmethod
    def _object_reply(
        request: HlsRequest,
        state: _EdgeState,
        rendition: RenditionEdge,
        kind: str,
        name: str,
        data: bytes | None,
        tokened: bool,
    ) -> Reply:
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
            reply = state.objects[key] = object_response(
                kind, plan, len(data), data, etag, IMMUTABLE if tokened else REVALIDATE
            )
            return reply
        body = data if plan[0] != 206 else memoryview(data)[plan[1] : plan[2]]
        return object_response(
            kind, plan, len(data), body, etag, IMMUTABLE if tokened else REVALIDATE
        )
