"""LL-HLS delivery under load: 1000 simulated viewers on one live stream, and plain segment
GETs from us against nginx serving the same files, measured in the same run.

Part 1. A real publisher (``benchmarks/lib/publisher.py``, 720p30, own process) pushes into our
server
(``python -m mediaserver serve``, transcoding on, 2 s segments, 0.333 s parts). N viewers,
spread over several client processes (uvloop; a minimal keep-alive HTTP/1.1 client by default,
aiohttp with ``--client aiohttp``), each do on one rung what hls.js does: a blocking playlist
reload for the
next part (``_HLS_msn``/``_HLS_part``, with ``_HLS_skip=YES`` as hls.js asks for delta updates
when the server offers them), then a GET of the part(s) it announces, repeat.

Availability of a part: the server has no timestamp header, and PROGRAM-DATE-TIME is media
time, not the moment a part was published. So a part's availability is the earliest moment
any viewer (in any client process; same machine, same clock) received a blocking playlist
response that lists it, and each viewer's delay is (it has the part's bytes - that moment).
The first viewer is itself a little late, so this under-states the delay by the server's
first response time; the spread across 1000 viewers, which is what the load adds, is exact.
Also printed: server CPU (from /proc, over the window) and RSS, client CPU per process (if
the clients use most of a core, the client is the bottleneck and says so), parts each
viewer got against the parts published, and errors.

Part 2. A few finished segment files of the stream are written to a directory that nginx
(1 worker process, ``sendfile on``) serves; wrk (200 connections, 10 s, cycling over the
files) fetches them from nginx and the same bytes from us, first live from the in-memory edge
(``/hls/{slug}/{token}/{rendition}/seg{N}.m4s``) while the stream runs, then from disk through
``/vod/{stream_id}/…`` once it is archived, each against an nginx run under the same
conditions. Prints requests/s, MB/s and the ratio ours/nginx.

    .venv/bin/python benchmarks/hls_delivery.py [--viewers 250,1000 | --viewers 1000]
        [--seconds 20] [--runs 3] [--rendition 480p] [--procs 2] [--client aiohttp|raw]
        [--static-seconds 10] [--connections 200] [--profile DIR]

The raw client (the default) costs about a third of aiohttp's CPU per request, which leaves
more of the 2 cores to the server under test; ``--client aiohttp`` measures with aiohttp.
``--profile DIR`` runs py-spy on the server in each measured phase and prints where it spends
its time (py-spy costs the server some CPU: do not quote figures from such a run).

Goals: p99 <= 100 ms for part delivery, static throughput ratio >= 0.5. wrk is the load
generator (Debian package ``wrk``); without it a Python client is used and the ratio is then
bounded by the client.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

# Run as a script: the repository root on sys.path, for benchmarks.lib and the server's code.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.lib import ROOT, c_viewers, procstats, pyspy
from benchmarks.lib.live_server import LiveServer
from benchmarks.lib.nginx import StaticNginx
from benchmarks.lib.playlist import (
    MediaPlaylist,
    master_variants,
    parse_media_playlist,
    with_query,
)
from benchmarks.lib.publisher import start_publisher
from benchmarks.lib.server import stop_process
from benchmarks.lib.stats import median, percentile

SLUG = "bench-0"


# -- the viewers (in worker processes) -------------------------------------------------------


class RawConnection(asyncio.Protocol):
    """A minimal HTTP/1.1 keep-alive client connection: Content-Length bodies (all our HLS
    routes send one) and chunked ones (Varnish streams a miss it is still fetching that way):
    a fraction of aiohttp's client CPU per request, so that on a 2-core machine more of the
    CPU goes to the server under test (``--client raw``)."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future | None = None
        self.head_len = 0
        self.status = 0
        self.length = -1
        self.chunked = False
        self.body = bytearray()

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.waiter is None or self.waiter.done():
            return
        if not self.head_len:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).lower()
            self.head_len = end + 4
            self.status = int(head[9:12])
            self.length = 0
            self.chunked = b"\r\ntransfer-encoding: chunked" in head
            i = head.find(b"\r\ncontent-length:")
            if i >= 0:
                j = head.find(b"\r\n", i + 2)
                self.length = int(head[i + 17 : j if j > 0 else None])
            if self.chunked:
                del self.buf[: self.head_len]
                self.body = bytearray()
        if self.chunked:
            self._chunks()
            return
        end = self.head_len + self.length
        if len(self.buf) >= end:
            body = bytes(self.buf[self.head_len : end])
            del self.buf[:end]
            self.head_len = 0
            self.waiter.set_result((self.status, body))

    def _chunks(self) -> None:
        """Take every whole chunk in the buffer; the zero-size one (no trailers) ends it."""
        assert self.waiter is not None
        while True:
            eol = self.buf.find(b"\r\n")
            if eol < 0:
                return
            size = int(bytes(self.buf[:eol]).split(b";", 1)[0], 16)
            if size == 0:
                if len(self.buf) < eol + 4:
                    return
                del self.buf[: eol + 4]
                self.head_len = 0
                self.chunked = False
                self.waiter.set_result((self.status, bytes(self.body)))
                return
            if len(self.buf) < eol + 2 + size + 2:
                return
            self.body += self.buf[eol + 2 : eol + 2 + size]
            del self.buf[: eol + 2 + size + 2]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed"))

    async def get(self, path: str, host: bytes) -> tuple[int, bytes]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(
            b"GET "
            + path.encode()
            + b" HTTP/1.1\r\nHost: "
            + host
            + b"\r\nUser-Agent: aethex-bench\r\n\r\n"
        )
        if self.buf:
            self.data_received(b"")  # an answer that came in with the previous one
        return await self.waiter


