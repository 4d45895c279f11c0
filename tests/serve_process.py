"""``aethex serve`` as a real child process, for the tests that need a whole process: a second
node on the same database and bus, one that dies with SIGKILL, its peak memory
(``/proc/PID/status``), how it behaves when the kernel refuses its writes.

Not a test module. The runner is the one the benchmarks and the other process tests use
(``benchmarks.lib.server.ServerProcess``): the server's stderr is read by a thread (a pipe, not
a file: under a file size limit the server could not write a log file either) and kept for
``log()``, and SIGXFSZ is ignored so a write past a file size limit fails as on a full disk.

Every test that starts ``aethex serve`` waits for it here (``serve_process``) or with
``SERVE_READY``: ready when its ports accept, a failure at once with its log if it exits first.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from benchmarks.lib.server import ServerProcess

ServeProcess = ServerProcess  # the name the tests import

# How long an `aethex serve` child may take until its ports accept. Measured on the 2-core
# machine: ~4 s idle, 29-32 s beside 16 CPU hogs; CI machines are up to 2.5x slower. Only a
# hung start waits this long: a process that exits fails the wait at once, with its log.
SERVE_READY = 180.0


@contextlib.asynccontextmanager
async def serve_process(
    env: Mapping[str, str], data_dir: Path | None = None
) -> AsyncIterator[ServerProcess]:
    """``aethex serve`` with ``env`` (settings; free ports unless it names them) and, if given,
    its own data dir; yielded once both its ports accept; stopped with SIGTERM. When the block
    fails, the server's log goes to stderr (pytest shows it with the failure)."""
    server = ServerProcess(env, data_dir=data_dir)
    ready = failed = False
    try:
        await asyncio.to_thread(server.wait_ready, SERVE_READY)  # its error carries the log
        ready = True
        yield server
    except BaseException:
        failed = ready
        raise
    finally:
        await asyncio.to_thread(server.stop, 30.0)
        if failed:
            print(
                f"--- aethex serve (pid {server.pid}) log ---\n{server.log()[-8000:]}",
                file=sys.stderr,
            )
