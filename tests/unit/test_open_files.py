"""``aethex serve`` lifts its soft open-file limit so the connection caps are what refuse.

Started under the usual soft limit of 1024, a flood would make accept() fail for everyone long
before ``http.max_connections_per_address`` could single out the flooding address.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent("""
    import resource
    from mediaserver.app import raise_open_file_limit
    from mediaserver.settings import load_settings
    raise_open_file_limit(load_settings(None, env={}))
    print(*resource.getrlimit(resource.RLIMIT_NOFILE))
""")


def limits_after(soft: int, hard: int) -> tuple[int, int]:
    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    out = subprocess.run(
        [sys.executable, "-c", CHILD],
        cwd=ROOT,
        preexec_fn=lower,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    new_soft, new_hard = map(int, out.split())
    return new_soft, new_hard


def test_soft_limit_rises_to_what_the_caps_need() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 4096 + 256 + 1024  # the default caps plus room for files
    if hard != resource.RLIM_INFINITY and hard < needed:
        hard_for_test = hard
    else:
        hard_for_test = needed + 100
    soft, new_hard = limits_after(1024, hard_for_test)
    assert new_hard == hard_for_test
    assert soft == min(needed, hard_for_test)


def test_a_higher_soft_limit_is_left_alone() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    top = hard if hard != resource.RLIM_INFINITY else 65536
    assert limits_after(top, top) == (top, top)