def raw_getter(origin: str):
    """A get(url) -> (status, body) on one keep-alive connection, reconnecting as needed."""
    hostport = origin.split("//", 1)[1]
    host, port = hostport.split(":")
    conn: list[RawConnection] = []

    async def get(url: str) -> tuple[int, bytes]:
        if not conn or conn[0].transport is None:
            loop = asyncio.get_running_loop()
            _, proto = await loop.create_connection(RawConnection, host, int(port))
            conn[:] = [proto]
        return await conn[0].get(url[len(origin) :], hostport.encode())

    return get


def aiohttp_getter(session):
    async def get(url: str) -> tuple[int, bytes]:
        async with session.get(url) as r:
            return r.status, await r.read()

    return get


@functools.lru_cache(maxsize=256)
def parse_playlist(body: bytes) -> MediaPlaylist:
    """Every viewer on a rung gets the same playlist bytes after each part: parse them once per
    client process. Each real player parses on its own machine; here the parse would be CPU
    taken from the server under test on the same two cores (do not mutate the result)."""
    return parse_media_playlist(body.decode())


async def viewer(
    get, url: str, base: str, stop_at: float, rec: list, errors: dict, start_delay: float
) -> None:
    """hls.js on one rung: blocking reload for the next part, then the part(s), repeat."""
    await asyncio.sleep(start_delay)
    loop = asyncio.get_running_loop()
    pl = None
    while pl is None or pl.hint is None:
        if loop.time() > stop_at:
            return
        try:
            status, body = await get(url)
        except (TimeoutError, OSError, ConnectionError) as exc:
            errors[type(exc).__name__] += 1
            status = 0
        except Exception as exc:
            errors[type(exc).__name__] += 1
            status = 0
        if status == 200:
            pl = parse_playlist(body)
        else:
            await asyncio.sleep(0.5)
    msn, part, _ = pl.hint
    last = (msn, part - 1)
    while loop.time() < stop_at:
        try:
            status, body = await get(with_query(url, _HLS_msn=msn, _HLS_part=part, _HLS_skip="YES"))
            t_pl = time.time()
            if status != 200:
                errors[f"playlist {status}"] += 1
                await asyncio.sleep(0.2)
                status, body = await get(url)  # start again from the live edge
                if status != 200:
                    continue
                pl = parse_playlist(body)
                if pl.hint is None:
                    return
                msn, part, _ = pl.hint
                last = (msn, part - 1)
                continue
            pl = parse_playlist(body)
            for m, p, uri, _, _ in pl.parts:
                if (m, p) <= last:
                    continue
                status, data = await get(base + uri)
                t_part = time.time()
                if status != 200:
                    errors[f"part {status}"] += 1
                else:
                    rec.append((m, p, t_pl, t_part, len(data)))
                last = (m, p)
            if pl.hint is None:
                return
            msn, part, _ = pl.hint
        except Exception as exc:
            errors[type(exc).__name__] += 1
            await asyncio.sleep(0.2)


