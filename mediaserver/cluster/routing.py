"""Live HLS across nodes (issue 15): which origin owns a live stream, and fetching its HLS from
that origin for a viewer who reached another node.

The origin holding a channel's lease keeps ``aethex:origin:{slug}`` (its advertise URL) in
Redis (``leases.py``). Any node answers ``/hls/{slug}/…``: the owner from its in-memory edge,
any other node by forwarding the request to the owner, query included, so a blocking playlist
reload is held at the owner exactly as if the player had asked it. Owners are remembered for
``cluster.route_cache_seconds`` (a Redis read per stream per second, not per request), and at
most ``cluster.proxy_max_requests`` forwards are in flight: more are refused at once (503,
the player retries) instead of queueing without bound behind held requests.

The body comes back whole (up to ``cluster.proxy_max_body_mb``): the owner answers a part or
a blocking reload only once it is complete, so there is nothing to pass on earlier; what a
viewer waits for is the owner's hold, not the copy.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from redis.exceptions import RedisError

from mediaserver.settings import Settings

log = logging.getLogger(__name__)

ORIGIN_PREFIX = "aethex:origin:"
# Set on every forwarded request: the receiving node answers it from its own edge or not at
# all, so a stale route (or an advertise URL naming a node that lost the stream) costs one hop,
# never a loop of nodes forwarding to each other.
FORWARDED_HEADER = "x-aethex-forwarded-by"
# Request headers that travel to the owner, and response headers that travel back (CORS and
# the connection's own headers are the answering node's business).
FORWARDED_REQUEST = ("user-agent", "range", "if-range", "if-none-match", "x-aethex-cache-fill")
FORWARDED_RESPONSE = (
    "Content-Type",
    "Cache-Control",
    "ETag",
    "Content-Range",
    "Accept-Ranges",
    "Retry-After",
)


def origin_key(slug: str) -> str:
    """The routing entry the owning origin writes (the same name as ``leases.origin_key``)."""
    return f"{ORIGIN_PREFIX}{slug}"


@dataclass(slots=True)
class Fetched:
    """The owner's answer: status, the headers worth passing on, and the body."""

    status: int
    headers: dict[str, str]
    body: bytes


class Unavailable(Exception):
    """The owner could not be asked or did not answer in time (the caller answers 502/503)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class LiveRoutes:
    """Owner look-ups in Redis and forwards to the owner, for one process."""

    def __init__(self, redis: Any, self_url: str, settings: Settings) -> None:
        c = settings.cluster
        self.redis = redis
        self.self_url = self_url.rstrip("/")
        self.timeout = c.proxy_timeout
        self.max_requests = c.proxy_max_requests
        self.cache_seconds = c.route_cache_seconds
        self.max_body = c.proxy_max_body_mb * 1024 * 1024
        self.in_flight = 0
        # slug -> (owner URL or None, when it was read)
        self._owners: dict[str, tuple[str | None, float]] = {}
        self._session: aiohttp.ClientSession | None = None

    async def owner(self, slug: str) -> str | None:
        """The base URL of the origin serving ``slug`` live, or None (not live anywhere, or this
        node itself: the caller answers 404 as a single node would).

        Raises ``Unavailable`` (503) when Redis cannot be read: "not live" and "cannot tell
        right now" differ for a player, which gives up on a 404 and retries a 503."""
        now = time.monotonic()
        cached = self._owners.get(slug)
        if cached is not None and now - cached[1] < self.cache_seconds:
            return cached[0]
        try:
            url = await self.redis.get(origin_key(slug))
        except (TimeoutError, RedisError, OSError) as exc:
            log.warning("live route of %s unknown (Redis: %s)", slug, exc)
            raise Unavailable(503, "the stream's origin is unknown right now") from exc
        owner = url.rstrip("/") if isinstance(url, str) and url else None
        if owner == self.self_url:
            owner = None  # ours, yet no edge here: it just ended or has not begun
        if len(self._owners) > 10000:
            self._owners.clear()
        self._owners[slug] = (owner, now)
        return owner

    def forget(self, slug: str) -> None:
        """Drop a remembered owner that failed us: the next request reads Redis again."""
        self._owners.pop(slug, None)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.max_requests, ttl_dns_cache=60),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                auto_decompress=False,
            )
        return self._session

    async def forward(
        self,
        origin: str,
        method: str,
        target: str,
        headers: Mapping[str, str],
        client: str | None,
    ) -> Fetched:
        """``method target`` (path and query) at ``origin``, with the request headers that
        matter and ``client`` as the forwarded-for address."""
        if self.in_flight >= self.max_requests:
            raise Unavailable(503, "too many requests to other origins")
        sent = {name: value for name in FORWARDED_REQUEST if (value := headers.get(name))}
        sent[FORWARDED_HEADER] = self.self_url
        if client:
            sent["X-Forwarded-For"] = client
        self.in_flight += 1
        try:
            try:
                return await self._fetch(method, origin + target, sent)
            except aiohttp.ServerDisconnectedError:
                # A kept-alive connection the origin closed as we reused it: asked again once
                # on a fresh one (only GET and HEAD come here, both idempotent).
                return await self._fetch(method, origin + target, sent)
        except TimeoutError as exc:
            raise Unavailable(504, "the origin did not answer in time") from exc
        except aiohttp.ClientError as exc:
            raise Unavailable(502, f"the origin is unreachable ({type(exc).__name__})") from exc
        finally:
            self.in_flight -= 1

    async def _fetch(self, method: str, url: str, sent: dict[str, str]) -> Fetched:
        async with self._client().request(method, url, headers=sent, allow_redirects=False) as resp:
            if resp.content_length is not None and resp.content_length > self.max_body:
                raise Unavailable(502, "the origin's answer is too large")
            body = bytearray()
            async for chunk in resp.content.iter_chunked(65536):
                body += chunk
                if len(body) > self.max_body:
                    raise Unavailable(502, "the origin's answer is too large")
            kept = {h: v for h in FORWARDED_RESPONSE if (v := resp.headers.get(h)) is not None}
            if method == "HEAD" and resp.content_length is not None:
                # No body to measure: the reply carries the owner's length (both HTTP
                # layers write a Content-Length a reply has rather than the body's).
                kept["Content-Length"] = str(resp.content_length)
            return Fetched(resp.status, kept, bytes(body))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
