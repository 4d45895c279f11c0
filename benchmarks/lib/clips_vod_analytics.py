"""Clip/VOD benchmark, part "analytics": the queries behind ``/dashboard/analytics`` and its
API on a year of rollups for 10,000 channels, on SQLite (and PostgreSQL with ``--pg``).

Seed (set-based: ``INSERT ... SELECT`` over recursive CTEs, no row goes through Python):
10,000 users and channels; a past broadcast per channel per week for the year (520,000, with
their analytics summaries carrying a 180-point curve, two chapters each, and a clip for every
other one); a daily rollup per channel per day for 365 days (3.65 million rows) and hourly
rollups for three hours a day over the last 92 days (2.76 million). Users, channels and streams
are written at migration 0006 and the database brought to head afterwards, so the full-text
migration indexes them set-based as on an upgraded server (its triggers would cost ~1.5 ms a
stream row); the analytics tables are filled at head.

Measured, in this process, each query as a request makes it (a session from the pool, the
storage function, its rows read): a channel's 7-, 30- and 90-day report
(``storage.analytics.channel_report``: totals, curve, top streams and clips) and one
broadcast's report (``stream_report``), each on random channels/streams. The reference, in
the same run and the same way: the plain indexed lookup every channel route starts with
(``storage.channels.channel_with_owner`` by slug). p50 and p99 per round, medians of several
rounds; ratio ours/reference. Goal (issue 13): p99 under 50 ms.

    python -m benchmarks.lib.clips_vod_analytics [--quick] [--pg] [--keep DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select, text

from benchmarks.lib.discovery_seed import _migrate_to
from benchmarks.lib.stats import median, percentile
from storage import Database, create_engine, upgrade
from storage import analytics as an
from storage import channels as channel_queries
from storage.models import Stream

GOAL_MS = 50.0
SEED_REVISION = "0006"  # before the full-text search migration (see the docstring)
DAY = 86400


@dataclass(frozen=True)
class Size:
    channels: int
    days: int
    hourly_days: int
    hours_per_day: int
    stream_every_days: int
    iterations: int
    rounds: int


FULL = Size(10_000, 365, 92, 3, 7, 400, 3)
QUICK = Size(1_000, 120, 30, 3, 7, 150, 2)


def _series() -> str:
    """A stream's stored curve: 180 one-minute points, the size a 3-hour stream has."""
    return json.dumps([[i * 60, 40.5 + i % 7, 48 + i % 5, i % 9, i % 3] for i in range(180)])


class Dialect:
    def __init__(self, name: str) -> None:
        self.pg = name == "postgresql"

    def ts(self, epoch: str) -> str:
        """A timestamp column value from an epoch-seconds SQL expression."""
        return f"to_timestamp({epoch})" if self.pg else f"datetime({epoch}, 'unixepoch')"

    def epoch(self, column: str) -> str:
        if self.pg:
            return f"CAST(EXTRACT(EPOCH FROM {column}) AS BIGINT)"
        return f"CAST(strftime('%s', {column}) AS INTEGER)"

    def json(self, param: str) -> str:
        return f"CAST({param} AS JSON)" if self.pg else param

    def false(self) -> str:
        return "false" if self.pg else "0"


def _numbers(name: str, count: str) -> str:
    """A recursive CTE of ``count`` integers 0.. as ``name(n)`` (both databases)."""
    return f"{name}(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM {name} WHERE n + 1 < {count})"


async def _exec(url: str, statements: list[tuple[str, dict[str, Any]]]) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            if engine.dialect.name == "sqlite":
                await conn.exec_driver_sql("PRAGMA synchronous=OFF")
            for sql, params in statements:
                await conn.execute(text(sql), params)
    finally:
        await engine.dispose()


