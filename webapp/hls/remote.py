"""Live HLS of a stream this node does not hold: the request goes to the origin that owns it
(``mediaserver.cluster.routing``), and its answer comes back as a ``Reply`` like any other.

Only in cluster mode (``cluster.redis_url`` set); a single node answers 404 as before. The
request is rebuilt from the route's parameters and its query (the ``_HLS_*`` directives, the
session), so the owner holds a blocking reload as if the player had asked it directly. The
client's address travels as ``X-Forwarded-For`` (the owner counts viewers by it when it trusts
forwarded addresses, ``http.trust_forwarded_for``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import quote, urlencode

from mediaserver.cluster.routing import FORWARDED_HEADER, LiveRoutes, Unavailable
from webapp.forwarded import client_host

from .held import Held, Pending
from .reply import HlsRequest, Reply, error_reply

log = logging.getLogger(__name__)


def _target(request: HlsRequest, kind: str) -> str:
    """The path and query of a live route, from what the router matched."""
    p = request.params
    names = [p["slug"]]
    if "name" not in p:
        names.append("watching" if kind == "beacon" else "master.m3u8")
    else:
        if p.get("token"):
            names.append(p["token"])
        names += [p["rendition"], p["name"]]
    path = "/hls/" + "/".join(quote(n, safe="") for n in names)
    pairs = [(k, v) for k, values in request.query.items() for v in values]
    return path + ("?" + urlencode(pairs) if pairs else "")


class Elsewhere:
    """Forwards live requests for streams owned by another origin."""

    def __init__(self, routes: LiveRoutes | None, trust_forwarded: bool) -> None:
        self.routes = routes
        self.trust_forwarded = trust_forwarded

    def can_forward(self, request: HlsRequest) -> bool:
        return (
            self.routes is not None
            and request.method in ("GET", "HEAD")
            and FORWARDED_HEADER not in request.headers  # one hop only: no forwarding loops
        )

    def reply(self, request: HlsRequest, kind: str) -> Reply | Coroutine[Any, Any, Reply]:
        """404 as a single node answers, or the owner's answer (a coroutine to await)."""
        if not self.can_forward(request):
            return error_reply(kind, 404)
        assert self.routes is not None  # can_forward says so
        return self._forward(self.routes, request, kind)

    async def unless_moved(
        self, request: HlsRequest, kind: str, local: Callable[[], Reply | Pending]
    ) -> Reply:
        """For an edge whose publisher left this node (``LiveEdge.retiring``): if another
        origin holds the channel now (the encoder came back there), its answer, so a player
        starting here gets the live broadcast and not the one waiting out its grace; else
        ``local()``, this node's answer (the encoder may still come back here)."""
        assert self.routes is not None
        try:
            origin = await self.routes.owner(request.params["slug"])
        except Unavailable:
            origin = None  # Redis cannot tell: this node's own answer is the best there is
        if origin is not None:
            return await self._send(self.routes, request, kind, origin)
        answer = local()
        if isinstance(answer, Reply):
            return answer
        if isinstance(answer, Held):
            return await answer.wait()
        return await answer

    async def _forward(self, routes: LiveRoutes, request: HlsRequest, kind: str) -> Reply:
        try:
            origin = await routes.owner(request.params["slug"])
        except Unavailable as exc:
            return error_reply(kind, exc.status, exc.reason)
        if origin is None:
            return error_reply(kind, 404)
        return await self._send(routes, request, kind, origin)

    async def _send(self, routes: LiveRoutes, request: HlsRequest, kind: str, origin: str) -> Reply:
        slug = request.params["slug"]
        client = client_host(request.remote, request.headers, self.trust_forwarded)
        try:
            # HEAD goes as HEAD: the owner counts viewers by their GETs only, and the length it
            # announces comes back in the reply's Content-Length.
            fetched = await routes.forward(
                origin, request.method, _target(request, kind), request.headers, client
            )
        except Unavailable as exc:
            routes.forget(slug)
            log.info("live HLS of %s from %s: %s", slug, origin, exc.reason)
            return error_reply(kind, exc.status, exc.reason)
        return Reply(kind, fetched.status, fetched.headers, fetched.body)
