"""LL-HLS through a real Varnish (issue 15, tests 2-4, the cache's side): a real ffmpeg
publishes, the server transcodes a two-rung ladder, and varnishd (Debian's 7.1, started here
on free ports with config/varnish/aethex.vcl pointed at the server) sits in front.

- Through Varnish: the same renditions and byte-identical init sections and parts as direct;
  the session parameter is not part of the cache key.
- 50 simulated LL-HLS players through Varnish and 10 direct, at once, for 30 s: the origin
  gets about one request per part per rendition (its ``aethex_hls_cache_fills`` counter), the
  delay added by the cache is under 50 ms at p50 (each part's arrival at a Varnish player
  against its arrival at the direct players, measured in the same run), and the viewer count
  is within 10% of the 60 players (Varnish players are counted by their beacon).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import secrets
import statistics
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from benchmarks.lib.playlist import master_variants, parse_media_playlist, with_query
from tests.conftest import make_channel, make_source, push, rtmp_url, running_server
from tests.varnish_server import VarnishServer
from webapp.hls import HLS_KEY

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

SLUG = "edge-tv"
LADDER = [
    {"name": "180p", "height": 180, "fps": 30, "video_kbps": 300},
    {"name": "144p", "height": 144, "fps": 30, "video_kbps": 150},
]
VARNISH_PLAYERS = 50
DIRECT_PLAYERS = 10
RUN_SECONDS = 30.0


@dataclasses.dataclass
class Site:
    server: Any
    varnish: VarnishServer
    http: aiohttp.ClientSession
    proc: asyncio.subprocess.Process

    @property
    def direct(self) -> str:
        return f"http://127.0.0.1:{self.server.http_port}"

    async def get(self, url: str, **kw: Any) -> tuple[int, dict[str, str], bytes]:
        async with self.http.get(url, **kw) as resp:
            return resp.status, dict(resp.headers), await resp.read()

    def fills(self) -> dict[str, float]:
        """The origin's count of cache-fill requests, by kind."""
        out: dict[str, float] = {}
        for metric in self.server.metrics.registry.collect():
            if metric.name == "aethex_hls_cache_fills":
                for sample in metric.samples:
                    if sample.name.endswith("_total"):
                        out[sample.labels["kind"]] = sample.value
        return out

    def viewers(self) -> float | None:
        return self.server.metrics.sample("aethex_viewers", channel=SLUG)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def site(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Site]:
    path = tmp_path_factory.mktemp("edge-source") / "src.flv"
    source = make_source(path, size="320x180", seconds=90, bitrate="300k")
    env = {
        "AETHEX_DATA_DIR": str(tmp_path_factory.mktemp("edge-data")),
        "AETHEX_HTTP_HOST": "127.0.0.1",
        "AETHEX_HTTP_PORT": "0",
        "AETHEX_RTMP_HOST": "127.0.0.1",
        "AETHEX_RTMP_PORT": "0",
        "AETHEX_RTMP__IDLE_TIMEOUT": "20",
        "AETHEX_TRANSCODE__ENABLED": "true",
        "AETHEX_TRANSCODE__PRESET": "ultrafast",
        "AETHEX_TRANSCODE__LADDER": json.dumps(LADDER),
        "AETHEX_HLS__SEGMENT_DURATION": "1",
        "AETHEX_HLS__RECONNECT_GRACE": "0",
        # Behind Varnish: the client's address comes in X-Forwarded-For. Every test client is
        # 127.0.0.1, so the per-address cap must admit them all.
        "AETHEX_HTTP__TRUST_FORWARDED_FOR": "true",
        "AETHEX_HLS__MAX_SESSIONS_PER_ADDRESS": "1000",
        "AETHEX_HLS__VIEWER_TIMEOUT": "4",
        "AETHEX_HLS__VIEWER_UPDATE_INTERVAL": "0.5",
        "AETHEX_HLS__VIEWER_BEACON_INTERVAL": "1",
    }
    async with running_server(env) as server:
        varnish = VarnishServer(server.http_port, tmp_path_factory.mktemp("varnish"))
        await asyncio.to_thread(varnish.start)
        _, key = await make_channel(server, SLUG, "vera")
        proc = await push(source, rtmp_url(server, key))
        http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        site = Site(server, varnish, http, proc)
        try:
            deadline = time.monotonic() + 40
            while True:  # held until every rendition has media, then 200
                status, _, _ = await site.get(f"{site.varnish.base}/hls/{SLUG}/master.m3u8")
                if status == 200:
                    break
                assert time.monotonic() < deadline, status
                await asyncio.sleep(0.2)
            yield site
        finally:
            await http.close()
            if proc.returncode is None:
                proc.terminate()
                await asyncio.wait_for(proc.wait(), 15)
            await asyncio.to_thread(varnish.stop)


