"""The benchmarks' LL-HLS viewers in C (``llhls_viewers.c``), built with the system's C
compiler into a run's work directory: the same requests and records as the Python viewer of
``benchmarks/hls_delivery.py`` at a fraction of its CPU, which on a 2-core machine is CPU left to
the server and the edge under test (why: see the C file's header)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

SOURCE = Path(__file__).with_name("llhls_viewers.c")


def build(directory: Path) -> Path:
    """Compile the viewers into ``directory`` (once per directory) and return the program."""
    exe = directory / "llhls_viewers"
    if exe.exists() and exe.stat().st_mtime >= SOURCE.stat().st_mtime:
        return exe
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise RuntimeError("no C compiler (cc/gcc) for the C viewers: use --client raw")
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [cc, "-O2", "-Wall", "-Werror", "-o", str(exe), str(SOURCE)],
        check=True,
        capture_output=True,
        text=True,
    )
    return exe


def command(
    exe: Path,
    url: str,
    base: str,
    first: int,
    count: int,
    duration: float,
    ramp: float,
    out: Path,
) -> list[str]:
    """The command line of one viewer process (arguments as the C file's header lists)."""
    return [str(exe), url, base, str(first), str(count), str(duration), str(ramp), str(out)]
