"""A lean HTTP/1.1 front for HLS and VOD GETs, in front of aiohttp on the same port.

Why: a live stream with many LL-HLS viewers is thousands of tiny, identical requests a second
(each part releases every held playlist request, then every viewer fetches the part). aiohttp
spends ~50 µs of CPU on the cheapest request (a Request and a Response object, the router,
signals, header multidicts); at 1000 viewers that is more than one core can give in the 100 ms
budget after each part. This front reads each connection first and answers the plain
well-formed ``GET``/``HEAD`` requests for ``/hls/…`` and ``/vod/…`` itself, calling the same
``HlsService`` methods as aiohttp's handlers (so behaviour cannot drift), and writes the
response with one ``writelines``.

Anything else — another path or method, a request with a body, an upgrade, percent-encoded
paths, a head it does not fully like — is not parsed further: the connection, with every byte
not yet consumed, is handed to aiohttp's own protocol at that request boundary and stays there.
The front therefore never needs to be a complete HTTP implementation: it only has to be
strict, and whatever it refuses, aiohttp (a full, well-tested parser) decides.

The front stays the transport's protocol after the hand-over and forwards to aiohttp's, so two
guards hold for every connection on the port (also with ``http.fast_path`` off, where it hands
over at once): admission at accept (``webapp.admission``: caps in all and per address), and the
request head deadline on every request, not only those the front reads itself. aiohttp bounds
a connection waiting for a head only by its keep-alive timeout counted from the last response,
so a head sent a byte at a time held a handed-over connection for the whole 75 s.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from email.utils import formatdate
from functools import partial
from http import HTTPStatus
from typing import Any, cast

from mediaserver.addresses import address_key

from .admission import HEAD_TIMEOUT, Admission
from .hls import Held, HlsRequest, HlsService, Reply
from .http_head import parse_head, parse_query

__all__ = ["FrontProtocol", "HttpFront", "parse_head", "parse_query"]

log = logging.getLogger(__name__)

_STATUS_LINES = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus}
_NO_BODY_STATUS = frozenset((204, 304))


class _Date:
    """The ``Date`` header, formatted once a second."""

    def __init__(self) -> None:
        self._second = 0
        self._line = b""

    def line(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._line = f"Date: {formatdate(now, usegmt=True)}\r\n".encode()
        return self._line


def _between_requests(handler: asyncio.Protocol) -> bool:
    """Whether aiohttp's protocol is waiting for a request head: idle, or with part of a head.

    aiohttp 3.14's ``RequestHandler.start`` awaits ``_waiter`` exactly when it has no parsed
    request left to handle (web_protocol.py); while a request runs, or before that loop
    starts, there is no pending waiter. A body read by a running handler is therefore never
    mistaken for a slow head. (tests/integration/test_http_limits.py fails if this changes.)
    """
    waiter = getattr(handler, "_waiter", None)
    return waiter is not None and not waiter.done()


class FrontProtocol(asyncio.Protocol):
    """One client connection: answers plain HLS/VOD requests, or hands itself to aiohttp.

    After the hand-over it stays the transport's protocol and passes every callback on to
    aiohttp's (``inner``), watching only whether aiohttp is between requests to keep the head
    deadline. ``head_since`` is when the head being received began (0: none)."""

    __slots__ = (
        "front",
        "transport",
        "buf",
        "busy",
        "paused_writing",
        "closing",
        "remote",
        "last",
        "head_since",
        "task",
        "held",
        "inner",
        "key",
        "admitted",
    )

    # Set by connection_made, before anything else can reach the connection (the front's
    # ``connections`` only holds connections made).
    transport: asyncio.Transport

    def __init__(self, front: HttpFront) -> None:
        self.front = front
        self.buf = bytearray()
        self.busy = False
        self.paused_writing = False
        self.closing = False
        self.remote: str | None = None
        self.last = time.monotonic()
        self.head_since = 0.0
        self.task: asyncio.Task[None] | None = None
        self.held: Held | None = None
        self.inner: asyncio.Protocol | None = None
        self.key: str | None = None
        self.admitted = False

    # -- asyncio callbacks ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # what create_server gives
        peer = transport.get_extra_info("peername")
        self.remote = peer[0] if isinstance(peer, tuple) else None
        front = self.front
        self.key = address_key(self.remote)
        refused = front.admission.admit(self.key)
        if refused is not None:
            # Closed before a byte of it is read, and before aiohttp sees it.
            self.closing = True
            front.on_reject(refused)
            self.transport.write(_REFUSED)
            self.transport.close()
            return
        self.admitted = True
        front.connections.add(self)
        if front.service is None:
            self._hand_over()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        front = self.front
        front.connections.discard(self)
        if self.admitted:
            self.admitted = False
            front.admission.release(self.key)
        if self.inner is not None:
            self.inner.connection_lost(exc)
            return
        if self.task is not None:
            self.task.cancel()
        if self.held is not None:
            self.held.cancel()
            self.held = None

    def data_received(self, data: bytes) -> None:
        inner = self.inner
        if inner is not None:
            inner.data_received(data)
            if _between_requests(inner):
                if not self.head_since:
                    self.head_since = time.monotonic()
            else:
                self.head_since = 0.0
            return
        buf = self.buf
        if not buf:
            self.head_since = time.monotonic()
        buf += data
        if self.busy or self.paused_writing:
            if len(buf) > self.front.max_head * 4:
                self.transport.pause_reading()  # a client pipelining far ahead of us
            return
        self._process()

    def eof_received(self) -> bool | None:
        if self.inner is not None:
            return self.inner.eof_received()
        return None

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()
            return
        self.paused_writing = True

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()
            return
        self.paused_writing = False
        if not self.busy and not self.closing:
            self._process()

    # -- requests -------------------------------------------------------------------------

    def _process(self) -> None:
        """Answer the complete requests in the buffer, one at a time and in order."""
        front = self.front
        buf = self.buf
        while buf and not self.busy and not self.paused_writing and not self.closing:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > front.max_head:
                    self._hand_over()
                return
            parsed = parse_head(bytes(buf[:end])) if end <= front.max_head else None
            route = front.route(parsed) if parsed is not None else None
            if route is None:
                self._hand_over()
                return
            del buf[: end + 4]
            method, _, qs, headers, keep_alive = parsed  # type: ignore[misc]
            fn, params = route
            request = HlsRequest(
                method, params, parse_query(qs) if qs else {}, headers, self.remote
            )
            reply = fn(request)
            if isinstance(reply, Reply):
                self._write(request, reply, keep_alive)
            elif isinstance(reply, Held):
                # Held for the live edge: no task, the edge's watcher calls back.
                self.busy = True
                self.held = reply
                reply.start(partial(self._released, request, keep_alive=keep_alive))
            else:
                self.busy = True
                self.task = asyncio.ensure_future(self._awaited(request, reply, keep_alive))
        if buf:
            self.head_since = time.monotonic()
        self.last = time.monotonic()

    async def _awaited(self, request: HlsRequest, pending: Any, keep_alive: bool) -> None:
        try:
            reply = await pending
        except asyncio.CancelledError:
            return
        except Exception:
            log.exception("HLS request failed")
            reply = Reply(
                "other",
                500,
                {"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store"},
                b"Internal Server Error",
            )
        self.task = None
        self._released(request, reply, keep_alive)

    def _released(self, request: HlsRequest, reply: Reply, keep_alive: bool) -> None:
        """The held request's reply: write it, then go on with what the client sent since."""
        self.held = None
        self.busy = False
        if self.closing:
            return
        self._write(request, reply, keep_alive)
        if self.buf:
            # A head pipelined behind the held request: its time starts now, not while held.
            self.head_since = time.monotonic()
        if not self.closing and not self.transport.is_reading():
            self.transport.resume_reading()
        self._process()

    def _write(self, request: HlsRequest, reply: Reply, keep_alive: bool) -> None:
        service = self.front.service
        assert service is not None  # only the fast path writes replies, and it needs one
        reply = service.finish(request, reply)
        status = reply.status
        date = self.front.date.line()
        # The head is serialised once per (Reply, Date second, keep-alive): a playlist update
        # answers a thousand held viewers with the same Reply.
        wire = reply.wire
        if wire is None or wire[0] is not date or wire[1] != keep_alive:
            head = [f"{k}: {v}\r\n" for k, v in reply.headers.items()]
            if status not in _NO_BODY_STATUS and "Content-Length" not in reply.headers:
                head.append(f"Content-Length: {len(reply.body)}\r\n")
            if not keep_alive:
                head.append("Connection: close\r\n")
            head.append("\r\n")
            wire = reply.wire = (
                date,
                keep_alive,
                _STATUS_LINES[status] + date + "".join(head).encode(),
            )
        transport = self.transport
        body = reply.body
        if body and request.method != "HEAD" and status not in _NO_BODY_STATUS:
            transport.writelines((wire[2], body))
        else:
            transport.write(wire[2])
        if not keep_alive:
            self.closing = True
            transport.close()

    def _hand_over(self) -> None:
        """Give the connection, with the bytes not yet answered, to aiohttp for good."""
        transport = self.transport
        handler = self.front.fallback()
        self.inner = handler
        self.closing = True  # the front answers nothing more on it
        # A head too big for the front is still a head in progress: its deadline carries on.
        partial = bool(self.buf) and b"\r\n\r\n" not in self.buf
        since = self.head_since
        handler.connection_made(transport)
        if self.buf:
            handler.data_received(bytes(self.buf))
            self.buf.clear()
        self.head_since = since if partial else 0.0
        if not transport.is_reading():
            transport.resume_reading()

    def expire(self, now: float) -> None:
        """The sweeper's check: close a connection idle too long or a head taking too long."""
        front = self.front
        if self.inner is not None:
            # aiohttp closes its own idle keep-alive connections; only the head is ours.
            if self.head_since:
                if not _between_requests(self.inner):
                    self.head_since = 0.0  # a request began (aiohttp re-parsed its buffer)
                elif now - self.head_since > front.head_timeout:
                    self._time_out_head()
            return
        if self.busy or self.closing:
            return
        if self.buf:
            if now - self.head_since > front.head_timeout:
                self._time_out_head()
        elif now - self.last > front.keepalive_timeout:
            self.closing = True
            self.transport.close()

    def _time_out_head(self) -> None:
        self.closing = True
        self.head_since = 0.0
        self.front.on_reject(HEAD_TIMEOUT)
        self.transport.write(_HEAD_TIMED_OUT)
        self.transport.close()


