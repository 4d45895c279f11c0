"""Channel leases across origins (issue 15, test 1, the lease side): two origins on one
PostgreSQL and one Redis, real ffmpeg publishers.

One publisher per channel holds across origins (the key sent to the other origin is refused;
two at once: one wins); an origin that dies stops renewing and the channel is taken over on the
other after the lease expires. Test 7 (a Redis restart mid-stream) runs on the whole cluster, in
tests/integration/test_cluster_demo.py.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from sqlalchemy import select

from benchmarks.lib.server import ServerProcess
from storage.models import Stream, StreamStatus
from tests.chat_support import base_url
from tests.cluster_nodes import node_env as cluster_node_env
from tests.conftest import (
    make_channel,
    rtmp_url,
    running_server,
    start_ffmpeg,
)
from tests.serve_process import SERVE_READY

pytestmark = pytest.mark.integration

LEASE_SECONDS = 2.0
RENEW_INTERVAL = 0.5


def node_env(base: dict[str, str], tmp: Path, name: str, pg: str, redis_url: str) -> dict[str, str]:
    return {
        **cluster_node_env(base, tmp, name, "origin", pg, redis_url),
        "AETHEX_CLUSTER__LEASE_SECONDS": str(LEASE_SECONDS),
        "AETHEX_CLUSTER__RENEW_INTERVAL": str(RENEW_INTERVAL),
    }


@pytest.fixture
async def rds(redis_url: str) -> AsyncIterator[Any]:
    client = aioredis.from_url(
        redis_url, decode_responses=True, socket_timeout=2, socket_connect_timeout=2
    )
    try:
        yield client
    finally:
        await client.aclose()


async def get(client: Any, key: str) -> str | None:
    """The key's value; None also while the client reconnects to a restarted Redis."""
    try:
        return await client.get(key)  # type: ignore[no-any-return]
    except Exception:
        return None


async def until(check: Callable[[], Awaitable[Any]], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < deadline, f"not in {timeout:.1f} s: {what}"
        await asyncio.sleep(0.05)


def live_on(server: Any, channel_id: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return channel_id in server.ingest.publishers

    return check


async def refused(proc: asyncio.subprocess.Process, timeout: float = 30.0) -> str:
    """ffmpeg's error output once it gave up (a refused publish exits non-zero)."""
    await asyncio.wait_for(proc.wait(), timeout)
    assert proc.returncode != 0
    assert proc.stderr is not None
    return (await proc.stderr.read()).decode(errors="replace")


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 15)


async def test_one_publisher_per_channel_across_origins(
    settings_env: dict[str, str], tmp_path: Path, postgres_url: str, redis_url: str, rds: Any
) -> None:
    env_a = node_env(settings_env, tmp_path, "origin-a", postgres_url, redis_url)
    env_b = node_env(settings_env, tmp_path, "origin-b", postgres_url, redis_url)
    async with running_server(env_a) as a, running_server(env_b) as b:
        cid, key = await make_channel(a, "duo", "duo")
        pa = await start_ffmpeg(rtmp_url(a, key), seconds=30, size="320x180", rate=15)
        try:
            await until(live_on(a, cid), 30, "live on A")
            value = json.loads(await rds.get(f"aethex:lease:{cid}"))
            assert value == {"node": "origin-a", "url": "http://origin-a.test:8080", "slug": "duo"}
            assert await rds.get("aethex:origin:duo") == "http://origin-a.test:8080"
            assert 0 < await rds.pttl(f"aethex:lease:{cid}") <= LEASE_SECONDS * 1000
            assert a.metrics.sample("aethex_cluster_leases", node="origin-a") == 1
            # Origin B mirrors the stream A ingests: its page and API show the channel live.
            stream_id = a.ingest.publishers[cid].stream.stream_id
            await until(lambda: _told_live(b, "duo", stream_id), 10, "live on B's API")
            # The same key sent to origin B: refused as on one node, A keeps the stream.
            pb = await start_ffmpeg(rtmp_url(b, key), seconds=5, size="320x180", rate=15)
            await refused(pb)
            assert b.metrics.sample("aethex_rtmp_rejected_total", reason="already_live") == 1
            assert cid in a.ingest.publishers and not b.ingest.publishers
            assert json.loads(await rds.get(f"aethex:lease:{cid}"))["node"] == "origin-a"
            # Renewed while live: still there after several lease periods.
            await asyncio.sleep(0)
            started = time.monotonic()
            await until(
                lambda: _after(started, LEASE_SECONDS * 2), LEASE_SECONDS * 3, "two lease periods"
            )
            assert json.loads(await rds.get(f"aethex:lease:{cid}"))["node"] == "origin-a"
        finally:
            await stop(pa)
        # The stream ended: A released the lease and the route at once (no wait for expiry).
        await until(
            lambda: _gone(rds, f"aethex:lease:{cid}", "aethex:origin:duo"), 10, "lease released"
        )
        assert a.metrics.sample("aethex_cluster_leases", node="origin-a") == 0
        assert not a.metrics.sample("aethex_cluster_lease_errors_total", op="claim")


async def _told_live(server: Any, slug: str, stream_id: int) -> bool:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base_url(server)}/api/channels/{slug}/live") as r:
            body = await r.json()
    return bool(body["live"]) and body["stream_id"] == stream_id