async def seed(url: str, size: Size, now: int) -> dict[str, float]:
    """Fill an empty database at ``url``; seconds per phase."""
    phases: dict[str, float] = {}
    mark = time.monotonic()

    def phase(name: str) -> None:
        nonlocal mark
        phases[name] = time.monotonic() - mark
        mark = time.monotonic()

    engine = create_engine(url)
    d = Dialect(engine.dialect.name)
    await engine.dispose()
    await asyncio.to_thread(_migrate_to, url, SEED_REVISION)
    today = now // DAY * DAY
    first_day = today - (size.days - 1) * DAY
    weeks = size.days // size.stream_every_days
    p = {"channels": size.channels, "t0": first_day, "weeks": weeks}
    await _exec(
        url,
        [
            (
                f"WITH RECURSIVE {_numbers('c', ':channels')} "
                "INSERT INTO users (id, username, email, password_hash, is_admin, is_disabled, "
                "created_at) SELECT n + 1, 'user' || n, 'user' || n || '@example.test', '!x', "
                f"{d.false()}, {d.false()}, {d.ts(':t0')} FROM c",
                p,
            ),
            (
                f"WITH RECURSIVE {_numbers('c', ':channels')} "
                "INSERT INTO channels (id, owner_id, slug, name, description, tags, is_public, "
                "stream_key, stream_key_hash, follower_count, total_streams, total_views, "
                "created_at, updated_at) SELECT n + 1, n + 1, 'chan-' || n, 'Channel ' || n, "
                "'', '[]', true, 'key' || n, 'hash' || n, n % 5000, 0, 0, "
                f"{d.ts(':t0')}, {d.ts(':t0')} FROM c",
                p,
            ),
            # A broadcast per channel per week, three hours long, starting at a time of day
            # that differs per channel.
            (
                f"WITH RECURSIVE {_numbers('w', ':weeks')} "
                "INSERT INTO streams (public_id, channel_id, title, status, started_at, "
                "ended_at, duration_seconds, viewer_count, peak_viewers, vod_available) "
                "SELECT 'p' || c.id || 'w' || w.n, c.id, 'Week ' || w.n || ' run', 'archived', "
                f"{d.ts(':t0 + w.n * 604800 + (c.id % 20) * 3600')}, "
                f"{d.ts(':t0 + w.n * 604800 + (c.id % 20) * 3600 + 10800')}, "
                "10800, 0, 40 + c.id % 200, false FROM channels c CROSS JOIN w",
                p,
            ),
        ],
    )
    phase("users, channels, streams")
    await asyncio.to_thread(upgrade, url)
    phase("upgrade to head (search index built)")
    hp = {"t0": first_day, "h0": today - (size.hourly_days - 1) * DAY}
    await _exec(
        url,
        [
            (
                f"WITH RECURSIVE {_numbers('dd', ':days')} "
                "INSERT INTO analytics_channel_days (channel_id, day, live_seconds, "
                "viewer_seconds, peak_viewers, messages, follows) "
                "SELECT c.id, :t0 + dd.n * 86400, 3600 * (1 + (c.id + dd.n) % 4), "
                "3600 * (1 + (c.id + dd.n) % 4) * (c.id % 200 + dd.n % 17), "
                "c.id % 200 + dd.n % 17 + 5, (c.id + dd.n) % 500, (c.id * dd.n) % 13 "
                "FROM channels c CROSS JOIN dd",
                {"days": size.days, "t0": first_day},
            ),
            (
                f"WITH RECURSIVE {_numbers('dd', ':days')}, {_numbers('k', ':per_day')} "
                "INSERT INTO analytics_channel_hours (channel_id, hour, live_seconds, "
                "viewer_seconds, peak_viewers, messages, follows) "
                "SELECT c.id, :h0 + dd.n * 86400 + (18 + k.n) * 3600, 3600, "
                "3600 * (c.id % 200 + dd.n % 17), c.id % 200 + dd.n % 17 + 5, "
                "(c.id + dd.n) % 150, (c.id * dd.n) % 5 "
                "FROM channels c CROSS JOIN dd CROSS JOIN k",
                {"days": size.hourly_days, "per_day": size.hours_per_day, **hp},
            ),
            (
                "INSERT INTO analytics_streams (stream_id, channel_id, started_at, last_at, "
                "live_seconds, viewer_seconds, peak_viewers, unique_viewers, watch_seconds, "
                "messages, chatters, follows, renditions, series, final) "
                f"SELECT s.id, s.channel_id, {d.epoch('s.started_at')}, "
                f"{d.epoch('s.started_at')} + 10800, 10800, 10800 * (40 + s.id % 150), "
                "s.peak_viewers, 100 + s.id % 900, 10800 * (40 + s.id % 150), s.id % 3000, "
                f"s.id % 300, s.id % 20, {d.json(':renditions')}, {d.json(':series')}, true "
                "FROM streams s",
                {
                    "renditions": json.dumps(
                        {
                            "1080p": {"viewers": 120, "seconds": 500000},
                            "720p": {"viewers": 80, "seconds": 300000},
                            "480p": {"viewers": 20, "seconds": 60000},
                        }
                    ),
                    "series": _series(),
                },
            ),
            (
                "INSERT INTO stream_chapters (stream_id, offset_seconds, title, category_name, "
                "created_at) SELECT s.id, 0, s.title, 'Just Chatting', s.started_at "
                "FROM streams s",
                {},
            ),
            (
                "INSERT INTO stream_chapters (stream_id, offset_seconds, title, category_name, "
                "created_at) SELECT s.id, 5400, 'Second half', 'Factorio', s.started_at "
                "FROM streams s",
                {},
            ),
            (
                "INSERT INTO clips (public_id, channel_id, stream_id, clipper_id, title, source, "
                "status, start_seconds, end_seconds, duration_seconds, views, created_at) "
                "SELECT 'clip' || s.id, s.channel_id, s.id, s.channel_id, 'Clip of ' || s.title, "
                "'vod', 'ready', 600, 630, 30, s.id % 977, s.ended_at FROM streams s "
                "WHERE s.id % 2 = 0",
                {},
            ),
            ("ANALYZE", {}),
        ],
    )
    phase("analytics rollups, summaries, chapters, clips")
    return phases