# Answers written straight to the socket, outside any request.
_REFUSED_BODY = b"Too many connections\n"
_REFUSED = (
    b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 5\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(_REFUSED_BODY), _REFUSED_BODY)
)
_HEAD_TIMED_OUT = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


class HttpFront:
    """The listening side: protocol factory, routing table and the idle-connection sweeper.

    ``service`` None turns the fast path off: every connection goes to aiohttp at once, still
    under admission and the head deadline. ``on_reject`` is told the reason of each refused
    connection and each head timeout (the metric)."""

    def __init__(
        self,
        service: HlsService | None,
        fallback: Callable[[], asyncio.Protocol],
        *,
        keepalive_timeout: float,
        head_timeout: float,
        max_head: int,
        max_connections: int,
        max_per_address: int,
        on_reject: Callable[[str], None],
    ) -> None:
        self.service = service
        self.fallback = fallback
        self.keepalive_timeout = keepalive_timeout
        self.head_timeout = head_timeout
        self.max_head = max_head
        self.admission = Admission(max_connections, max_per_address)
        self.on_reject = on_reject
        self.date = _Date()
        self.connections: set[FrontProtocol] = set()
        self._sweeper: asyncio.Task[None] | None = None

    def protocol(self) -> FrontProtocol:
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
        return FrontProtocol(self)

    def route(
        self, parsed: tuple[str, str, str, dict[str, str], bool]
    ) -> tuple[Callable[[HlsRequest], Any], dict[str, str]] | None:
        """The service method and route parameters for a path, as aiohttp's routes have them
        (``webapp.hls.setup``); None sends the request to aiohttp (its 404s and preflights)."""
        parts = parsed[1].split("/")
        n = len(parts)
        if "" in parts[2:]:
            return None
        service = self.service
        if service is None:
            return None  # the fast path is off: aiohttp answers everything
        if parts[1] == "hls":
            if n == 6:
                return service.live, {
                    "slug": parts[2],
                    "token": parts[3],
                    "rendition": parts[4],
                    "name": parts[5],
                }
            if n == 4 and parts[3] == "master.m3u8":
                return service.master, {"slug": parts[2]}
            if n == 4 and parts[3] == "watching":
                return service.watching, {"slug": parts[2]}
            if n == 5:
                return service.live, {"slug": parts[2], "rendition": parts[3], "name": parts[4]}
        elif parts[1] == "vod":
            if n == 4 and parts[3] == "master.m3u8":
                return service.vod_master, {"stream_id": parts[2]}
            if n == 5:
                return service.vod_resource, {
                    "stream_id": parts[2],
                    "rendition": parts[3],
                    "name": parts[4],
                }
        return None

    async def _sweep(self) -> None:
        """Close keep-alive connections idle too long and heads that never complete."""
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for conn in list(self.connections):
                conn.expire(now)

    def close(self) -> None:
        """Stop the sweeper and close every connection still open on the port."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conn in list(self.connections):
            conn.transport.close()
        self.connections.clear()
