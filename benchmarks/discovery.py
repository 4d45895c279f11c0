"""Discovery under load: a seeded platform (10,000 channels of which 1,000 live, 100,000 users,
1,000,000 follows, 100,000 past broadcasts), 50 concurrent clients on `/`, `/categories/{slug}`,
`/search` and `/api/search`, on SQLite and on PostgreSQL; then the go-live notification fan-out
to a channel's 100,000 followers and that stream's time to its first playlist.

    python benchmarks/discovery.py                 # the full run, both databases
    python benchmarks/discovery.py --quick         # a small seed and a short load: a check
    python benchmarks/discovery.py --db sqlite --seconds 20

Server time is what the server says it spent on each request (``Server-Timing: app;dur=``,
webapp.timing), recorded per request; the client's stopwatch is printed beside it for context
(it adds the client's own event loop, on the same 2 cores). The reference, in the same run and
under the same load, is the same server's cheapest route, ``/api/channels/{slug}/live`` (one
indexed row and the registry): each route's p99 is printed as a ratio to it beside the
absolute milliseconds, since machines differ in speed (2.5x between two of ours) and ratios
hold where absolute figures move.

"Live" here: a LIVE stream row and an entry in the server's live registry, made inside the
server process as ingest makes them when a publisher's key is accepted (benchmarks.lib.
seeded_live), but without media (transcoding off in the load phase): the pages list such a
channel as live with its seeded viewer count. The fan-out phase uses a real RTMP publisher
(PyAV) and the real transcoder.

Clients: half logged in (session cookies of seeded viewers with follows and watch history,
as a login makes them), half anonymous; each is one keep-alive connection that sends its next
request a think time (exponential, mean ``--think``, 0.5 s) after the last one answered: 50
people browsing, not 50 loops hammering. With no think time (``--think 0``) every request
waits behind the 49 others in the server's one event loop, and the p99 measures that queue
(about 50 times a request's cost), not the route. Queries are whole words, prefixes,
misspellings, user names and several words.

After the load, one client alone (``--alone`` seconds, no think time) measures each route's
own cost without a queue: the figure a route's author can act on. ``--profile`` samples the
server with py-spy during the load and sums the samples by handler.

Goals (the issue's): p99 server time at most 50 ms for the API routes and 100 ms for the pages,
on both databases; every in-app notification of a go-live to 100,000 followers written within
10 s, and the stream's first playlist as fast as without followers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import aiohttp
import uvloop
from sqlalchemy import text

# Run as a script: the repository root on sys.path, for benchmarks.lib and the server's code.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.lib import procstats
from benchmarks.lib.discovery_fanout import fanout_phase
from benchmarks.lib.discovery_seed import FULL, QUERIES, QUICK, TAGS, Seed, prepare
from benchmarks.lib.loop_probe import LoopProbe
from benchmarks.lib.pyspy import profile_summary, start_profile
from benchmarks.lib.server import ServerProcess
from benchmarks.lib.stats import percentile
from storage import create_engine
from tests.pg import PostgresServer, find_pg_bin

REFERENCE = "/api/channels/{slug}/live"
PAGES = ("/", "/categories/{slug}", "/search")
APIS = ("/api/search",)
ROUTES = (REFERENCE, *PAGES, *APIS)
# Of every 100 requests: the reference a tenth, the rest as a discovery-heavy visit goes.
MIX = ((REFERENCE, 10), ("/", 25), ("/categories/{slug}", 25), ("/search", 15), ("/api/search", 25))
GOAL_MS = {**dict.fromkeys(PAGES, 100.0), **dict.fromkeys(APIS, 50.0)}
TIMING_RE = re.compile(r"app;dur=([0-9.]+)")
DB_TIMING_RE = re.compile(r'db;dur=([0-9.]+);desc="(\d+) statements"')
SEARCH_TYPES = ("channels", "users", "categories", "videos")
LANGS = ("en", "es", "de", "ja", "pt")


@dataclass
class Samples:
    server_ms: list[float] = field(default_factory=list)
    client_ms: list[float] = field(default_factory=list)
    # The database's share of each server time (the same order as server_ms), and statements.
    db_ms: list[float] = field(default_factory=list)
    statements: list[int] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    untimed: int = 0  # answers without a Server-Timing header
    # When each answer was asked for, in seconds since the load began (server_ms's order).
    at_s: list[float] = field(default_factory=list)


# Settings the run gives the server on top of server_env's (--set section.key=value): A/B runs
# of one setting on the same seed and machine.
EXTRA_ENV: dict[str, str] = {}


def server_env(workdir: Path, url: str, transcode: bool) -> dict[str, str]:
    return {
        "AETHEX_DATA_DIR": str(workdir / "data"),
        "AETHEX_DATABASE_URL": url,
        "AETHEX_LOG__LEVEL": "warning",
        "AETHEX_TRANSCODE__ENABLED": "true" if transcode else "false",
        "AETHEX_TRANSCODE__PRESET": "ultrafast",
        "AETHEX_TRANSCODE__PASSTHROUGH": "auto",
        # Every client is on 127.0.0.1, as behind a reverse proxy: the per-address caps are off.
        "AETHEX_HTTP__MAX_CONNECTIONS_PER_ADDRESS": "0",
        "AETHEX_RTMP__MAX_CONNECTIONS_PER_ADDRESS": "0",
        **EXTRA_ENV,
    }


class Picker:
    """What a client asks next (seeded per client: the same run asks the same things)."""

    def __init__(self, k: int, seed_: Seed) -> None:
        self.rng = random.Random(k)
        self.seed = seed_
        self.routes = [r for r, w in MIX for _ in range(w)]
        # Category popularity as the seed made it: the first ones are asked for most.
        n = len(seed_.categories)
        self.cat_weights = [1.0 / (i + 1) for i in range(n)]

    def next(self) -> tuple[str, str]:
        rng = self.rng
        route = rng.choice(self.routes)
        if route == REFERENCE:
            ch = rng.choice(self.seed.live)
            return route, f"/api/channels/{ch.slug}/live"
        if route == "/":
            return route, "/"
        if route == "/categories/{slug}":
            slug = rng.choices(self.seed.categories, self.cat_weights)[0]
            x = rng.random()
            if x < 0.15:
                return route, f"/categories/{slug}?tag={rng.choice(TAGS)}"
            if x < 0.3:
                return route, f"/categories/{slug}?language={rng.choice(LANGS)}"
            return route, f"/categories/{slug}"
        q = quote(rng.choice(QUERIES))
        if route == "/search":
            return route, f"/search?q={q}"
        if rng.random() < 0.4:
            return route, f"/api/search?q={q}&type={rng.choice(SEARCH_TYPES)}&limit=20"
        return route, f"/api/search?q={q}&limit=20"


async def drive(
    base: str, seed_: Seed, clients: int, seconds: float, think: float
) -> tuple[dict[str, Samples], float, int]:
    """``clients`` closed-loop clients for ``seconds``; returns samples per route, the
    elapsed time and the requests answered."""
    samples: dict[str, Samples] = {r: Samples() for r in ROUTES}
    began = time.perf_counter()
    stop_at = time.monotonic() + seconds
    total = [0]

    async def client(k: int) -> None:
        picker = Picker(k, seed_)
        headers = {}
        if k % 2 == 0 and seed_.sessions:  # half logged in
            token = seed_.sessions[(k // 2) % len(seed_.sessions)]
            headers["Cookie"] = f"aethex_session={token}"
        conn = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(base, connector=conn, headers=headers) as http:
            while time.monotonic() < stop_at:
                route, url = picker.next()
                t0 = time.perf_counter()
                async with http.get(url, allow_redirects=False) as r:
                    await r.read()
                    timing = r.headers.get("Server-Timing", "")
                    status = r.status
                dt = (time.perf_counter() - t0) * 1000
                s = samples[route]
                s.statuses[status] += 1
                total[0] += 1
                if status != 200:
                    continue
                m = TIMING_RE.search(timing)
                if m is None:
                    s.untimed += 1
                    continue
                s.server_ms.append(float(m.group(1)))
                s.client_ms.append(dt)
                s.at_s.append(t0 - began)
                d = DB_TIMING_RE.search(timing)
                s.db_ms.append(float(d.group(1)) if d else 0.0)
                s.statements.append(int(d.group(2)) if d else 0)
                if think > 0:
                    await asyncio.sleep(picker.rng.expovariate(1 / think))

    t0 = time.monotonic()
    await asyncio.gather(*(client(k) for k in range(clients)))
    return samples, time.monotonic() - t0, total[0]


def table(samples: dict[str, Samples]) -> None:
    ref = samples[REFERENCE]
    ref_p99 = percentile(ref.server_ms, 99)
    print(
        f"{'route':<28}{'n':>7}{'server p50':>12}{'p99':>10}{'p99/ref':>9}"
        f"{'client p50':>12}{'p99':>10}  other statuses"
    )
    for route in ROUTES:
        s = samples[route]
        other: dict[int | str, int] = {k: v for k, v in sorted(s.statuses.items()) if k != 200}
        if s.untimed:
            other["untimed"] = s.untimed
        p50, p99 = percentile(s.server_ms, 50), percentile(s.server_ms, 99)
        name = route + (" (ref)" if route == REFERENCE else "")
        print(
            f"{name:<28}{len(s.server_ms):>7}{p50:>9.1f} ms{p99:>7.1f} ms{p99 / ref_p99:>8.2f}x"
            f"{percentile(s.client_ms, 50):>9.1f} ms{percentile(s.client_ms, 99):>7.1f} ms"
            f"  {other or ''}"
        )


def breakdown(samples: dict[str, Samples]) -> None:
    """Where the time went: each route's database share (``Server-Timing: db``) over all its
    answers and over its slowest 5 %, so a slow query (db close to the whole) can be told from
    a request that waited for the event loop behind others (the whole far above db)."""
    print(
        f"{'route':<28}{'statements':>11}{'db p50':>9}{'db p99':>9}"
        f"{'slowest 5%: server':>20}{'db':>9}{'db share':>10}"
    )
    for route in ROUTES:
        s = samples[route]
        if not s.server_ms:
            continue
        cut = percentile(s.server_ms, 95)
        slow = [(t, d) for t, d in zip(s.server_ms, s.db_ms, strict=True) if t >= cut]
        slow_t = percentile([t for t, _ in slow], 50)
        slow_d = percentile([d for _, d in slow], 50)
        print(
            f"{route:<28}{percentile([float(n) for n in s.statements], 50):>11.0f}"
            f"{percentile(s.db_ms, 50):>6.1f} ms{percentile(s.db_ms, 99):>6.1f} ms"
            f"{slow_t:>17.1f} ms{slow_d:>6.1f} ms{slow_d / slow_t * 100 if slow_t else 0:>9.0f}%"
        )


def when_slow(samples: dict[str, Samples], cut_ms: float = 50.0) -> None:
    """Which seconds of the load the answers over ``cut_ms`` of server time were asked in:
    slow answers bunched in a few seconds, or at a period, point at something the server did
    then (a background task, a collection); spread evenly, at queueing under the load."""
    per_second: dict[int, int] = defaultdict(int)
    slow = 0
    for s in samples.values():
        for t, ms in zip(s.at_s, s.server_ms, strict=True):
            if ms > cut_ms:
                per_second[int(t)] += 1
                slow += 1
    total = sum(len(s.server_ms) for s in samples.values())
    busiest = sorted(per_second.items(), key=lambda kv: -kv[1])[:8]
    print(
        f"answers over {cut_ms:.0f} ms of server time: {slow} of {total}; the seconds with "
        "the most (s: n): " + (", ".join(f"{t}: {n}" for t, n in sorted(busiest)) or "none")
    )


def report(samples: dict[str, Samples], db: str) -> list[str]:
    """The table and the goal lines; returns the routes that missed their goal."""
    table(samples)
    when_slow(samples)
    print("where the time went (Server-Timing's db share):")
    breakdown(samples)
    missed = []
    print(f"goals on {db} (p99 server time):")
    for route, goal in GOAL_MS.items():
        s = samples[route]
        if not s.server_ms:
            print(f"  {route}: not measured (no 200 answers: {dict(s.statuses)})")
            missed.append(route)
            continue
        p99 = percentile(s.server_ms, 99)
        # A route that failed requests misses its goal however fast its answers were.
        errors = sum(n for code, n in s.statuses.items() if code >= 500)
        ok = p99 <= goal and not errors
        verdict = "yes" if ok else "NO" + (f" ({errors} answers were 5xx)" if errors else "")
        print(f"  {route} p99 {p99:.1f} ms <= {goal:.0f} ms: {verdict}")
        if not ok:
            missed.append(route)
    return missed


async def wait_ready(proc: ServerProcess, ready: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ready.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.poll()}):\n{proc.log()[-4000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"server not ready after {timeout:.0f} s:\n{proc.log()[-4000:]}")
        await asyncio.sleep(0.1)


async def settle_notifications(url: str, live_ids: list[int], timeout: float) -> str:
    """Until the go-live fan-outs of the live channels are written (the server notifies their
    followers as ingest's go-lives would, 1,000 at once here): the load is measured after
    that storm, not during it. Returns what happened, for the report."""
    engine = create_engine(url)
    started = time.monotonic()
    ids = ",".join(str(int(i)) for i in live_ids) or "0"
    try:
        async with engine.connect() as conn:
            expected = (
                await conn.execute(
                    text(
                        "SELECT count(*) FROM channel_follows f "
                        "JOIN channels c ON c.id = f.channel_id "
                        "JOIN users u ON u.id = f.user_id "
                        f"WHERE f.channel_id IN ({ids}) AND f.notify "
                        "AND f.user_id != c.owner_id AND NOT u.is_disabled"
                    )
                )
            ).scalar_one()
        last, grew = -1, time.monotonic()
        while time.monotonic() - started < timeout:
            async with engine.connect() as conn:
                n = (await conn.execute(text("SELECT count(*) FROM notifications"))).scalar_one()
            if n >= expected:
                return (
                    f"their followers' {n} go-live notifications written in "
                    f"{time.monotonic() - started:.1f} s"
                )
            if n != last:
                last, grew = n, time.monotonic()
            elif time.monotonic() - grew > 15.0:
                break  # no fan-out running (or it gave up): measure anyway, and say so
            await asyncio.sleep(0.5)
    finally:
        await engine.dispose()
    return f"only {last} of their followers' {expected} go-live notifications written"


async def load_phase(args: argparse.Namespace, workdir: Path, url: str, seed_: Seed) -> list[str]:
    seed_file = workdir / "seed.json"
    ready = workdir / "ready"
    seed_.save(seed_file)
    proc = ServerProcess(
        server_env(workdir, url, transcode=False),
        workdir / "server.log",
        command=(sys.executable, "-m", "benchmarks.lib.seeded_live", str(seed_file), str(ready)),
    )
    try:
        await wait_ready(proc, ready, 300)
        live = int(ready.read_text())
        notified = await settle_notifications(url, [ch.channel_id for ch in seed_.live], 900)
        print(
            f"live: {live} channels live in the server's registry with LIVE rows and seeded "
            f"viewer counts, no media; {notified}"
        )
        base = proc.base
        await drive(base, seed_, args.clients, min(3.0, args.seconds), 0.0)  # warm-up
        cpu0 = procstats.cpu_seconds(proc.pid)
        machine = procstats.Contention(os.getpid())  # its tree: the clients and the server
        prof = workdir / f"profile-{args.current_db}.raw"
        spy = start_profile(proc.pid, args.seconds, prof) if args.profile else None
        probe = LoopProbe(base) if args.probe else None
        if probe is not None:
            probe.start()
        samples, elapsed, total = await drive(base, seed_, args.clients, args.seconds, args.think)
        if probe is not None:
            probe.stop()
        cpu = (procstats.cpu_seconds(proc.pid) - cpu0) / elapsed
        contention = machine.stop()
        if spy is not None:
            await asyncio.to_thread(spy.wait, 60)
        logged = min(len(seed_.sessions), (args.clients + 1) // 2)
        print(
            f"load: {args.clients} clients ({(args.clients + 1) // 2} logged in as {logged} "
            f"users, {args.clients // 2} anonymous), think {args.think * 1000:.0f} ms, "
            f"{elapsed:.1f} s: {total} requests, {total / elapsed:.0f}/s; server CPU "
            f"{cpu * 100:.0f}% of one core, RSS {procstats.rss_mib(proc.pid):.0f} MiB"
        )
        print(f"machine during the load: {contention}")
        if probe is not None:
            print("GET /healthz every 20 ms during the load (the loop's wait, from outside):")
            for line in probe.report():
                print("  " + line)
        missed = report(samples, args.current_db)
        if any(code >= 500 for x in samples.values() for code in x.statuses):
            print("server errors (the first from its log):")
            for line in first_error(proc.log()):
                print("  " + line)
        if args.profile:
            print("where the server's time went (py-spy, samples holding the GIL, by handler):")
            for line in by_handler(prof):
                print("  " + line)
            print("  the functions with the most samples of their own:")
            for line in profile_summary(prof, 10)[1:11]:
                print("  " + line)
            if args.profile_out is not None and prof.exists():
                shutil.copyfile(prof, f"{args.profile_out}.{args.current_db}.raw")
        if args.alone > 0:
            prof = workdir / f"profile-alone-{args.current_db}.raw"
            spy = start_profile(proc.pid, args.alone, prof) if args.profile else None
            alone, _, _ = await drive(base, seed_, 1, args.alone, 0.0)
            print(f"one client alone for {args.alone:.0f} s (each route's own cost, no queue):")
            table(alone)
            if spy is not None:
                await asyncio.to_thread(spy.wait, 60)
                print("where one client's time went (py-spy, by handler):")
                for line in by_handler(prof):
                    print("  " + line)
                if args.profile_out is not None and prof.exists():
                    shutil.copyfile(prof, f"{args.profile_out}.alone.{args.current_db}.raw")
        return missed
    finally:
        proc.stop(30)


def first_error(log: str, lines: int = 8) -> list[str]:
    """The first logged traceback's last lines (where it failed, and why)."""
    text = log.splitlines()
    for i, line in enumerate(text):
        if line.startswith("Traceback"):
            end = i + 1
            while end < len(text) and (text[end].startswith((" ", "\t")) or not text[end]):
                end += 1
            return [text[i - 1][:300]] + [t[:300] for t in text[max(i, end - lines) : end + 1]]
    return ["(no traceback in the log)"]


def by_handler(raw: Path, top: int = 16) -> list[str]:
    """A py-spy raw profile summed by the chain of webapp/storage functions in each stack.
    SQLAlchemy runs a query's result processing in a greenlet, whose stack does not reach the
    handler: that time shows as outside."""
    if not raw.exists():
        return ["(no profile: is py-spy in the venv?)"]
    totals: dict[str, int] = defaultdict(int)
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        total += int(n)
        ours = [f.split(" (")[0] for f in stack.split(";") if "(webapp/" in f or "(storage/" in f]
        ours = [f for f in ours if not f.endswith("_middleware")]
        totals[" > ".join(ours[:4]) or "(outside webapp and storage)"] += int(n)
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])[:top]
    return [f"{total} samples"] + [f"{n / total * 100:5.1f}%  {k}" for k, n in ranked]


