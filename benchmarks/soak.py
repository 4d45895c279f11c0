"""Soak: one server under a steady mixed load for 30 minutes; does anything grow, get lost or log
an error?

    .venv/bin/python benchmarks/soak.py                      # the full run: 30 minutes
    .venv/bin/python benchmarks/soak.py --minutes 3 --reconnect-every 1   # a check

The server is ``aethex serve`` (the console script) in a subprocess on free loopback ports with a
temporary data directory, its log captured; the user, the channels, their ladders and the chat
users' API tokens are made with the ``aethex`` CLI, as an operator would. Transcoding is on:
each channel's ladder (``aethex channel ladder --set``) is the source's height, copied, plus one
rung at 3/4 of it encoded with ``--preset`` (veryfast), so the run covers passthrough and x264.
Every client is on 127.0.0.1, so ``http.max_connections_per_address`` is off (0), as behind a
reverse proxy (``LiveServer``'s settings); ``--set`` passes any other setting.

The load, all at once for ``--minutes``:

* two ffmpeg CLI publishers (``-re``, lavfi ``testsrc2`` + a sine tone: an endless test source,
  x264 ultrafast with a keyframe every 2 s, AAC), 854x480 at 30 fps by default (``--source``):
  small, so that on a 2-core machine the server, the publishers and the clients all keep up.
  ``bench-0`` publishes steadily; ``bench-1`` reconnects every ``--reconnect-every`` minutes
  (ffmpeg killed with SIGKILL, as a crash or a dropped link does, and started again at once);
* ``--viewers`` (200) LL-HLS viewers on the encoded rung, ``--reconnect-viewers`` (20) of them
  on ``bench-1``: each does what hls.js does (``hls_delivery.viewer``: a blocking playlist
  reload for the next part with ``_HLS_msn``/``_HLS_part``, then the parts it announces), in
  ``--viewer-procs`` client processes on aiohttp (``--client raw`` for a cheaper client);
* ``--chat-users`` (100) WebSockets on ``/ws/chat/bench-0`` (``chat_fanout``'s worker
  processes): ``--chat-senders`` (10) of them logged in with bearer tokens, each sending one
  message every ``--chat-interval`` seconds (under ``chat.rate_limit_messages`` per
  ``chat.rate_limit_window``), every one of them reading.

Measured and checked (a PASS/FAIL line per goal at the end):

* growth: the server's RSS, open file descriptors and threads from /proc every
  ``--sample-every`` seconds; the least-squares slope per hour over the samples after the
  warm-up (``--warmup-minutes``; default the first 20 % of the run, or until 30 s after the
  first reconnect if that is later: lazily made resources appear then), with first, last, max.
  Goal: no growth, i.e. the slope is not shown to exceed ``--max-rss-slope`` MB/h (RSS) or
  ``--max-fd-slope`` per hour (FDs, threads): FAIL when even slope - 2 standard errors is above
  it. A short run cannot resolve a small slope: read the slope with its ± (two standard errors).
* nothing lost, defined as:
  - HLS: every part a viewer gets is the one after its previous part (part + 1 of the same
    segment, or part 0 of the next segment once the previous part was that segment's last, as
    the playlists list complete segments' parts). Anything else is a gap: *lost* if the
    playlist the viewer read no longer offers the skipped media, *behind* if it still lists
    the skipped segments whole (the viewer fell more than the three target durations of parts
    behind the live edge, which a busy client machine does; a player would fetch the segments).
    Frames the server drops when a consumer falls behind do not renumber parts: they are
    counted on their own (``aethex_live_dropped_packets_total``,
    ``aethex_transcode_dropped_frames_total``) and must be 0 as well. Failed requests count too.
  - chat: each user's socket (readers and senders) receives every message the senders got
    accepted (sent minus refusals); messages lost are counted per user.
  - reconnects: after each SIGKILL of bench-1's publisher and its restart, the channel is live
    again (``/api/channels/bench-1`` names a new stream) and its playlist announces new parts,
    within 30 s; the time it took is printed. Every stream that ended is archived with a VOD.
* no error in the log: the server's log (stdout + stderr, level ``--log-level``) is scanned for
  ERROR, CRITICAL and Traceback lines; they are printed.

The exit status is non-zero only when the harness itself fails (setup, a client process dies);
a bad measurement is reported, not raised.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

# Run as a script: the repository root on sys.path, for benchmarks.lib and the server's code.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import chat_fanout, hls_delivery
from benchmarks.lib import ROOT, procstats
from benchmarks.lib.live_server import LiveServer
from benchmarks.lib.playlist import MediaPlaylist, parse_media_playlist, with_query
from benchmarks.lib.server import stop_process
from benchmarks.lib.stats import median

STEADY, RECONNECTING = "bench-0", "bench-1"
LIVE_AGAIN_TIMEOUT = 30.0  # seconds a reconnect may take to be live with new parts
MB = 1e6


# -- HLS viewers (worker processes) ------------------------------------------------------------


class SegmentParts:
    """Parts per complete segment of one rendition, from the playlists its viewers receive, so a
    viewer moving to the next segment can be checked to have had the previous one's last part.
    Viewers of a rendition get the same playlist bytes, hence (hls_delivery's parse cache) the
    same parsed object: a playlist already noted is skipped by identity."""

    KEEP = 256  # segments remembered (8 minutes of 2 s segments)

    def __init__(self) -> None:
        self.count: dict[int, int] = {}
        self._last: object = None

    def note(self, pl: MediaPlaylist) -> None:
        if pl is self._last:
            return
        self._last = pl
        complete = {msn for msn, _, _ in pl.segments}
        for msn, part, _, _, _ in pl.parts:
            if msn in complete and part + 1 > self.count.get(msn, 0):
                self.count[msn] = part + 1
        if len(self.count) > 2 * self.KEEP:
            for msn in sorted(self.count)[: -self.KEEP]:
                del self.count[msn]


def noting_getter(get, parts: SegmentParts, log: PartLog):
    """``get`` that also feeds every media playlist it receives to ``parts`` and to the
    viewer's ``log`` (the playlist it is reading)."""

    async def wrapped(url: str) -> tuple[int, bytes]:
        status, body = await get(url)
        if status == 200 and url.split("?", 1)[0].endswith(".m3u8"):
            log.playlist = hls_delivery.parse_playlist(body)
            parts.note(log.playlist)
        return status, body

    return wrapped


class PartLog:
    """Where ``hls_delivery.viewer`` records the parts it got (it calls ``append((msn, part,
    t_playlist, t_part, size))``): checked on arrival instead of kept, since a 30-minute run
    would hold millions of records.

    A skipped part is *behind* when the playlist the viewer just read still lists the segments
    it skipped as complete segments: the viewer fell more than the parts window (three target
    durations) behind the live edge, and a player would fetch those segments whole. Otherwise
    it is *lost*: the server never offered that media."""

    def __init__(self, parts: SegmentParts) -> None:
        self.parts = parts
        self.playlist: MediaPlaylist | None = None
        self.last: tuple[int, int] | None = None
        self.got = 0
        self.bytes = 0
        self.gaps = 0  # lost
        self.missed = 0
        self.behind = 0
        self.behind_parts = 0
        self.repeats = 0
        self.unverified = 0  # moved to the next segment before any playlist said how many parts
        self.examples: list[str] = []

    def append(self, rec: tuple[int, int, float, float, int]) -> None:
        msn, part, _, _, size = rec
        self.got += 1
        self.bytes += size
        last, self.last = self.last, (msn, part)
        if last is None:
            return
        lm, lp = last
        if msn == lm and part == lp + 1:
            return
        if (msn, part) <= last:
            self.repeats += 1
            return
        count = self.parts.count
        if msn == lm:
            missed = part - lp - 1
        else:
            if lm not in count:
                self.unverified += 1
            missed = max(0, count.get(lm, lp + 1) - lp - 1) + part
            missed += sum(count.get(m, 0) for m in range(lm + 1, msn))
            if missed == 0:
                return
        listed = {m for m, _, _ in self.playlist.segments} if self.playlist else set()
        if all(m in listed for m in range(lm, max(msn, lm + 1))):
            self.behind += 1
            self.behind_parts += missed
            return
        self.gaps += 1
        self.missed += missed
        if len(self.examples) < 3:
            self.examples.append(f"{lm}.{lp} -> {msn}.{part}")


async def follow(
    get, url: str, base: str, log: PartLog, errors: dict, restarts: list[int], start_delay: float
) -> None:
    """One viewer for the whole run; when its playlist ends it starts again, as a player
    reloading the page would (counted)."""
    while True:
        await hls_delivery.viewer(get, url, base, math.inf, log, errors, start_delay)
        restarts[0] += 1
        start_delay = 1.0


async def hls_worker(args: argparse.Namespace) -> dict:
    import aiohttp

    targets = json.loads(args.targets)  # [[slug, playlist url, directory url, count, first]]
    session = None
    if args.client == "aiohttp":
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            timeout=aiohttp.ClientTimeout(total=30),
            auto_decompress=False,
        )
    logs: dict[str, list[PartLog]] = defaultdict(list)
    errors: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    restarts: dict[str, list[int]] = defaultdict(lambda: [0])
    tasks = []
    total = sum(t[3] for t in targets)
    n = 0
    for slug, url, base, count, first in targets:
        parts = SegmentParts()
        origin = base.split("/hls/", 1)[0]
        for i in range(count):
            get = (
                hls_delivery.aiohttp_getter(session)
                if session is not None
                else hls_delivery.raw_getter(origin)
            )
            log = PartLog(parts)
            logs[slug].append(log)
            tasks.append(
                asyncio.ensure_future(
                    follow(
                        noting_getter(get, parts, log),
                        with_query(url, session=f"soak-{slug}-{first + i}"),
                        base,
                        log,
                        errors[slug],
                        restarts[slug],
                        args.ramp * n / max(1, total),
                    )
                )
            )
            n += 1
    print(json.dumps({"ready": len(tasks)}), flush=True)
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    await asyncio.to_thread(sys.stdin.readline)  # "stop"
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if session is not None:
        await session.close()
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    out = {}
    for slug, ls in logs.items():
        out[slug] = {
            "viewers": len(ls),
            "got": [lg.got for lg in ls],
            "bytes": sum(lg.bytes for lg in ls),
            "gaps": sum(lg.gaps for lg in ls),
            "missed": sum(lg.missed for lg in ls),
            "viewers_with_gaps": sum(1 for lg in ls if lg.gaps),
            "behind": sum(lg.behind for lg in ls),
            "behind_parts": sum(lg.behind_parts for lg in ls),
            "repeats": sum(lg.repeats for lg in ls),
            "unverified": sum(lg.unverified for lg in ls),
            "examples": [e for lg in ls for e in lg.examples][:5],
            "errors": dict(errors[slug]),
            "restarts": restarts[slug][0],
        }
    return {"channels": out, "cpu": (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)}


