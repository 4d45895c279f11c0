"""``Server-Timing: app;dur=<ms>, db;dur=<ms>;desc="<n> statements"`` on every page and API
response: the time the request spent in the application, from the first middleware to the
response being handed back for sending, and the part of it spent waiting on database
statements (storage.query_timing).

Why: a client's stopwatch also counts the network, the client's own event loop and the
connection queue; this header says how long the server itself took, so an operator can tell a
slow page from a slow network in the browser's developer tools, and the discovery benchmark
records it per request. The database share tells a slow query (``db`` close to ``app``) from a
request that waited for the event loop behind others (``app`` far above ``db``). It costs a few
clock readings per request and statement, and a header.

Media delivery and public files (``errors.HOT_PREFIXES``) are left alone, like every other
middleware of ours: the HLS fast path answers them byte for byte the same without aiohttp.
A response already sent (a WebSocket, a streamed body) cannot take a header any more and goes
without one.
"""

from __future__ import annotations

import time

from aiohttp import web

from storage import query_timing
from storage.query_timing import QueryClock

from .errors import HOT_PREFIXES, Handler
from .keys import METRICS_KEY

HEADER = "Server-Timing"


def _value(request: web.Request, started: float, clock: QueryClock) -> str:
    seconds = time.perf_counter() - started
    # The same figure feeds aethex_http_request_duration_seconds (the dashboard's latency).
    metrics = request.app.get(METRICS_KEY)
    if metrics is not None:
        kind = "api" if request.path.startswith("/api/") else "page"
        metrics.http_request_seconds.labels(kind).observe(seconds)
    return (
        f"app;dur={seconds * 1000:.2f}, "
        f'db;dur={clock.seconds * 1000:.2f};desc="{clock.statements} statements"'
    )


@web.middleware
async def server_timing_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(HOT_PREFIXES):
        return await handler(request)
    started = time.perf_counter()
    clock, token = query_timing.start()
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # redirects and errors raised as responses
        exc.headers[HEADER] = _value(request, started, clock)
        raise
    finally:
        query_timing.stop(token)
    if not response.prepared:
        response.headers[HEADER] = _value(request, started, clock)
    return response
