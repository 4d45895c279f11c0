"""Native memory that threads freed goes back to the system once a stream ends.

Each stream's transcoder threads allocate large frames through FFmpeg and x264; glibc keeps
what they free in per-thread heaps. The probe does the same with plain malloc in a child
process (so its heaps start clean): eight threads each allocate and free 30 MB in blocks under
the mmap threshold (they touch 240 MB in all), while a small live block pins each heap's top.
Without a trim the freed pages stay resident; ``release_free_memory`` must hand them back.
"""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mediaserver import memory
from mediaserver.settings import SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[2]

PROBE = textwrap.dedent("""
    import ctypes, sys, threading
    from mediaserver import memory
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]

    def rss_mb():
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) // 1024 for l in f if l.startswith("VmRSS"))

    memory.limit_arenas(int(sys.argv[2]))
    base = rss_mb()
    pins = []

    def stream_thread():
        blocks = [libc.malloc(100_000) for _ in range(300)]
        for b in blocks:
            ctypes.memset(b, 1, 100_000)
        pins.append(libc.malloc(100))  # stays: the heap cannot shrink from its top by itself
        for b in blocks:
            libc.free(b)

    threads = [threading.Thread(target=stream_thread) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    peak = rss_mb()
    if sys.argv[1] == "trim":
        memory.release_free_memory()
    print(base, peak, rss_mb())
""")


def probe(mode: str, arenas: int) -> tuple[int, int, int]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode, str(arenas)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    base, peak, after = map(int, out.split())
    return base, peak, after


pytestmark = pytest.mark.skipif(memory._LIBC is None, reason="glibc only")


@pytest.mark.parametrize("arenas", [0, 2])
def test_freed_thread_memory_goes_back_after_a_trim(arenas: int) -> None:
    base, peak, after = probe("trim", arenas)
    if arenas == 0:  # with shared arenas how much is held at once depends on scheduling
        assert peak - base >= 30, (base, peak)  # the threads really did hold the memory
    assert after - base < 15, (base, peak, after)


def test_without_a_trim_the_freed_memory_stays() -> None:
    """The condition the trim exists for (if glibc ever returns it by itself, this says so)."""
    base, peak, after = probe("keep", 0)
    assert after - base >= 60, (base, peak, after)


def test_arena_setting_is_validated(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="memory.malloc_arena_max"):
        load_settings(None, env={"AETHEX_MEMORY__MALLOC_ARENA_MAX": "-1"})
    assert load_settings(None, env={}).memory.malloc_arena_max == 2


def test_young_generation_threshold() -> None:
    before = gc.get_threshold()
    try:
        memory.young_generation(0)
        assert gc.get_threshold() == before
        memory.young_generation(20_000)
        assert gc.get_threshold() == (20_000, before[1], before[2])
    finally:
        gc.set_threshold(*before)
    with pytest.raises(SettingsError, match="memory.gc_young_threshold"):
        load_settings(None, env={"AETHEX_MEMORY__GC_YOUNG_THRESHOLD": "-5"})
    assert load_settings(None, env={}).memory.gc_young_threshold == 20_000