async def worker_main(args: argparse.Namespace) -> None:
    import aiohttp

    loop = asyncio.get_running_loop()
    stop_at = loop.time() + args.duration
    errors: dict[str, int] = defaultdict(int)
    recs: list[list] = [[] for _ in range(args.count)]
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    origin = args.base.split("/hls/", 1)[0]
    session = None
    if args.client == "aiohttp":
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            timeout=aiohttp.ClientTimeout(total=30),
            auto_decompress=False,
        )
    try:
        tasks = []
        for i in range(args.count):
            vid = args.first + i
            url = with_query(args.url, session=f"bench-viewer-{vid:08d}")
            get = aiohttp_getter(session) if session is not None else raw_getter(origin)
            tasks.append(
                asyncio.ensure_future(
                    viewer(
                        get,
                        url,
                        args.base,
                        stop_at,
                        recs[i],
                        errors,
                        args.ramp * i / max(1, args.count),
                    )
                )
            )
        await asyncio.gather(*tasks)
    finally:
        if session is not None:
            await session.close()
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    Path(args.out).write_text(
        json.dumps({"records": recs, "errors": errors, "cpu": cpu, "duration": args.duration})
    )


# -- the load (parent) ---------------------------------------------------------------------


async def discover(base: str, rendition: str, slug: str = SLUG) -> tuple[str, str]:
    """(media playlist URL without a session, directory URL) of the rendition."""
    import aiohttp

    async with aiohttp.ClientSession() as s:
        deadline = time.monotonic() + 60
        while True:
            async with s.get(f"{base}/hls/{slug}/master.m3u8") as r:
                text = await r.text()
                if r.status == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"no master playlist: HTTP {r.status}")
            await asyncio.sleep(0.5)
    for _height, _, uri in master_variants(text):
        path = uri.split("?", 1)[0]
        if path.rsplit("/", 2)[-2] == rendition:
            url = f"{base}/hls/{slug}/{path}"
            return url, url.rsplit("/", 1)[0] + "/"
    raise RuntimeError(f"no rendition {rendition} in {text!r}")


