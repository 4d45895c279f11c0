"""LL-HLS latency: how long after a frame is sent does a player have the part that carries it?

A PyAV publisher (its own process, ``benchmarks/lib/publisher.py``) sends 720p30 H.264 (x264
ultrafast,
zerolatency, keyframe every second) + silent AAC in real time over RTMP to our server
(``python -m mediaserver serve`` in a subprocess, transcoding on: 720p + 480p ladder, 2 s
segments, 0.333 s parts). Every frame carries its index and its send time in a barcode
(``benchmarks/lib/barcode.py``). Readers in this process, on aiohttp, follow each rendition's media
playlist
the way a player does, all at once on the same stream:

* ``blocking``  — blocking playlist reload for the next part (``_HLS_msn``/``_HLS_part``, as
  hls.js does), then a GET of every part the playlist announces, at once;
* ``preload``   — the same, but the preload-hinted part is requested together with the
  blocking reload; the server holds it until it is complete;
* ``poll-parts``    — plain playlist GETs every 0.5 s, then the new parts (no blocking);
* ``poll-segments`` — plain playlist GETs every 0.5 s, then the new whole segments (what a
  player without LL-HLS does).

The ``blocking`` reader also decodes every part (PyAV, incrementally: one decoder for the
whole run, fed the samples of each part) and reads the barcode of each frame, so each part's
frames and their send times are known. For each reader, latency of a frame = (time the reader
had all the bytes of the part/segment carrying it) - (time the frame was sent). Printed:
p50/p95 per rendition and reader over ``--seconds`` after a warm-up, the floor of the same
measurement and the ratios. Run once with ``--passthrough auto`` (720p is the source copied)
and once with ``never`` (both rungs encoded) unless one is chosen.

The floor, per frame: a part closes only when the first frame of the next part reaches the
packager, so the frame has to wait (send time of the next part's first frame - its own send
time), plus the publisher's encode-and-send time (from its log), plus for an encoded rung
the server's decoder and x264 delays (frames each codec holds, measured here with the
server's settings, times the frame interval, plus the encode time of a frame).

    .venv/bin/python benchmarks/latency.py [--seconds 30] [--runs 1] [--passthrough both]
        [--preset veryfast] [--warmup 8]

Goal: p95 <= 0.8 s for the blocking reader with 0.333 s parts.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import math
import os
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import aiohttp

# Run as a script: the repository root on sys.path, for benchmarks.lib and the server's code.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.lib import procstats
from benchmarks.lib.live_server import LiveServer
from benchmarks.lib.part_decoder import PartDecoder
from benchmarks.lib.playlist import (
    MediaPlaylist,
    master_variants,
    parse_media_playlist,
    with_query,
)
from benchmarks.lib.publisher import Picture, read_publisher_log, start_publisher
from benchmarks.lib.server import stop_process
from benchmarks.lib.stats import median, percentile

FPS = 30
MODES = ("blocking", "preload", "poll-parts", "poll-segments")
POLL_INTERVAL = 0.5


def now_ms() -> float:
    return time.time() * 1000.0


# -- codec delays, measured with the server's settings -------------------------------------


def encoder_delay(
    preset: str, width: int, height: int, kbps: int, frames: int = 60
) -> tuple[int, float]:
    """(frames x264 holds before its first packet, ms of CPU per frame) with the options
    transcode/pipeline.py gives the rung encoders (no tune, bframes=0, auto threads)."""
    import av

    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base = Fraction(1, 90000)
    ctx.framerate = Fraction(FPS)
    ctx.bit_rate = kbps * 1000
    ctx.thread_count = 0
    from mediaserver.settings import TranscodeSettings

    extra = TranscodeSettings().x264_params  # what the server adds by default
    ctx.options = {
        "preset": preset,
        "forced-idr": "1",
        "x264-params": f"annexb=0:scenecut=0:keyint=infinite:min-keyint=1:"
        f"vbv-maxrate={kbps}:vbv-bufsize={kbps * 2}:bframes=0" + (f":{extra}" if extra else ""),
    }
    ctx.open()
    pic = Picture(width, height)
    first = None
    spent = 0.0
    for i in range(frames):
        f = av.VideoFrame.from_ndarray(pic.frame(i), format="yuv420p")
        f.pts = i * 3000
        t0 = time.perf_counter()
        out = ctx.encode(f)
        spent += time.perf_counter() - t0
        if out and first is None:
            first = i
    return (first if first is not None else frames), spent / frames * 1000


def decoder_delay(width: int, height: int, frames: int = 30) -> int:
    """Packets the server's source decoder (thread_type AUTO, auto threads) takes before its
    first frame comes out, for the publisher's stream (no B-frames)."""
    import av

    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = width, height, "yuv420p"
    enc.time_base = Fraction(1, FPS)
    enc.options = {"preset": "ultrafast", "tune": "zerolatency"}
    pic = Picture(width, height)
    packets = []
    for i in range(frames):
        f = av.VideoFrame.from_ndarray(pic.frame(i), format="yuv420p")
        f.pts = i
        packets += enc.encode(f)
    dec = av.CodecContext.create("h264", "r")
    dec.extradata = enc.extradata
    dec.thread_type = "AUTO"
    dec.thread_count = 0
    for n, p in enumerate(packets):
        if dec.decode(p):
            return n
    return len(packets)


