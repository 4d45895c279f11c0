"""``aethex serve`` as a real child process on free ports, for what only a whole process shows:
its peak memory (``/proc/PID/status``) and how it behaves when the kernel refuses its writes.

Not a test module. The server's stderr is read by a thread (a pipe, not a file: under a file
size limit the server could not write a log file either) and kept for ``log()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from conftest import free_port

ROOT = Path(__file__).resolve().parents[1]

# The server as `aethex serve` runs it, except that SIGXFSZ is ignored: under RLIMIT_FSIZE a
# write past the limit then fails with EFBIG, as on a full disk, instead of killing the process.
# (Popen resets SIGXFSZ to its default in the child, so the child has to ignore it itself.)
_LAUNCH = ("import signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
           "from mediaserver.cli import main; sys.exit(main())")


@dataclass
class ServeProcess:
    proc: subprocess.Popen[bytes]
    http_port: int
    rtmp_port: int
    data_dir: Path
    _log: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def log(self) -> str:
        return "".join(self._log)

    def status_kib(self, name: str) -> int:
        """A ``kB`` line of /proc/PID/status (VmRSS, VmHWM, ...)."""
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(name + ":"):
                    return int(line.split()[1])
        raise AssertionError(f"no {name} in /proc/{self.pid}/status")

    def reset_peak_rss(self) -> int:
        """Make VmHWM the current RSS (Linux ``clear_refs`` 5) and return it, in KiB: the next
        VmHWM reading is then the peak of what happened in between, however high the process
        went before (start-up, password hashing)."""
        with open(f"/proc/{self.pid}/clear_refs", "w") as f:
            f.write("5")
        return self.status_kib("VmHWM")


def _wait_http(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"aethex serve exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"aethex serve did not listen on {port} within {timeout} s")


@contextlib.asynccontextmanager
async def serve_process(env: dict[str, str], data_dir: Path) -> AsyncIterator[ServeProcess]:
    """``aethex serve`` with ``env`` (settings) and its own data dir; stopped with SIGTERM."""
    http_port, rtmp_port = free_port(), free_port()
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("AETHEX_")}
    child_env.update(env)
    child_env.update({
        "AETHEX_DATA_DIR": str(data_dir), "AETHEX_HTTP_HOST": "127.0.0.1",
        "AETHEX_HTTP_PORT": str(http_port), "AETHEX_RTMP_HOST": "127.0.0.1",
        "AETHEX_RTMP_PORT": str(rtmp_port),
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", ""))
                                      if p)})
    proc = subprocess.Popen([sys.executable, "-c", _LAUNCH, "serve"], cwd=ROOT, env=child_env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    server = ServeProcess(proc, http_port, rtmp_port, data_dir)
    assert proc.stderr is not None
    stderr = proc.stderr

    def drain() -> None:
        for line in iter(stderr.readline, b""):
            server._log.append(line.decode("utf-8", "replace"))

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        await asyncio.to_thread(_wait_http, http_port, proc, 60.0)
        yield server
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                await asyncio.to_thread(proc.wait, 30)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait, 10)
        await asyncio.to_thread(reader.join, 10)