def run_viewers(
    server: LiveServer,
    rendition: str,
    viewers: int,
    procs: int,
    seconds: float,
    warmup: float,
    ramp: float,
    work: Path,
    client: str,
    profile: Path | None = None,
) -> dict:
    url, base = asyncio.run(discover(server.base, rendition))
    duration = ramp + warmup + seconds
    per = [viewers // procs + (1 if i < viewers % procs else 0) for i in range(procs)]
    workers = []
    first = 0
    exe = c_viewers.build(work) if client == "c" else None
    for i, count in enumerate(per):
        out = work / f"viewers-{i}.json"
        cmd = (
            c_viewers.command(exe, url, base, first, count, duration, ramp, out)
            if exe is not None
            else [
                sys.executable,
                str(Path(__file__).resolve()),
                "--worker",
                "--url",
                url,
                "--base",
                base,
                "--first",
                str(first),
                "--count",
                str(count),
                "--duration",
                str(duration),
                "--ramp",
                str(ramp),
                "--out",
                str(out),
                "--client",
                client,
            ]
        )
        p = subprocess.Popen(cmd, cwd=ROOT)
        workers.append((p, out))
        first += count
    try:
        return _watch_viewers(
            server, workers, viewers, procs, seconds, warmup, ramp, duration, profile
        )
    finally:
        for p, _ in workers:
            if p.poll() is None:
                p.kill()
                p.wait()


def _watch_viewers(
    server: LiveServer,
    workers: list,
    viewers: int,
    procs: int,
    seconds: float,
    warmup: float,
    ramp: float,
    duration: float,
    profile: Path | None,
) -> dict:
    t_start = time.time()
    time.sleep(ramp + warmup)
    pid = server.proc.pid
    cpu0, w0 = procstats.cpu_seconds(pid), time.monotonic()
    wcpu0 = [procstats.cpu_seconds(p.pid) for p, _ in workers]
    window_start = time.time()
    contention = procstats.Contention(os.getpid())
    spy = (
        pyspy.start_profile(pid, seconds - 1, profile / f"viewers-{viewers}.txt")
        if profile
        else None
    )
    time.sleep(seconds)
    busy = contention.stop()
    if spy is not None:
        spy.wait()
    cpu1, w1 = procstats.cpu_seconds(pid), time.monotonic()
    wcpu1 = [procstats.cpu_seconds(p.pid) for p, _ in workers]
    window_end = time.time()
    rss = procstats.rss_mib(pid)
    for p, _ in workers:
        p.wait(timeout=duration + 60)
    data = [json.loads(out.read_text()) for _, out in workers]
    # Availability: the first blocking playlist response listing the part, across all viewers.
    avail: dict[tuple[int, int], float] = {}
    first_bytes: dict[tuple[int, int], float] = {}
    for d in data:
        for recs in d["records"]:
            for m, p, t_pl, t_part, _ in recs:
                key = (m, p)
                if t_pl < avail.get(key, float("inf")):
                    avail[key] = t_pl
                if t_part < first_bytes.get(key, float("inf")):
                    first_bytes[key] = t_part
    in_window = {k for k, t in avail.items() if window_start <= t <= window_end - 1.0}
    delays: list[float] = []
    spread: list[float] = []
    # The delay in two: until the viewer had the playlist naming the part, then the part GET.
    announce: list[float] = []
    fetch: list[float] = []
    nbytes = 0
    got_per_viewer: list[int] = []
    for d in data:
        for recs in d["records"]:
            got = 0
            for m, p, t_pl, t_part, size in recs:
                key = (m, p)
                if key in in_window:
                    delays.append(t_part - avail[key])
                    spread.append(t_part - first_bytes[key])
                    announce.append(t_pl - avail[key])
                    fetch.append(t_part - t_pl)
                    nbytes += size
                    got += 1
            got_per_viewer.append(got)
    errors: dict[str, int] = defaultdict(int)
    for d in data:
        for k, v in d["errors"].items():
            errors[k] += v
    wall = w1 - w0
    return {
        "viewers": viewers,
        "procs": procs,
        "parts_published": len(in_window),
        "delays": delays,
        "spread": spread,
        "p50": percentile(delays, 50),
        "p95": percentile(delays, 95),
        "p99": percentile(delays, 99),
        "max": max(delays) if delays else float("nan"),
        "spread_p99": percentile(spread, 99),
        "announce": (percentile(announce, 50), percentile(announce, 99)),
        "fetch": (percentile(fetch, 50), percentile(fetch, 99)),
        "server_cpu": (cpu1 - cpu0) / wall,
        "server_rss": rss,
        "client_cpu": [(b - a) / wall for a, b in zip(wcpu0, wcpu1, strict=False)],
        "mbps": nbytes * 8 / 1e6 / (window_end - window_start - 1.0),
        "got_min": min(got_per_viewer) if got_per_viewer else 0,
        "got_median": median(got_per_viewer),
        "errors": dict(errors),
        "t_start": t_start,
        "busy": busy,
    }


# -- static files: nginx vs us -----------------------------------------------------------------

WRK_SCRIPT = """
paths = {%s}
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", paths[(counter %% #paths) + 1])
end
"""

_WRK_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}


