"""Sampling profiles of the server under load, with py-spy, summarized as text.

Why py-spy with ``--gil --nonblocking``: it samples the server from outside without pausing
it, so the load being measured is not disturbed, and GIL-holding samples show what keeps the
event loop busy (what a second core cannot help with). Optional: without py-spy in the venv a
benchmark runs as before and says "(no profile)".
"""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

from benchmarks.lib import ROOT

PY_SPY = ROOT / ".venv" / "bin" / "py-spy"


def start_profile(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    """py-spy (GIL-holding samples only, not pausing the target) for ``seconds``."""
    if not PY_SPY.exists():
        return None
    return subprocess.Popen(
        [
            str(PY_SPY),
            "record",
            "--gil",
            "--nonblocking",
            "-p",
            str(pid),
            "-d",
            str(max(1, int(seconds))),
            "-r",
            "100",
            "-f",
            "raw",
            "-o",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def profile_summary(path: Path, top: int = 12) -> list[str]:
    """The functions with the most samples (self and inclusive) from a raw py-spy file."""
    if not path.exists():
        return ["(no profile)"]
    total = 0
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        total += int(n)
        frames = stack.split(";")
        own[frames[-1]] += int(n)
        for f in set(frames):
            incl[f] += int(n)
    if not total:
        return ["(no samples)"]
    out = [f"{total} samples holding the GIL"]
    out += [f"self {n / total * 100:5.1f}%  {f}" for f, n in own.most_common(top)]
    skip = ("<module>", "run (", "_run", "main (", "cmd_serve", "Runner.run")
    inclusive = [(f, n) for f, n in incl.most_common(top * 3) if not f.startswith(skip)]
    out += [f"incl {n / total * 100:5.1f}%  {f}" for f, n in inclusive[:top]]
    return out