def worker_main(args: argparse.Namespace) -> None:
    chat_fanout.raise_nofile()
    import uvloop

    result = uvloop.run(hls_worker(args))
    print(json.dumps({"result": result}), flush=True)


class HlsWorkers:
    """The viewer processes: started, told to stop, their results read (stdout JSON lines)."""

    def __init__(
        self, targets: list[tuple[str, str, str, int]], procs: int, client: str, ramp: float
    ) -> None:
        self.procs: list[subprocess.Popen] = []
        shares = [[] for _ in range(procs)]
        for slug, url, base, count in targets:
            first = 0
            for i, n in enumerate(chat_fanout.split(count, procs)):
                if n:
                    shares[i].append([slug, url, base, n, first])
                first += n
        for share in shares:
            if share:
                self.procs.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            __file__,
                            "--worker",
                            "--targets",
                            json.dumps(share),
                            "--client",
                            client,
                            "--ramp",
                            str(ramp),
                        ],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        text=True,
                        cwd=ROOT,
                    )
                )
        for p in self.procs:
            read_line(p)  # ready

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    def stop(self) -> list[dict]:
        for p in self.procs:
            assert p.stdin is not None
            p.stdin.write("stop\n")
            p.stdin.flush()
        out = [read_line(p)["result"] for p in self.procs]
        for p in self.procs:
            p.wait(30)
        return out