def wrk(
    host: str,
    paths: list[str],
    connections: int,
    seconds: float,
    work: Path,
    server_pid: int,
    profile: Path | None = None,
) -> dict:
    """Requests/s and MB/s of a wrk run; server CPU over it from /proc."""
    spy = pyspy.start_profile(server_pid, seconds - 1, profile) if profile else None
    script = work / f"wrk-{abs(hash(tuple(paths)))}.lua"
    script.write_text(WRK_SCRIPT % ", ".join(json.dumps(p) for p in paths))
    cpu0 = procstats.tree_cpu_seconds(server_pid)
    contention = procstats.Contention(os.getpid())
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{int(seconds)}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            host + paths[0],
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=False,
    ).stdout
    cpu = procstats.tree_cpu_seconds(server_pid) - cpu0
    busy = contention.stop()
    if spy is not None:
        spy.wait()
    m = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    if m is None:
        raise RuntimeError(f"wrk said: {out[-500:]}")
    total = int(m.group(1))
    wall = float(m.group(2)) * (1.0 if m.group(3) == "s" else 1e-3)
    m = re.search(r"([\d.]+)(\w+) read", out)
    nbytes = float(m.group(1)) * _WRK_UNITS.get(m.group(2), 1)
    non2xx_m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    non2xx = int(non2xx_m.group(1)) if non2xx_m else 0
    errs = re.search(r"Socket errors: (.*)", out)
    # Only whole 200 answers count: an error answer is cheap and would flatter the rate.
    ok = total - non2xx
    rps = ok / wall
    mbps = nbytes / 1e6 / wall if not non2xx else nbytes / 1e6 / wall * ok / total
    return {
        "rps": rps,
        "MBps": mbps,
        "non2xx": non2xx,
        "socket_errors": errs.group(1) if errs else "",
        "server_cpu": cpu / seconds,
        "tool": "wrk",
        "busy": busy,
    }


async def _py_load(
    host: str, paths: list[str], connections: int, seconds: float
) -> tuple[int, int, int]:
    import aiohttp

    loop = asyncio.get_running_loop()
    stop_at = loop.time() + seconds
    done = nbytes = bad = 0

    async def one(i: int, session) -> None:
        nonlocal done, nbytes, bad
        k = i
        while loop.time() < stop_at:
            async with session.get(host + paths[k % len(paths)]) as r:
                body = await r.read()
                if r.status == 200:
                    done += 1
                    nbytes += len(body)
                else:
                    bad += 1
            k += 1

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        await asyncio.gather(*(one(i, s) for i in range(connections)))
    return done, nbytes, bad


def py_load(
    host: str,
    paths: list[str],
    connections: int,
    seconds: float,
    work: Path,
    server_pid: int,
    profile: Path | None = None,
) -> dict:
    cpu0 = procstats.tree_cpu_seconds(server_pid)
    done, nbytes, bad = asyncio.run(_py_load(host, paths, connections, seconds))
    cpu = procstats.tree_cpu_seconds(server_pid) - cpu0
    return {
        "rps": done / seconds,
        "MBps": nbytes / 1e6 / seconds,
        "non2xx": bad,
        "socket_errors": "",
        "server_cpu": cpu / seconds,
        "tool": "aiohttp (one process)",
    }


def load(*args) -> dict:
    return (wrk if shutil.which("wrk") else py_load)(*args)


async def _get(url: str) -> tuple[int, bytes]:
    import aiohttp

    async with aiohttp.ClientSession() as s, s.get(url) as r:
        return r.status, await r.read()