async def _timed(db: Database, fn: Callable[[Any], Awaitable[Any]]) -> float:
    t0 = time.perf_counter()
    async with db.session() as session:
        await fn(session)
    return (time.perf_counter() - t0) * 1000


async def measure(url: str, size: Size, now: int) -> dict[str, list[tuple[float, float]]]:
    """{query: [(p50 ms, p99 ms) per round]}."""
    rng = random.Random(13)
    db = Database(url)
    await db.connect()
    try:
        async with db.session() as session:
            stream_ids = list((await session.execute(select(Stream.id))).scalars())

        def channel() -> int:
            return rng.randrange(1, size.channels + 1)

        def report(days: int) -> Callable[[Any], Awaitable[Any]]:
            async def run(session: Any) -> Any:
                return await an.channel_report(
                    session, channel(), days=days, now=now, top_streams=5, top_clips=5
                )

            return run

        async def stream(session: Any) -> Any:
            return await an.stream_report(session, rng.choice(stream_ids), step=60, max_points=360)

        async def lookup(session: Any) -> Any:
            return await channel_queries.channel_with_owner(session, f"chan-{channel() - 1}")

        queries: dict[str, Callable[[Any], Awaitable[Any]]] = {
            "reference: channel by slug": lookup,
            "channel 7 days": report(7),
            "channel 30 days": report(30),
            "channel 90 days": report(90),
            "one stream": stream,
        }
        out: dict[str, list[tuple[float, float]]] = {name: [] for name in queries}
        for fn in queries.values():  # warm the caches and the pool
            for _ in range(20):
                await _timed(db, fn)
        for _ in range(size.rounds):
            for name, fn in queries.items():
                times = [await _timed(db, fn) for _ in range(size.iterations)]
                out[name].append((percentile(times, 50), percentile(times, 99)))
        return out
    finally:
        await db.dispose()


