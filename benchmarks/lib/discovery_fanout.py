"""The discovery benchmark's go-live phase: a real publisher goes live on a channel nobody
follows, then on the channel every seeded user follows; for each, the time from the publisher's
start to the channel being live and to its first playlist (the player page's "playable": the
master playlist with a whole segment of every rendition), and for the followed one the time
until every in-app notification of the go-live is written.

Why through the running server and not by calling the fan-out function: the issue's promise is
about the product's path (ingest accepts the publish, the stream row is written, the fan-out
runs in the background beside the transcoder and packager), and the first-playlist comparison
only means something with both running in the same process. The publisher is PyAV's
(benchmarks.lib.publisher) at 640x360, flat picture, copied through by the passthrough rung, so
its encoder and the transcoder leave the CPU to what is measured.

When the server writes no notification for the followed channel's stream within
``NO_FANOUT_AFTER`` seconds, the fan-out is reported as not available yet.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
from sqlalchemy import func, select, text

from benchmarks.lib import ROOT
from benchmarks.lib.discovery_seed import Seed
from benchmarks.lib.server import ServerProcess, stop_process
from storage import create_engine
from storage.discovery_models import Notification

NO_FANOUT_AFTER = 15.0
FANOUT_DEADLINE = 120.0
PLAYABLE_DEADLINE = 60.0
POLL = 0.02


@dataclass
class GoLiveTimes:
    live_s: float  # publisher start -> the API says live
    playable_s: float  # publisher start -> the first playlist is there (playable)
    stream_id: int | None
    notified: int = 0
    fanout_s: float | None = None  # live -> every notification written (None: not done)


def start_publisher(url: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks.lib.publisher",
            url,
            "--seconds",
            "120",
            "--size",
            "640x360",
            "--fps",
            "30",
            "--gop",
            "1",
            "--bitrate",
            "800",
            "--picture",
            "flat",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def _count(engine: object, stream_id: int, since: datetime) -> int:
    """The stream's notifications, read through the created_at index from ``since`` (there is
    no index on stream_id: a whole-table count every poll would compete with the fan-out)."""
    async with engine.connect() as conn:  # type: ignore[attr-defined]
        n = await conn.execute(
            select(func.count())
            .select_from(Notification)
            .where(Notification.created_at >= since, Notification.stream_id == stream_id)
        )
        return int(n.scalar_one())


async def _expected(engine: object, slug: str) -> int:
    """Followers a go-live of ``slug`` notifies: bell on, not the owner, account enabled."""
    async with engine.connect() as conn:  # type: ignore[attr-defined]
        n = await conn.execute(
            text(
                "SELECT count(*) FROM channel_follows f JOIN channels c ON c.id = f.channel_id "
                "JOIN users u ON u.id = f.user_id WHERE c.slug = :slug AND f.notify "
                "AND f.user_id != c.owner_id AND NOT u.is_disabled"
            ),
            {"slug": slug},
        )
        return int(n.scalar_one())


async def _count_until(
    engine: object,
    stream_id: int,
    expected: int,
    t_live: float,
    since: datetime,
    times: GoLiveTimes,
) -> None:
    """Counts the stream's notifications from the moment it is live until all are there."""
    while True:
        n = await _count(engine, stream_id, since)
        now = time.monotonic()
        times.notified = n
        if n >= expected:
            times.fanout_s = now - t_live
            return
        if (n == 0 and now - t_live > NO_FANOUT_AFTER) or now - t_live > FANOUT_DEADLINE:
            return
        await asyncio.sleep(0.05)