def newest_segments(
    server: LiveServer, rendition: str, count: int
) -> tuple[str, list[tuple[int, str]]]:
    """(directory URL, [(msn, uri)]) of the newest complete segments in the live window."""
    url, base = asyncio.run(discover(server.base, rendition))
    _, body = asyncio.run(_get(url))
    pl = parse_playlist(body)
    return base, [(m, u) for m, u, _ in pl.segments[-count:]]


def static_phase(
    server: LiveServer,
    pub: subprocess.Popen,
    rendition: str,
    connections: int,
    seconds: float,
    work: Path,
    profile: Path | None = None,
) -> dict:
    files = work / "static"
    files.mkdir()
    # nginx's workers run as an unprivileged user: let them read the files.
    for d in (work, files):
        d.chmod(0o755)
    base, segs = newest_segments(server, rendition, 2)
    names = []
    for _msn, uri in segs:
        status, data = asyncio.run(_get(base + uri))
        if status != 200:
            raise RuntimeError(f"{uri}: HTTP {status}")
        (files / uri).write_bytes(data)
        (files / uri).chmod(0o644)
        names.append(uri)
    sizes = [(files / n).stat().st_size for n in names]
    nginx = StaticNginx(work, files)
    nginx_pid = nginx.start()
    out: dict = {"segments": names, "sizes": sizes}
    try:
        live_prefix = base.split(f"http://127.0.0.1:{server.http_port}", 1)[1]
        ours_host = f"http://127.0.0.1:{server.http_port}"
        nginx_host = f"http://127.0.0.1:{nginx.port}"
        # Live: both while the stream (and its transcoder) runs.
        out["ours_live"] = load(
            ours_host,
            [live_prefix + n for n in names],
            connections,
            seconds,
            work,
            server.proc.pid,
            profile / "ours_live.txt" if profile else None,
        )
        out["nginx_live"] = load(
            nginx_host, [f"/static/{n}" for n in names], connections, seconds, work, nginx_pid
        )
        # VOD: stop the publisher, wait for the recording, then both again.
        st, body = asyncio.run(_get(f"{ours_host}/api/channels/{SLUG}/live"))
        stream_id = json.loads(body).get("stream_id") if st == 200 else None
        stop_process(pub)
        deadline = time.monotonic() + 60
        vod_ok = False
        while stream_id is not None and time.monotonic() < deadline:
            st, _ = asyncio.run(_get(f"{ours_host}/vod/{stream_id}/master.m3u8"))
            if st == 200:
                vod_ok = True
                break
            time.sleep(0.5)
        if vod_ok:
            vod_paths = [f"/vod/{stream_id}/{rendition}/{n}" for n in names]
            for p, n in zip(vod_paths, names, strict=False):
                st, data = asyncio.run(_get(ours_host + p))
                if st != 200 or data != (files / n).read_bytes():
                    out["vod_note"] = (
                        f"{p}: HTTP {st}, same bytes: {data == (files / n).read_bytes()}"
                    )
            out["ours_vod"] = load(
                ours_host,
                vod_paths,
                connections,
                seconds,
                work,
                server.proc.pid,
                profile / "ours_vod.txt" if profile else None,
            )
            out["nginx_idle"] = load(
                nginx_host, [f"/static/{n}" for n in names], connections, seconds, work, nginx_pid
            )
        else:
            out["vod_note"] = "the VOD did not appear within 60 s (stream id unknown?)"
    finally:
        nginx.stop()
    return out