def variants(base: str, text: str) -> dict[str, str]:
    """rendition name -> media playlist URL (without query) of a master playlist."""
    out = {}
    for _, _, uri in master_variants(text):
        path = uri.split("?", 1)[0]
        out[path.split("/")[-2]] = f"{base}/hls/{SLUG}/{path}"
    return out


async def test_the_same_renditions_and_bytes_through_varnish(site: Site) -> None:
    session = secrets.token_hex(16)
    s1, h1, cached = await site.get(f"{site.varnish.base}/hls/{SLUG}/master.m3u8?session={session}")
    s2, h2, direct = await site.get(f"{site.direct}/hls/{SLUG}/master.m3u8?session={session}")
    assert s1 == s2 == 200
    # The cache's copy is shared, so it carries no viewer's session; the direct one does.
    assert b"session=" not in cached and f"session={session}".encode() in direct
    assert h1["Cache-Control"] == "public, max-age=1" and h2["Cache-Control"] == "private, no-cache"
    assert re.sub(rb"\?session=[^\n]*", b"", direct) == cached
    via_cache, via_origin = (
        variants(site.varnish.base, cached.decode()),
        variants(site.direct, direct.decode()),
    )
    assert sorted(via_cache) == sorted(via_origin) == ["144p", "180p"]

    for name, url in via_cache.items():
        status, headers, body = await site.get(url)
        assert status == 200 and headers["Cache-Control"] == "public, max-age=1", headers
        playlist = parse_media_playlist(body.decode())
        assert playlist.map_uri and playlist.parts, body
        objects = [playlist.map_uri] + [uri for _, _, uri, _, _ in playlist.parts[-6:]]
        for uri in objects:
            s1, h1, cached_bytes = await site.get(url.rsplit("/", 1)[0] + "/" + uri)
            s2, _, direct_bytes = await site.get(via_origin[name].rsplit("/", 1)[0] + "/" + uri)
            assert s1 == s2 == 200, (uri, s1, s2)
            assert cached_bytes == direct_bytes, uri
            assert h1["Cache-Control"] == "public, max-age=31536000, immutable"
            s3, h3, again = await site.get(url.rsplit("/", 1)[0] + "/" + uri)
            assert again == direct_bytes and h3["X-Cache"] == "HIT", h3

        # A blocking reload: two players with different sessions share one cached answer.
        msn, part, _ = playlist.hint or (0, 0, "")
        first = with_query(url, session=secrets.token_hex(16), _HLS_msn=msn, _HLS_part=part)
        second = with_query(url, _HLS_part=part, _HLS_msn=msn, session=secrets.token_hex(16))
        s1, h1, b1 = await site.get(first)
        s2, h2, b2 = await site.get(second)
        assert s1 == s2 == 200 and b1 == b2 and h2["X-Cache"] == "HIT", (h1, h2)
        assert h1["Cache-Control"] == "public, max-age=1"


@dataclasses.dataclass
class Player:
    """One simulated hls.js on one rendition: blocking reload for the next part, then the
    part(s) it announces; a beacon every second with its own session (as player.js does)."""

    base: str
    media_url: str
    session: str
    direct: bool
    got: dict[tuple[int, int], float] = dataclasses.field(default_factory=dict)
    errors: list[str] = dataclasses.field(default_factory=list)

    async def run(self, http: aiohttp.ClientSession, stop_at: float) -> None:
        loop = asyncio.get_running_loop()
        # A direct player's playlist URLs carry its session (as the master hands them out);
        # through the cache the session goes in the beacon only.
        url = with_query(self.media_url, session=self.session) if self.direct else self.media_url
        beacon = asyncio.ensure_future(self._beacons(http, stop_at))
        try:
            async with http.get(url) as resp:
                playlist = parse_media_playlist((await resp.read()).decode())
            assert playlist.hint is not None
            msn, part, _ = playlist.hint
            last = (msn, part - 1)
            directory = self.media_url.rsplit("/", 1)[0]
            while loop.time() < stop_at:
                reload = with_query(url, _HLS_msn=msn, _HLS_part=part, _HLS_skip="YES")
                async with http.get(reload) as resp:
                    body = await resp.read()
                    if resp.status != 200:
                        self.errors.append(f"playlist {resp.status}")
                        await asyncio.sleep(0.2)
                        continue
                playlist = parse_media_playlist(body.decode())
                for m, p, uri, _, _ in playlist.parts:
                    if (m, p) <= last:
                        continue
                    async with http.get(f"{directory}/{uri}") as resp:
                        await resp.read()
                        if resp.status == 200:
                            self.got[(m, p)] = loop.time()
                        else:
                            self.errors.append(f"part {resp.status}")
                    last = (m, p)
                if playlist.hint is None:
                    return
                msn, part, _ = playlist.hint
        finally:
            beacon.cancel()

    async def _beacons(self, http: aiohttp.ClientSession, stop_at: float) -> None:
        loop = asyncio.get_running_loop()
        rendition = self.media_url.rsplit("/", 2)[-2]
        while loop.time() < stop_at:
            url = f"{self.base}/hls/{SLUG}/watching?session={self.session}&rendition={rendition}"
            async with http.get(url) as resp:
                if resp.status != 204:
                    self.errors.append(f"beacon {resp.status}")
            await asyncio.sleep(1.0)