async def _after(started: float, seconds: float) -> bool:
    return time.monotonic() - started >= seconds


async def _gone(client: Any, *keys: str) -> bool:
    return not any([await client.get(k) for k in keys])


async def test_two_publishers_at_once_one_wins(
    settings_env: dict[str, str], tmp_path: Path, postgres_url: str, redis_url: str, rds: Any
) -> None:
    env_a = node_env(settings_env, tmp_path, "origin-a", postgres_url, redis_url)
    env_b = node_env(settings_env, tmp_path, "origin-b", postgres_url, redis_url)
    async with running_server(env_a) as a, running_server(env_b) as b:
        cid, key = await make_channel(a, "race", "racer")
        procs = await asyncio.gather(
            start_ffmpeg(rtmp_url(a, key), seconds=10, size="320x180", rate=15),
            start_ffmpeg(rtmp_url(b, key), seconds=10, size="320x180", rate=15),
        )
        try:
            done, _ = await asyncio.wait(
                [asyncio.ensure_future(p.wait()) for p in procs],
                timeout=30,
                return_when=asyncio.FIRST_COMPLETED,
            )
            assert len(done) == 1, "exactly one publisher is refused"
            loser = next(p for p in procs if p.returncode is not None)
            assert loser.returncode != 0
            await until(
                lambda: _any(live_on(a, cid), live_on(b, cid)), 30, "the other one goes live"
            )
            winner, other = (a, b) if cid in a.ingest.publishers else (b, a)
            assert cid in winner.ingest.publishers and not other.ingest.publishers
            assert other.metrics.sample("aethex_rtmp_rejected_total", reason="already_live") == 1
            holder = json.loads(await rds.get(f"aethex:lease:{cid}"))["node"]
            assert holder == winner.node.node_id
            async with a.db.session() as db:
                rows = (
                    (
                        await db.execute(
                            select(Stream).where(
                                Stream.channel_id == cid, Stream.status == StreamStatus.LIVE
                            )
                        )
                    )
                    .scalars()
                    .all()
                )
            assert len(rows) == 1
        finally:
            for p in procs:
                await stop(p)