def run_once(args: argparse.Namespace) -> tuple[list[dict], dict]:
    with tempfile.TemporaryDirectory(prefix="aethex-delivery-") as tmp:
        work = Path(tmp)
        # Ten segments in the live window (default 6): the segments part 2 fetches from the
        # live edge stay there for its whole run. Viewers ask for delta updates
        # (_HLS_skip=YES, skip boundary 12 s), so their playlists are no longer for it.
        server = LiveServer(
            work,
            passthrough=args.passthrough,
            preset=args.preset,
            extra_env={"AETHEX_HLS__LIVE_SEGMENTS": "10"},
        )
        server.prepare()
        server.start()
        pub = start_publisher(server.rtmp_url(), 3600, work / "publisher.jsonl")
        try:
            viewers = [
                run_viewers(
                    server,
                    args.rendition,
                    n,
                    args.procs,
                    args.seconds,
                    args.warmup,
                    args.ramp,
                    work,
                    args.client,
                    args.profile,
                )
                for n in args.viewers
            ]
            static = (
                static_phase(
                    server,
                    pub,
                    args.rendition,
                    args.connections,
                    args.static_seconds,
                    work,
                    args.profile,
                )
                if args.static_seconds > 0
                else {}
            )
        finally:
            stop_process(pub)
            server.stop()
        return viewers, static


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--viewers",
        type=lambda v: [int(x) for x in v.split(",")],
        default=[250, 1000],
        help="viewer count, or a comma-separated sweep (e.g. 250,500,1000)",
    )
    ap.add_argument("--procs", type=int, default=2, help="client processes for the viewers")
    ap.add_argument("--seconds", type=float, default=20.0, help="measured seconds of viewing")
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--ramp", type=float, default=3.0, help="seconds over which viewers join")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rendition", default="480p")
    ap.add_argument("--passthrough", default="auto", choices=("auto", "never"))
    ap.add_argument("--preset", default="veryfast")
    ap.add_argument(
        "--client",
        choices=("aiohttp", "raw", "c"),
        default="raw",
        help="viewer HTTP client: aiohttp sessions, a minimal keep-alive client that leaves "
        "more CPU to the server, or the viewers in C (benchmarks/lib/llhls_viewers.c), which "
        "leave the most",
    )
    ap.add_argument("--connections", type=int, default=200)
    ap.add_argument(
        "--profile",
        type=Path,
        help="directory: py-spy the server during each "
        "measured phase (costs it some CPU) and print where its time goes",
    )
    ap.add_argument("--static-seconds", type=float, default=10.0, help="0: skip part 2")
    # internal: a viewer worker process
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--base", help=argparse.SUPPRESS)
    ap.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--duration", type=float, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    if args.worker:
        import uvloop

        uvloop.run(worker_main(args))
        return

    tool = "wrk" if shutil.which("wrk") else "aiohttp (Python; install wrk for a fair reference)"
    print(
        f"# LL-HLS delivery: {args.viewers} viewers on {args.rendition} over {args.procs} "
        f"{args.client} client processes, {args.seconds:.0f} s measured after {args.ramp:.0f}+"
        f"{args.warmup:.0f} s; server: passthrough={args.passthrough}, preset={args.preset}, "
        f"part 0.333 s; static: {args.connections} connections x {args.static_seconds:.0f} s "
        f"with {tool}; runs={args.runs}; load average {procstats.loadavg()}"
    )
    vs: dict[int, list[dict]] = defaultdict(list)
    ss = []
    for run in range(args.runs):
        vl, s = run_once(args)
        ss.append(s)
        for v in vl:
            vs[v["viewers"]].append(v)
            print_viewers(run, v)
        print_static(s)
    summary(args, vs, ss)
    if args.profile:
        for f in sorted(args.profile.glob("*.txt")):
            print(f"\n## py-spy of the server, {f.stem} (last run)")
            for line in pyspy.profile_summary(f):
                print(f"#   {line}")


