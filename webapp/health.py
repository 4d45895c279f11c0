"""``/healthz``: this node is up, and which node it is (issue 15).

Load balancers (haproxy's ``option httpchk``, Varnish's probes) and operators poll it. It
answers from memory only (no database, no Redis), so a node is taken out of rotation when its
process or event loop is gone, not when a shared engine hiccups for every node at once. The
body names the node's role, id and advertise URL, and how many streams are live here.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from .keys import REGISTRY_KEY

NODE_INFO_KEY = web.AppKey("node_info", dict)


async def healthz(request: web.Request) -> web.Response:
    info = request.app[NODE_INFO_KEY]
    body = {"status": "ok", **info, "streams_live": len(request.app[REGISTRY_KEY])}
    return web.json_response(body, headers={"Cache-Control": "no-store"})


def setup(app: web.Application, node: Mapping[str, str]) -> None:
    """``node``: ``role``, ``node`` (its id) and ``url`` (its advertise URL)."""
    app[NODE_INFO_KEY] = dict(node)
    app.router.add_get("/healthz", healthz)
