"""Restream benchmark (issue 14): relaying 10 channels to 2 destinations each, ours against
nginx-rtmp's ``push`` relaying the same inputs, in the same run: CPU, and the delay each relay
adds between a frame's arrival at its ingest and its arrival at the destination.

A receiving nginx-rtmp (two applications, ``live on``) stands for the platforms. Ours: our
server (no transcoder: the relay alone), 10 channels each with 2 destinations (one per
receiving application), 10 ``ffmpeg -re -c copy`` publishers of a ~6 Mbit/s 720p30 file.
Reference: an nginx-rtmp with ``push`` to the same two applications, the same publishers.

Delay: beside the 10 loaded channels, each relay under test carries one more, the probe
channel, with the same source and also 2 destinations, at the same time as the load. Its
publisher is ``benchmarks.lib.rtmp_probe``'s sender (our sans-I/O RTMP client over a plain
socket, in its own process) sending the same file's frames at real-time pace, each prefixed
with an SEI naming its index and send time; its destinations are the probe receiver (our
sans-I/O RTMP server over asyncio, in its own process), which logs each frame's arrival. Both
read CLOCK_MONOTONIC, so delay = arrival - send per frame, matched by the index (exact where
timestamps alone are ambiguous; the timestamps are checked to keep one offset per connection:
ours rebases them to 0 per destination). The delay counts every frame sent during the CPU
window (the relays' start-up backlog is before it); frames sent but never received are
reported as unmatched. Reported: p50/p95/max for ours and for nginx over all rounds, the
difference ours - nginx as context, and the goal: ours p95 under 100 ms. The sender's own
lateness against its schedule is printed too: when it is large, the machine was busy.

Each window starts 3 s after every relay is live at the destinations (the receiving nginx's
stat page shows 2 x channels streams publishing, the probe receiver has frames on both
probe destinations), so neither go-live work nor the relays' connection set-up is counted. CPU
is each relay's process tree (/proc) over the window, medians over rounds, ratio ours / nginx
(goal: at most 2.0); both relays carry the probe channel, so the CPU figures include it. Ours
is a new server with a new data directory each round, and every other round nginx goes first.

    .venv/bin/python benchmarks/restream.py [--channels 10] [--seconds 15] [--rounds 3] [--quick]

``--quick`` (2 channels, 8 s, 1 round) checks that everything runs; its figures are not the
issue's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# Run as a script: the repository root on sys.path, for benchmarks.lib and the server's code.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.lib import procstats, rtmp_probe
from benchmarks.lib.live_server import LiveServer
from benchmarks.lib.nginx import RtmpNginx
from benchmarks.lib.server import free_port
from benchmarks.rtmp_ingest import make_source, start_publishers, wait_until
from mediaserver.settings import load_settings
from storage import Database
from storage import restream as store

APPS = ("dest1", "dest2")
PROBE_APPS = ("probe1", "probe2")
RAMP = 3.0
LIVE_TIMEOUT = 60.0
DELAY_GOAL_MS = 100.0
CPU_GOAL = 2.0


class Receiver(RtmpNginx):
    """The destinations: nginx-rtmp taking each relayed stream in one of two applications."""

    def body(self) -> str:
        apps = "".join(f"        application {a} {{ live on; record off; }}\n" for a in APPS)
        return f"""rtmp {{
    server {{
        listen 127.0.0.1:{self.port};
        chunk_size 4096;
{apps}    }}
}}"""


class PushNginx(RtmpNginx):
    """The reference relay: nginx-rtmp pushing every stream it takes to both applications; the
    probe channel in an application of its own, pushed to the probe receiver the same way."""

    def __init__(self, workdir: Path, receiver_port: int, probe_port: int) -> None:
        super().__init__(workdir / "push")
        self.receiver_port = receiver_port
        self.probe_port = probe_port

    def body(self) -> str:
        def pushes(port: int, apps: tuple[str, ...]) -> str:
            return "".join(f"            push rtmp://127.0.0.1:{port}/{a};\n" for a in apps)

        return f"""rtmp {{
    server {{
        listen 127.0.0.1:{self.port};
        chunk_size 4096;
        application live {{
            live on;
            record off;
{pushes(self.receiver_port, APPS)}        }}
        application probe {{
            live on;
            record off;
{pushes(self.probe_port, PROBE_APPS)}        }}
    }}
}}"""

    def urls(self, channels: int) -> list[str]:
        return [f"rtmp://127.0.0.1:{self.port}/live/bench{i}" for i in range(channels)]

    def probe_url(self) -> str:
        return f"rtmp://127.0.0.1:{self.port}/probe/probe"


class OurRelay(LiveServer):
    """Our server with ``channels`` loaded channels and, last, the probe channel."""

    def __init__(self, workdir: Path, channels: int, receiver_port: int, probe_port: int) -> None:
        super().__init__(
            workdir,
            channels=channels + 1,
            transcode=False,
            extra_env={"AETHEX_RESTREAM__ALLOW_PRIVATE_ADDRESSES": "true"},
        )
        self.loaded = channels
        self.receiver_port = receiver_port
        self.probe_port = probe_port

    def prepare(self) -> None:
        super().prepare()
        settings = load_settings(None, env=self.env())

        async def add() -> None:
            db = Database(settings.effective_database_url)
            await db.connect()
            async with db.session() as s:
                for i in range(self.channels):
                    probe = i == self.loaded
                    port = self.probe_port if probe else self.receiver_port
                    for a in PROBE_APPS if probe else APPS:
                        await store.create_destination(
                            s,
                            i + 1,  # channel ids in creation order
                            name=a,
                            preset="custom",
                            ingest_url=f"rtmp://127.0.0.1:{port}/{a}",
                            stream_key="ours-probe" if probe else f"ours-{i}",
                        )
                await s.commit()
            await db.dispose()

        asyncio.run(add())

    def urls(self) -> list[str]:
        return [self.rtmp_url(i) for i in range(self.loaded)]

    def probe_url(self) -> str:
        return self.rtmp_url(self.loaded)

    def live_relays(self) -> int:
        with urllib.request.urlopen(f"{self.base}/metrics", timeout=10) as r:
            text = r.read().decode()
        return sum(
            1
            for line in text.splitlines()
            if line.startswith("aethex_restream_state{") and line.endswith(" 2.0")
        )


@dataclass
class Phase:
    """One relay's window: CPU, relays live at its end, and the probe's delays."""

    cpu: float
    live: int  # relayed streams publishing at the receiving nginx at the end of the window
    to_live: float  # seconds from the publishers' start until every relay was live
    delays: dict[str, rtmp_probe.Delays]
    late_p95_ms: float  # the probe sender's lateness against its schedule
    contention: str
    note: str = ""  # what the relay said about itself at the end of the window


def stop_all(pubs: list) -> None:
    for p in pubs:
        if p.poll() is None:
            p.terminate()
    for p in pubs:
        p.wait()


def probe_destinations(arrivals: Path) -> int:
    """How many probe destinations have had a frame so far (the receiver flushes every 0.5 s)."""
    return len({a.destination for a in rtmp_probe.read_arrivals(arrivals)})


def phase(
    name: str,
    start: Callable[[], int],
    stop: Callable[[], None],
    urls: list[str],
    probe_url: str,
    receiver: Receiver,
    probe_port: int,
    source: Path,
    seconds: float,
    work: Path,
    at_end: Callable[[], str] = lambda: "",
) -> Phase:
    """Run one relay under the load and the probe; measure over a window once all is live."""
    arrivals, sent_log = work / f"{name}-arrivals.jsonl", work / f"{name}-sent.jsonl"
    # The previous relay's streams must be gone from the receiver before counting this one's.
    wait_until(lambda: receiver.publishing() == 0, 30.0, "the receiver idle")
    want = len(APPS) * len(urls)
    probe_rx = rtmp_probe.start_receiver(probe_port, arrivals)
    try:
        pid = start()
        pubs, sender = [], None
        try:
            long = seconds + RAMP + LIVE_TIMEOUT + 30  # stopped when the window ends
            pubs = start_publishers(source, urls, long)
            sender = rtmp_probe.start_sender(probe_url, source, long, sent_log)

            def all_live() -> bool:
                if sender.poll() is not None or any(p.poll() is not None for p in pubs):
                    raise RuntimeError(f"{name}: a publisher ended before the window")
                return receiver.publishing() >= want and probe_destinations(arrivals) >= len(
                    PROBE_APPS
                )

            to_live = wait_until(all_live, LIVE_TIMEOUT, f"{name}: every relay live")
            time.sleep(RAMP)
            contention = procstats.Contention(pid)
            cpu_reading, t0 = procstats.PreciseCpu(pid), time.monotonic_ns()
            time.sleep(seconds)
            (cpu_s, _), t1 = cpu_reading.seconds(), time.monotonic_ns()
            load = contention.stop()
            live = receiver.publishing()
            end_note = at_end()
            time.sleep(1.0)  # the last frames of the window reach the probe receiver
        finally:
            err = rtmp_probe.stop(sender) if sender is not None else ""
            stop_all(pubs)
            stop()
    finally:
        rtmp_probe.stop(probe_rx)
    sent = rtmp_probe.read_sent(sent_log)
    if not sent:
        raise RuntimeError(f"{name}: the probe sender logged nothing ({err or 'no error'})")
    delays = rtmp_probe.analyze(sent, rtmp_probe.read_arrivals(arrivals), t0, t1)
    late = rtmp_probe.lateness_ms(sent, t0, t1)
    return Phase(cpu_s, live, to_live, delays, late, contention=load, note=end_note)


def verdict(ok: bool) -> str:
    return "meets" if ok else "MISSES"


def run(channels: int, seconds: float, rounds: int, keep: bool = False) -> list[str]:
    lines: list[str] = []
    cpu: dict[str, list[float]] = {"ours": [], "nginx": []}
    delays: dict[str, list[rtmp_probe.Delays]] = {"ours": [], "nginx": []}
    late: dict[str, list[float]] = {"ours": [], "nginx": []}

    def report(r: int, name: str, ph: Phase) -> None:
        pool = rtmp_probe.pooled(name, list(ph.delays.values()))
        cpu[name].append(ph.cpu)
        delays[name] += ph.delays.values()
        late[name].append(ph.late_p95_ms)
        new = [
            f"  round {r + 1} {name:5s}: {ph.cpu:.2f} CPU-s, {ph.live} of "
            f"{len(APPS) * channels} relays live at the receiver{ph.note} "
            f"(all live {ph.to_live:.1f} s after the start)",
            f"      probe delay {pool.summary()}",
            f"      probe sender late p95 {ph.late_p95_ms:.1f} ms; {ph.contention}",
        ]
        if ph.live != len(APPS) * channels:
            new.append(f"  WARNING: {ph.live} of {len(APPS) * channels} relays were live")
        print("\n".join(new), flush=True)

    with contextlib.ExitStack() as stack:
        if keep:
            work = Path(tempfile.mkdtemp(prefix="aethex-restream-"))
            print(f"  keeping the probe logs in {work}", flush=True)
        else:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="aethex-restream-")))
        source = work / "source.flv"
        make_source(source)
        probe_port = free_port()
        receiver = Receiver(work / "receiver")
        receiver.start()
        try:
            push = PushNginx(work, receiver.port, probe_port)
            push.prepare()

            def run_ours(r: int) -> None:
                # A new server and data directory each round: restarted on the rounds
                # before, it would spend its first seconds on their analytics, not relaying.
                (work / f"ours-{r}").mkdir()
                ours = OurRelay(work / f"ours-{r}", channels, receiver.port, probe_port)
                ours.prepare()

                def relays_live() -> str:
                    try:
                        n = str(ours.live_relays())
                    except OSError:
                        n = "?"
                    return f" ({n} of {len(APPS) * (channels + 1)} by our /metrics)"

                ph = phase(
                    f"ours-{r}",
                    ours.start,
                    ours.stop,
                    ours.urls(),
                    ours.probe_url(),
                    receiver,
                    probe_port,
                    source,
                    seconds,
                    work,
                    relays_live,
                )
                report(r, "ours", ph)

            def run_nginx(r: int) -> None:
                ph = phase(
                    f"nginx-{r}",
                    push.start,
                    push.stop,
                    push.urls(channels),
                    push.probe_url(),
                    receiver,
                    probe_port,
                    source,
                    seconds,
                    work,
                )
                report(r, "nginx", ph)

            for r in range(rounds):
                # Every other round nginx first, so each runs as often first as second.
                for run_one in (run_ours, run_nginx) if r % 2 == 0 else (run_nginx, run_ours):
                    run_one(r)
        finally:
            receiver.stop()

    ours_cpu, nginx_cpu = statistics.median(cpu["ours"]), statistics.median(cpu["nginx"])
    ratio = ours_cpu / nginx_cpu if nginx_cpu > 0 else float("inf")
    d_ours = rtmp_probe.pooled("ours", delays["ours"])
    d_nginx = rtmp_probe.pooled("nginx", delays["nginx"])
    p95 = d_ours.p(95)
    lines += [
        f"  ours : {ours_cpu:.2f} CPU-s (median) relaying {channels} x {len(APPS)} (+ the probe)",
        f"  nginx: {nginx_cpu:.2f} CPU-s (median) with push",
        f"  ratio ours/nginx CPU: {ratio:.2f}  ({verdict(ratio <= CPU_GOAL)} the goal of at most "
        f"{CPU_GOAL})",
        f"  added delay, ingest -> destination (probe channel, {len(PROBE_APPS)} destinations, "
        f"all rounds):",
        f"    ours : {d_ours.summary()}",
        f"    nginx: {d_nginx.summary()}",
        f"    ours - nginx: p50 {d_ours.p(50) - d_nginx.p(50):+.1f} ms, "
        f"p95 {p95 - d_nginx.p(95):+.1f} ms, max {d_ours.max - d_nginx.max:+.1f} ms",
        f"    probe sender late p95 (median of rounds): ours {statistics.median(late['ours']):.1f}"
        f" ms, nginx {statistics.median(late['nginx']):.1f} ms (large: the machine was busy)",
        f"  ours p95 delay: {p95:.1f} ms  ({verdict(p95 < DELAY_GOAL_MS)} the goal of under "
        f"{DELAY_GOAL_MS:.0f} ms)",
    ]
    lost = d_ours.sent - d_ours.matched
    if lost:
        lines.append(f"  WARNING: ours lost {lost} of {d_ours.sent} probe frames (not delayed)")
    lost = d_nginx.sent - d_nginx.matched
    if lost:
        lines.append(f"  note: nginx lost {lost} of {d_nginx.sent} probe frames")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--channels", type=int, default=None, help="10 (--quick: 2)")
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="2 channels, 1 round of 8 s")
    ap.add_argument("--keep", action="store_true", help="keep the probe logs (JSON lines)")
    args = ap.parse_args()
    rounds, seconds = (1, 8.0) if args.quick else (args.rounds, args.seconds)
    channels = args.channels if args.channels is not None else (2 if args.quick else 10)
    print(
        f"Restream: {channels} channels x {len(APPS)} destinations (nginx-rtmp receiver) + 1 "
        f"probe channel, {seconds:.0f} s x {rounds} rounds, ours vs nginx-rtmp push; "
        f"load average {procstats.loadavg()}"
    )
    for line in run(channels, seconds, rounds, args.keep):
        print(line)
    print(f"  load average at the end {procstats.loadavg()}")


if __name__ == "__main__":
    main()
