"""Live HLS across nodes (issue 15, tests 2 and 4, the routing side): an origin and a web node
on one PostgreSQL and one Redis, a real ffmpeg publishing to the origin, a real varnishd in
front of the web node.

The origin's lease writes ``aethex:origin:{slug}`` (its advertise URL, here its real address);
the web node has no edge for the stream, so it forwards every live request to that origin
(``mediaserver/cluster/routing.py``). Through the web node, and through Varnish in front of
it, the master (for one session), the init section and the parts are byte for byte the
origin's; a blocking reload through the web node is held at the origin and released with the
part; the player's beacon reaches the origin's count; once the stream ends the route is gone
and the web node answers 404.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from benchmarks.lib.playlist import master_variants, parse_media_playlist, with_query
from tests.cluster_nodes import node_env as cluster_node_env
from tests.conftest import make_channel, rtmp_url, running_server, start_ffmpeg, transcoding
from tests.redis_server import free_port
from tests.varnish_server import VarnishServer
from webapp.hls import HLS_KEY

pytestmark = pytest.mark.integration

SLUG = "roaming"
LADDER = {"name": "144p", "height": 144, "fps": 15, "video_kbps": 150}


def node_env(base: dict[str, str], tmp: Path, name: str, role: str, pg: str, rd: str) -> dict:
    port = free_port()
    return {
        **cluster_node_env(base, tmp, name, role, pg, rd, f"http://127.0.0.1:{port}"),
        "AETHEX_HTTP_PORT": str(port),
        "AETHEX_HTTP__TRUST_FORWARDED_FOR": "true",
        "AETHEX_HLS__SEGMENT_DURATION": "1",
        "AETHEX_HLS__VIEWER_TIMEOUT": "6",
        "AETHEX_HLS__VIEWER_UPDATE_INTERVAL": "0.3",
    }


async def until(check: Callable[[], Awaitable[Any]], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < deadline, f"not in {timeout:.1f} s: {what}"
        await asyncio.sleep(0.1)


async def fetch(http: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, str], bytes]:
    async with http.get(url) as resp:
        return resp.status, {k.lower(): v for k, v in resp.headers.items()}, await resp.read()


async def test_a_node_without_the_stream_serves_the_owners_bytes(
    settings_env: dict[str, str], tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    env_o = transcoding(
        node_env(settings_env, tmp_path, "origin-1", "origin", postgres_url, redis_url)
    )
    env_o["AETHEX_TRANSCODE__LADDER"] = json.dumps([LADDER])
    # Origin 1 keeps its edge a whole minute after its publisher left (the reconnect grace):
    # long past the moment the encoder is live on origin 2, below.
    env_o["AETHEX_HLS__RECONNECT_GRACE"] = "60"
    env_2 = transcoding(
        node_env(settings_env, tmp_path, "origin-2", "origin", postgres_url, redis_url)
    )
    env_2["AETHEX_TRANSCODE__LADDER"] = json.dumps([LADDER])
    env_w = node_env(settings_env, tmp_path, "web-1", "web", postgres_url, redis_url)
    rds = aioredis.from_url(redis_url, decode_responses=True, socket_timeout=2)
    async with (
        aiohttp.ClientSession() as http,
        running_server(env_o) as origin,
        running_server(env_2) as origin_2,
        running_server(env_w) as web,
    ):
        o_base = f"http://127.0.0.1:{origin.http_port}"
        w_base = f"http://127.0.0.1:{web.http_port}"
        varnish = VarnishServer(web.http_port, tmp_path / "varnish")
        await asyncio.to_thread(varnish.start)
        _, key = await make_channel(origin, SLUG, "rover")
        proc = await start_ffmpeg(rtmp_url(origin, key), seconds=25, size="320x180", rate=15)
        try:
            # The origin's lease names it as the stream's route (leases.py).
            route = await until(lambda: rds.get(f"aethex:origin:{SLUG}"), 30, "route in Redis")
            assert route == o_base

            seen: list[Any] = []

            async def playable() -> bool:
                status, _, body = await fetch(http, f"{w_base}/hls/{SLUG}/master.m3u8")
                o_status, _, _ = await fetch(http, f"{o_base}/hls/{SLUG}/master.m3u8")
                seen[:] = [status, body[:200], o_status]
                return status == 200

            try:
                await until(playable, 30, "master through the web node")
            except AssertionError:
                raise AssertionError(seen) from None
            assert not web.broadcasts.edges.get(SLUG)  # the web node holds no edge

            # The master for one session: the same bytes from the web node as from the origin.
            session = secrets.token_hex(16)
            q = f"?session={session}"
            _, h_o, m_o = await fetch(http, f"{o_base}/hls/{SLUG}/master.m3u8{q}")
            _, h_w, m_w = await fetch(http, f"{w_base}/hls/{SLUG}/master.m3u8{q}")
            assert m_w == m_o and h_w["cache-control"] == h_o["cache-control"]
            uri = master_variants(m_o.decode())[0][2]
            path = uri.split("?", 1)[0]
            directory = path.rsplit("/", 1)[0]

            # Parts and the init section: byte for byte, through the web node and Varnish.
            _, _, body = await fetch(http, f"{o_base}/hls/{SLUG}/{uri}")
            playlist = parse_media_playlist(body.decode())
            assert playlist.map_uri and playlist.parts
            names = [playlist.map_uri] + [u for _, _, u, _, _ in playlist.parts[-4:]]
            for name in names:
                s_o, h_o, b_o = await fetch(http, f"{o_base}/hls/{SLUG}/{directory}/{name}")
                s_w, h_w, b_w = await fetch(http, f"{w_base}/hls/{SLUG}/{directory}/{name}")
                s_v, _, b_v = await fetch(http, f"{varnish.base}/hls/{SLUG}/{directory}/{name}")
                assert s_o == s_w == s_v == 200, (name, s_o, s_w, s_v)
                assert b_o == b_w == b_v, name
                assert h_w["cache-control"] == h_o["cache-control"]
                assert h_w["etag"] == h_o["etag"], (h_w, h_o)

            # A blocking reload through the web node is held at the origin until the part.
            assert playlist.hint is not None
            msn, part, hinted = playlist.hint
            url = with_query(f"{w_base}/hls/{SLUG}/{uri}", _HLS_msn=msn, _HLS_part=part)
            status, headers, body = await fetch(http, url)
            assert status == 200 and headers["cache-control"] == "public, max-age=1"
            assert f'URI="{hinted}"' in body.decode()
            s_w, _, b_w = await fetch(http, f"{w_base}/hls/{SLUG}/{directory}/{hinted}")
            s_o, h_o, b_o = await fetch(http, f"{o_base}/hls/{SLUG}/{directory}/{hinted}")
            etag_o = h_o["etag"]
            assert s_w == s_o == 200 and b_w == b_o

            # Through Varnish in front of the web node: the shared master, same renditions.
            s_v, h_v, m_v = await fetch(http, f"{varnish.base}/hls/{SLUG}/master.m3u8{q}")
            assert s_v == 200 and h_v["cache-control"] == "public, max-age=1"
            # (BANDWIDTH is measured as the stream goes: compare the renditions and their URLs.)
            assert [(v[0], v[2]) for v in master_variants(m_v.decode())] == [
                (v[0], v[2].split("?", 1)[0]) for v in master_variants(m_o.decode())
            ]

            # The beacon through Varnish and the web node reaches the origin's counter.
            player = secrets.token_hex(16)
            status, _, _ = await fetch(http, f"{varnish.base}/hls/{SLUG}/watching?session={player}")
            assert status == 204
            table = origin._runner.app[HLS_KEY].viewers._tables[SLUG]
            assert player in table.sessions

            # HEAD through the web node goes to the origin as HEAD: the length a GET would
            # get, no body, and no viewer counted for it (the origin counts GETs only).
            prober = secrets.token_hex(16)
            media = f"{w_base}/hls/{SLUG}/{path}?session={prober}"
            async with http.head(media) as r:
                assert r.status == 200 and await r.read() == b""
            for site in (w_base, o_base):
                async with http.head(f"{site}/hls/{SLUG}/{directory}/{hinted}") as r:
                    assert r.status == 200 and await r.read() == b""
                    assert r.headers["Content-Length"] == str(len(b_o)), site
                    assert r.headers["ETag"] == etag_o
            assert prober not in table.sessions
            status, _, _ = await fetch(http, media)  # while a GET still counts
            assert status == 200 and prober in table.sessions
        finally:
            if proc.returncode is None:
                proc.terminate()
                await asyncio.wait_for(proc.wait(), 15)
            await asyncio.to_thread(varnish.stop)

        # The publisher left origin 1, which releases the route at once and keeps its edge for
        # the reconnect grace; the encoder comes back through haproxy to origin 2 instead.
        await until(lambda: _absent(rds, f"aethex:origin:{SLUG}"), 30, "route released")
        proc = await start_ffmpeg(rtmp_url(origin_2, key), seconds=20, size="320x180", rate=15)
        try:
            o2_base = f"http://127.0.0.1:{origin_2.http_port}"

            async def token(base: str) -> str | None:
                status, _, body = await fetch(http, f"{base}/hls/{SLUG}/master.m3u8")
                variants = master_variants(body.decode()) if status == 200 else []
                return variants[0][2].split("/", 1)[0] if variants else None

            new_token = await until(lambda: token(o2_base), 30, "live on origin 2")
            assert new_token != uri.split("/", 1)[0]
            # A player that lands on origin 1 gets the broadcast on origin 2 (its master, then
            # its media under the new token and its beacon through origin 1), not the old one.
            await until(lambda: _is(token(o_base), new_token), 10, "origin 1 names origin 2's")
            new_uri = master_variants(
                (await fetch(http, f"{o2_base}/hls/{SLUG}/master.m3u8"))[2].decode()
            )[0][2]
            status, _, body = await fetch(http, f"{o_base}/hls/{SLUG}/{new_uri}")
            assert status == 200 and parse_media_playlist(body.decode()).parts
            player = secrets.token_hex(16)
            status, _, _ = await fetch(http, f"{o_base}/hls/{SLUG}/watching?session={player}")
            assert status == 204
            assert player in origin_2._runner.app[HLS_KEY].viewers._tables[SLUG].sessions
        finally:
            if proc.returncode is None:
                proc.terminate()
                await asyncio.wait_for(proc.wait(), 15)

        # The stream ended: the route is released and the web node answers as for no stream.
        await until(lambda: _absent(rds, f"aethex:origin:{SLUG}"), 30, "route released at the end")

        async def gone() -> bool:
            status, _, _ = await fetch(http, f"{w_base}/hls/{SLUG}/master.m3u8")
            return status == 404

        await until(gone, 15, "404 through the web node")
    await rds.aclose()


async def _is(value: Awaitable[Any], expected: Any) -> bool:
    return await value == expected


async def _absent(rds: Any, key: str) -> bool:
    return not await rds.exists(key)


async def test_routing_failures_are_clear_answers(
    settings_env: dict[str, str], redis_server: Any, tmp_path: Path
) -> None:
    """A route to an origin that is gone is a 502 (and looked up again next time), a Redis that
    is down is a 503 to retry (not the 404 of a stream that is not live), never a 500 or a hang."""
    env = {
        **settings_env,
        "AETHEX_CLUSTER__REDIS_URL": redis_server.url,
        "AETHEX_CLUSTER__ROUTE_CACHE_SECONDS": "30",
        "AETHEX_CLUSTER__PROXY_TIMEOUT": "5",
    }
    rds = aioredis.from_url(redis_server.url, decode_responses=True, socket_timeout=2)
    async with aiohttp.ClientSession() as http, running_server(env) as server:
        base = f"http://127.0.0.1:{server.http_port}"
        # Not live anywhere: 404 as on one node.
        status, _, _ = await fetch(http, f"{base}/hls/nowhere/master.m3u8")
        assert status == 404
        # Routed to an origin nobody listens on: 502 with the reason, at once.
        await rds.set("aethex:origin:ghost", f"http://127.0.0.1:{free_port()}")
        status, headers, body = await fetch(http, f"{base}/hls/ghost/master.m3u8")
        assert status == 502 and headers["cache-control"] == "no-store", body
        assert b"unreachable" in body
        # The failed route is forgotten: a new owner is used at once, not after the 30 s. Here
        # a stale one naming this very node (under an address other than its advertise URL):
        # forwarded once, answered 404 there, never a loop of forwards.
        await rds.set("aethex:origin:ghost", base)
        status, _, _ = await fetch(http, f"{base}/hls/ghost/master.m3u8")
        assert status == 404
        assert server._runner.app[HLS_KEY].routes.in_flight == 0
        # Redis down: the route is unknown, a 503 to retry (a player gives up on a 404) within
        # the timeouts.
        await asyncio.to_thread(redis_server.stop)
        started = time.monotonic()
        status, headers, body = await fetch(http, f"{base}/hls/other/abc/144p/index.m3u8")
        assert status == 503 and time.monotonic() - started < 10, (status, body)
        assert headers["retry-after"] == "1" and headers["cache-control"] == "no-store"
        assert b"origin is unknown" in body
    await rds.aclose()
