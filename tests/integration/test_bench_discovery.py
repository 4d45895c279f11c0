"""benchmarks/discovery.py runs end to end with a tiny seed: seeding, the live channels made
inside the server, the load on every route with its Server-Timing figures, the go-live phase
with a real publisher. Only the shape of the report is checked (every line there and every
figure a number), never the goals: those depend on the machine."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.pg import find_pg_bin

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ROUTES = ("/api/channels/{slug}/live (ref)", "/", "/categories/{slug}", "/search", "/api/search")
NUMBER = r"(nan|[0-9]+(?:\.[0-9]+)?)"
ROW = re.compile(
    rf"^(?P<route>\S+(?: \(ref\))?)\s+(?P<n>\d+)\s+{NUMBER} ms\s+{NUMBER} ms\s+{NUMBER}x"
    rf"\s+{NUMBER} ms\s+{NUMBER} ms"
)


def run_bench(*args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AETHEX_")}
    out = subprocess.run(
        [sys.executable, "benchmarks/discovery.py", "--quick", "--seconds", "2", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


def check_load_report(text: str, db: str) -> None:
    assert f"=== {db} ===" in text
    seed = re.search(
        r"^seed: (\d+) channels \((\d+) live\), (\d+) users, (\d+) follows", text, re.M
    )
    assert seed and int(seed.group(2)) > 0, text
    assert re.search(r"^live: (\d+) channels live in the server's registry", text, re.M), text
    load = re.search(r"^load: .* (\d+) requests, (\d+)/s", text, re.M)
    assert load and int(load.group(1)) > 0, text
    rows = {m.group("route"): m for m in map(ROW.match, text.splitlines()) if m}
    assert set(rows) == set(ROUTES), (sorted(rows), text)
    for route, m in rows.items():
        figures = [float(x) for x in m.groups()[2:]]  # p50, p99, ratio, client p50, p99
        if int(m.group("n")):
            assert all(not math.isnan(x) and x >= 0 for x in figures), (route, figures)
    ref = rows["/api/channels/{slug}/live (ref)"]
    assert int(ref.group("n")) > 0 and float(ref.group(5)) == 1.0, text
    assert f"goals on {db} (p99 server time):" in text
    for route in ("/", "/categories/{slug}", "/search", "/api/search"):
        assert re.search(rf"^  {re.escape(route)}[ :]", text, re.M), (route, text)
    assert re.search(rf"^summary {db}: ", text, re.M), text


def test_discovery_benchmark_quick_sqlite() -> None:
    text = run_bench("--db", "sqlite", "--clients", "8")
    check_load_report(text, "sqlite")
    quiet = re.search(
        r"^go-live without followers: live after ([0-9.]+) s, first playlist "
        r"after ([0-9.]+) s",
        text,
        re.M,
    )
    assert quiet, text
    fan = re.search(
        r"^go-live with (\d+) followers to notify: live after ([0-9.]+) s, first "
        r"playlist after ([0-9.]+) s \(([0-9.]+)x",
        text,
        re.M,
    )
    assert fan and int(fan.group(1)) > 0, text
    assert re.search(r"^fan-out: ", text, re.M), text


def test_discovery_benchmark_quick_postgresql() -> None:
    if find_pg_bin() is None:
        if os.environ.get("CI"):
            pytest.fail("no PostgreSQL server binaries: install the Debian 'postgresql' package")
        pytest.skip("no PostgreSQL server binaries")
    text = run_bench("--db", "postgresql", "--clients", "8", "--no-fanout")
    check_load_report(text, "postgresql")
