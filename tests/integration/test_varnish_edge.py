"""What a real Varnish (Debian's 7.1, started here on free ports with config/varnish/aethex.vcl
pointed at an in-process server) passes through rather than stores, and the client address it
forwards (issue 15). The cache's LL-HLS side (the same bytes through it, 50 players costing the
origin one request per part, counting through it) is tested on the whole cluster, in
tests/integration/test_cluster_demo.py; here the stream is a synthetic live edge (no encoder):
these tests are about the VCL's pass rules and headers, not the media.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from tests.conftest import make_channel, running_server
from tests.integration.test_viewer_counting import SLUG, synthetic_edge
from tests.varnish_server import VarnishServer
from webapp.hls import HLS_KEY

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]


@dataclasses.dataclass
class Site:
    server: Any
    varnish: VarnishServer
    http: aiohttp.ClientSession

    async def get(self, url: str, **kw: Any) -> tuple[int, dict[str, str], bytes]:
        async with self.http.get(url, **kw) as resp:
            return resp.status, dict(resp.headers), await resp.read()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def site(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Site]:
    env = {
        "AETHEX_DATA_DIR": str(tmp_path_factory.mktemp("edge-data")),
        "AETHEX_HTTP_HOST": "127.0.0.1",
        "AETHEX_HTTP_PORT": "0",
        "AETHEX_RTMP_HOST": "127.0.0.1",
        "AETHEX_RTMP_PORT": "0",
        # Behind Varnish: the client's address comes in X-Forwarded-For.
        "AETHEX_HTTP__TRUST_FORWARDED_FOR": "true",
    }
    async with running_server(env) as server:
        varnish = VarnishServer(server.http_port, tmp_path_factory.mktemp("varnish"))
        await asyncio.to_thread(varnish.start)
        await make_channel(server, SLUG, "vera")
        server.broadcasts.edges.put(synthetic_edge(1))
        http = aiohttp.ClientSession()
        try:
            yield Site(server, varnish, http)
        finally:
            await http.close()
            await asyncio.to_thread(varnish.stop)


async def test_chat_websocket_and_pages_pass_through(site: Site) -> None:
    """Pages and the API are never stored; the chat WebSocket upgrade is piped to the origin."""
    async with site.http.ws_connect(f"{site.varnish.base}/ws/chat/{SLUG}") as ws:
        frame = await asyncio.wait_for(ws.receive_json(), 10)
        assert any(event["type"] == "chat:history" for event in frame), frame
    for path in (f"/streams/{SLUG}", f"/api/channels/{SLUG}/live"):
        for _ in range(2):
            status, headers, _ = await site.get(f"{site.varnish.base}{path}")
            assert status == 200 and headers["X-Cache"] == "MISS", (path, headers)


async def test_a_front_named_client_address_reaches_the_origin(site: Site) -> None:
    """Behind nginx (a front on loopback, in the VCL's acl) the viewer's address is the one the
    front put in X-Forwarded-For, not the front's: the per-address cap counts viewers."""
    session = secrets.token_hex(16)
    url = f"{site.varnish.base}/hls/{SLUG}/watching?session={session}"
    status, _, _ = await site.get(url, headers={"X-Forwarded-For": "10.9.8.7"})
    assert status == 204
    table = site.server._runner.app[HLS_KEY].viewers._tables[SLUG]
    assert table.sessions[session][1] == "10.9.8.7", table.sessions[session]