def _size_of(url: str, root: Path) -> str:
    if "sqlite" in url:
        total = sum(f.stat().st_size for f in root.glob("aethex.db*"))
        return f"{total / 1e9:.2f} GB on disk"
    return ""


async def _one(url: str, size: Size, label: str, root: Path, *, seeded: bool = False) -> list[str]:
    now = int(time.time())
    if seeded:
        head = f"analytics ({label}): the database seeded earlier ({_size_of(url, root)})"
    else:
        started = time.monotonic()
        phases = await seed(url, size, now)
        head = (
            f"analytics ({label}): {size.channels:,} channels, {size.days} days of daily "
            f"rollups, {size.hourly_days} days of hourly ones, a broadcast a week per channel; "
            f"seeded in {time.monotonic() - started:.0f} s ("
            + ", ".join(f"{k} {v:.0f} s" for k, v in phases.items())
            + f") {_size_of(url, root)}"
        )
    lines = [head]
    results = await measure(url, size, now)
    ref = results["reference: channel by slug"]
    ref50, ref99 = median([r[0] for r in ref]), median([r[1] for r in ref])
    worst = 0.0
    for name, rounds in results.items():
        p50, p99 = median([r[0] for r in rounds]), median([r[1] for r in rounds])
        ratio = (
            ""
            if name.startswith("reference")
            else f"  ratio p50 {p50 / ref50:.1f}x, p99 {p99 / ref99:.1f}x the reference"
        )
        if not name.startswith("reference"):
            worst = max(worst, p99)
        lines.append(f"  {name:28s} p50 {p50:7.2f} ms  p99 {p99:7.2f} ms{ratio}")
    verdict = "met" if worst < GOAL_MS else "MISSED"
    lines.append(
        f"  goal: every analytics query p99 < {GOAL_MS:.0f} ms: {verdict} (worst {worst:.1f} ms; "
        f"medians of {size.rounds} rounds of {size.iterations} queries each)"
    )
    return lines


def run(
    quick: bool,
    postgres: bool = False,
    keep: Path | None = None,
    emit: Callable[[str], None] | None = None,
) -> list[str]:
    """The report lines (each also passed to ``emit`` as soon as it is known). ``keep``: a
    directory where the SQLite database is kept, and reused when it is already there."""
    size = QUICK if quick else FULL
    lines: list[str] = []

    def out(new: list[str]) -> None:
        lines.extend(new)
        for line in new:
            if emit is not None:
                emit(line)

    root = keep or Path(tempfile.mkdtemp(prefix="aethex-analytics-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        db_file = root / "aethex.db"
        seeded = keep is not None and db_file.exists()
        url = f"sqlite+aiosqlite:///{db_file}"
        out(asyncio.run(_one(url, size, "SQLite", root, seeded=seeded)))
        if postgres:
            from tests.pg import PostgresServer, find_pg_bin

            bin_dir = find_pg_bin()
            if bin_dir is None:
                out(["analytics (PostgreSQL): skipped, no initdb installed"])
            else:
                server = PostgresServer(bin_dir)
                server.start()
                try:
                    out(asyncio.run(_one(server.url, size, "PostgreSQL", root)))
                finally:
                    server.stop()
    finally:
        if keep is None:
            shutil.rmtree(root, ignore_errors=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 channels, fewer queries")
    parser.add_argument("--pg", action="store_true", help="PostgreSQL too (tests/pg.py)")
    parser.add_argument(
        "--keep", type=Path, help="keep the SQLite database in this directory (reused if there)"
    )
    args = parser.parse_args()
    run(args.quick, args.pg, args.keep, emit=lambda line: print(line, flush=True))


if __name__ == "__main__":
    main()