# -- readers -------------------------------------------------------------------------------


@dataclass
class Rendition:
    name: str
    height: int
    url: str  # media playlist URL (with the session query)
    base: str  # directory URL for relative URIs
    # (msn, part) -> [(frame index, sent ms)], filled by the decoding reader
    frames: dict[tuple[int, int], list[tuple[int, int]]] = field(default_factory=dict)
    parts_of: dict[int, set[int]] = field(default_factory=lambda: defaultdict(set))
    # mode -> (msn, part) or ("seg", msn) -> ms the reader had the bytes
    arrivals: dict[str, dict[tuple, float]] = field(default_factory=lambda: defaultdict(dict))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    pending: list[concurrent.futures.Future] = field(default_factory=list)
    decoder: PartDecoder | None = None


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, bytes, float]:
    async with session.get(url) as r:
        body = await r.read()
        return r.status, body, now_ms()


class Reader:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        rend: Rendition,
        mode: str,
        stop_at: float,
        pool: concurrent.futures.Executor | None,
    ) -> None:
        self.s, self.r, self.mode, self.stop_at, self.pool = session, rend, mode, stop_at, pool
        self.last: tuple[int, int] = (-1, -1)
        self.last_seg = -1

    def running(self) -> bool:
        return time.monotonic() < self.stop_at

    async def playlist(self, **directives: int) -> MediaPlaylist | None:
        url = with_query(self.r.url, **directives) if directives else self.r.url
        status, body, _ = await get(self.s, url)
        if status != 200:
            self.r.errors[f"{self.mode} playlist {status}"] += 1
            return None
        return parse_media_playlist(body.decode())

    def got_part(self, msn: int, part: int, data: bytes, t: float) -> None:
        self.r.arrivals[self.mode][(msn, part)] = t
        if self.pool is not None and self.r.decoder is not None:
            fut = self.pool.submit(self._decode, msn, part, data)
            self.r.pending.append(fut)

    def _decode(self, msn: int, part: int, data: bytes) -> None:
        assert self.r.decoder is not None
        self.r.frames[(msn, part)] = [(i, t) for _, i, t in self.r.decoder.decode(data)]
        self.r.parts_of[msn].add(part)

    async def fetch_new_parts(self, pl: MediaPlaylist) -> None:
        for msn, part, uri, _, _ in pl.parts:
            if (msn, part) <= self.last:
                continue
            status, data, t = await get(self.s, self.r.base + uri)
            if status == 200:
                self.got_part(msn, part, data, t)
            else:
                self.r.errors[f"{self.mode} part {status}"] += 1
            self.last = (msn, part)

    async def run(self) -> None:
        pl = None
        while pl is None and self.running():
            pl = await self.playlist()
        if pl is None or pl.hint is None or pl.map_uri is None:
            return
        if self.pool is not None:
            status, init, _ = await get(self.s, self.r.base + pl.map_uri)
            if status != 200:
                raise RuntimeError(f"init segment: HTTP {status}")
            self.r.decoder = PartDecoder(init)
        hint = pl.hint
        self.last = (hint[0], hint[1] - 1)
        self.last_seg = pl.segments[-1][0] if pl.segments else -1
        try:
            if self.mode == "blocking":
                await self._blocking(hint)
            elif self.mode == "preload":
                await self._preload(hint)
            else:
                await self._poll()
        except aiohttp.ClientError as exc:
            self.r.errors[f"{self.mode} {type(exc).__name__}"] += 1

    async def _blocking(self, hint: tuple[int, int, str]) -> None:
        while self.running():
            pl = await self.playlist(_HLS_msn=hint[0], _HLS_part=hint[1])
            if pl is None:
                await asyncio.sleep(0.1)
                continue
            await self.fetch_new_parts(pl)
            if pl.hint is None:
                return
            hint = pl.hint

    async def _preload(self, hint: tuple[int, int, str]) -> None:
        while self.running():
            part_task = asyncio.ensure_future(get(self.s, self.r.base + hint[2]))
            pl_task = asyncio.ensure_future(self.playlist(_HLS_msn=hint[0], _HLS_part=hint[1]))
            status, data, t = await part_task
            if status == 200 and (hint[0], hint[1]) > self.last:
                self.got_part(hint[0], hint[1], data, t)
                self.last = (hint[0], hint[1])
            elif status != 200:
                self.r.errors[f"preload hinted part {status}"] += 1
            pl = await pl_task
            if pl is None:
                await asyncio.sleep(0.1)
                continue
            await self.fetch_new_parts(pl)  # anything the hints skipped
            if pl.hint is None:
                return
            hint = pl.hint

    async def _poll(self) -> None:
        loop = asyncio.get_running_loop()
        next_poll = loop.time()
        while self.running():
            next_poll += POLL_INTERVAL
            pl = await self.playlist()
            if pl is not None:
                if self.mode == "poll-parts":
                    await self.fetch_new_parts(pl)
                else:
                    for msn, uri, _ in pl.segments:
                        if msn <= self.last_seg:
                            continue
                        status, _, t = await get(self.s, self.r.base + uri)
                        if status == 200:
                            self.r.arrivals[self.mode][("seg", msn)] = t
                        else:
                            self.r.errors[f"{self.mode} segment {status}"] += 1
                        self.last_seg = msn
            await asyncio.sleep(max(0.0, next_poll - loop.time()))


