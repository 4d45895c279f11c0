"""A short sample of benchmarks/fuzz_rtmp.py, the coverage-guided (atheris) RTMP campaign.

The full run (10 million inputs) is a benchmark; here a few thousand inputs go through the same
script -- real ffmpeg and PyAV captures as seeds, libFuzzer workers, the same summary -- so the
harness keeps working and nothing the seeds reach escapes as anything but ProtocolError.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.fuzz_rtmp import TARGETS, make_targets, run_one
from mediaserver import rtmp

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
RUNS = 5000


def test_campaign_sample_finds_nothing_and_exercises_every_target(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "benchmarks/fuzz_rtmp.py",
            "--runs",
            str(RUNS),
            "--json",
            "--progress",
            "0",
            "--capture-seconds",
            "0.5",
            "--out",
            str(tmp_path / "out"),
            # Only a gross blow-up (say quadratic) fails CI; the 10 ms goal is the full run's.
            "--max-ms",
            "1000",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["inputs"] == RUNS
    assert summary["crashes"] == 0 and summary["findings"] == {}
    assert summary["failed_workers"] == [] and summary["over_limit_confirmed"] == 0
    assert set(summary["per_target"]) == set(TARGETS) and all(summary["per_target"].values())
    assert summary["coverage_edges"] > 0 and summary["max_ms"] > 0
    # Every publisher got past the handshake and sent commands and media.
    assert set(summary["captures"]) == {"ffmpeg-h264-aac", "pyav-hevc-aac", "pyav-h264-aac"}
    assert all(size > 5000 for size in summary["captures"].values())
    assert (tmp_path / "out" / "corpus").is_dir()


def test_harness_reports_what_is_not_a_protocol_error() -> None:
    targets = make_targets(rtmp)

    def broken(data: bytes) -> None:
        return data[10]  # type: ignore[return-value]  # an IndexError: a parser bug

    def wrapped(data: bytes) -> None:
        raise rtmp.ProtocolError("internal error in chunk parser: KeyError(3)")

    assert run_one(targets, rtmp.ProtocolError, b"\x02\x05\x00") == ""  # AMF0: truncated
    found = run_one([broken] * len(TARGETS), rtmp.ProtocolError, b"\x00abc")
    assert found.startswith("IndexError at test_rtmp_fuzz_campaign.py:")
    assert run_one([wrapped] * len(TARGETS), rtmp.ProtocolError, b"\x01").startswith("wrapped ")
