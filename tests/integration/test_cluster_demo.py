"""The whole cluster of issue 15, started by the module ``make cluster-demo`` runs
(``benchmarks/lib/cluster.py``): Redis, PostgreSQL, SeaweedFS, two origins and a web node,
haproxy in front of RTMP and Varnish in front of the web node, all real processes on loopback.

Issue 15's test 1 (boots in under 60 s; a publisher through haproxy goes live on one origin,
the same key sent directly to the other is refused) and test 5 (``kill -9`` of the origin that
owns the stream: haproxy marks it down, the encoder's reconnect through haproxy goes live on the
other origin within 10 s of the kill, a player through Varnish plays on after loading the master
again, chat on the web node is unaffected, and the dead origin's row is closed with its VOD
recovered from the bucket). Also that a form an origin rendered posts through Varnish to the
web node (one signing secret for the cluster).

Then, on one stream live through haproxy (the ``live`` fixture): test 3 (50 LL-HLS players
through Varnish and 10 direct for 30 s: about one origin request per part per rendition, added
delay p50 under 50 ms, the count within 10%), test 2 (the same renditions and byte-identical
init sections and parts through Varnish, the owning origin, the other origin and the web node;
hls.js in Chromium plays through Varnish), test 4 (players through the cache and direct to every
node: one count, told by every node's API and chat) and test 7 (Redis restarted mid-stream:
playback goes on, a new publisher is refused clearly while it is down, the lease is back within
2 s). Then test 6 (a recording plays from the bucket through every node after its origin's data
dir is removed) and test 5 last. The tests run in file order on one cluster, the destructive
ones last: one boot serves them all (each used to start its own nodes and engines).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import shutil
import statistics
import subprocess
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import urljoin

import aiohttp
import m3u8
import pytest
import redis.asyncio as aioredis

from benchmarks.lib.cluster import PASSWORD, SLUG, USER, Cluster, Node, healthz
from benchmarks.lib.playlist import master_variants, parse_media_playlist, with_query
from mediaserver.cluster.leases import DEADLINE
from tests.browser.browser_support import PageWatch, browser, screenshot_path  # noqa: F401
from tests.chat_support import auth, join
from tests.conftest import ffmpeg_publish_args
from tests.s3_recordings import recording_in_bucket, recording_names, renditions
from tests.seaweed import BUCKET

pytestmark = pytest.mark.integration

BOOT_GOAL = 60.0  # issue 15, test 1
RECONNECT_GOAL = 10.0  # issue 15, test 5: from the kill to live on the other origin
LEASE_BACK = 2.0  # issue 15, test 7: a lease lost to a Redis restart is back within 2 s
VARNISH_PLAYERS = 50  # issue 15, test 3
DIRECT_PLAYERS = 10
RUN_SECONDS = 30.0
RECONNECT_GRACE = 0.0  # hls.reconnect_grace on the nodes
WINDOW = 6 * 1.0  # an ended edge stays one window: hls.live_segments (6) x segment_duration
LADDER = [
    {"name": "180p", "height": 180, "fps": 15, "video_kbps": 300},
    {"name": "144p", "height": 144, "fps": 15, "video_kbps": 150},
]

NODE_SETTINGS = {
    "AETHEX_LOG__LEVEL": "info",
    "AETHEX_TRANSCODE__ENABLED": "true",
    "AETHEX_TRANSCODE__PRESET": "ultrafast",
    "AETHEX_TRANSCODE__LADDER": json.dumps(LADDER),
    "AETHEX_HLS__SEGMENT_DURATION": "1",
    # An encoder that stops ends its broadcast at once: no reconnect grace, whose wait is not
    # what these tests are about (test 5's reconnect goes to another origin anyway).
    "AETHEX_HLS__RECONNECT_GRACE": str(RECONNECT_GRACE),
    # Counting (tests 3, 4): every client is on 127.0.0.1, so the per-address cap admits them
    # all; quick recounts and beacons, and a short timeout so one test's players leave the count
    # before the next test's are counted.
    "AETHEX_HLS__MAX_SESSIONS_PER_ADDRESS": "1000",
    "AETHEX_HLS__VIEWER_TIMEOUT": "4",
    "AETHEX_HLS__VIEWER_UPDATE_INTERVAL": "0.5",
    "AETHEX_HLS__VIEWER_BEACON_INTERVAL": "1",
    "AETHEX_RTMP__HANDSHAKE_TIMEOUT": "1.5",
    "AETHEX_RTMP__PUBLISH_TIMEOUT": "3",
    "AETHEX_RTMP__IDLE_TIMEOUT": "20",
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    demo = Cluster(tmp_path_factory.mktemp("cluster"), extra_env=dict(NODE_SETTINGS))
    demo.start(timeout=120)  # a generous bound to report a slow boot; the goal is asserted
    try:
        yield demo
    finally:
        demo.stop()


def publisher(url: str, seconds: float = 90) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ffmpeg_publish_args(url, seconds=seconds, size="320x180", rate=15),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def end(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.kill()
    if proc is not None:
        proc.wait(15)


async def until(check: Callable[[], Awaitable[Any]], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < deadline, f"not in {timeout:.0f} s: {what}"
        await asyncio.sleep(0.1)


async def owner(cluster: Cluster) -> Node | None:
    return await asyncio.to_thread(cluster.owner)


def metric(node: Node, name: str, **labels: str) -> float:
    import urllib.request

    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    with urllib.request.urlopen(f"{node.base}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(f"{name}{{{want}}} ") or (not want and line.startswith(name + " ")):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_boots_and_one_origin_takes_the_publisher(cluster: Cluster) -> None:
    booted = f"booted in {cluster.boot_seconds:.1f} s ({cluster.phases})"
    assert cluster.boot_seconds < BOOT_GOAL, booted
    print(f"cluster {booted}")
    proc = publisher(cluster.rtmp_url, seconds=60)
    direct: subprocess.Popen[bytes] | None = None
    try:
        live = await until(lambda: owner(cluster), 30, "live on an origin through haproxy")
        other = next(o for o in cluster.origins if o is not live)
        assert (await asyncio.to_thread(healthz, other.base) or {}).get("streams_live") == 0
        # The same key straight to the other origin (not through haproxy): refused.
        direct = publisher(f"rtmp://127.0.0.1:{other.rtmp_port}/live/{cluster.stream_key}", 10)
        code = await asyncio.to_thread(direct.wait, 30)
        assert code != 0
        rejected = await asyncio.to_thread(
            metric, other, "aethex_rtmp_rejected_total", reason="already_live"
        )
        assert rejected == 1
        assert await owner(cluster) is live and proc.poll() is None
    finally:
        end(direct)
        end(proc)
    await until(_no_owner(cluster), 30, "the stream ended")


def _no_owner(cluster: Cluster) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await owner(cluster) is None

    return check


@dataclass
class Player:
    """An LL-HLS client through Varnish as player.js behaves: the master once, then its first
    media playlist again and again (and the newest part), the master again on a 404."""

    base: str
    masters: int = 0
    media_urls: list[str] = field(default_factory=list)
    # (media playlist URL, newest segment number) each time the newest segment changed
    progress: list[tuple[str, int, float]] = field(default_factory=list)
    # (when, what): a 5xx while the owner is dead (the node in front cannot reach it)
    errors: list[tuple[float, str]] = field(default_factory=list)

    async def run(self, http: aiohttp.ClientSession) -> None:
        media: str | None = None
        while True:
            try:
                if media is None:
                    media = await self._master(http)
                    if media is None:
                        await asyncio.sleep(0.3)
                        continue
                async with http.get(media) as r:
                    if r.status == 404:  # the stream moved: load the master again
                        media = None
                        continue
                    if r.status != 200:
                        self.errors.append((time.monotonic(), f"{r.status} {media}"))
                        await asyncio.sleep(0.3)
                        continue
                    playlist = m3u8.loads(await r.text())
                if playlist.segments:
                    last = int(playlist.media_sequence or 0) + len(playlist.segments) - 1
                    if not self.progress or self.progress[-1][:2] != (media, last):
                        self.progress.append((media, last, time.monotonic()))
                        seg = urljoin(media, playlist.segments[-1].uri)
                        async with http.get(seg) as s:
                            if s.status == 200:
                                await s.read()
                await asyncio.sleep(0.3)
            except aiohttp.ClientError as e:
                self.errors.append((time.monotonic(), repr(e)))
                await asyncio.sleep(0.3)

    async def _master(self, http: aiohttp.ClientSession) -> str | None:
        url = f"{self.base}/hls/{SLUG}/master.m3u8"
        async with http.get(url) as r:
            if r.status != 200:
                return None
            master = m3u8.loads(await r.text())
        self.masters += 1
        media = urljoin(url, master.playlists[0].uri)
        self.media_urls.append(media)
        return media

    def segments_after(self, moment: float, media_not: str) -> list[int]:
        return [n for url, n, t in self.progress if t > moment and url != media_not]


@contextlib.asynccontextmanager
async def playing(base: str) -> AsyncIterator[Player]:
    player = Player(base)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
        task = asyncio.ensure_future(player.run(http))
        try:
            yield player
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def get_json(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as r:
        return await r.json() if r.status == 200 else None


async def test_a_form_from_an_origin_is_accepted_through_varnish(cluster: Cluster) -> None:
    """Every node signs with the cluster's one secret: a login made through Varnish (the web
    node) is a login on an origin, and a form that origin rendered posts through Varnish."""
    jar = aiohttp.CookieJar(unsafe=True)  # one host (127.0.0.1): the cookie goes to every port
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        login = {"username": USER, "password": PASSWORD}
        async with http.post(f"{cluster.site}/api/auth/login", json=login) as r:
            assert r.status == 200, await r.text()
        async with http.get(f"{cluster.origins[0].base}/dashboard/notifications") as r:
            assert r.status == 200
            page = await r.text()
        match = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert match, "no form on the origin's page"
        form = {"csrf_token": match.group(1), "delivery": "each"}
        async with http.post(
            f"{cluster.site}/dashboard/notifications", data=form, allow_redirects=False
        ) as r:
            assert r.status == 303, await r.text()


# -- tests 2, 3, 4 and 7: one stream, live through haproxy from here until test 7 ends it ----


@pytest.fixture(scope="module")
def live(cluster: Cluster) -> Iterator[subprocess.Popen[bytes]]:
    """A publisher through haproxy, live with every rendition through Varnish (the master is
    held until each has media). Test 7 ends it; a bound on its length if that test is skipped."""
    proc = publisher(cluster.rtmp_url, seconds=300)
    try:
        _sync_until(
            lambda: _status(f"{cluster.site}/hls/{SLUG}/master.m3u8") == 200,
            60,
            "the stream's master through Varnish",
        )
        yield proc
    finally:
        end(proc)


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


def _sync_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"not in {timeout:.0f} s: {what}"
        time.sleep(0.2)
    return value


async def fetch(http: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, str], bytes]:
    async with http.get(url) as r:
        return r.status, dict(r.headers), await r.read()


def same_master(text: bytes) -> bytes:
    """A master playlist without what is measured as the stream goes (bandwidths, frame rate)."""
    return re.sub(rb"(BANDWIDTH|FRAME-RATE)=[\d.]+", rb"\1=", text)


def variants(base: str, text: str) -> dict[str, str]:
    """rendition name -> media playlist URL (without its query) of a master playlist."""
    out = {}
    for _, _, uri in master_variants(text):
        path = uri.split("?", 1)[0]
        out[path.split("/")[-2]] = f"{base}/hls/{SLUG}/{path}"
    return out


async def serving(cluster: Cluster) -> tuple[Node, Node, Node]:
    """(the origin the stream is live on, the other origin, the web node)."""
    live_on = await until(lambda: owner(cluster), 30, "live on an origin")
    other = next(o for o in cluster.origins if o is not live_on)
    assert cluster.web is not None
    return live_on, other, cluster.web


def metrics_of(node: Node, name: str, label: str) -> dict[str, float]:
    """A node's samples of ``name`` by the value of its one label ``label``."""
    out: dict[str, float] = {}
    with urllib.request.urlopen(f"{node.base}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            m = re.match(rf'{name}\{{{label}="([^"]*)"\}} (\S+)$', line)
            if m:
                out[m.group(1)] = float(m.group(2))
    return out


@dataclass
class LLPlayer:
    """One simulated hls.js on one rendition: blocking reload for the next part, then the
    part(s) it announces; a beacon every second with its own session (as player.js does)."""

    base: str
    media_url: str
    direct: bool
    session: str = field(default_factory=lambda: secrets.token_hex(16))
    got: dict[tuple[int, int], float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def rendition(self) -> str:
        return self.media_url.rsplit("/", 2)[-2]

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
        url = f"{self.base}/hls/{SLUG}/watching?session={self.session}&rendition={self.rendition}"
        while loop.time() < stop_at:
            async with http.get(url) as resp:
                if resp.status != 204:
                    self.errors.append(f"beacon {resp.status}")
            await asyncio.sleep(1.0)


async def media_urls(http: aiohttp.ClientSession, base: str) -> list[str]:
    """The media playlist URLs (without query) of ``base``'s master, in rendition order."""
    status, headers, master = await fetch(http, f"{base}/hls/{SLUG}/master.m3u8")
    assert status == 200, (status, headers, master[:500])
    urls = variants(base, master.decode())
    return [urls[name] for name in sorted(urls)]


async def media_urls_retried(http: aiohttp.ClientSession, base: str) -> list[str] | None:
    """``media_urls``, or None on a 5xx (what a player retries: a node that cannot tell the
    stream's origin right now answers 503); any other answer but 200 fails."""
    status, headers, master = await fetch(http, f"{base}/hls/{SLUG}/master.m3u8")
    if status >= 500:
        return None
    assert status == 200, (status, headers, master[:500])
    urls = variants(base, master.decode())
    return [urls[name] for name in sorted(urls)]


async def viewers_told(nodes: list[Node]) -> list[float]:
    """The stream's viewers as each node's API tells (the shared row)."""
    out = []
    async with aiohttp.ClientSession() as http:
        for node in nodes:
            body = await get_json(http, f"{node.base}/api/channels/{SLUG}/live")
            out.append(float((body or {}).get("viewers", -1)))
    return out


async def test_fifty_players_through_varnish_cost_the_origin_one_request_per_part(
    cluster: Cluster, live: subprocess.Popen[bytes]
) -> None:
    """Test 3: 50 LL-HLS players through Varnish and 10 direct to the owning origin, at once, for
    30 s: the origin gets about one request per part per rendition (its fill counter), the delay
    the cache adds (each part's arrival at a Varnish player against its arrival at the direct
    players, in the same run) is under 50 ms at p50, and the count is within 10% of the 60."""
    live_on, _, _ = await serving(cluster)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        cached = await media_urls(http, cluster.site)
        direct = await media_urls(http, live_on.base)
        players = [
            LLPlayer(cluster.site, cached[i % len(cached)], False) for i in range(VARNISH_PLAYERS)
        ] + [LLPlayer(live_on.base, direct[i % len(direct)], True) for i in range(DIRECT_PLAYERS)]
        loop = asyncio.get_running_loop()
        fills = partial(metrics_of, live_on, "aethex_hls_cache_fills_total", "kind")
        before = await asyncio.to_thread(fills)
        stop_at = loop.time() + RUN_SECONDS
        tasks = [asyncio.ensure_future(p.run(http, stop_at)) for p in players]

        # Counting: every player is seen (direct ones by their playlist reloads and beacons,
        # the cache's by their beacons alone), the cache's own fetches are not.
        counts: list[float] = []
        deadline = loop.time() + RUN_SECONDS - 2
        while loop.time() < deadline and len(counts) < 5:
            count = await asyncio.to_thread(metric, live_on, "aethex_viewers", channel=SLUG)
            if abs(count - len(players)) <= 0.1 * len(players):
                counts.append(count)
            await asyncio.sleep(0.5)
        assert len(counts) >= 5, counts
        await asyncio.gather(*tasks)
        after = await asyncio.to_thread(fills)
    errors = [e for p in players for e in p.errors]
    assert len(errors) <= 0.01 * sum(len(p.got) for p in players), errors[:20]

    # Each part: when the direct players had it (their median), against each Varnish player.
    first_seen: dict[tuple[str, int, int], list[float]] = defaultdict(list)
    for p in players:
        if p.direct:
            for key, at in p.got.items():
                first_seen[(p.rendition, *key)].append(at)
    delays = []
    for p in players:
        if not p.direct:
            for key, at in p.got.items():
                seen = first_seen.get((p.rendition, *key))
                if seen:
                    delays.append(at - statistics.median(seen))
    assert len(delays) > 1000, len(delays)
    p50 = statistics.median(delays)
    p90 = statistics.quantiles(delays, n=10)[-1]

    parts = {(p.rendition, *key) for p in players for key in p.got}
    filled = {kind: n - before.get(kind, 0) for kind, n in after.items()}
    per_part = {kind: n / len(parts) for kind, n in filled.items()}
    print(
        f"\nvarnish edge: {len(parts)} parts over {len(cached)} renditions, origin fills {filled},"
        f" per part {per_part}; added delay p50 {p50 * 1000:.1f} ms, p90 {p90 * 1000:.1f} ms;"
        f" viewers counted {counts} of {len(players)}"
    )
    assert per_part.get("part", 0) <= 1.2, per_part
    assert per_part.get("blocking_playlist", 0) <= 1.2, per_part
    assert p50 < 0.050, p50


async def test_the_same_renditions_and_bytes_through_every_node(
    cluster: Cluster, live: subprocess.Popen[bytes]
) -> None:
    """Test 2: through Varnish, the owning origin, the other origin and the web node: the same
    renditions and byte-identical init sections and parts; the session is not in the cache key."""
    live_on, other, web = await serving(cluster)
    session = secrets.token_hex(16)
    async with aiohttp.ClientSession() as http:
        # The origin a previous broadcast of the channel was on (test 1's, if it was the other
        # one) answers with that broadcast's master until its edge leaves memory: the reconnect
        # grace, then one window (``retire`` in mediaserver/broadcast.py). Test 3 ran since; if
        # it was deselected, wait that out.
        async def one_broadcast() -> bool:
            texts = []
            for base in (cluster.site, live_on.base, other.base, web.base):
                _, _, text = await fetch(http, f"{base}/hls/{SLUG}/master.m3u8")
                texts.append(same_master(re.sub(rb"\?session=[^\n]*", b"", text)))
            return len(set(texts)) == 1

        retired = RECONNECT_GRACE + WINDOW
        started = time.monotonic()
        await until(one_broadcast, retired + 30, "every node's master names one broadcast")
        print(f"every node's master named one broadcast after {time.monotonic() - started:.1f} s")
        s1, h1, cached = await fetch(
            http, f"{cluster.site}/hls/{SLUG}/master.m3u8?session={session}"
        )
        assert s1 == 200
        # The cache's copy is shared, so it carries no viewer's session; a node's own does.
        # (The measured bandwidths and frame rate are updated as segments come, and the cache's
        # copy may be up to its max-age older: the renditions, their URIs, resolutions and
        # codecs must be the same.)
        assert b"session=" not in cached and h1["Cache-Control"] == "public, max-age=1"
        via = {"varnish": variants(cluster.site, cached.decode())}
        for node in (live_on, other, web):
            s2, h2, direct = await fetch(
                http, f"{node.base}/hls/{SLUG}/master.m3u8?session={session}"
            )
            assert s2 == 200 and h2["Cache-Control"] == "private, no-cache", (node.name, h2)
            assert f"session={session}".encode() in direct, node.name
            mine = re.sub(rb"\?session=[^\n]*", b"", direct)
            assert same_master(mine) == same_master(cached), (node.name, mine, cached)
            via[node.name] = variants(node.base, direct.decode())
        names = sorted(via["varnish"])
        assert names == sorted(str(r["name"]) for r in LADDER)
        assert all(sorted(urls) == names for urls in via.values()), via

        for name, url in via["varnish"].items():
            status, headers, body = await fetch(http, url)
            assert status == 200 and headers["Cache-Control"] == "public, max-age=1", headers
            playlist = parse_media_playlist(body.decode())
            assert playlist.map_uri and playlist.parts, body
            objects = [playlist.map_uri] + [uri for _, _, uri, _, _ in playlist.parts[-6:]]
            for uri in objects:
                s, h, cached_bytes = await fetch(http, url.rsplit("/", 1)[0] + "/" + uri)
                assert s == 200, (uri, s)
                assert h["Cache-Control"] == "public, max-age=31536000, immutable", h
                for node, urls in via.items():
                    s, _, got = await fetch(http, urls[name].rsplit("/", 1)[0] + "/" + uri)
                    assert s == 200 and got == cached_bytes, (node, uri, s)
                s, h, again = await fetch(http, url.rsplit("/", 1)[0] + "/" + uri)
                assert again == cached_bytes and h["X-Cache"] == "HIT", h

            # A blocking reload: two players with different sessions share one cached answer.
            msn, part, _ = playlist.hint or (0, 0, "")
            first = with_query(url, session=secrets.token_hex(16), _HLS_msn=msn, _HLS_part=part)
            second = with_query(url, _HLS_part=part, _HLS_msn=msn, session=secrets.token_hex(16))
            s1, h1, b1 = await fetch(http, first)
            s2, h2, b2 = await fetch(http, second)
            assert s1 == s2 == 200 and b1 == b2 and h2["X-Cache"] == "HIT", (h1, h2)
            assert h1["Cache-Control"] == "public, max-age=1"


@pytest.mark.browser
async def test_hls_js_plays_through_varnish(
    cluster: Cluster,
    live: subprocess.Popen[bytes],
    browser: Any,  # noqa: F811 - the fixture, imported by name
) -> None:
    """Test 2's player: the watch page through Varnish, so the page, the playlists, the parts
    and the beacon all cross the cache. hls.js plays; the owning origin served the media to the
    cache (its fill counter), and counts the page as one viewer by the beacon it sends with the
    session the page made up; a 404 for the stream's URLs (as after a move) reloads the master."""
    live_on, _, _ = await serving(cluster)
    context = await browser.new_context(viewport={"width": 1024, "height": 700})
    beacons: list[str] = []
    try:
        page = await context.new_page()
        watch = PageWatch(page, cluster.site)
        page.on(
            "request",
            lambda r: beacons.append(r.url) if f"/hls/{SLUG}/watching?" in r.url else None,
        )
        await page.goto(f"{cluster.site}/streams/{SLUG}")
        await page.wait_for_function(
            "() => window.aethexPlayer.hls && window.aethexPlayer.video.currentTime > 2",
            timeout=45_000,
            polling=200,
        )
        t = await page.evaluate("() => window.aethexPlayer.video.currentTime")
        await page.wait_for_function(
            f"() => window.aethexPlayer.video.currentTime > {t} + 1.5",
            timeout=20_000,
            polling=200,
        )
        await page.screenshot(path=str(screenshot_path("cluster-varnish-watch-playing.png")))
        query = await page.evaluate("() => new URL(window.aethexPlayer.hls.url).search")
        assert query.startswith("?session=")
        session = query.removeprefix("?session=")

        # The media came through the cache: the owner answered Varnish's fills.
        fills = await asyncio.to_thread(metrics_of, live_on, "aethex_hls_cache_fills_total", "kind")
        assert fills.get("part", 0) > 0 and fills.get("master", 0) > 0, fills

        # One viewer, counted by the page's beacons (its own session) through the cache.
        async def one_viewer() -> bool:
            return await asyncio.to_thread(metric, live_on, "aethex_viewers", channel=SLUG) == 1

        await until(one_viewer, 30, "the page counted as one viewer")
        assert beacons and all(f"session={session}" in b for b in beacons), beacons[:3]

        # The stream's URLs stop answering (as when it moved to another origin with a new
        # token): a 404 makes the player load the master again, not retry the dead URLs.
        await page.evaluate("() => { window.__old = window.aethexPlayer.hls; }")

        async def not_found(route: Any) -> None:
            await route.fulfill(status=404, body="Not Found")

        await page.route("**/index.m3u8*", not_found)
        try:
            await page.wait_for_function(
                "() => window.aethexPlayer.hls !== window.__old", timeout=30_000, polling=200
            )
        finally:
            await page.unroute("**/index.m3u8*", not_found)
        t = await page.evaluate("() => window.aethexPlayer.video.currentTime")
        await page.wait_for_function(
            f"() => window.aethexPlayer.hls && window.aethexPlayer.video.currentTime > {t} + 1",
            timeout=30_000,
            polling=200,
        )
        watch.check()
    finally:
        await context.close()


async def test_viewers_through_the_cache_and_direct_are_counted_on_every_node(
    cluster: Cluster, live: subprocess.Popen[bytes]
) -> None:
    """Test 4: players through Varnish and players direct to each node (the owning origin, the
    other origin, the web node) add up to one count, which every node's API and chat tell."""
    live_on, other, web = await serving(cluster)
    where = {cluster.site: 4, live_on.base: 2, other.base: 2, web.base: 2}
    total = sum(where.values())
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        players = []
        for base, n in where.items():
            urls = await media_urls(http, base)
            players += [LLPlayer(base, urls[i % len(urls)], base != cluster.site) for i in range(n)]
        chats = [await join(http, node.base, SLUG) for node in cluster.nodes]
        stop_at = asyncio.get_running_loop().time() + 120  # ended below, once counted
        tasks = [asyncio.ensure_future(p.run(http, stop_at)) for p in players]
        try:
            # Test 3's players leave the count once their sessions time out; then every node's
            # chat says exactly these players, and so does the row the API reads on every node:
            # the web node (where a front sends pages and the API), the owner, and the other
            # origin (which mirrors the stream as the web node does).
            for chat in chats:
                await chat.next("stream:viewers", timeout=60, viewers=total)

            told: list[list[float]] = []

            async def everywhere() -> bool:
                told.append(await viewers_told([web, live_on, other]))
                return told[-1] == [total] * 3

            try:
                await until(everywhere, 30, f"{total} viewers on every node's API")
            except AssertionError as e:
                raise AssertionError(f"{e}; the last told: {told[-3:]}") from None
            # Each node's gauge is what it counted itself; Prometheus sums them.
            gauges = [
                await asyncio.to_thread(metric, node, "aethex_viewers", channel=SLUG)
                for node in cluster.nodes
            ]
            assert sum(gauges) == total, gauges
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for chat in chats:
                await chat.ws.close()
        assert not [e for p in players for e in p.errors], [p.errors for p in players]


async def held_by(rds: Any, channel_id: int, node: str) -> bool:
    try:
        value = await rds.get(f"aethex:lease:{channel_id}")
    except Exception:  # the client reconnecting to a restarted Redis
        return False
    return bool(value) and json.loads(value)["node"] == node


async def newest_segment(http: aiohttp.ClientSession, media: str) -> int | None:
    async with http.get(media) as resp:
        if resp.status != 200:
            return None
        playlist = m3u8.loads(await resp.text())
    if not playlist.segments:
        return None
    return int(playlist.media_sequence or 0) + len(playlist.segments) - 1


def advanced(http: aiohttp.ClientSession, media: str, past: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return (await newest_segment(http, media) or -1) > past

    return check


def summed(name: str, **labels: str) -> Callable[[Cluster], float]:
    def total(cluster: Cluster) -> float:
        return sum(metric(o, name, **labels) for o in cluster.origins)

    return total


async def test_redis_restarted_mid_stream(cluster: Cluster, live: subprocess.Popen[bytes]) -> None:
    """Test 7: Redis restarted (empty) under a live stream: playback goes on and the lease is
    back within 2 s; while Redis is down a new publisher is refused clearly and the live one
    goes on; after it, the lease is back within 2 s. Ends the stream (a lease taken by another
    node stops it), so it comes after the tests that play it."""
    live_on, _, web = await serving(cluster)
    redis = cluster.redis
    assert redis is not None and cluster.haproxy_ports is not None
    rds = aioredis.from_url(
        redis.url, decode_responses=True, socket_timeout=2, socket_connect_timeout=2
    )
    late: subprocess.Popen[bytes] | None = None
    try:
        async with aiohttp.ClientSession(headers=auth(cluster.api_token)) as http:
            channel = await get_json(http, f"{web.base}/api/channels/{SLUG}")
            cid = channel["id"]
            async with http.post(
                f"{web.base}/api/channels", json={"slug": "latecomer", "name": "Late"}
            ) as r:
                assert r.status == 201, await r.text()
                late_key = (await r.json())["stream_key"]
            assert await held_by(rds, cid, live_on.name)
            media = (await media_urls(http, live_on.base))[0]
            seq = await until(lambda: newest_segment(http, media), 30, "a segment")

            # Redis restarts empty: the renewal sets the lease and the route again within 2 s.
            await asyncio.to_thread(redis.restart)
            restarted = time.monotonic()
            await until(lambda: held_by(rds, cid, live_on.name), 10, "the lease back")
            assert time.monotonic() - restarted < LEASE_BACK, time.monotonic() - restarted
            assert await rds.get(f"aethex:origin:{SLUG}") == live_on.base
            # Playback went on, on the owner and through the cache (the web node finds the
            # owner through the route again).
            await until(advanced(http, media, seq + 1), 30, "the owner's playlist advancing")
            cached = (await until(partial(media_urls_retried, http, cluster.site), 10, "master"))[0]
            seq = await until(lambda: newest_segment(http, cached), 30, "through Varnish")
            await until(advanced(http, cached, seq), 30, "playing through Varnish")

            # Redis down: a new publisher (through haproxy) is refused clearly and promptly;
            # the live one goes on.
            await asyncio.to_thread(redis.stop)
            stopped = time.monotonic()
            url = f"rtmp://127.0.0.1:{cluster.haproxy_ports.rtmp}/live/{late_key}"
            late = publisher(url, seconds=10)
            code = await asyncio.to_thread(late.wait, DEADLINE + 30)
            assert late.stderr is not None
            err = late.stderr.read().decode(errors="replace")
            assert code != 0 and "cluster unavailable; try again later" in err, err
            assert time.monotonic() - stopped < DEADLINE + 15, err
            refusals = summed("aethex_rtmp_rejected_total", reason="cluster_unavailable")
            assert await asyncio.to_thread(refusals, cluster) == 1
            claims = summed("aethex_cluster_lease_errors_total", op="claim")
            assert await asyncio.to_thread(claims, cluster) == 1
            seq = await until(lambda: newest_segment(http, media), 10, "a segment")
            await until(advanced(http, media, seq), 30, "playing while Redis is down")
            assert await owner(cluster) is live_on and live.poll() is None
            # The owner's renewals fail meanwhile (counted), and it keeps the stream. Waited
            # for, not assumed: the steps above can all finish inside one renewal interval.
            renew_errors = partial(metric, live_on, "aethex_cluster_lease_errors_total", op="renew")
            await until(
                lambda: asyncio.to_thread(renew_errors), 10, "a renewal failing without Redis"
            )
            assert live.poll() is None

            # Back: the lease is registered again within 2 s.
            await asyncio.to_thread(redis.start)
            back = time.monotonic()
            await until(lambda: held_by(rds, cid, live_on.name), 10, "the lease back after")
            assert time.monotonic() - back < LEASE_BACK, time.monotonic() - back

            # Someone else holds the channel now (as if claimed while the lease was gone): the
            # owner's next renewal stops its stream cleanly.
            intruder = {"node": "intruder", "url": "http://x.test", "slug": SLUG}
            await rds.set(f"aethex:lease:{cid}", json.dumps(intruder), px=30_000)
            await until(_no_owner(cluster), 15, "the owner stopped its stream")
            lost = metric(live_on, "aethex_rtmp_rejected_total", reason="lease_lost")
            assert lost == 1
            assert json.loads(await rds.get(f"aethex:lease:{cid}"))["node"] == "intruder"
            await rds.delete(f"aethex:lease:{cid}", f"aethex:origin:{SLUG}")
    finally:
        end(late)
        end(live)
        await rds.aclose()


# -- test 6: a recording, then its origin's disk is gone --------------------------------------


async def play_vod(http: aiohttp.ClientSession, site: str, stream_id: int) -> dict[str, bytes]:
    """The VOD's master, media playlists and every segment and init section, by name."""
    url = f"{site}/vod/{stream_id}"
    got = {}
    async with http.get(f"{url}/master.m3u8") as r:
        assert r.status == 200, site
        got["master.m3u8"] = await r.read()
    playlists = {}
    for rendition in renditions(got["master.m3u8"]):
        async with http.get(f"{url}/{rendition}/index.m3u8") as r:
            assert r.status == 200, (site, rendition)
            playlists[rendition] = await r.read()
    for name in recording_names(got["master.m3u8"], playlists):
        async with http.get(f"{url}/{name}") as r:
            assert r.status == 200, (site, name)
            got[name] = await r.read()
    return got


async def test_a_vod_plays_from_s3_through_every_node_after_its_origin_loses_its_disk(
    cluster: Cluster,
) -> None:
    """Test 6: a short broadcast through haproxy is recorded to the bucket; its origin's data
    dir is removed; the VOD plays byte for byte (the bucket's bytes) through Varnish, the web
    node, the other origin and the origin that lost it, and so do its thumbnails."""
    assert cluster.weed is not None and cluster.web is not None
    await until(_no_owner(cluster), 60, "no stream live (test 7's has ended)")
    async with aiohttp.ClientSession() as http:
        api = f"{cluster.web.base}/api/streams?channel={SLUG}"
        known = {s["id"] for s in (await get_json(http, api) or {}).get("streams", [])}
        proc = publisher(cluster.rtmp_url, seconds=4)
        try:
            recorded_on = await until(lambda: owner(cluster), 30, "live on an origin")
            assert await asyncio.to_thread(proc.wait, 60) == 0
        finally:
            end(proc)

        async def archived() -> dict[str, Any] | None:
            body = await get_json(http, api)
            rows = [s for s in (body or {}).get("streams", []) if s["id"] not in known]
            return rows[0] if rows and rows[0]["status"] == "archived" else None

        row = await until(archived, 60, "the broadcast archived")
        assert row["vod_available"]
        base = f"streams/{row['id']}"
        stored = await recording_in_bucket(cluster.weed, base, "the VOD in the bucket")
        shutil.rmtree(recorded_on.data_dir)  # the origin's disk loss
        for site in (cluster.site, *(n.base for n in cluster.nodes)):
            got = await play_vod(http, site, row["id"])
            assert len(got) > 3
            for name, data in got.items():
                assert data == stored[f"{base}/{name}"], (site, name)
            # The video's page on this node points the player at that VOD.
            async with http.get(f"{site}/videos/{row['id']}") as r:
                assert r.status == 200, site
                assert re.search(r'data-src="/vod/[^"]+/master\.m3u8"', await r.text()), site
            # The past broadcast's thumbnail, from the bucket (and the channel's last live one
            # from a node that never had it on its disk, or lost it).
            thumbs = await asyncio.to_thread(cluster.weed.objects, BUCKET, "thumbnails/")
            keys = [f"thumbnails/streams/{row['id']}.jpg"]
            if site in (cluster.web.base, recorded_on.base):
                keys.append(f"thumbnails/{SLUG}.jpg")
            for key in keys:
                async with http.get(f"{site}/{key}") as r:
                    assert r.status == 200, (site, key)
                    assert await r.read() == thumbs[key], (site, key)


# -- test 5, last: it kills an origin -----------------------------------------------------


async def test_an_origin_killed_under_a_live_stream(cluster: Cluster) -> None:
    proc = publisher(cluster.rtmp_url, seconds=120)
    again: subprocess.Popen[bytes] | None = None
    web = cluster.web
    assert web is not None and cluster.haproxy is not None and cluster.weed is not None
    try:
        async with aiohttp.ClientSession() as http, playing(cluster.site) as player:
            dead = await until(lambda: owner(cluster), 30, "live on an origin")
            survivor = next(o for o in cluster.origins if o is not dead)
            api = f"{web.base}/api/streams?channel={SLUG}"

            async def live_row() -> dict[str, Any] | None:
                body = await get_json(http, api)
                rows = [s for s in (body or {}).get("streams", []) if s["status"] == "live"]
                return rows[0] if rows else None

            row = await until(live_row, 30, "the live row, seen by the web node")
            prefix = f"streams/{row['id']}/"

            async def recoverable() -> bool:
                objects = await asyncio.to_thread(cluster.weed.objects, BUCKET, prefix)  # type: ignore[union-attr]
                segments = [k for k in objects if k.endswith(".m4s")]
                return f"{prefix}recording.jsonl" in objects and len(segments) >= 3

            await until(recoverable, 60, "the recording's journal and segments in the bucket")
            await until(lambda: _played(player), 30, "the player plays through Varnish")
            chat = await join(http, web.base, SLUG, cluster.api_token)
            before = player.media_urls[-1]

            # haproxy's view of the origin about to die, watched from before the kill.
            name = f"origin{cluster.origins.index(dead) + 1}"
            haproxy = cluster.haproxy
            down_at: list[float] = []

            def watch_haproxy() -> None:
                deadline = time.monotonic() + 40
                while not down_at and time.monotonic() < deadline:
                    if haproxy.status("rtmp_origins")[name] == "DOWN":
                        down_at.append(time.monotonic())
                    time.sleep(0.1)

            watcher = asyncio.ensure_future(asyncio.to_thread(watch_haproxy))

            # kill -9 of the owning origin; its encoder loses the connection with it.
            dead.process.kill()
            killed = time.monotonic()
            end(proc)
            # The encoder reconnects through haproxy (a new ffmpeg, as OBS's reconnect would)
            # until it is live: refused while the dead origin's lease lives.
            attempts = 0
            while await owner(cluster) is not survivor:
                assert time.monotonic() - killed < 60, f"not live again after {attempts} tries"
                if again is None or again.poll() is not None:
                    attempts += 1
                    again = publisher(cluster.rtmp_url, seconds=90)
                await asyncio.sleep(0.05)
            took = time.monotonic() - killed
            print(f"live on {survivor.name} {took:.2f} s after the kill ({attempts} connects)")
            assert took < RECONNECT_GOAL, f"live again {took:.1f} s after the kill"

            # haproxy took the dead origin out (health check: inter 2 s x fall 2, + timeouts).
            await watcher
            assert down_at, f"haproxy never marked {name} DOWN"
            print(f"haproxy marked {name} DOWN {down_at[0] - killed:.2f} s after the kill")

            # The player plays on, from the new broadcast (the master loaded again on a 404).
            await until(
                lambda: _async(len(player.segments_after(killed, before)) >= 2),
                30,
                "the player plays the stream from the other origin",
            )
            assert player.masters >= 2 and player.media_urls[-1] != before
            resumed = next(t for url, _, t in player.progress if t > killed and url != before)
            print(f"player: new segments {resumed - killed:.2f} s after the kill")

            # Chat on the web node: the socket opened before the kill still works.
            assert not chat.ws.closed
            await chat.say("still here")
            got = await chat.next("chat:message", timeout=10)
            assert got["content"] == "still here"
            await chat.ws.close()

            # The dead origin's row: closed, its VOD rebuilt from the bucket.
            async def recovered() -> dict[str, Any] | None:
                body = await get_json(http, api)
                for s in (body or {}).get("streams", []):
                    if s["id"] == row["id"]:
                        assert s["status"] != "offline", "closed OFFLINE: recording lost"
                        return s if s["status"] == "archived" else None
                return None

            old = await until(recovered, 60, "the dead origin's row archived from the bucket")
            assert old["vod_available"]
            async with http.get(f"{web.base}{old['vod_url']}") as r:
                assert r.status == 200
                assert "#EXT-X-STREAM-INF" in await r.text()
            await until(
                lambda: _async(bool(survivor.process.poll() is None)), 1, "the survivor is up"
            )
            # The player's only errors: 5xx for the dead owner's URLs between the kill and the
            # new broadcast (player.js retries those; the 404 after the move reloads the master).
            for when, what in player.errors:
                assert what.startswith("50") and before in what, player.errors
                assert killed <= when <= resumed, player.errors
    finally:
        end(proc)
        end(again)


async def _played(player: Player) -> bool:
    return len(player.progress) >= 2


async def _async(value: bool) -> bool:
    return value