async def discover(
    session: aiohttp.ClientSession, base: str, slug: str, timeout: float = 60.0
) -> list[Rendition]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            status, body, _ = await get(session, f"{base}/hls/{slug}/master.m3u8")
        except aiohttp.ClientError:
            status, body = 0, b""
        if status == 200:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"no master playlist after {timeout} s (HTTP {status})")
        await asyncio.sleep(0.5)
    out = []
    for height, _, uri in master_variants(body.decode()):
        url = f"{base}/hls/{slug}/{uri}"
        path = url.split("?", 1)[0]
        name = path.rsplit("/", 2)[-2]
        out.append(Rendition(name, height, url, path.rsplit("/", 1)[0] + "/"))
    return out


# -- one measurement -------------------------------------------------------------------------


@dataclass
class Result:
    passthrough: str
    rows: dict[tuple[str, str], dict[str, float]]  # (rendition label, mode) -> stats
    floor: dict[str, dict[str, float]]
    notes: list[str]


def summarize(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "max": max(values) if values else float("nan"),
    }


async def measure(
    server: LiveServer,
    pub_log: Path,
    seconds: float,
    warmup: float,
    codec_delay_ms: dict[str, float],
) -> tuple[dict, dict, list[str], float]:
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=20)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        rends = await discover(session, server.base, "bench-0")
        start = time.monotonic()
        stop_at = start + warmup + seconds
        pools = {r.name: concurrent.futures.ThreadPoolExecutor(1) for r in rends}
        readers = [
            Reader(session, r, mode, stop_at, pools[r.name] if mode == "blocking" else None)
            for r in rends
            for mode in MODES
        ]
        cpu0 = None
        window_start_ms = now_ms() + warmup * 1000
        tasks = [asyncio.ensure_future(rd.run()) for rd in readers]
        await asyncio.sleep(warmup)
        cpu0 = procstats.cpu_seconds(server.proc.pid)
        contention = procstats.Contention(os.getpid())
        await asyncio.gather(*tasks)
        cpu = procstats.cpu_seconds(server.proc.pid) - cpu0
        busy = contention.stop()
        window_end_ms = now_ms()
        for r in rends:
            for f in r.pending:
                f.result()
            pools[r.name].shutdown()
        metrics = ""
        try:
            _, body, _ = await get(session, f"{server.base}/metrics")
            metrics = body.decode()
        except aiohttp.ClientError:
            pass
    pub = read_publisher_log(pub_log)
    send_delay = median([sent - t for t, sent in pub.values()]) if pub else float("nan")
    notes = [
        (
            f"server CPU {cpu / seconds * 100:.0f}% of one core, RSS "
            f"{procstats.rss_mib(server.proc.pid):.0f} MiB"
        ),
        (
            f"publisher encode+send (stamp -> muxer returned): median {send_delay:.1f} ms "
            f"over {len(pub)} frames"
        ),
        busy,
    ]
    drops = [
        line
        for line in metrics.splitlines()
        if line.startswith(
            (
                "aethex_transcode_dropped_frames_total",
                "aethex_live_dropped_packets_total",
                "aethex_transcode_speed",
            )
        )
    ]
    if drops:
        notes.append("server metrics: " + "; ".join(drops))
    rows: dict[tuple[str, str], dict[str, float]] = {}
    floors: dict[str, dict[str, float]] = {}
    for r in rends:
        copy = server.passthrough != "never" and r.height == 720
        label = f"{r.name}{' (copy)' if copy else ''}"
        dec = r.decoder
        if dec is not None:
            notes.append(
                f"{r.name}: {dec.frames} frames decoded, {dec.unreadable} without a readable code"
            )
        for key, n in sorted(r.errors.items()):
            notes.append(f"{r.name}: {n} x {key}")
        # Frames of each part, in the window.
        for mode in MODES:
            lat: list[float] = []
            for key, t in r.arrivals[mode].items():
                if not window_start_ms <= t <= window_end_ms:
                    continue
                if key[0] == "seg":
                    msn = key[1]
                    parts = r.parts_of.get(msn)
                    if not parts or len(parts) != max(parts) + 1 or msn + 1 not in r.parts_of:
                        continue  # not every part of it was decoded
                    frames = [f for p in sorted(parts) for f in r.frames[(msn, p)]]
                else:
                    frames = r.frames.get(key, [])
                lat += [(t - sent) / 1000 for _, sent in frames]
            rows[(label, mode)] = summarize(lat)
        # The floor: next part's first frame, publisher delay, codec delays.
        extra = send_delay + (0.0 if copy else codec_delay_ms.get(r.name, float("nan")))
        keys = sorted(
            k
            for k in r.frames
            if k in r.arrivals["blocking"]
            and window_start_ms <= r.arrivals["blocking"][k] <= window_end_ms
        )
        fl: list[float] = []
        for msn, part in keys:
            nxt = r.frames.get((msn, part + 1)) or r.frames.get((msn + 1, 0))
            if not nxt or not r.frames[(msn, part)]:
                continue
            first_next = nxt[0][1]
            fl += [(first_next - sent + extra) / 1000 for _, sent in r.frames[(msn, part)]]
        floors[label] = summarize(fl)
    return rows, floors, notes, cpu