async def go_live(
    base: str, rtmp: str, slug: str, key: str, engine: object, expected: int
) -> GoLiveTimes:
    """Publish to ``slug``; the player page's view of it (live, then playable) and, from the
    moment it is live and at the same time, the count of its notifications."""
    t0 = time.monotonic()
    since = datetime.now(UTC) - timedelta(seconds=5)
    pub = start_publisher(f"{rtmp}/live/{key}")
    times = GoLiveTimes(float("nan"), float("nan"), None)
    counting: asyncio.Task[None] | None = None
    try:
        async with aiohttp.ClientSession(base) as http:
            while time.monotonic() - t0 < PLAYABLE_DEADLINE:
                async with http.get(f"/api/channels/{slug}/live") as r:
                    doc = await r.json()
                if doc.get("live") and times.stream_id is None:
                    times.live_s, times.stream_id = time.monotonic() - t0, doc["stream_id"]
                    if expected:
                        counting = asyncio.create_task(
                            _count_until(
                                engine, doc["stream_id"], expected, t0 + times.live_s, since, times
                            )
                        )
                if doc.get("playable"):
                    times.playable_s = time.monotonic() - t0
                    break
                if pub.poll() is not None:
                    raise RuntimeError(f"publisher exited: {stop_process(pub)}")
                await asyncio.sleep(POLL)
        if counting is not None:
            await counting
        return times
    finally:
        if counting is not None and not counting.done():
            counting.cancel()
        stop_process(pub)


async def fanout_seconds_total(base: str) -> tuple[float, float] | None:
    """The server's own fan-out histogram (sum of seconds, count) from /metrics; None when
    it has none."""
    async with aiohttp.ClientSession(base) as http:
        async with http.get("/metrics") as r:
            body = await r.text()
    found: dict[str, float] = {}
    for line in body.splitlines():
        for part in ("sum", "count"):
            if line.startswith(f"aethex_notification_fanout_seconds_{part} "):
                found[part] = float(line.split()[-1])
    return (found["sum"], found["count"]) if len(found) == 2 else None


async def _until_offline(base: str, slug: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(base) as http:
        while time.monotonic() < deadline:
            async with http.get(f"/api/channels/{slug}/live") as r:
                if not (await r.json()).get("live"):
                    return
            await asyncio.sleep(0.1)


async def fanout_phase(workdir: Path, url: str, seed: Seed, env: dict[str, str]) -> None:
    proc = ServerProcess(env, workdir / "server-fanout.log")
    engine = create_engine(url)
    try:
        await asyncio.to_thread(proc.wait_ready, 60)
        rtmp = f"rtmp://127.0.0.1:{proc.rtmp_port}"
        expected = await _expected(engine, seed.fanout_slug)
        quiet = await go_live(proc.base, rtmp, seed.quiet_slug, seed.quiet_key, engine, 0)
        await _until_offline(proc.base, seed.quiet_slug)
        before = await fanout_seconds_total(proc.base)
        fan = await go_live(proc.base, rtmp, seed.fanout_slug, seed.fanout_key, engine, expected)
        after = await fanout_seconds_total(proc.base)
    finally:
        await engine.dispose()
        await asyncio.to_thread(proc.stop, 30)
    print(
        f"go-live without followers: live after {quiet.live_s:.2f} s, first playlist after "
        f"{quiet.playable_s:.2f} s (from the publisher's start)"
    )
    print(
        f"go-live with {expected} followers to notify: live after {fan.live_s:.2f} s, first "
        f"playlist after {fan.playable_s:.2f} s ({fan.playable_s / quiet.playable_s:.2f}x "
        "the one without)"
    )
    if fan.notified == 0:
        print("fan-out: not available yet (no notification written for the stream)")
    elif fan.fanout_s is None:
        print(f"fan-out: only {fan.notified} of {expected} notifications written; goal <= 10 s: NO")
    else:
        ok = "yes" if fan.fanout_s <= 10 else "NO"
        own = ""
        if before is not None and after is not None and after[1] > before[1]:
            own = f"; the server's own figure (its fan-out task): {after[0] - before[0]:.2f} s"
        print(
            f"fan-out: {fan.notified} notifications written {fan.fanout_s:.2f} s after going "
            f"live ({fan.notified / max(fan.fanout_s, 1e-9):,.0f}/s){own}; goal <= 10 s: {ok}"
        )
