"""The whole cluster of issue 15, started by the module ``make cluster-demo`` runs
(``benchmarks/lib/cluster.py``): Redis, PostgreSQL, SeaweedFS, two origins and a web node,
haproxy in front of RTMP and Varnish in front of the web node, all real processes on loopback.

Issue 15's test 1 (boots in under 60 s; a publisher through haproxy goes live on one origin,
the same key sent directly to the other is refused) and test 5 (``kill -9`` of the origin that
owns the stream: haproxy marks it down, the encoder's reconnect through haproxy goes live on the
other origin within 10 s of the kill, a player through Varnish plays on after loading the master
again, chat on the web node is unaffected, and the dead origin's row is closed with its VOD
recovered from the bucket). Also that a form an origin rendered posts through Varnish to the
web node (one signing secret for the cluster). The tests run in file order on one cluster
(test 5 kills a node).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import aiohttp
import m3u8
import pytest

from benchmarks.lib.cluster import PASSWORD, SLUG, USER, Cluster, Node, healthz
from tests.chat_support import join
from tests.conftest import ffmpeg_publish_args
from tests.seaweed import BUCKET

pytestmark = pytest.mark.integration

BOOT_GOAL = 60.0  # issue 15, test 1
RECONNECT_GOAL = 10.0  # issue 15, test 5: from the kill to live on the other origin

NODE_SETTINGS = {
    "AETHEX_LOG__LEVEL": "info",
    "AETHEX_TRANSCODE__ENABLED": "true",
    "AETHEX_TRANSCODE__PRESET": "ultrafast",
    "AETHEX_HLS__SEGMENT_DURATION": "1",
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
    assert cluster.boot_seconds < BOOT_GOAL, f"booted in {cluster.boot_seconds:.1f} s"
    print(f"cluster booted in {cluster.boot_seconds:.1f} s")
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
