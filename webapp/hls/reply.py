"""What delivery answers with, whichever HTTP layer carries it: the request and reply model,
the cache headers of each kind of object, byte ranges, error replies and CORS.

Both aiohttp (``HlsService.endpoint``) and the lean path in ``webapp.fastpath`` parse a request
into an ``HlsRequest`` and write the ``Reply`` the delivery logic returns, so the two cannot
drift. One Reply may answer many requests (every viewer released by one playlist update, every
plain GET of one part); its ``wire`` slot is where the fast path keeps the serialised head.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
MEDIA_TYPE = "video/mp4"
IMMUTABLE = "public, max-age=31536000, immutable"
# Live playlists change every part; the master also carries a per-viewer session id.
PLAYLIST_CACHE = "no-cache"
MASTER_CACHE = "private, no-cache"
# A cache filling itself (Varnish with config/varnish/aethex.vcl sets FILL_HEADER on its
# fetches) gets answers it may share: the master without a session, the plain media playlist
# for a second (a cache collapses only what it may store; hls.js reads its Age header). Its
# fetches are not viewers: the players behind it are counted by their beacons.
FILL_HEADER = "x-aethex-cache-fill"
SHARED_MASTER_CACHE = "public, max-age=1"
SHARED_PLAYLIST_CACHE = "public, max-age=1"
BEACON_CACHE = "no-store"
# A response to _HLS_msn/_HLS_part is valid for its (unique) URL: a CDN may keep it briefly.
BLOCKING_CACHE = "public, max-age=1"
# Short-form live objects: the same URL names other bytes in the channel's next broadcast.
REVALIDATE = "no-cache"
VOD_PLAYLIST_CACHE = "public, max-age=60"
# Errors must never be cached: a part that is 404 now may exist in a moment.
ERROR_CACHE = "no-store"
EXPOSED_HEADERS = "Content-Length, Content-Range, Accept-Ranges, Age, Date, ETag"

_RANGE_RE = re.compile(r"bytes=([0-9]{0,19})-([0-9]{0,19})", re.ASCII | re.IGNORECASE)
_TOKEN = r"[A-Za-z0-9!#$%&'*+.^_`|~-]+"
_REQUEST_HEADERS_RE = re.compile(rf"{_TOKEN}(\s*,\s*{_TOKEN})*")


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


def error_reply(kind: str, status: int, text: str = "") -> Reply:
    headers = {"Content-Type": "text/plain; charset=utf-8", "Cache-Control": ERROR_CACHE}
    if status == 503:
        headers["Retry-After"] = "1"
    return Reply(kind, status, headers, (text or HTTPStatus(status).phrase).encode())


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


def object_response(
    kind: str,
    plan: tuple[int, int, int],
    size: int,
    body: bytes | memoryview,
    etag: str,
    cache: str,
) -> Reply:
    """The reply to a GET of an immutable object (part, segment, init, VOD file) planned by
    ``plan_range``."""
    status, start, stop = plan
    if status == 304:
        return Reply(kind, 304, {"ETag": etag, "Cache-Control": cache})
    headers = {
        "Content-Type": MEDIA_TYPE,
        "Cache-Control": cache,
        "Accept-Ranges": "bytes",
        "ETag": etag,
    }
    if status == 416:
        headers["Content-Range"] = f"bytes */{size}"
        headers["Cache-Control"] = ERROR_CACHE
        return Reply(kind, 416, headers)
    if status == 206:
        headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
    return Reply(kind, status, headers, body)


# -- CORS ----------------------------------------------------------------------------------


class Cors:
    """``http.cors_origins``: ``*`` answers every origin with one shared header set; a list
    answers the listed origins (``Vary: Origin``, so on a copy of the reply); empty, none."""

    def __init__(self, origins: str) -> None:
        listed = [o.strip() for o in origins.split(",") if o.strip()]
        self.any = "*" in listed
        self.origins = frozenset(listed)

    def apply(self, request: HlsRequest, reply: Reply) -> Reply:
        headers = reply.headers
        if self.any:
            if "Access-Control-Allow-Origin" not in headers:
                headers["Access-Control-Allow-Origin"] = "*"
                headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        elif self.origins:
            reply = Reply(reply.kind, reply.status, dict(headers), reply.body)
            headers = reply.headers
            headers["Vary"] = "Origin"
            origin = request.headers.get("origin")
            if origin is not None and origin in self.origins:
                headers["Access-Control-Allow-Origin"] = origin
                headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        return reply


def fallback(request: HlsRequest) -> Reply:
    """Any other method or path under /hls/ and /vod/: preflight, 405 or 404."""
    if request.method == "OPTIONS":
        return preflight(request)
    if request.method not in ("GET", "HEAD"):
        reply = error_reply("other", 405)
        reply.headers["Allow"] = "GET, HEAD, OPTIONS"
        return reply
    return error_reply("other", 404)


def preflight(request: HlsRequest) -> Reply:
    headers = {
        "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
        "Access-Control-Max-Age": "86400",
        "Cache-Control": "public, max-age=86400",
    }
    wanted = request.headers.get("access-control-request-headers", "").strip()
    if wanted and _REQUEST_HEADERS_RE.fullmatch(wanted):
        headers["Access-Control-Allow-Headers"] = wanted
    return Reply("preflight", 204, headers)