async def test_fifty_players_through_varnish_cost_the_origin_one_request_per_part(
    site: Site,
) -> None:
    _, _, master = await site.get(f"{site.varnish.base}/hls/{SLUG}/master.m3u8")
    names = sorted(variants("", master.decode()))
    cached = variants(site.varnish.base, master.decode())
    _, _, master = await site.get(f"{site.direct}/hls/{SLUG}/master.m3u8")
    direct = variants(site.direct, master.decode())
    players = [
        Player(site.varnish.base, cached[names[i % 2]], secrets.token_hex(16), False)
        for i in range(VARNISH_PLAYERS)
    ] + [
        Player(site.direct, direct[names[i % 2]], secrets.token_hex(16), True)
        for i in range(DIRECT_PLAYERS)
    ]
    loop = asyncio.get_running_loop()
    before = site.fills()
    stop_at = loop.time() + RUN_SECONDS
    tasks = [asyncio.ensure_future(p.run(site.http, stop_at)) for p in players]

    # Counting: every player is seen (direct ones by their playlist reloads and beacons, the
    # cache's by their beacons alone), the cache's own fetches are not.
    counts: list[float] = []
    deadline = loop.time() + RUN_SECONDS - 2
    while loop.time() < deadline:
        count = site.viewers()
        if count is not None and abs(count - len(players)) <= 0.1 * len(players):
            counts.append(count)
            if len(counts) >= 5:
                break
        await asyncio.sleep(0.5)
    assert len(counts) >= 5, (site.viewers(), counts)

    await asyncio.gather(*tasks)
    after = site.fills()
    errors = [e for p in players for e in p.errors]
    assert len(errors) <= 0.01 * sum(len(p.got) for p in players), errors[:20]

    # Each part: when the direct players had it (their median), against each Varnish player.
    first_seen: dict[tuple[str, int, int], list[float]] = defaultdict(list)
    for p in players:
        if p.direct:
            for key, at in p.got.items():
                first_seen[(p.media_url.rsplit("/", 2)[-2], *key)].append(at)
    delays = []
    for p in players:
        if p.direct:
            continue
        name = p.media_url.rsplit("/", 2)[-2]
        for key, at in p.got.items():
            seen = first_seen.get((name, *key))
            if seen:
                delays.append(at - statistics.median(seen))
    assert len(delays) > 1000, len(delays)
    p50 = statistics.median(delays)
    p90 = statistics.quantiles(delays, n=10)[-1]

    parts = {(p.media_url.rsplit("/", 2)[-2], *key) for p in players for key in p.got}
    fills = {kind: after.get(kind, 0) - before.get(kind, 0) for kind in after}
    per_part = {kind: n / len(parts) for kind, n in fills.items()}
    print(
        f"\nvarnish edge: {len(parts)} parts over {len(names)} renditions, origin fills {fills},"
        f" per part {per_part}; added delay p50 {p50 * 1000:.1f} ms, p90 {p90 * 1000:.1f} ms;"
        f" viewers counted {counts} of {len(players)}; varnish backend requests"
        f" {site.varnish.stat('MAIN.backend_req')}"
    )
    assert per_part.get("part", 0) <= 1.2, per_part
    assert per_part.get("blocking_playlist", 0) <= 1.2, per_part
    assert p50 < 0.050, p50


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
