"""How long a server's event loop keeps a trivial request waiting, sampled from outside.

A thread (not the benchmark's own event loop, whose clients may be busy) asks ``GET /healthz``
every ``interval`` seconds on one kept-alive connection and records how long each answer
took. ``/healthz`` costs the server a fraction of a millisecond, so a slow answer is time the
request spent waiting for the loop: behind other requests (queueing) or behind one long piece
of work (a stall). The worst answers with their times tell the two apart: stalls come alone
or at a period (a background task), queueing spreads over the load.
"""

from __future__ import annotations

import http.client
import threading
import time
from urllib.parse import urlsplit

from benchmarks.lib.stats import percentile


class LoopProbe:
    def __init__(self, base: str, interval: float = 0.02) -> None:
        parts = urlsplit(base)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.interval = interval
        self.samples: list[tuple[float, float]] = []  # (seconds since start, ms)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="loop-probe", daemon=True)
        self._t0 = 0.0

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        while not self._stop.is_set():
            sent = time.monotonic()
            try:
                conn.request("GET", "/healthz")
                conn.getresponse().read()
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                continue
            done = time.monotonic()
            self.samples.append((sent - self._t0, (done - sent) * 1000))
            self._stop.wait(self.interval)
        conn.close()

    def report(self, worst: int = 10) -> list[str]:
        if not self.samples:
            return ["(no samples)"]
        ms = [m for _, m in self.samples]
        lines = [
            f"{len(ms)} answers: p50 {percentile(ms, 50):.1f} ms, p99 {percentile(ms, 99):.1f} "
            f"ms, max {max(ms):.1f} ms; over 50 ms: {sum(m > 50 for m in ms)}"
        ]
        top = sorted(self.samples, key=lambda s: -s[1])[:worst]
        lines.append(
            "slowest at (s: ms): " + ", ".join(f"{t:.1f}: {m:.0f}" for t, m in sorted(top))
        )
        return lines
