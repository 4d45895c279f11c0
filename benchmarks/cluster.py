"""LL-HLS through a Varnish edge (issue 15): many simulated viewers through a real varnishd
running config/varnish/aethex.vcl in front of one origin, against viewers direct to the same
origin, measured in the same run.

A real publisher (``benchmarks/lib/publisher.py``, own process) pushes into ``aethex serve``
(transcoding, 2 s segments, 0.333 s parts): 8 s of its 720p30 picture encoded once at the start
and sent over and over, since encoding it live would take a fifth of a core of the two. Three
phases on one rendition, one after another on the same stream: ``--baseline`` viewers direct
(the origin CPU the goal compares with), ``--varnish`` viewers through Varnish, ``--direct``
viewers direct. Each viewer does what hls.js does (blocking playlist reload for the next part
with ``_HLS_skip=YES``, then the part), in client processes: ``benchmarks/lib/llhls_viewers.c``
by default, built with the system's C compiler, so that the clients' share of the 2 cores is as
small as it can be; ``--client raw`` for the Python viewer of ``benchmarks/hls_delivery.py``
(its minimal keep-alive client) and ``--client aiohttp`` for aiohttp's. varnishd runs with the
VCL header's recommended parameters (``RECOMMENDED_PARAMS``), then any ``--param``.

Printed per phase: part delay p50/p99 from the part's availability (the first blocking
playlist response listing it, across all viewers) to each viewer having its bytes; origin CPU
over the measured window; varnishd's CPU per request and per part's requests; what the origin
received per part (its ``aethex_hls_requests_total``
for direct phases, its ``aethex_hls_cache_fills_total`` for the Varnish phase, whose players'
beacons are not sent here); client CPU and errors.

Goal: p99 <= 100 ms through Varnish at 2,000 viewers with origin CPU no higher than at 100
direct viewers.

    .venv/bin/python benchmarks/cluster.py [--varnish 2000] [--direct 1000] [--baseline 100]
        [--seconds 20] [--procs 2] [--rendition 480p] [--client c|raw|aiohttp]
        [--param NAME=VALUE ...] [--skip-direct] [--quick]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.hls_delivery import run_viewers
from benchmarks.lib import procstats
from benchmarks.lib.live_server import LiveServer
from benchmarks.lib.publisher import start_publisher
from benchmarks.lib.server import stop_process
from benchmarks.lib.varnish import RECOMMENDED_PARAMS, VarnishServer

PART = 0.333
CORES = os.cpu_count() or 1
_SAMPLE_RE = re.compile(r'^(aethex_hls_(?:requests|cache_fills)_total)\{kind="([a-z_]+)"')


@dataclass
class Via:
    """What ``run_viewers`` reads of a server: where the viewers go, whose CPU is measured."""

    base: str
    proc: Any


def origin_requests(server: LiveServer) -> dict[str, float]:
    """The origin's request counters: ``requests:KIND`` (every HLS request, summed over status)
    and ``fills:KIND`` (those a cache sent)."""
    out: dict[str, float] = {}
    with urllib.request.urlopen(f"{server.base}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            m = _SAMPLE_RE.match(line)
            if m:
                name = "fills" if "cache_fills" in m.group(1) else "requests"
                key = f"{name}:{m.group(2)}"
                out[key] = out.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def phase(
    name: str,
    server: LiveServer,
    via: Via,
    viewers: int,
    args: argparse.Namespace,
    work: Path,
    edge: VarnishServer | None = None,
) -> dict:
    before, t0 = origin_requests(server), time.monotonic()
    edge_pid = edge.pid if edge is not None else None
    edge0 = procstats.tree_cpu_seconds(edge_pid) if edge_pid else 0.0
    req0 = edge.stat("MAIN.client_req") if edge is not None else 0
    v = run_viewers(
        via,  # type: ignore[arg-type]  # run_viewers reads .base and .proc only
        args.rendition,
        viewers,
        args.procs,
        args.seconds,
        args.warmup,
        args.ramp,
        work,
        args.client,
    )
    after, elapsed = origin_requests(server), time.monotonic() - t0
    edge_cpu = (procstats.tree_cpu_seconds(edge_pid) - edge0) / elapsed if edge_pid else None
    edge_note = ""
    if edge is not None and edge_cpu is not None:
        # varnishd's CPU per request over the whole phase, and what one part's requests (a
        # blocking reload and the part, per viewer) cost it: spread over every core of the
        # machine with nothing else running, that is the least time a part's burst can take.
        per_request = edge_cpu * elapsed / max(1, edge.stat("MAIN.client_req") - req0)
        burst = per_request * 2 * viewers
        v["edge_per_request"], v["edge_burst"] = per_request, burst
        edge_note = (
            f", varnishd CPU {edge_cpu * 100:.0f}% (whole phase), {per_request * 1e6:.0f} us "
            f"per request, {burst * 1000:.0f} ms per part's requests ({burst / CORES * 1000:.0f} "
            f"ms spread over {CORES} cores)"
        )
    parts = elapsed / PART
    prefix = "fills:" if name == "varnish" else "requests:"
    per_part = {
        k.split(":", 1)[1]: (after.get(k, 0.0) - before.get(k, 0.0)) / parts
        for k in after
        if k.startswith(prefix) and after.get(k, 0.0) - before.get(k, 0.0) > 0
    }
    v["name"] = name
    v["per_part"] = per_part
    print(
        f"{name:>8} {viewers:5d} viewers: part delay p50 {v['p50'] * 1000:6.1f} ms, p99 "
        f"{v['p99'] * 1000:6.1f} ms (until the playlist naming it p50/p99 "
        f"{v['announce'][0] * 1000:.0f}/{v['announce'][1] * 1000:.0f} ms, then the part "
        f"{v['fetch'][0] * 1000:.0f}/{v['fetch'][1] * 1000:.0f} ms); origin CPU "
        f"{v['server_cpu'] * 100:5.1f}%" + edge_note + "; origin requests "
        f"per part {', '.join(f'{k} {n:.2f}' for k, n in sorted(per_part.items()))}; client "
        f"CPU {', '.join(f'{c * 100:.0f}%' for c in v['client_cpu'])}; parts got median "
        f"{v['got_median']} of {v['parts_published']}; errors {v['errors'] or 'none'}",
        flush=True,
    )
    return v


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--varnish", type=int, help="viewers through Varnish (2000)")
    ap.add_argument("--direct", type=int, help="viewers direct to the origin (1000)")
    ap.add_argument("--baseline", type=int, help="direct viewers: the CPU goal (100)")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--ramp", type=float, default=5.0)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--rendition", default="480p")
    ap.add_argument("--preset", default="veryfast")
    ap.add_argument(
        "--client",
        choices=("c", "raw", "aiohttp"),
        default="c",
        help="viewers: in C (the default, the least CPU), the Python viewer with its minimal "
        "keep-alive client (about a third of aiohttp's CPU per request), or with aiohttp",
    )
    ap.add_argument(
        "--param",
        action="append",
        default=[],
        help="a varnishd -p NAME=VALUE after the VCL's recommended ones, e.g. "
        "thread_pool_max=5000 for Varnish's default (repeatable)",
    )
    ap.add_argument("--skip-direct", action="store_true", help="only baseline and Varnish")
    ap.add_argument(
        "--quick", action="store_true", help="200/100/20 viewers (unless given), 8 s: a check"
    )
    args = ap.parse_args()
    counts = (200, 100, 20) if args.quick else (2000, 1000, 100)
    args.varnish = args.varnish if args.varnish is not None else counts[0]
    args.direct = args.direct if args.direct is not None else counts[1]
    args.baseline = args.baseline if args.baseline is not None else counts[2]
    if args.quick:
        args.seconds, args.warmup, args.ramp = 8.0, 3.0, 2.0
    print(
        f"# Varnish edge: {args.varnish} viewers through varnishd, {args.direct} direct, "
        f"baseline {args.baseline} direct; varnishd -p {[*RECOMMENDED_PARAMS, *args.param]}; "
        f"rendition {args.rendition}, {args.seconds:.0f} s measured per phase; "
        f"load average {procstats.loadavg()}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="aethex-cluster-") as tmp:
        work = Path(tmp)
        server = LiveServer(
            work, preset=args.preset, extra_env={"AETHEX_HTTP__TRUST_FORWARDED_FOR": "true"}
        )
        server.prepare()
        server.start()
        varnish = VarnishServer(
            server.http_port,
            work / "varnish",
            storage="malloc,256m",
            params=tuple(args.param),
        )
        # Encoded once and sent again and again: an encoder on this machine would take a fifth
        # of a core from the origin, the edge and the viewers measured here.
        pub = start_publisher(server.rtmp_url(), 3600, loop=8.0)
        try:
            varnish.start()
            direct = Via(server.base, server.proc)
            cached = Via(varnish.base, server.proc)
            pub_t0, pub_cpu0 = time.monotonic(), procstats.tree_cpu_seconds(pub.pid)
            base = phase("baseline", server, direct, args.baseline, args, work)
            edge = phase("varnish", server, cached, args.varnish, args, work, varnish)
            flat = edge
            if not args.skip_direct:
                flat = phase("direct", server, direct, args.direct, args, work)
            pub_cpu = (procstats.tree_cpu_seconds(pub.pid) - pub_cpu0) / (time.monotonic() - pub_t0)
            print(f"# publisher (copying its loop): {pub_cpu * 100:.1f}% of a core", flush=True)
        finally:
            stop_process(pub)
            varnish.stop()
            server.stop()
    ok_p99 = edge["p99"] <= 0.100
    ok_cpu = edge["server_cpu"] <= base["server_cpu"]
    print(
        f"# verdict: through Varnish at {args.varnish} viewers part delay p99 "
        f"{edge['p99'] * 1000:.1f} ms (goal <= 100 ms: {'met' if ok_p99 else 'missed'}); origin "
        f"CPU {edge['server_cpu'] * 100:.1f}% against {base['server_cpu'] * 100:.1f}% at "
        f"{args.baseline} direct viewers (goal no higher: {'met' if ok_cpu else 'missed'}); "
        f"{args.direct} direct: p99 {flat['p99'] * 1000:.1f} ms, CPU "
        f"{flat['server_cpu'] * 100:.1f}%",
        flush=True,
    )


if __name__ == "__main__":
    main()
