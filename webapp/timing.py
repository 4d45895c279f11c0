"""``Server-Timing: app;dur=<ms>`` on every page and API response: the time the request spent
in the application, from the first middleware to the response being handed back for sending.

Why: a client's stopwatch also counts the network, the client's own event loop and the
connection queue; this header says how long the server itself took, so an operator can tell a
slow page from a slow network in the browser's developer tools, and the discovery benchmark
records it per request. It costs two clock readings and a header.

Media delivery and public files (``errors.HOT_PREFIXES``) are left alone, like every other
middleware of ours: the HLS fast path answers them byte for byte the same without aiohttp.
A response already sent (a WebSocket, a streamed body) cannot take a header any more and goes
without one.
"""

from __future__ import annotations

import time

from aiohttp import web

from .errors import HOT_PREFIXES, Handler

HEADER = "Server-Timing"


def _value(started: float) -> str:
    return f"app;dur={(time.perf_counter() - started) * 1000:.2f}"


@web.middleware
async def server_timing_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(HOT_PREFIXES):
        return await handler(request)
    started = time.perf_counter()
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # redirects and errors raised as responses
        exc.headers[HEADER] = _value(started)
        raise
    if not response.prepared:
        response.headers[HEADER] = _value(started)
    return response