def print_viewers(run: int, v: dict) -> None:
    print(f"\n## run {run + 1}, {v['viewers']} viewers")
    print(
        f"#   parts published in the window: {v['parts_published']}; parts per viewer "
        f"median {v['got_median']:.0f}, min {v['got_min']}; delivered "
        f"{v['mbps']:.0f} Mbit/s"
    )
    print(
        f"#   delay p50 {v['p50'] * 1000:.0f} ms, p95 {v['p95'] * 1000:.0f} ms, p99 "
        f"{v['p99'] * 1000:.0f} ms, max {v['max'] * 1000:.0f} ms; spread after the "
        f"first viewer's bytes p99 {v['spread_p99'] * 1000:.0f} ms"
    )
    print(
        f"#   of which: playlist naming the part p50/p99 {v['announce'][0] * 1000:.0f}/"
        f"{v['announce'][1] * 1000:.0f} ms, then the part GET p50/p99 "
        f"{v['fetch'][0] * 1000:.0f}/{v['fetch'][1] * 1000:.0f} ms"
    )
    print(
        f"#   server CPU {v['server_cpu'] * 100:.0f}% of a core, RSS "
        f"{v['server_rss']:.0f} MiB; client CPU per process "
        f"{', '.join(f'{c * 100:.0f}%' for c in v['client_cpu'])}"
    )
    print(f"#   {v['busy']} (ours: server, publisher, clients)")
    if v["errors"]:
        print(f"#   viewer errors: {v['errors']}")


def print_static(s: dict) -> None:
    if not s:
        return
    print(f"#   static: segments {s['segments']} ({s['sizes']} bytes)")
    for k in ("ours_live", "nginx_live", "ours_vod", "nginx_idle"):
        if k in s:
            r = s[k]
            print(
                f"#   {k:<11} {r['rps']:9.0f} req/s {r['MBps']:8.1f} MB/s  "
                f"server CPU {r['server_cpu'] * 100:.0f}%  non-2xx {r['non2xx']} "
                f"{r['socket_errors']}"
            )
            if r.get("busy"):
                print(f"#   {'':<11} {r['busy']}")
    if "vod_note" in s:
        print(f"#   {s['vod_note']}")


def summary(args: argparse.Namespace, vss: dict[int, list[dict]], ss: list[dict]) -> None:
    med = median
    print(f"\n{'what':<44}{'ours':>12}{'reference':>14}{'ratio':>8}  goal")
    for n, vs in vss.items():
        p99 = med([v["p99"] for v in vs])
        client_max = max(max(v["client_cpu"]) for v in vs)
        print(
            f"{f'part delay p99, {n} viewers':<44}{p99 * 1000:>9.0f} ms"
            f"{'':>14}{'':>8}  <= 100 ms: {'met' if p99 <= 0.1 else 'MISSED'}"
        )
        print(
            f"{'  p50 / p95':<44}{med([v['p50'] for v in vs]) * 1000:>6.0f} / "
            f"{med([v['p95'] for v in vs]) * 1000:.0f} ms"
        )
        print(
            f"{'  server CPU / RSS':<44}{med([v['server_cpu'] for v in vs]) * 100:>10.0f} % "
            f"{med([v['server_rss'] for v in vs]):>10.0f} MiB"
        )
        print(
            f"{'  busiest client process CPU':<44}{client_max * 100:>10.0f} %"
            + ("   (client near a full core: it limits the load)" if client_max > 0.85 else "")
        )
    if any(ss):
        for ours_k, ref_k, label in (
            ("ours_live", "nginx_live", "segments, live edge (/hls)"),
            ("ours_vod", "nginx_idle", "segments, VOD files (/vod)"),
        ):
            have = [s for s in ss if ours_k in s and ref_k in s]
            if not have:
                continue
            for unit in ("rps", "MBps"):
                o = med([s[ours_k][unit] for s in have])
                n = med([s[ref_k][unit] for s in have])
                name = f"{label} {'req/s' if unit == 'rps' else 'MB/s'}"
                print(
                    f"{name:<44}{o:>12.0f}{n:>14.0f}{o / n:>8.2f}  >= 0.5: "
                    f"{'met' if o / n >= 0.5 else 'MISSED'}"
                )
    print(f"# load average at end: {procstats.loadavg()}")


if __name__ == "__main__":
    main()