def run_once(
    passthrough: str, preset: str, seconds: float, warmup: float, codec_delay_ms: dict[str, float]
) -> Result:
    with tempfile.TemporaryDirectory(prefix="aethex-latency-") as tmp:
        work = Path(tmp)
        server = LiveServer(work, passthrough=passthrough, preset=preset)
        server.prepare()
        server.start()
        pub_log = work / "publisher.jsonl"
        pub = start_publisher(server.rtmp_url(), warmup + seconds + 40, pub_log)
        try:
            rows, floors, notes, _ = asyncio.run(
                measure(server, pub_log, seconds, warmup, codec_delay_ms)
            )
        finally:
            err = stop_process(pub)
            server.stop()
        if err:
            notes.append(f"publisher stderr: {err[-300:]}")
        return Result(passthrough, rows, floors, notes)


def fmt(v: float) -> str:
    return "   n/a" if math.isnan(v) else f"{v:6.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seconds", type=float, default=30.0, help="measured seconds per run")
    ap.add_argument("--warmup", type=float, default=8.0)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--passthrough", choices=("both", "auto", "never"), default="both")
    ap.add_argument("--preset", default="veryfast", help="AETHEX_TRANSCODE__PRESET")
    args = ap.parse_args()

    print(
        f"# LL-HLS latency: 720p30 source, preset={args.preset}, segment 2 s, part 0.333 s, "
        f"{args.seconds:.0f} s measured after {args.warmup:.0f} s warm-up, runs={args.runs}"
    )
    print(f"# load average at start: {procstats.loadavg()}")
    interval = 1000 / FPS
    dec_frames = decoder_delay(1280, 720)
    codec_delay: dict[str, float] = {}
    for name, (w, h, kbps) in {"720p": (1280, 720, 3000), "480p": (854, 480, 1200)}.items():
        frames, per_frame = encoder_delay(args.preset, w, h, kbps)
        codec_delay[name] = (dec_frames + frames) * interval + per_frame
        print(
            f"# server codec delay {name}: source decoder holds {dec_frames} frame(s), x264 "
            f"{args.preset} holds {frames} frame(s) + {per_frame:.1f} ms/frame -> "
            f"{codec_delay[name]:.0f} ms"
        )
    modes = ("auto", "never") if args.passthrough == "both" else (args.passthrough,)
    results: dict[str, list[Result]] = defaultdict(list)
    for run in range(args.runs):
        for pt in modes:
            res = run_once(pt, args.preset, args.seconds, args.warmup, codec_delay)
            results[pt].append(res)
            print(f"\n## run {run + 1}, passthrough={pt}")
            for note in res.notes:
                print(f"#   {note}")
    for pt in modes:
        rs = results[pt]
        print(
            f"\n## passthrough={pt} (medians over {len(rs)} run(s)), seconds from frame "
            f"sent to reader has its bytes"
        )
        print(
            f"{'rendition':<14}{'reader':<16}{'frames':>7} {'p50':>6} {'p95':>6} {'max':>6}"
            f"  {'p95/floor':>9}"
        )
        labels = list(dict.fromkeys(label for label, _ in rs[0].rows))
        for label in labels:
            floor = {k: median([r.floor[label][k] for r in rs]) for k in ("p50", "p95", "max")}
            for mode in MODES:
                st = {
                    k: median([r.rows[(label, mode)][k] for r in rs])
                    for k in ("n", "p50", "p95", "max")
                }
                ratio = st["p95"] / floor["p95"] if floor["p95"] == floor["p95"] else float("nan")
                print(
                    f"{label:<14}{mode:<16}{int(st['n']):>7} {fmt(st['p50'])} "
                    f"{fmt(st['p95'])} {fmt(st['max'])}  {ratio:9.2f}"
                )
            nf = int(median([r.floor[label]["n"] for r in rs]))
            print(
                f"{label:<14}{'floor':<16}{nf:>7} {fmt(floor['p50'])} {fmt(floor['p95'])} "
                f"{fmt(floor['max'])}"
            )
            b = median([r.rows[(label, "blocking")]["p95"] for r in rs])
            p = median([r.rows[(label, "poll-parts")]["p95"] for r in rs])
            sg = median([r.rows[(label, "poll-segments")]["p95"] for r in rs])
            goal = "met" if b <= 0.8 else "MISSED"
            print(
                f"{label:<14}p95 ratios: poll-parts/blocking {p / b:.2f}, "
                f"poll-segments/blocking {sg / b:.2f}; goal blocking p95 <= 0.8 s: {goal}"
            )
    print(f"\n# load average at end: {procstats.loadavg()}")


if __name__ == "__main__":
    main()
