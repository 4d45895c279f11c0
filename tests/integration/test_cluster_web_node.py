"""A web node and the streams the origins ingest (issue 15): two origins and a web node on one
PostgreSQL and one Redis, a real ffmpeg publishing to an origin, a creator using the web node.

The web node ingests nothing, yet its pages and API see the stream live (mirrored from the
origins' leases and rows), the creator's End button there ends it on the origin, and the
encoder's reconnect is refused by every origin for the cooldown. Every node signs with the
cluster's one secret (cluster.secret_key_file) and reads sessions from the shared database, so
a login, a form and a signed link made on one node work on another.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from tests.accounts import csrf_of, register
from tests.cluster_nodes import node_env as cluster_node_env
from tests.conftest import running_server, start_ffmpeg
from webapp.keys import SECRET_KEY
from webapp.notifications.mailer import unsubscribe_url

pytestmark = pytest.mark.integration


def node_env(
    base: dict[str, str], tmp: Path, name: str, role: str, pg: str, redis_url: str
) -> dict[str, str]:
    return {
        **cluster_node_env(base, tmp, name, role, pg, redis_url),
        "AETHEX_CLUSTER__LEASE_SECONDS": "2",
        "AETHEX_CLUSTER__RENEW_INTERVAL": "0.5",
        "AETHEX_RTMP__ENDED_COOLDOWN": "20",
    }


async def until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        assert time.monotonic() < deadline, f"not in {timeout:.0f} s: {what}"
        await asyncio.sleep(0.05)


async def one_secret_for_every_node(http: aiohttp.ClientSession, a: Any, w: Any) -> None:
    """Behind a balancer each request may land on another node: the session cookie made on the
    web node is a login on origin A (sessions are rows in the shared database), a form origin A
    rendered is accepted when posted to the web node (one CSRF secret), and so is an
    unsubscribe link A's mailer signed."""
    site_a, site_w = (f"http://127.0.0.1:{n.http_port}" for n in (a, w))
    async with http.get(f"{site_a}/api/auth/user") as r:  # the web node's cookie, on A
        assert (await r.json())["user"]["username"] == "alice"
        user_id = (await r.json())["user"]["id"]
    async with http.get(f"{site_a}/dashboard/notifications") as r:
        assert r.status == 200
        page = await r.text()
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "no form on A's page"
    form = {"csrf_token": match.group(1), "delivery": "digest"}
    async with http.post(
        f"{site_w}/dashboard/notifications", data=form, allow_redirects=False
    ) as r:
        assert r.status == 303, await r.text()
        assert r.headers["Location"] == "/dashboard/notifications?saved=1"
    assert a.settings.cluster.secret_key_file == w.settings.cluster.secret_key_file
    link = unsubscribe_url(a.settings, a._runner.app[SECRET_KEY], user_id)
    parts = urlsplit(link)
    path = f"{parts.path}?{parts.query}"
    async with aiohttp.ClientSession() as anonymous:  # a mail client's one-click post
        async with anonymous.post(f"{site_w}{path}") as r:
            assert r.status == 200 and "<h1>Unsubscribed</h1>" in await r.text()
        async with anonymous.post(f"{site_w}{path[:-4]}AAAA") as r:
            assert r.status == 400  # a forged one still fails


async def test_web_node_sees_and_ends_the_origins_streams(
    settings_env: dict[str, str], tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    envs = [
        node_env(settings_env, tmp_path, name, role, postgres_url, redis_url)
        for name, role in (("origin-a", "origin"), ("origin-b", "origin"), ("web-1", "web"))
    ]
    async with (
        running_server(envs[0]) as a,
        running_server(envs[1]) as b,
        running_server(envs[2]) as w,
    ):
        base = f"http://127.0.0.1:{w.http_port}"
        async with await register(base, "alice") as http:
            headers = {"X-CSRF-Token": await csrf_of(http, base)}
            async with http.post(
                "/api/channels", json={"slug": "alice-tv", "name": "Alice"}, headers=headers
            ) as r:
                assert r.status == 201
                key = (await r.json())["stream_key"]
            async with http.get("/api/channels/alice-tv/live") as r:
                assert (await r.json())["live"] is False
            await one_secret_for_every_node(http, a, w)
            url_a = f"rtmp://127.0.0.1:{a.rtmp_port}/live/{key}"
            proc = await start_ffmpeg(url_a, seconds=60, size="320x180", rate=15)
            try:
                await until(lambda: a.registry.get("alice-tv") is not None, 30, "live on A")
                stream_id = a.registry.get("alice-tv").stream_id
                mirrored = await until(lambda: w.registry.get("alice-tv"), 10, "seen on the web")
                assert mirrored.remote and mirrored.stream_id == stream_id
                assert len(w.registry) == 0  # not ingested here: no listener, no transcoder
                async with http.get("/api/channels/alice-tv/live") as r:
                    info = await r.json()
                assert info["live"] is True and info["stream_id"] == stream_id
                assert info["playable"] is True  # played through the origin
                async with http.get(f"/api/streams/{stream_id}/status") as r:
                    status = await r.json()
                assert status["status"] == "live" and status["live"] is True
                assert status["health"] is None  # the figures are the origin's

                # End, on the web node: the origin disconnects the encoder.
                async with http.post(f"/api/streams/{stream_id}/end", headers=headers) as r:
                    assert r.status == 202, await r.text()
                await asyncio.wait_for(proc.wait(), 10)
                assert proc.returncode != 0
                await until(lambda: a.registry.get("alice-tv") is None, 10, "ended on A")
                await until(lambda: w.registry.get("alice-tv") is None, 10, "gone on the web")

                # The encoder reconnects to the other origin: refused for the cooldown there.
                url_b = f"rtmp://127.0.0.1:{b.rtmp_port}/live/{key}"
                again = await start_ffmpeg(url_b, seconds=30, size="320x180", rate=15)
                await asyncio.wait_for(again.wait(), 15)
                assert again.returncode != 0
                rejected = b.metrics.sample("aethex_rtmp_rejected_total", reason="ended_cooldown")
                assert rejected == 1
                assert b.registry.get("alice-tv") is None
            finally:
                if proc.returncode is None:
                    proc.terminate()
                    await proc.wait()