def read_line(proc: subprocess.Popen) -> dict:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise HarnessError(f"client process {proc.args[:3]} ended early (exit {proc.wait()})")
    return json.loads(line)


class HarnessError(RuntimeError):
    """The harness could not do its job (not a bad measurement): exit non-zero."""


# -- the server and the publishers ---------------------------------------------------------------


@dataclass
class CliServer(LiveServer):
    """``LiveServer``'s ports and settings, but set up and run the way an operator does:
    the ``aethex`` console script for accounts, channels, ladders and tokens, and ``aethex
    serve`` with its log in a file (``log_path``)."""

    aethex_bin: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        script = Path(sys.executable).parent / "aethex"
        self.aethex_bin = (
            [str(script)] if script.exists() else [sys.executable, "-m", "mediaserver"]
        )

    def aethex(self, *args: str) -> str:
        out = subprocess.run(
            [*self.aethex_bin, *args],
            env=self.env(),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if out.returncode:
            raise HarnessError(
                f"aethex {' '.join(args)}: exit {out.returncode}: {out.stderr.strip()[-500:]}"
            )
        return out.stdout

    def serve_command(self) -> list[str]:
        return [*self.aethex_bin, "serve"]


class Publisher:
    """The ffmpeg CLI pushing an endless lavfi test source in real time. An exit we did not
    cause is counted and the publisher started again, as an encoder's auto-reconnect does."""

    def __init__(self, url: str, size: str, fps: int, log_path: Path) -> None:
        self.url, self.size, self.fps, self.log_path = url, size, fps, log_path
        self.proc: subprocess.Popen | None = None
        self.started = 0.0
        self.starts = 0
        self.unexpected_exits: list[int] = []

    def command(self) -> list[str]:
        return [
            "ffmpeg",
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "error",
            "-re",
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=size={self.size}:rate={self.fps}",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
            "-pix_fmt",
            "yuv420p",
            "-g",
            str(2 * self.fps),
            "-b:v",
            "1000k",
            "-maxrate",
            "1000k",
            "-bufsize",
            "2000k",
            "-c:a",
            "aac",
            "-b:a",
            "96k",
            "-f",
            "flv",
            self.url,
        ]

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log
            )
        self.started = time.monotonic()
        self.starts += 1

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        stop_process(self.proc, 20)

    def check(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            self.unexpected_exits.append(self.proc.returncode)
            self.start()


def ladder_for(size: str) -> tuple[list[dict], str]:
    """The source's height (copied: passthrough) and one encoded rung at 3/4 of it."""
    height = int(size.split("x")[1])
    low = height * 3 // 4 - (height * 3 // 4) % 2
    return (
        [
            {"name": f"{height}p", "height": height, "fps": 30, "video_kbps": 1200},
            {"name": f"{low}p", "height": low, "fps": 30, "video_kbps": 600},
        ],
        f"{low}p",
    )


# -- observing the server ------------------------------------------------------------------------


def api(base: str, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(base + path, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def api_json(base: str, path: str) -> dict | None:
    status, body = api(base, path)
    return json.loads(body) if status == 200 else None


_SAMPLE_RE = re.compile(r"^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL_RE = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def metrics(base: str) -> list[tuple[str, dict[str, str], float]]:
    """The server's /metrics samples (name, labels, value); empty if it does not answer."""
    status, body = api(base, "/metrics")
    out = []
    if status != 200:
        return out
    for line in body.decode().splitlines():
        m = _SAMPLE_RE.match(line)
        if m and not line.startswith("#"):
            out.append((m.group(1), dict(_LABEL_RE.findall(m.group(2) or "")), float(m.group(3))))
    return out


def metric_sum(samples: list, name: str, **labels: str) -> float:
    return sum(
        v
        for n, lab, v in samples
        if n == name and all(lab.get(k) == want for k, want in labels.items())
    )


@dataclass
class Sample:
    t: float  # seconds since the load started
    rss_mb: float
    fds: int
    threads: int
    cpu: float  # the server's CPU seconds so far
    speed: dict[str, float]  # aethex_transcode_speed by channel


def proc_sample(pid: int, t: float, base: str) -> Sample:
    rss = threads = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
        elif line.startswith("Threads:"):
            threads = int(line.split()[1])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    speed = {
        lab.get("channel", "?"): v for n, lab, v in metrics(base) if n == "aethex_transcode_speed"
    }
    return Sample(t, rss / MB, fds, threads, procstats.cpu_seconds(pid), speed)


def fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares slope of value over time (per hour) and its standard error."""
    n = len(points)
    if n < 3:
        return float("nan"), float("nan")
    xs = [t / 3600 for t, _ in points]
    ys = [v for _, v in points]
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return float("nan"), float("nan")
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=False)) / sxx
    resid = sum((y - my - slope * (x - mx)) ** 2 for x, y in zip(xs, ys, strict=False))
    return slope, math.sqrt(resid / (n - 2) / sxx)


@dataclass
class Reconnect:
    at: float  # seconds since the load started
    old_stream: int | None
    old_epoch: int | None  # discontinuities before the newest part when the publisher died
    started: float = field(default_factory=time.monotonic)
    live_after: float | None = None  # seconds until the API named a new stream
    parts_after: float | None = None  # seconds until the playlist announced a new part
    new_stream: int | None = None
    newest_at_live: tuple[int, int] | None = None  # newest part listed when the API said live


@dataclass
class LiveEdge:
    """A live media playlist as the reconnect check reads it."""

    epoch: int | None  # discontinuities (the sequence plus the tags listed) before the newest part
    parts: list[tuple[int, int]]  # (msn, part) of every part listed


def live_edge(url: str) -> LiveEdge | None:
    status, body = api("", url)
    if status != 200:
        return None
    text = body.decode()
    epoch, newest = 0, None
    for line in text.splitlines():
        if line.startswith("#EXT-X-DISCONTINUITY-SEQUENCE:"):
            epoch = int(line.split(":", 1)[1])
        elif line == "#EXT-X-DISCONTINUITY":
            epoch += 1
        elif line.startswith("#EXT-X-PART:"):
            newest = epoch
    return LiveEdge(newest, [(m, p) for m, p, _, _, _ in parse_media_playlist(text).parts])


def new_parts_announced(rec: Reconnect, edge: LiveEdge | None) -> bool:
    """Whether the playlist announces parts of the reconnected publisher: a part after one more
    discontinuity than when the old one died (the edge continued), or, once the API said live,
    two parts newer than the newest then (the old stream's last part may close after it died:
    one part) or a playlist started again (the reconnect came after hls.reconnect_grace)."""
    if edge is None or not edge.parts:
        return False
    if edge.epoch is not None and rec.old_epoch is not None and edge.epoch > rec.old_epoch:
        return True
    if rec.newest_at_live is None:
        return False
    newest = max(edge.parts)
    return newest < rec.newest_at_live or sum(1 for p in edge.parts if p > rec.newest_at_live) >= 2


def scan_log(path: Path) -> tuple[list[str], Counter[str]]:
    """ERROR/CRITICAL/Traceback lines (with the traceback's last line), and the warnings by
    message with the numbers taken out."""
    bad: list[str] = []
    warnings: Counter[str] = Counter()
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    for i, line in enumerate(lines):
        if " ERROR " in line or " CRITICAL " in line:
            bad.append(line)
        elif line.startswith("Traceback"):
            end = i + 1
            while end < len(lines) and lines[end].startswith((" ", "\t")):
                end += 1
            bad.append(f"Traceback ... {lines[end] if end < len(lines) else ''}")
        elif " WARNING " in line:
            msg = line.split(" WARNING ", 1)[1]
            warnings[re.sub(r"\d+(\.\d+)?", "N", msg)[:160]] += 1
    return bad, warnings


# -- the run ---------------------------------------------------------------------------------


class Soak:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.seconds = args.minutes * 60
        # Lazily made resources (a thread pool's worker, the first reconnect's sockets) appear
        # once, early: the default warm-up is 20 % of the run and lasts past the first reconnect.
        first = args.reconnect_every + 0.5 if args.reconnect_every > 0 else 0.0
        self.warmup = (
            args.warmup_minutes
            if args.warmup_minutes is not None
            else max(args.minutes * 0.2, min(first, args.minutes * 0.5))
        ) * 60
        self.ladder, self.rendition = ladder_for(args.source)
        if args.rendition:
            self.rendition = args.rendition
        env = {"AETHEX_LOG__LEVEL": args.log_level}
        env.update(kv.split("=", 1) for kv in args.set)
        self.server = CliServer(
            work,
            passthrough="auto",
            preset=args.preset,
            extra_env=env,
            log_path=work / "server.log",
        )
        self.publishers: dict[str, Publisher] = {}
        self.streams: dict[str, list[tuple[int, float]]] = defaultdict(list)  # slug -> (id, s)
        self.samples: list[Sample] = []
        self.reconnects: list[Reconnect] = []
        self.tokens: list[str] = []
        self.urls: dict[str, str] = {}

    # setup

    def setup(self) -> None:
        s = self.server
        t0 = time.monotonic()
        s.aethex("db", "upgrade")
        s.aethex("user", "create", "soak", "--email", "soak@example.test")
        keys = {}
        for slug in (STEADY, RECONNECTING):
            info = json.loads(
                s.aethex(
                    "channel",
                    "create",
                    "--owner",
                    "soak",
                    "--slug",
                    slug,
                    "--title",
                    f"soak {slug}",
                    "--json",
                )
            )
            keys[slug] = info["stream_key"]
            s.aethex("channel", "ladder", slug, "--set", json.dumps(self.ladder))
        for i in range(self.args.chat_senders):
            s.aethex("user", "create", f"chatter{i}", "--email", f"chatter{i}@example.test")
            self.tokens.append(
                json.loads(s.aethex("token", "create", f"chatter{i}", "--json"))["token"]
            )
        print(
            f"# setup with the aethex CLI: 1 owner, 2 channels, {len(self.tokens)} chat users "
            f"with tokens ({time.monotonic() - t0:.0f} s)",
            flush=True,
        )
        pid = s.start()
        print(
            f"# server pid {pid}: http {s.base}, rtmp port {s.rtmp_port}, data {s.dir}", flush=True
        )
        for slug in (STEADY, RECONNECTING):
            pub = Publisher(
                f"rtmp://127.0.0.1:{s.rtmp_port}/live/{keys[slug]}",
                self.args.source,
                self.args.fps,
                self.work / f"ffmpeg-{slug}.log",
            )
            pub.start()
            self.publishers[slug] = pub
        for slug in (STEADY, RECONNECTING):
            url, _ = asyncio.run(hls_delivery.discover(s.base, self.rendition, slug))
            self.urls[slug] = url
            self.streams[slug].append((self.live_stream(slug), 0.0))

    def live_stream(self, slug: str) -> int | None:
        info = api_json(self.server.base, f"/api/channels/{slug}")
        return info.get("stream_id") if info else None

    # the load

    def run(self) -> dict:
        args = self.args
        pid = self.server.proc.pid
        base = self.server.base
        idle = proc_sample(pid, 0.0, base)
        print(
            f"# before clients: RSS {idle.rss_mb:.0f} MB, {idle.fds} FDs, {idle.threads} threads",
            flush=True,
        )
        n_rec = min(args.reconnect_viewers, args.viewers)
        hls = HlsWorkers(
            [
                (
                    STEADY,
                    self.urls[STEADY],
                    self.urls[STEADY].rsplit("/", 1)[0] + "/",
                    args.viewers - n_rec,
                ),
                (
                    RECONNECTING,
                    self.urls[RECONNECTING],
                    self.urls[RECONNECTING].rsplit("/", 1)[0] + "/",
                    n_rec,
                ),
            ],
            args.viewer_procs,
            args.client,
            args.ramp,
        )
        readers = args.chat_users - args.chat_senders
        chat_readers = [chat_fanout.Worker("viewers", base, count=readers)] if readers > 0 else []
        senders = None
        for w in chat_readers:
            w.read()
        if self.tokens:
            senders = chat_fanout.Worker(
                "senders",
                base,
                tokens=",".join(self.tokens),
                rate=len(self.tokens) / args.chat_interval,
                # Past the last sample, so every socket is open for the whole measurement.
                seconds=self.seconds + 5,
            )
            senders.read()
        for w in [*chat_readers, *([senders] if senders else [])]:
            w.tell("go")
        print(
            f"# load on: {args.viewers} HLS viewers ({n_rec} on {RECONNECTING}), "
            f"{args.chat_users} chat users; {args.minutes:g} min, warm-up "
            f"{self.warmup / 60:.1f} min",
            flush=True,
        )
        contention = procstats.Contention(os.getpid())
        t0 = time.monotonic()
        self.loop(t0, pid, base, hls, chat_readers, senders)
        machine = contention.stop()
        with open(self.work / "samples.csv", "w") as out:
            out.write("seconds,rss_mb,fds,threads,server_cpu_s\n")
            out.writelines(
                f"{x.t:.1f},{x.rss_mb:.2f},{x.fds},{x.threads},{x.cpu:.2f}\n" for x in self.samples
            )
        cpu = (self.samples[-1].cpu - self.samples[0].cpu) / max(1.0, self.samples[-1].t)
        # Teardown, checked as it goes: clients first, then publishers (their recordings), then
        # the server (a clean shutdown is part of "no error in the log").
        sent = senders.read()["result"] if senders else None
        time.sleep(2.0)  # the last chat ticks reach every reader
        for w in chat_readers:
            w.tell("stop")
        chat = [w.read()["result"] for w in chat_readers]
        for w in [*chat_readers, *([senders] if senders else [])]:
            w.proc.wait(30)
        hls_results = hls.stop()
        end_metrics = metrics(base)
        for slug, pub in self.publishers.items():
            pub.stop()
            sid, published = self.streams[slug][-1]
            if not published:  # else its publisher was killed and the next never went live
                self.streams[slug][-1] = (sid, time.monotonic() - pub.started)
        recordings = self.wait_archived()
        self.server.stop()
        return {
            "hls": hls_results,
            "chat": chat,
            "sent": sent,
            "metrics": end_metrics,
            "recordings": recordings,
            "cpu": cpu,
            "machine": machine,
            "exit": self.server.proc.returncode,
        }

    def loop(self, t0: float, pid: int, base: str, hls: HlsWorkers, chat: list, senders) -> None:
        args = self.args
        every = args.reconnect_every * 60
        next_sample = t0
        next_reconnect = t0 + every if every > 0 else math.inf
        pending: Reconnect | None = None
        end = t0 + self.seconds
        while True:
            now = time.monotonic()
            if self.server.proc.poll() is not None:
                print(
                    f"# the server exited ({self.server.proc.returncode}) at {now - t0:.0f} s",
                    flush=True,
                )
                return
            if not hls.alive() or any(w.proc.poll() is not None for w in chat):
                raise HarnessError("a client process died")
            if now >= next_sample:
                self.samples.append(proc_sample(pid, now - t0, base))
                if len(self.samples) % max(1, round(60 / args.sample_every)) == 1:
                    self.progress(self.samples[-1])
                next_sample += args.sample_every
                if now >= end:
                    return
            for slug, pub in self.publishers.items():
                if pending is None or slug != RECONNECTING:
                    pub.check()
            if pending is None and now >= next_reconnect and now < end - LIVE_AGAIN_TIMEOUT:
                pending = self.reconnect(now - t0)
                next_reconnect += every
            if pending is not None and self.reconnected(pending):
                pending = None
            time.sleep(0.25)

    def reconnect(self, at: float) -> Reconnect:
        rec = Reconnect(
            at,
            self.live_stream(RECONNECTING),
            getattr(live_edge(self.urls[RECONNECTING]), "epoch", None),
        )
        pub = self.publishers[RECONNECTING]
        ids = self.streams[RECONNECTING]
        pub.kill()
        ids[-1] = (ids[-1][0], time.monotonic() - pub.started)
        rec.started = time.monotonic()
        pub.start()
        self.reconnects.append(rec)
        return rec

    def reconnected(self, rec: Reconnect) -> bool:
        """Polled until the channel is live with a new stream and announces new parts."""
        waited = time.monotonic() - rec.started
        edge = live_edge(self.urls[RECONNECTING])
        if rec.live_after is None:
            sid = self.live_stream(RECONNECTING)
            if sid is not None and sid != rec.old_stream:
                rec.live_after, rec.new_stream = waited, sid
                self.streams[RECONNECTING].append((sid, 0.0))
                rec.newest_at_live = max(edge.parts) if edge and edge.parts else (-1, -1)
        if rec.parts_after is None and new_parts_announced(rec, edge):
            rec.parts_after = waited
        if rec.live_after is not None and rec.parts_after is not None:
            print(
                f"# reconnect at {rec.at:.0f} s: live again after {rec.live_after:.1f} s "
                f"(stream {rec.old_stream} -> {rec.new_stream}), new parts after "
                f"{rec.parts_after:.1f} s",
                flush=True,
            )
            return True
        if waited > LIVE_AGAIN_TIMEOUT:
            print(
                f"# reconnect at {rec.at:.0f} s: NOT live again after {waited:.0f} s "
                f"(new stream {rec.new_stream}, parts {rec.parts_after})",
                flush=True,
            )
            return True
        return False

    def progress(self, s: Sample) -> None:
        speed = ", ".join(f"{k} {v:.2f}x" for k, v in sorted(s.speed.items()))
        prev = self.samples[0]
        cpu = (s.cpu - prev.cpu) / s.t * 100 if s.t else 0.0
        print(
            f"# {s.t / 60:5.1f} min: RSS {s.rss_mb:6.1f} MB, {s.fds} FDs, {s.threads} threads, "
            f"server CPU {cpu:.0f}% so far; transcode speed {speed}",
            flush=True,
        )

    def wait_archived(self, timeout: float = 120.0) -> list[dict]:
        """Every stream the run started, once it has left LIVE/ENDING (or the timeout)."""
        out = []
        deadline = time.monotonic() + timeout
        for slug, ids in self.streams.items():
            for sid, published in ids:
                if sid is None:
                    out.append({"slug": slug, "id": None, "status": "never live"})
                    continue
                info = None
                while time.monotonic() < deadline:
                    info = api_json(self.server.base, f"/api/streams/{sid}")
                    if info and info["status"] not in ("live", "ending"):
                        break
                    time.sleep(0.5)
                out.append(
                    {
                        "slug": slug,
                        "id": sid,
                        "published": published,
                        "status": info["status"] if info else "?",
                        "vod": bool(info and info["vod_available"]),
                        "vod_seconds": (info or {}).get("vod_duration_seconds"),
                    }
                )
        return out


# -- the report --------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


Goals = list[tuple[bool, str]]


def report_growth(soak: Soak, r: dict) -> Goals:
    args, samples = soak.args, soak.samples
    after = [s for s in samples if s.t >= soak.warmup] or samples
    print(
        f"\n## growth: {len(samples)} samples every {args.sample_every:g} s, least-squares "
        f"fit over the {len(after)} after the {soak.warmup / 60:.1f} min warm-up"
    )
    print(f"{'':<10}{'first':>9}{'warm':>9}{'last':>9}{'max':>9}   slope per hour (± 2 SE)")
    goals: Goals = []
    for name, get, limit in (
        ("RSS MB", lambda s: s.rss_mb, args.max_rss_slope),
        ("FDs", lambda s: s.fds, args.max_fd_slope),
        ("threads", lambda s: s.threads, args.max_fd_slope),
    ):
        slope, se = fit([(s.t, get(s)) for s in after])
        vals = [get(s) for s in samples]
        print(
            f"{name:<10}{vals[0]:>9.1f}{get(after[0]):>9.1f}{vals[-1]:>9.1f}{max(vals):>9.1f}"
            f"   {slope:+.1f} ± {2 * se:.1f}"
        )
        # Growth is shown when even the low end of the slope's 95 % interval passes the limit.
        shown = slope - 2 * se > limit
        goals.append(
            (
                not shown,
                f"{name}: slope after warm-up {slope:+.1f}/h ± {2 * se:.1f}: "
                f"growth above {limit:g}/h {'shown' if shown else 'not shown'}",
            )
        )
    speeds = [v for s in after for v in s.speed.values()]
    print(
        f"server CPU {r['cpu'] * 100:.0f}% of a core over the run; lowest transcode speed "
        f"{min(speeds, default=float('nan')):.2f}x; machine: {r['machine']}"
    )
    return goals


def report_hls(soak: Soak, r: dict) -> Goals:
    print("\n## HLS viewers")
    goals: Goals = []
    failed = behind = 0
    for slug in (STEADY, RECONNECTING):
        rows = [w["channels"][slug] for w in r["hls"] if slug in w["channels"]]
        if not rows:
            continue
        got = [g for row in rows for g in row["got"]]
        errs: Counter[str] = Counter()
        for row in rows:
            errs.update(row["errors"])
        failed += sum(errs.values())

        def total(key: str) -> int:
            return sum(row[key] for row in rows)  # noqa: B023 - used at once

        examples = [e for row in rows for e in row["examples"]][:3]
        behind += total("behind")
        print(
            f"{slug}: {len(got)} viewers; parts per viewer min {min(got)}, median "
            f"{median(got):.0f}, max {max(got)} ({total('bytes') / MB:.0f} MB); lost: "
            f"{total('gaps')} gaps in {total('viewers_with_gaps')} viewers, {total('missed')} "
            f"parts {examples or ''}; fell behind the parts window {total('behind')} times "
            f"({total('behind_parts')} parts, their segments still listed); repeats "
            f"{total('repeats')}, unverified segment ends {total('unverified')}, restarts "
            f"{total('restarts')}; failed requests {dict(errs) or 0}"
        )
        goals.append(
            (
                total("gaps") == 0,
                f"HLS {slug}: no part lost ({total('gaps')} gaps, {total('missed')} parts)",
            )
        )
    wall = max(1.0, soak.samples[-1].t)
    cpus = ", ".join(f"{w['cpu'] / wall * 100:.0f}%" for w in r["hls"])
    print(f"viewer client processes: {cpus} of a core")
    goals.append((failed == 0, f"HLS: {failed} failed requests"))
    goals.append(
        (
            behind == 0,
            f"HLS: viewers kept up with the parts ({behind} times a viewer "
            f"fell behind; a busy machine does this)",
        )
    )
    m = r["metrics"]
    dropped_pk = metric_sum(m, "aethex_live_dropped_packets_total")
    dropped_fr = metric_sum(m, "aethex_transcode_dropped_frames_total")
    errors_5xx = sum(
        v
        for n, lab, v in m
        if n == "aethex_hls_requests_total" and lab.get("status", "").startswith("5")
    )
    print(
        f"server counted: live packets dropped {dropped_pk:.0f}, transcode frames dropped "
        f"{dropped_fr:.0f}, HLS 5xx {errors_5xx:.0f}, RTMP refused "
        f"{metric_sum(m, 'aethex_rtmp_rejected_total'):.0f}"
    )
    goals.append(
        (
            dropped_pk == 0 and dropped_fr == 0,
            f"server dropped nothing ({dropped_pk:.0f} packets, {dropped_fr:.0f} frames)",
        )
    )
    return goals


def report_chat(soak: Soak, r: dict) -> Goals:
    sent = r["sent"]
    if sent is None:
        return []
    print("\n## chat")
    m = r["metrics"]
    expected = sent["sent"] - sent["errors"]
    received = [n for c in r["chat"] for n in c["received"]] + sent["received"]
    lost = [max(0, expected - n) for n in received]
    hist: dict[int, int] = {}
    for c in r["chat"]:
        for b, n in c["hist"].items():
            hist[int(b)] = hist.get(int(b), 0) + n
    p50 = chat_fanout.percentile_from_hist(hist, 50)
    p99 = chat_fanout.percentile_from_hist(hist, 99)
    print(
        f"sent {sent['sent']} ({sent['sent'] / max(1.0, sent['elapsed']):.1f}/s) by "
        f"{len(sent['received'])} users, refused {sent['errors']} {sent['error_codes'] or ''}; "
        f"{len(received)} users received min {min(received, default=0)}, max "
        f"{max(received, default=0)} of {expected}; lost {sum(lost)} in "
        f"{sum(1 for x in lost if x)} users; readers' latency p50 {p50:.0f} ms, p99 {p99:.0f} ms"
    )
    closed = sent.get("closed", [])
    print(
        f"server counted: refused {metric_sum(m, 'aethex_chat_refused_total'):.0f}, slow "
        f"sockets dropped {metric_sum(m, 'aethex_chat_dropped_sockets_total'):.0f}, sockets "
        f"closed {metric_sum(m, 'aethex_chat_closed_sockets_total'):.0f}; senders closed by "
        f"the server (sender, close code): {closed or 'none'}"
    )
    return [
        (
            sum(lost) == 0 and sent["errors"] == 0 and not closed,
            f"chat: each of {len(received)} users got all {expected} messages ({sum(lost)} "
            f"lost, {sent['errors']} refused, {len(closed)} senders cut off)",
        )
    ]


def report_reconnects(soak: Soak, r: dict) -> Goals:
    print("\n## reconnects and recordings")
    recs = soak.reconnects

    def seconds(values: list[float | None]) -> str:
        return ", ".join("never" if v is None else f"{v:.1f}" for v in values)

    if recs:
        print(
            f"{len(recs)} reconnects of {RECONNECTING}: live again (API) after "
            f"{seconds([rc.live_after for rc in recs])} s; new parts after "
            f"{seconds([rc.parts_after for rc in recs])} s"
        )
    ok = [rc for rc in recs if rc.live_after is not None and rc.parts_after is not None]
    unexpected = {
        slug: p.unexpected_exits for slug, p in soak.publishers.items() if p.unexpected_exits
    }
    for rec in r["recordings"]:
        vod = rec.get("vod_seconds")
        print(
            f"{rec['slug']} stream {rec['id']}: {rec['status']}, published "
            f"{rec.get('published', 0):.1f} s, VOD {'-' if vod is None else vod} s"
        )
    archived = [x for x in r["recordings"] if x["status"] == "archived" and x.get("vod")]
    return [
        (
            len(ok) == len(recs),
            f"reconnects: {len(ok)} of {len(recs)} live again with new "
            f"parts within {LIVE_AGAIN_TIMEOUT:.0f} s",
        ),
        (not unexpected, f"publishers: no exit we did not cause {unexpected or ''}"),
        (
            len(archived) == len(r["recordings"]),
            f"recordings: {len(archived)} of {len(r['recordings'])} streams archived with a VOD",
        ),
    ]


def report_log(soak: Soak, r: dict) -> Goals:
    print("\n## server log")
    assert soak.server.log_path is not None
    bad, warnings = scan_log(soak.server.log_path)
    print(
        f"{len(bad)} ERROR/CRITICAL/Traceback lines; {sum(warnings.values())} warnings; "
        f"server exit status {r['exit']}"
    )
    for line in bad[:30]:
        print(f"  {line[:300]}")
    for msg, n in warnings.most_common(8):
        print(f"  {n} x WARNING {msg}")
    return [(not bad and r["exit"] == 0, f"log: {len(bad)} errors, exit status {r['exit']}")]


def report(soak: Soak, r: dict) -> None:
    args = soak.args
    goals = [
        g
        for part in (report_growth, report_hls, report_chat, report_reconnects, report_log)
        for g in part(soak, r)
    ]
    print(
        f"\n## goals ({args.minutes:g} min, {args.viewers} viewers, {args.chat_users} chat "
        f"users, reconnect every {args.reconnect_every:g} min; load average "
        f"{procstats.loadavg()})"
    )
    for good, text in goals:
        print(f"{verdict(good)}  {text}")


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument(
        "--reconnect-every",
        type=float,
        default=5.0,
        help="minutes between reconnects of bench-1's publisher (0: never)",
    )
    ap.add_argument("--sample-every", type=float, default=10.0, help="seconds")
    ap.add_argument(
        "--warmup-minutes",
        type=float,
        help="default: 20%% of --minutes, or past the first reconnect if later "
        "(at most half the run)",
    )
    ap.add_argument("--viewers", type=int, default=200)
    ap.add_argument(
        "--reconnect-viewers",
        type=int,
        default=20,
        help="of --viewers, how many watch the reconnecting channel",
    )
    ap.add_argument("--viewer-procs", type=int, default=1)
    ap.add_argument("--client", choices=("aiohttp", "raw"), default="aiohttp")
    ap.add_argument("--ramp", type=float, default=5.0, help="seconds over which viewers join")
    ap.add_argument("--rendition", default="", help="default: the encoded rung")
    ap.add_argument("--chat-users", type=int, default=100)
    ap.add_argument("--chat-senders", type=int, default=10, help="of --chat-users")
    ap.add_argument(
        "--chat-interval", type=float, default=2.5, help="seconds between one sender's messages"
    )
    ap.add_argument("--source", default="854x480", help="publisher picture size")
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument(
        "--preset", default="veryfast", choices=("ultrafast", "superfast", "veryfast", "faster")
    )
    ap.add_argument("--log-level", default="info")
    ap.add_argument("--max-rss-slope", type=float, default=10.0, help="MB per hour")
    ap.add_argument(
        "--max-fd-slope", type=float, default=2.0, help="file descriptors (and threads) per hour"
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="AETHEX_KEY=VALUE",
        help="an extra server setting from the environment (repeatable)",
    )
    ap.add_argument("--keep", type=Path, help="keep the data directory and logs here")
    # internal: an HLS viewer process
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--targets", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker_main(args)
        return 0
    if shutil.which("ffmpeg") is None:
        print("soak: the ffmpeg CLI is needed (Debian package ffmpeg)", file=sys.stderr)
        return 2
    if args.chat_senders > args.chat_users:
        ap.error("--chat-senders cannot be more than --chat-users")
    chat_fanout.raise_nofile()
    print(
        f"# soak: source {args.source}@{args.fps} (ffmpeg ultrafast), ladder copy + one rung "
        f"at {args.preset}; load average {procstats.loadavg()}",
        flush=True,
    )
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        work_ctx = None
        work = args.keep
    else:
        work_ctx = tempfile.TemporaryDirectory(prefix="aethex-soak-")
        work = Path(work_ctx.name)
    soak = Soak(args, work)
    try:
        soak.setup()
        result = soak.run()
        report(soak, result)
    except (HarnessError, RuntimeError) as exc:
        print(f"soak: harness failure: {exc}", file=sys.stderr)
        return 1
    finally:
        for pub in soak.publishers.values():
            pub.kill()
        soak.server.stop()
        if work_ctx is not None:
            work_ctx.cleanup()
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    sys.exit(main())
