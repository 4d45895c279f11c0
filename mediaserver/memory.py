"""Keep freed native memory from piling up in glibc's heaps over a long-running server.

Every live stream runs a decoder thread and an encoder thread per rung; their frames are large
native allocations made by FFmpeg and x264. glibc gives each new thread that allocates its own
heap ("arena", up to 8 per core) and returns little of it to the kernel once freed, so every
stream that started and ended on fresh threads left 12-18 MB of RSS behind: the soak benchmark
measured about +400 MB/hour with a publisher reconnecting every two minutes, while Python's own
objects stayed flat. Capping the number of arenas makes threads share heaps that are reused,
and trimming after a stream ends hands the freed pages back.

Only glibc has these knobs; on any other C library (musl, macOS) both calls do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging

log = logging.getLogger(__name__)

# From glibc's <malloc.h>.
_M_ARENA_MAX = -8


def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt  # noqa: B018 - glibc has both; other C libraries may have neither
        libc.malloc_trim  # noqa: B018 - as above: looking the symbol up is the check
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _glibc()


def limit_arenas(count: int) -> bool:
    """Cap glibc's malloc arenas at ``count`` (0 leaves glibc's default). Call before threads
    start: arenas already made stay. Returns whether the cap was applied."""
    if count <= 0 or _LIBC is None:
        return False
    applied = bool(_LIBC.mallopt(ctypes.c_int(_M_ARENA_MAX), ctypes.c_int(count)))
    if not applied:
        log.warning("could not cap malloc arenas at %d", count)
    return applied


def release_free_memory() -> bool:
    """Give pages freed inside glibc's heaps back to the kernel (``malloc_trim``). It walks
    every arena, so it runs off the event loop, once per ended stream. Returns whether any
    memory was released."""
    if _LIBC is None:
        return False
    return bool(_LIBC.malloc_trim(ctypes.c_size_t(0)))


def young_generation(threshold: int) -> None:
    """Let ``threshold`` allocations (0: Python's default) happen between two young-generation
    passes of the cyclic collector, the older generations' thresholds unchanged.

    A serving process makes objects that live a fraction of a second (requests, frames in
    flight, votes waiting for their batch). At Python's 700 many of them outlived two young
    passes and were promoted; the promotions then started a full collection every few seconds,
    and each stopped the event loop for 50-140 ms in the engagement benchmark's room of 1,000."""
    if threshold > 0:
        _, middle, old = gc.get_threshold()
        gc.set_threshold(threshold, middle, old)