async def test_a_dead_origins_channel_is_taken_over(
    settings_env: dict[str, str], tmp_path: Path, postgres_url: str, redis_url: str, rds: Any
) -> None:
    env_a = node_env(settings_env, tmp_path, "origin-a", postgres_url, redis_url)
    env_b = node_env(settings_env, tmp_path, "origin-b", postgres_url, redis_url)
    async with running_server(env_b) as b:
        cid, key = await make_channel(b, "phoenix", "phoenix")
        # Origin A is a real `aethex serve` process, so it can die without a word (SIGKILL).
        env_a = {
            k: v for k, v in env_a.items() if k not in ("AETHEX_HTTP_PORT", "AETHEX_RTMP_PORT")
        }
        a = ServerProcess(env_a)
        pa: asyncio.subprocess.Process | None = None
        pb: asyncio.subprocess.Process | None = None
        try:
            await asyncio.to_thread(a.wait_ready, SERVE_READY)
            url_a = f"rtmp://127.0.0.1:{a.rtmp_port}/live/{key}"
            pa = await start_ffmpeg(url_a, seconds=60, size="320x180", rate=15)
            await until(lambda: _held_by(rds, cid, "origin-a"), 30, "A holds the lease")
            row_a = await until(lambda: _live_row(b, cid), 30, "A's stream row")
            # A marks its row as its own, with the lease.
            await until(lambda: get(rds, f"aethex:stream:{row_a}"), 10, "A's row marked")
            assert await rds.get(f"aethex:stream:{row_a}") == "origin-a"
            a.kill()
            killed = time.monotonic()
            await stop(pa)
            # The encoder reconnects to B (as haproxy would send it): refused while A's lease
            # lives, live once it expired. Each attempt is decided within the handshake and
            # publish deadlines: that is the margin over lease_seconds.
            r = b.settings.rtmp
            margin = r.handshake_timeout + r.publish_timeout
            attempts = 0
            while cid not in b.ingest.publishers:
                assert time.monotonic() - killed < LEASE_SECONDS + margin, (
                    f"not live on B after {attempts} attempts"
                )
                attempts += 1
                pb = await start_ffmpeg(rtmp_url(b, key), seconds=30, size="320x180", rate=15)
                waiter = asyncio.ensure_future(pb.wait())
                while not waiter.done() and cid not in b.ingest.publishers:
                    await asyncio.sleep(0.05)
                if cid not in b.ingest.publishers:
                    pb = None
            took = time.monotonic() - killed
            assert took < LEASE_SECONDS + margin
            assert attempts >= 1
            assert json.loads(await rds.get(f"aethex:lease:{cid}"))["node"] == "origin-b"
            assert await rds.get("aethex:origin:phoenix") == "http://origin-b.test:8080"
            row_b = b.ingest.publishers[cid].stream.stream_id
            await until(lambda: get(rds, f"aethex:stream:{row_b}"), 10, "B's row marked")
            # A's row, left LIVE by the crash and marked by no origin, was recovered (by B, as
            # its channel went live there) instead of closed empty: A's recording is not on
            # B's disk here (no S3), so it ends OFFLINE through crash recovery.
            async with b.db.session() as db:
                old = await db.get(Stream, row_a)
            assert old is not None and old.status is not StreamStatus.LIVE
            await until(lambda: _row_status(b, row_a, StreamStatus.OFFLINE), 15, "A's row closed")
            async with b.db.session() as db:
                old = await db.get(Stream, row_a)
            assert old is not None and old.hls_path == f"streams/{row_a}/master.m3u8"
            assert old.ended_at is not None
            async with b.db.session() as db:
                live = (
                    (
                        await db.execute(
                            select(Stream).where(
                                Stream.channel_id == cid, Stream.status == StreamStatus.LIVE
                            )
                        )
                    )
                    .scalars()
                    .all()
                )
            assert [s.id for s in live] == [b.ingest.publishers[cid].stream.stream_id]
        finally:
            a.kill()
            for p in (pa, pb):
                if p is not None:
                    await stop(p)


async def _live_row(server: Any, channel_id: int) -> int | None:
    async with server.db.session() as db:
        return (
            await db.execute(
                select(Stream.id).where(
                    Stream.channel_id == channel_id, Stream.status == StreamStatus.LIVE
                )
            )
        ).scalar_one_or_none()


async def _row_status(server: Any, stream_id: int, status: StreamStatus) -> bool:
    async with server.db.session() as db:
        row = await db.get(Stream, stream_id)
    return row is not None and row.status is status


async def _held_by(client: Any, channel_id: int, node: str) -> bool:
    value = await get(client, f"aethex:lease:{channel_id}")
    return bool(value) and json.loads(value)["node"] == node  # type: ignore[arg-type]


async def _any(*checks: Callable[[], Awaitable[bool]]) -> bool:
    return any([await c() for c in checks])


async def _not(check: Callable[[], Awaitable[bool]]) -> bool:
    return not await check()


