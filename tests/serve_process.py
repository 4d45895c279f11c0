"""``aethex serve`` as a real child process on free ports, for what only a whole process shows:
its peak memory (``/proc/PID/status``) and how it behaves when the kernel refuses its writes.

Not a test module. The runner is the one the benchmarks and the other process tests use
(``benchmarks.lib.server.ServerProcess``): the server's stderr is read by a thread (a pipe, not
a file: under a file size limit the server could not write a log file either) and kept for
``log()``, and SIGXFSZ is ignored so a write past a file size limit fails as on a full disk.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from benchmarks.lib.server import ServerProcess

ServeProcess = ServerProcess  # the name the tests import


@contextlib.asynccontextmanager
async def serve_process(env: dict[str, str], data_dir: Path) -> AsyncIterator[ServerProcess]:
    """``aethex serve`` with ``env`` (settings) and its own data dir; stopped with SIGTERM."""
    server = ServerProcess(env, data_dir=data_dir)
    try:
        await asyncio.to_thread(server.wait_ready, 60.0)
        yield server
    finally:
        await asyncio.to_thread(server.stop, 30.0)