def postgres() -> PostgresServer:
    bin_dir = find_pg_bin()
    if bin_dir is None:
        raise RuntimeError(
            "no PostgreSQL server binaries (initdb, pg_ctl): apt-get install postgresql"
        )
    server = PostgresServer(bin_dir)
    server.start()
    return server


async def run_db(args: argparse.Namespace, db: str) -> list[str]:
    args.current_db = db
    size = QUICK if args.quick else FULL
    print(f"=== {db} ===", flush=True)
    pg = None
    with tempfile.TemporaryDirectory(prefix="discovery-bench-") as tmp:
        workdir = Path(tmp)
        if db == "postgresql":
            pg = postgres()
            url = pg.url
        else:
            url = f"sqlite+aiosqlite:///{workdir / 'data' / 'aethex.db'}"
            (workdir / "data").mkdir()
        try:
            t0 = time.monotonic()
            seeded = await prepare(url, size)
            c = seeded.counts
            print(
                f"seed: {c['channels']} channels ({len(seeded.live)} live), {c['users']} users, "
                f"{c['follows']} follows ({seeded.fanout_followers} on one channel), "
                f"{c['broadcasts']} past broadcasts, {c['watch_sessions']} watch sessions, "
                f"{c['categories']} categories in {time.monotonic() - t0:.1f} s",
                flush=True,
            )
            print("seed phases: " + ", ".join(f"{k} {v:.1f} s" for k, v in seeded.phases.items()))
            missed = await load_phase(args, workdir, url, seeded)
            if not args.no_fanout:
                await fanout_phase(workdir, url, seeded, server_env(workdir, url, transcode=True))
            return missed
        finally:
            if pg is not None:
                pg.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a small seed and a short load")
    ap.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=None, help="load time per database")
    ap.add_argument(
        "--think", type=float, default=0.5, help="mean think time between requests, seconds"
    )
    ap.add_argument("--no-fanout", action="store_true", help="skip the go-live fan-out phase")
    ap.add_argument(
        "--alone", type=float, default=None, help="seconds of one client alone after the load"
    )
    ap.add_argument("--profile", action="store_true", help="py-spy the server during the load")
    ap.add_argument(
        "--probe", action="store_true", help="time GET /healthz every 20 ms during the load"
    )
    ap.add_argument(
        "--profile-out", metavar="PREFIX", help="keep the raw profile as PREFIX.{db}.raw"
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="a server setting for this run (repeatable), e.g. analytics.sample_interval=60",
    )
    args = ap.parse_args()
    for item in args.set:
        key, sep, value = item.partition("=")
        section, dot, name = key.partition(".")
        if not (sep and dot and section and name):
            ap.error(f"--set {item!r}: expected SECTION.KEY=VALUE")
        EXTRA_ENV[f"AETHEX_{section.upper()}__{name.upper()}"] = value
    if args.seconds is None:
        args.seconds = 5.0 if args.quick else 30.0
    if args.alone is None:
        args.alone = 2.0 if args.quick else 10.0
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    print(f"machine: {os.cpu_count()} CPUs; load average {procstats.loadavg()}")
    dbs = ("sqlite", "postgresql") if args.db == "both" else (args.db,)
    missed: dict[str, list[str]] = {}
    for db in dbs:
        # uvloop, as the server: the clients' CPU comes out of the 2 cores the server runs on,
        # so the less the load generator needs, the less it takes from what is measured.
        missed[db] = uvloop.run(run_db(args, db))
    for db, routes in missed.items():
        print(f"summary {db}: {'all goals met' if not routes else 'missed ' + ', '.join(routes)}")


if __name__ == "__main__":
    main()