async def test_a_silent_publisher_is_taken_over_on_another_origin(
    settings_env: dict[str, str], tmp_path: Path, postgres_url: str, redis_url: str, rds: Any
) -> None:
    """rtmp.takeover_after across origins: an encoder whose old connection went silent (not
    closed) and that reconnects to another origin goes live there once the lease the silent
    one no longer renews expires; the old origin then ends the silent stream at once (not when
    the old connection wakes up or times out), so it stops offering a stalled broadcast."""
    env_a = node_env(settings_env, tmp_path, "origin-a", postgres_url, redis_url)
    env_b = node_env(settings_env, tmp_path, "origin-b", postgres_url, redis_url)
    for env in (env_a, env_b):
        env["AETHEX_RTMP__TAKEOVER_AFTER"] = "1"
        env["AETHEX_RTMP__IDLE_TIMEOUT"] = "60"  # silence alone would not end A's session soon
    async with running_server(env_a) as a, running_server(env_b) as b:
        cid, key = await make_channel(a, "sleeper", "sleeper")
        pa = await start_ffmpeg(rtmp_url(a, key), seconds=60, size="320x180", rate=15)
        pb: asyncio.subprocess.Process | None = None
        try:
            await until(live_on(a, cid), 30, "live on A")
            pa.send_signal(signal.SIGSTOP)  # the encoder hangs; its connection stays open
            stopped = time.monotonic()
            r = b.settings.rtmp
            bound = r.takeover_after + LEASE_SECONDS + r.handshake_timeout + r.publish_timeout
            while cid not in b.ingest.publishers:
                assert time.monotonic() - stopped < bound, "not taken over in time"
                pb = await start_ffmpeg(rtmp_url(b, key), seconds=30, size="320x180", rate=15)
                waiter = asyncio.ensure_future(pb.wait())
                while not waiter.done() and cid not in b.ingest.publishers:
                    await asyncio.sleep(0.05)
            assert time.monotonic() - stopped >= r.takeover_after  # not before it was stale
            assert json.loads(await rds.get(f"aethex:lease:{cid}"))["node"] == "origin-b"
            # A finds the channel is B's and ends its silent copy while the encoder still
            # sleeps (the idle timeout is a minute away).
            await until(_not_check(live_on(a, cid)), 15, "A's stale stream ended")
            assert a.metrics.sample("aethex_rtmp_rejected_total", reason="lease_lost") == 1
            pa.send_signal(signal.SIGCONT)
            assert cid in b.ingest.publishers
            assert json.loads(await rds.get(f"aethex:lease:{cid}"))["node"] == "origin-b"
        finally:
            if pa.returncode is None:
                pa.send_signal(signal.SIGCONT)
            await stop(pa)
            if pb is not None:
                await stop(pb)


def _not_check(check: Callable[[], Awaitable[bool]]) -> Callable[[], Awaitable[bool]]:
    return lambda: _not(check)


async def test_a_dead_origins_row_is_recovered_without_a_new_publisher(
    settings_env: dict[str, str], tmp_path: Path, postgres_url: str, redis_url: str, rds: Any
) -> None:
    """No encoder comes back after its origin died: another origin finds the row no origin
    marks for a whole lease period and recovers it, so the channel stops showing as live."""
    env_a = node_env(settings_env, tmp_path, "origin-a", postgres_url, redis_url)
    env_b = node_env(settings_env, tmp_path, "origin-b", postgres_url, redis_url)
    async with running_server(env_b) as b:
        cid, key = await make_channel(b, "ghost", "ghost")
        ports = ("AETHEX_HTTP_PORT", "AETHEX_RTMP_PORT")
        a = ServerProcess({k: v for k, v in env_a.items() if k not in ports})
        pa: asyncio.subprocess.Process | None = None
        try:
            await asyncio.to_thread(a.wait_ready, SERVE_READY)
            url_a = f"rtmp://127.0.0.1:{a.rtmp_port}/live/{key}"
            pa = await start_ffmpeg(url_a, seconds=60, size="320x180", rate=15)
            row_a = await until(lambda: _live_row(b, cid), 30, "A's stream row")
            await until(lambda: get(rds, f"aethex:stream:{row_a}"), 10, "A's row marked")
            a.kill()
            await stop(pa)
            # Unmarked once the lease expires, taken after a further whole period, checked
            # every period: at most about four periods.
            await until(
                lambda: _row_status(b, row_a, StreamStatus.OFFLINE),
                LEASE_SECONDS * 4 + 10,
                "A's row recovered",
            )
            async with b.db.session() as db:
                old = await db.get(Stream, row_a)
            assert old is not None and old.hls_path == f"streams/{row_a}/master.m3u8"
        finally:
            a.kill()
            if pa is not None:
                await stop(pa)
