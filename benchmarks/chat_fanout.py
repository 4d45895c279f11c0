"""Chat fan-out: 1000 WebSocket viewers in one room, senders producing 1000 messages/s in total
for 30 s; then the memory of 10,000 idle chat connections.

    python benchmarks/chat_fanout.py                      # the full run (goals below)
    python benchmarks/chat_fanout.py --viewers 50 --rate 100 --seconds 3 --idle 500   # a check

The server is ``python -m mediaserver serve`` in a subprocess (LiveServer, transcoding
off) with the per-user rate limit raised by setting. Senders are users with API tokens made by
the CLI (``aethex user create`` / ``aethex token create --json``); each message carries its
sender, sequence number and wall-clock send time, so every viewer computes send-to-receive
latency on the same clock. Viewers and senders run in client processes of their own (one
event loop cannot both produce this load and measure it honestly), started as ``worker``
subcommands of this script; they report latency histograms (0.1 ms bins) and counts as JSON.

Why a viewer process parses each distinct frame once: the server writes the SAME bytes to
every socket in a tick (one broadcast frame per room per tick), so the 250 viewers of a client
process receive 250 identical texts. Decoding the JSON and walking its ~50 events in Python
for each of them is 1000 viewers x 1000 msg/s = a million Python event visits per second: the
client processes, not the server, became the bottleneck (they took both cores and their lag
showed up as seconds of "latency"). A real viewer parses on its own machine; here that work
would only take CPU from the server under test. So a process parses a frame text the first
time it sees it (cache keyed by the text, bounded) into a numpy array of the bench messages'
send times, and each viewer then only does ``now = time.time()`` when ITS socket delivered the
frame, adds the message count to its own counter and records (frame id, now); after the run
``now - send_time`` of each message of each delivery goes into the histogram. Latency is still
per viewer per message, measured when that viewer's socket delivered it; lost is still per
viewer (its count against the messages sent). The viewers' sockets are lean WebSockets
(benchmarks/lib/ws_lean.py: a Protocol per socket, frames cut in ``data_received``) rather
than aiohttp's client, whose reader task, queue and decoded text per delivery cost more CPU
than the parsing did once it was shared.

Printed: p50/p99 send-to-receive latency over all deliveries, messages lost (a viewer missing
any message sent while it was connected), server CPU (% of one core) and RSS; then the server's
RSS with 10,000 idle sockets open and its growth per connection. There is no reference server
for chat: the figures are compared with the goals (p99 <= 100 ms, 0 lost, 10k idle < 1 GiB).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import resource
import subprocess
import sys
import tempfile
import time
from array import array
from collections import OrderedDict
from pathlib import Path

import numpy as np

# Run as a script: the repository root on sys.path, for benchmarks.lib and the server's code.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.lib import ROOT, procstats, ws_lean
from benchmarks.lib.live_server import LiveServer

SLUG = "bench-0"
BIN_MS = 0.1
MAX_BINS = 200_000  # 20 s of latency in 0.1 ms bins; slower deliveries land in the last bin
IDLE_WAVE = 200  # idle sockets a client process opens at once


def raise_nofile() -> int:
    """Lift the open-files limit to the hard limit (10k sockets need more than the usual 1024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# -- workers (client processes) ----------------------------------------------------------------


class FrameTimes:
    """Send times of the bench messages in a frame payload, parsed once per distinct payload
    (keyed by its text or bytes). A payload with bench messages gets an id (its index in
    ``times``) that outlives the cache, so a delivery is recorded as an id and a time."""

    def __init__(self, size: int = 512) -> None:
        self.size = size  # 25 s of 50 ms ticks: every viewer of a process sees a frame within
        self._cache: OrderedDict[str | bytes, tuple[int, int]] = OrderedDict()
        self.times: list[np.ndarray] = []  # id -> send times (seconds since the epoch)
        self.parsed = 0  # distinct frames parsed (a re-parse after eviction counts again)

    def get(self, payload: str | bytes) -> tuple[int, int]:
        """(id or -1, number of bench messages) of the frame ``payload``."""
        got = self._cache.get(payload)
        if got is None:
            got = self._cache[payload] = self._parse(payload)
            self.parsed += 1
            if len(self._cache) > self.size:
                self._cache.popitem(last=False)
        return got

    def _parse(self, payload: str | bytes) -> tuple[int, int]:
        out = []
        for ev in json.loads(payload):
            if ev.get("type") != "chat:message":
                continue
            parts = ev["content"].split(" ", 3)
            if len(parts) >= 3 and parts[0] == "bench":
                out.append(float(parts[2]))
        if not out:
            return -1, 0
        self.times.append(np.array(out, dtype=np.float64))
        return len(self.times) - 1, len(out)


def chat_histogram(
    times: list[np.ndarray], ids: array, at: array, chunk: int = 100_000
) -> np.ndarray:
    """Send-to-receive latencies in BIN_MS bins: for every delivery (frame ``ids[d]`` reached a
    viewer's socket at ``at[d]``) and every bench message in that frame (send times
    ``times[ids[d]]``), ``at[d] - send time``, clipped into the histogram's range."""
    hist = np.zeros(MAX_BINS, dtype=np.int64)
    if not len(ids):
        return hist
    per_ms = 1000 / BIN_MS
    lens = np.array([len(t) for t in times], dtype=np.int64)
    starts = np.cumsum(lens) - lens
    flat = np.concatenate(times)
    all_ids = np.frombuffer(ids, dtype=np.int64)
    all_at = np.frombuffer(at, dtype=np.float64)
    for k in range(0, len(all_ids), chunk):
        fid, now = all_ids[k : k + chunk], all_at[k : k + chunk]
        counts = lens[fid]
        ends = np.cumsum(counts)
        within = np.arange(ends[-1]) - np.repeat(ends - counts, counts)
        sent = flat[np.repeat(starts[fid], counts) + within]
        bins = ((np.repeat(now, counts) - sent) * per_ms).astype(np.int64)
        np.clip(bins, 0, MAX_BINS - 1, out=bins)
        hist += np.bincount(bins, minlength=MAX_BINS)
    return hist


async def _viewers(args: argparse.Namespace) -> dict:
    """A client process's viewers, each a lean WebSocket (benchmarks/lib/ws_lean.py): a frame
    is handled in its socket's ``data_received`` (no task, no queue, no decoding per socket),
    recorded as (frame id, arrival time) and binned after the run."""
    got = [0] * args.count
    frames = FrameTimes()
    ids = array("q")  # per delivery with bench messages: the frame's id...
    at = array("d")  # ...and when THIS viewer's socket delivered it
    measuring = [False, False]  # started ("go"), stopped ("stop")
    closed_early: list[int] = []
    url = f"{args.base}/ws/chat/{SLUG}"

    def on_message(i: int, op: int, payload: bytes) -> None:
        if op != ws_lean.TEXT or not measuring[0] or measuring[1]:
            return
        now = time.time()
        fid, n = frames.get(payload)
        if n:
            got[i] += n
            ids.append(fid)
            at.append(now)

    def on_closed(fut: asyncio.Future[int]) -> None:
        if not measuring[1]:  # the server hung up on a viewer during the run
            closed_early.append(fut.result())

    sockets = []
    for i in range(args.count):
        sock = await ws_lean.connect(url, on_message=functools.partial(on_message, i))
        sock.closed.add_done_callback(on_closed)
        sockets.append(sock)
    print(json.dumps({"ready": len(sockets)}), flush=True)
    # Each socket first gets its history frame; the measurement starts from "go".
    line = await asyncio.to_thread(sys.stdin.readline)
    assert line.strip() == "go", line
    measuring[0] = True
    await asyncio.to_thread(sys.stdin.readline)  # "stop": senders done + drain
    measuring[1] = True
    await asyncio.gather(*(s.close() for s in sockets))
    hist = chat_histogram(frames.times, ids, at)
    nz = {int(b): int(hist[b]) for b in np.flatnonzero(hist)}
    return {
        "received": got,
        "hist": nz,
        "frames_parsed": frames.parsed,
        "closed_early": closed_early,
    }


async def _senders(args: argparse.Namespace) -> dict:
    import aiohttp

    tokens = args.tokens.split(",")
    per_sender = args.rate / len(tokens)
    sent = 0
    async with aiohttp.ClientSession() as http:
        sockets = [
            await http.ws_connect(
                f"{args.base}/ws/chat/{SLUG}",
                headers={"Authorization": f"Bearer {t}"},
                heartbeat=None,
            )
            for t in tokens
        ]
        errors: list[str] = []
        # Senders read the room too: the bench messages each one's socket got (its own included).
        frames = FrameTimes()
        received = [0] * len(sockets)
        closed: list[tuple[int, int | None]] = []  # (sender, close code): the server closed it

        async def drain(k: int, ws: aiohttp.ClientWebSocketResponse) -> None:
            try:
                async for msg in ws:
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        continue
                    received[k] += frames.get(msg.data)[1]
                    if '"chat:error"' in msg.data:
                        for ev in json.loads(msg.data):
                            if ev.get("type") == "chat:error":
                                errors.append(ev.get("code", "?"))
            except (aiohttp.ClientError, ConnectionError):
                pass  # closed under us: run() counts it

        drains = [asyncio.create_task(drain(k, ws)) for k, ws in enumerate(sockets)]
        print(json.dumps({"ready": len(sockets)}), flush=True)
        line = await asyncio.to_thread(sys.stdin.readline)
        assert line.strip() == "go", line
        t0 = time.monotonic()
        n = int(args.seconds * per_sender)

        async def run(k: int, ws: aiohttp.ClientWebSocketResponse) -> int:
            count = 0
            for seq in range(n):
                due = t0 + (seq + k / len(sockets)) / per_sender
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                try:
                    await ws.send_str(
                        json.dumps(
                            {"type": "chat:send", "content": f"bench {k}:{seq} {time.time():.6f}"}
                        )
                    )
                except (aiohttp.ClientError, ConnectionError):
                    closed.append((k, ws.close_code))
                    break
                count += 1
            return count

        counts = await asyncio.gather(*(run(k, ws) for k, ws in enumerate(sockets)))
        sent = sum(counts)
        elapsed = time.monotonic() - t0
        await asyncio.sleep(1.0)  # let the last errors arrive
        for ws in sockets:
            await ws.close()
        for d in drains:
            d.cancel()
    return {
        "sent": sent,
        "errors": len(errors),
        "error_codes": sorted(set(errors)),
        "elapsed": elapsed,
        "received": received,
        "closed": closed,
    }


async def _idle(args: argparse.Namespace) -> dict:
    import aiohttp

    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn) as http:

        async def connect() -> aiohttp.ClientWebSocketResponse:
            ws = await http.ws_connect(f"{args.base}/ws/chat/{SLUG}", heartbeat=None)
            await ws.receive(timeout=60)  # the history frame, so nothing waits in buffers
            return ws

        # Joins in concurrent waves (like clients reconnecting after a restart), not one by
        # one: the client's connect loop should not be what takes the time.
        sockets: list[aiohttp.ClientWebSocketResponse] = []
        while len(sockets) < args.count:
            wave = min(IDLE_WAVE, args.count - len(sockets))
            sockets += await asyncio.gather(*(connect() for _ in range(wave)))
        print(json.dumps({"ready": len(sockets)}), flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        for ws in sockets:
            await ws.close()
    return {"closed": len(sockets)}


def worker_main(args: argparse.Namespace) -> None:
    raise_nofile()
    import uvloop

    fn = {"viewers": _viewers, "senders": _senders, "idle": _idle}[args.role]
    result = uvloop.run(fn(args))
    print(json.dumps({"result": result}), flush=True)


# -- the conductor -------------------------------------------------------------------------------


class Worker:
    def __init__(self, role: str, base: str, **kw: object) -> None:
        cmd = [sys.executable, __file__, "worker", role, "--base", base]
        for k, v in kw.items():
            cmd += [f"--{k}", str(v)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def read(self, timeout: float = 120.0) -> dict:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.proc.args[3]} ended early (exit {self.proc.wait()})")
        return json.loads(line)

    def tell(self, word: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(word + "\n")
        self.proc.stdin.flush()


def cli(server: LiveServer, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "mediaserver", *args],
        env=server.env(),
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout


def percentile_from_hist(hist: dict[int, int], q: float) -> float:
    total = sum(hist.values())
    if not total:
        return float("nan")
    target = q / 100 * total
    acc = 0
    for b in sorted(hist):
        acc += hist[b]
        if acc >= target:
            return (b + 0.5) * BIN_MS
    return (max(hist) + 0.5) * BIN_MS


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--viewers", type=int, default=1000)
    ap.add_argument("--procs", type=int, default=4, help="viewer client processes")
    ap.add_argument("--senders", type=int, default=10)
    ap.add_argument("--rate", type=float, default=1000.0, help="messages per second in total")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--idle", type=int, default=10_000, help="idle connections (0: skip)")
    ap.add_argument("--idle-procs", type=int, default=4)
    args = ap.parse_args()
    nofile = raise_nofile()
    need = max(args.viewers, args.idle) + 256
    if nofile < need:
        print(f"warning: open-files limit {nofile} < {need}; raise the hard limit (ulimit -Hn)")

    with tempfile.TemporaryDirectory(prefix="chat-bench-") as tmp:
        server = LiveServer(
            Path(tmp),
            transcode=False,
            extra_env={
                "AETHEX_CHAT__RATE_LIMIT_MESSAGES": str(10 * int(args.rate) + 100),
                "AETHEX_CHAT__RATE_LIMIT_WINDOW": "1",
                "AETHEX_CHAT__FRAME_BUDGET": str(10 * int(args.rate) + 100),
                "AETHEX_CHAT__FRAME_WINDOW": "1",
                "AETHEX_CHAT__HEARTBEAT": "0",
                "AETHEX_CHAT__IDLE_TIMEOUT": "0",
                "AETHEX_HTTP__MAX_CONNECTIONS": str(need),
            },
        )
        server.prepare()
        tokens = []
        for i in range(args.senders):
            cli(server, "user", "create", f"sender_{i}", "--email", f"s{i}@example.test")
            tokens.append(
                json.loads(cli(server, "token", "create", f"sender_{i}", "--json"))["token"]
            )
        pid = server.start()
        try:
            run(server, pid, args, tokens)
        finally:
            server.stop()


def run(server: LiveServer, pid: int, args: argparse.Namespace, tokens: list[str]) -> None:
    base = server.base
    rss0 = procstats.rss_mib(pid)
    print(f"server pid {pid}, RSS at start {rss0:.0f} MiB; load average {procstats.loadavg()}")
    viewers = [Worker("viewers", base, count=n) for n in split(args.viewers, args.procs) if n]
    for w in viewers:
        w.read()
    senders = Worker("senders", base, tokens=",".join(tokens), rate=args.rate, seconds=args.seconds)
    senders.read()
    time.sleep(0.5)
    print(
        f"{args.viewers} viewers and {len(tokens)} senders connected; sending "
        f"{args.rate:.0f} msg/s for {args.seconds:.0f} s"
    )
    contention = procstats.Contention(pid)
    cpu0, t0 = procstats.cpu_seconds(pid), time.monotonic()
    clients0 = sum(procstats.cpu_seconds(w.proc.pid) for w in viewers)
    peak_rss = 0.0
    for w in viewers:
        w.tell("go")
    senders.tell("go")
    while senders.proc.poll() is None and time.monotonic() - t0 < args.seconds + 0.5:
        time.sleep(0.5)
        peak_rss = max(peak_rss, procstats.rss_mib(pid))
    sent = senders.read(args.seconds + 120)["result"]
    wall = time.monotonic() - t0
    cpu = (procstats.cpu_seconds(pid) - cpu0) / wall
    clients_cpu = (sum(procstats.cpu_seconds(w.proc.pid) for w in viewers) - clients0) / wall
    machine = contention.stop()
    time.sleep(2.0)  # drain: the last ticks reach every viewer
    for w in viewers:
        w.tell("stop")
    hist: dict[int, int] = {}
    received: list[int] = []
    parsed = 0
    closed_early: list[int] = []
    for w in viewers:
        res = w.read()["result"]
        received += res["received"]
        parsed += res["frames_parsed"]
        closed_early += res["closed_early"]
        for b, n in res["hist"].items():
            hist[int(b)] = hist.get(int(b), 0) + n
        w.proc.wait(30)
    senders.proc.wait(30)
    expected = sent["sent"] - sent["errors"]
    lost = sum(max(0, expected - r) for r in received)
    deliveries = sum(hist.values())
    p50, p99 = percentile_from_hist(hist, 50), percentile_from_hist(hist, 99)
    print(
        f"sent {sent['sent']} messages in {sent['elapsed']:.1f} s "
        f"({sent['sent'] / max(sent['elapsed'], 1e-9):.0f}/s); refused {sent['errors']} "
        f"{sent['error_codes'] or ''}"
    )
    print(f"deliveries {deliveries} (expected {expected * len(received)}); lost {lost}")
    print(
        f"client side: {parsed} distinct frames parsed in {len(viewers)} viewer processes, "
        f"which used {clients_cpu * 100:.0f}% of one core in all"
    )
    if closed_early:
        print(f"viewers closed by the server during the run: {len(closed_early)} {closed_early}")
    print(f"send-to-receive latency: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    print(f"server CPU {cpu * 100:.0f}% of one core; RSS peak {peak_rss:.0f} MiB")
    print(f"machine: {machine}")

    idle_rss = None
    if args.idle:
        time.sleep(1.0)
        before = procstats.rss_mib(pid)
        idle = [Worker("idle", base, count=n) for n in split(args.idle, args.idle_procs) if n]
        for w in idle:
            w.read(600)
        time.sleep(1.0)
        idle_rss = procstats.rss_mib(pid)
        for w in idle:
            w.tell("stop")
        for w in idle:
            w.read(120)
            w.proc.wait(30)
        print(
            f"{args.idle} idle chat connections: server RSS {idle_rss:.0f} MiB "
            f"(+{idle_rss - before:.0f} MiB, {(idle_rss - before) * 1024 / args.idle:.1f} "
            f"KiB each)"
        )

    print("goals (no reference server for chat):")
    print(f"  p99 {p99:.1f} ms <= 100 ms: {'yes' if p99 <= 100 else 'NO'}")
    print(f"  lost {lost} == 0: {'yes' if lost == 0 else 'NO'}")
    if idle_rss is not None:
        if args.idle >= 10_000:
            print(
                f"  RSS with 10,000 idle {idle_rss:.0f} MiB < 1024 MiB: "
                f"{'yes' if idle_rss < 1024 else 'NO'}"
            )
        else:
            print(f"  RSS with 10,000 idle: not measured (only {args.idle} connections)")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        wp = argparse.ArgumentParser()
        wp.add_argument("role", choices=["viewers", "senders", "idle"])
        wp.add_argument("--base", required=True)
        wp.add_argument("--count", type=int, default=0)
        wp.add_argument("--tokens", default="")
        wp.add_argument("--rate", type=float, default=0.0)
        wp.add_argument("--seconds", type=float, default=0.0)
        worker_main(wp.parse_args(sys.argv[2:]))
    else:
        main()
