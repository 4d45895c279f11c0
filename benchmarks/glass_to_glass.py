"""Glass-to-glass latency in a real browser: frame sent by the publisher -> frame on screen.

The barcoded 720p30 publisher of ``benchmarks/lib/publisher.py`` (its own process) pushes to our
server
(``python -m mediaserver serve``, transcoding on: 720p + 480p ladder, 2 s segments, 0.333 s
parts). Headless Chromium (Debian's, through Playwright's async API) opens the viewer page
``/streams/bench-0`` (hls.js in low-latency mode), waits for playback, then every ~100 ms
draws the playing ``<video>`` onto a canvas and reads the barcode (``READ_JS``):
latency = the browser's ``Date.now()`` at that moment - the send time in the picture (same
machine, same clock). Measured with Auto quality, then with each level forced through
``window.aethexPlayer.hls.currentLevel``. hls.js's own ``hls.latency`` estimate is printed
beside it.

A sample is taken when the page is polled, not when the frame was presented, so it can be up
to one frame interval (33 ms) late: the figures are an upper bound by that much.

    .venv/bin/python benchmarks/glass_to_glass.py [--seconds 30] [--runs 1]
        [--passthrough auto] [--preset veryfast]

Goal: p50 <= 2.0 s. ``measure_glass_to_glass(page, seconds)`` is the reusable part for the
browser tests.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

# Run as a script: the repository root on sys.path, for benchmarks.lib and the server's code.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.lib import procstats
from benchmarks.lib.barcode import READ_JS
from benchmarks.lib.live_server import LiveServer
from benchmarks.lib.publisher import read_publisher_log, start_publisher
from benchmarks.lib.server import stop_process
from benchmarks.lib.stats import median, percentile

CHROMIUM = os.environ.get("AETHEX_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PLAYING_JS = (
    "() => !!(window.aethexPlayer && window.aethexPlayer.hls && "
    "window.aethexPlayer.video && window.aethexPlayer.video.currentTime > 0.5 && "
    "!window.aethexPlayer.video.paused)"
)
HLS_STATE_JS = """() => {
  const p = window.aethexPlayer || {}, h = p.hls, v = p.video;
  return {latency: h ? h.latency : null, target: h ? h.targetLatency : null,
          level: h ? h.currentLevel : null, auto: h ? h.autoLevelEnabled : null,
          heights: h ? h.levels.map(l => l.height) : [], height: v ? v.videoHeight : 0,
          rate: v ? v.playbackRate : null, buffered: v && v.buffered.length ?
            v.buffered.end(v.buffered.length - 1) - v.currentTime : 0,
          dropped: v && v.getVideoPlaybackQuality ?
            v.getVideoPlaybackQuality().droppedVideoFrames : 0};
}"""


async def measure_glass_to_glass(
    page: Any, seconds: float, interval: float = 0.1, samples: list[dict] | None = None
) -> list[float]:
    """Glass-to-glass latencies (seconds) read off the page's playing video for ``seconds``.

    ``page``: a Playwright async page showing a player whose video carries the clock (the
    viewer page exposes it as ``window.aethexPlayer.video``). Unreadable samples (no picture
    yet, a frame mid-switch) are skipped; ``samples``, if given, receives every raw reading.
    """
    loop = asyncio.get_running_loop()
    out: list[float] = []
    deadline = loop.time() + seconds
    next_at = loop.time()
    while loop.time() < deadline:
        reading = await page.evaluate(READ_JS)
        if samples is not None:
            samples.append(reading)
        if "t" in reading:
            out.append((reading["now"] - reading["t"]) / 1000)
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - loop.time()))
    return out


async def hls_state(page: Any) -> dict:
    return await page.evaluate(HLS_STATE_JS)


async def run_browser(
    base: str, slug: str, seconds: float, warmup: float, levels: bool = True
) -> dict[str, dict]:
    from playwright.async_api import async_playwright

    results: dict[str, dict] = {}
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            context = await browser.new_context(viewport={"width": 1366, "height": 800})
            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(f"{base}/streams/{slug}")
            await page.wait_for_function(PLAYING_JS, timeout=90_000, polling=200)
            state = await hls_state(page)
            phases: list[tuple[str, int]] = [("auto", -1)]
            if levels:
                phases += [(f"{h}p", i) for i, h in enumerate(state["heights"])]
            for name, level in phases:
                if level >= 0 or name == "auto":
                    await page.evaluate(
                        f"() => {{ window.aethexPlayer.hls.currentLevel = {level}; }}"
                    )
                if level >= 0:
                    height = state["heights"][level]
                    await page.wait_for_function(
                        f"() => window.aethexPlayer.video.videoHeight === {height}",
                        timeout=30_000,
                        polling=200,
                    )
                await asyncio.sleep(warmup)
                samples: list[dict] = []
                hls_lat: list[float] = []
                t0 = time.monotonic()
                lat_task = asyncio.ensure_future(
                    measure_glass_to_glass(page, seconds, samples=samples)
                )
                while not lat_task.done():
                    st = await hls_state(page)
                    if st["latency"] is not None:
                        hls_lat.append(st["latency"])
                    await asyncio.sleep(1.0)
                lat = await lat_task
                st = await hls_state(page)
                heights = defaultdict(int)
                for s in samples:
                    heights[s.get("height", 0)] += 1
                results[name] = {
                    "lat": lat,
                    "samples": len(samples),
                    "hls_latency": hls_lat,
                    "target": st["target"],
                    "heights": dict(heights),
                    "unreadable": sum(1 for s in samples if "t" not in s),
                    "dropped": st["dropped"],
                    "wall": time.monotonic() - t0,
                    "errors": list(errors),
                }
            await context.close()
        finally:
            await browser.close()
    return results


def run_once(
    passthrough: str, preset: str, seconds: float, warmup: float, levels: bool
) -> tuple[dict[str, dict], list[str]]:
    with tempfile.TemporaryDirectory(prefix="aethex-g2g-") as tmp:
        work = Path(tmp)
        server = LiveServer(work, passthrough=passthrough, preset=preset)
        server.prepare()
        server.start()
        phases = 1 + (2 if levels else 0)
        total = 30 + phases * (seconds + warmup + 15)
        pub_log = work / "publisher.jsonl"
        pub = start_publisher(server.rtmp_url(), total, pub_log)
        notes = []
        try:
            cpu0, t0 = procstats.cpu_seconds(server.proc.pid), time.monotonic()
            contention = procstats.Contention(os.getpid())
            results = asyncio.run(run_browser(server.base, "bench-0", seconds, warmup, levels))
            cpu = procstats.cpu_seconds(server.proc.pid) - cpu0
            notes.append(contention.stop() + " (ours: server, publisher, Chromium, this)")
            notes.append(
                f"server CPU {cpu / (time.monotonic() - t0) * 100:.0f}% of one core "
                f"over the browser session, RSS {procstats.rss_mib(server.proc.pid):.0f} MiB"
            )
        finally:
            err = stop_process(pub)
            server.stop()
        pubrec = read_publisher_log(pub_log)
        if pubrec:
            d = median([s - t for t, s in pubrec.values()])
            notes.append(f"publisher: {len(pubrec)} frames, encode+send median {d:.1f} ms")
        if err:
            notes.append(f"publisher stderr: {err[-300:]}")
        return results, notes


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seconds", type=float, default=30.0, help="measured seconds per phase")
    ap.add_argument("--warmup", type=float, default=6.0, help="seconds before each phase")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--passthrough", choices=("auto", "never"), default="auto")
    ap.add_argument("--preset", default="veryfast", help="AETHEX_TRANSCODE__PRESET")
    ap.add_argument("--auto-only", action="store_true", help="skip the forced levels")
    args = ap.parse_args()
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        raise SystemExit("playwright is needed: .venv/bin/pip install playwright") from None
    if not os.access(CHROMIUM, os.X_OK):
        raise SystemExit(f"{CHROMIUM} is needed (Debian's chromium package)")

    print(
        f"# glass-to-glass: 720p30 source, passthrough={args.passthrough}, "
        f"preset={args.preset}, segment 2 s, part 0.333 s, {args.seconds:.0f} s per phase "
        f"after {args.warmup:.0f} s, runs={args.runs}; load average {procstats.loadavg()}"
    )
    per_phase: dict[str, list[dict]] = defaultdict(list)
    for run in range(args.runs):
        results, notes = run_once(
            args.passthrough, args.preset, args.seconds, args.warmup, not args.auto_only
        )
        print(f"\n## run {run + 1}")
        for n in notes:
            print(f"#   {n}")
        for phase, r in results.items():
            per_phase[phase].append(r)
            print(
                f"#   {phase}: {len(r['lat'])}/{r['samples']} samples readable, heights "
                f"{r['heights']}, hls.js targetLatency {r['target']}, dropped frames "
                f"{r['dropped']}{', page errors: ' + str(r['errors'][:2]) if r['errors'] else ''}"
            )
    print(
        f"\n{'phase':<8}{'samples':>8} {'p50':>6} {'p95':>6} {'max':>6}  "
        f"{'hls.latency p50':>15}  goal p50 <= 2.0 s"
    )
    for phase, rs in per_phase.items():
        p50 = median([percentile(r["lat"], 50) for r in rs])
        p95 = median([percentile(r["lat"], 95) for r in rs])
        mx = median([max(r["lat"]) if r["lat"] else float("nan") for r in rs])
        hl = median([percentile(r["hls_latency"], 50) for r in rs])
        n = int(median([len(r["lat"]) for r in rs]))
        goal = "met" if p50 <= 2.0 else "MISSED"
        print(f"{phase:<8}{n:>8} {p50:6.3f} {p95:6.3f} {mx:6.3f}  {hl:15.3f}  {goal}")
    print(f"# load average at end: {procstats.loadavg()}")


if __name__ == "__main__":
    main()
