"""``aethex serve`` as a real child process on loopback ports, for the tests and benchmarks
that need a whole process: its memory and CPU in /proc, a SIGKILL mid-stream, a file size
limit, a CPU of its own while the load generator runs elsewhere.

Why one runner: the tests and benchmarks each had their own, and they differed in what
matters (environment, readiness, how the process is stopped and where its log goes). Here:

- Environment: ours without any ``AETHEX_*`` (a developer's shell must not change a test),
  then the caller's settings, then loopback hosts, the ports and ``PYTHONPATH``.
- Ports: the caller's, else what the settings say, else free ones.
- Log: appended to a file (it survives a restart on the same data dir), or stderr kept in
  memory by a thread (a pipe, not a file: under a file size limit the server could not write
  a log file either), or with ``echo`` left on our own stdout/stderr (a benchmark's terminal).
- Readiness: ``wait_ready`` until both ports accept, failing at once if the process exits.
- Stopping: ``stop`` (SIGTERM, then SIGKILL after a grace) or ``kill`` (SIGKILL, a crash).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from benchmarks.lib import ROOT

# The server as `aethex serve` runs it, except that SIGXFSZ is ignored: under RLIMIT_FSIZE a
# write past the limit then fails with EFBIG, as on a full disk, instead of killing the process.
# (Popen resets SIGXFSZ to its default in the child, so the child has to ignore it itself.)
_LAUNCH = (
    "import signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
    "from mediaserver.cli import main; sys.exit(main())"
)
SERVE: tuple[str, ...] = (sys.executable, "-c", _LAUNCH, "serve")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(
    port: int, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Until something accepts on 127.0.0.1:``port``; RuntimeError after ``timeout`` or as
    soon as ``proc`` (the process that should listen) has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(
                f"process {proc.pid} exited with {proc.returncode} before it "
                f"listened on port {port}"
            )
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout:.0f} s")


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> str:
    """SIGTERM, wait, SIGKILL if needed; returns the tail of its stderr (if piped)."""
    if proc is None:
        return ""
    if proc.poll() is None:
        proc.terminate()
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    if not err:
        return ""
    return err.decode(errors="replace").strip()[-2000:]


def _port(env: Mapping[str, str], name: str) -> int:
    value = int(env.get(name) or 0)
    return value if value else free_port()


class ServerProcess:
    """One ``aethex serve`` process, started by the constructor (see the module docstring)."""

    def __init__(
        self,
        env: Mapping[str, str],
        log: Path | None = None,
        *,
        data_dir: Path | None = None,
        http_port: int | None = None,
        rtmp_port: int | None = None,
        echo: bool = False,
        command: Sequence[str] = SERVE,
    ) -> None:
        self.http_port = http_port or _port(env, "AETHEX_HTTP_PORT")
        self.rtmp_port = rtmp_port or _port(env, "AETHEX_RTMP_PORT")
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("AETHEX_")}
        child_env.update(env)
        if data_dir is not None:
            child_env["AETHEX_DATA_DIR"] = str(data_dir)
        child_env.update(
            {
                "AETHEX_HTTP_HOST": "127.0.0.1",
                "AETHEX_HTTP_PORT": str(self.http_port),
                "AETHEX_RTMP_HOST": "127.0.0.1",
                "AETHEX_RTMP_PORT": str(self.rtmp_port),
                "PYTHONPATH": os.pathsep.join(
                    p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p
                ),
            }
        )
        self.env = child_env
        self.data_dir = (
            Path(child_env["AETHEX_DATA_DIR"]) if "AETHEX_DATA_DIR" in child_env else None
        )
        self.log_path = log
        self._log: list[str] = []
        self._reader: threading.Thread | None = None
        # Where its output goes: the log file; ours (echo); or stderr into a pipe read by a
        # thread, so a chatty server never blocks on a full pipe.
        out = open(log, "ab") if log is not None else None  # closed below
        stdout = out if out is not None else None if echo else subprocess.DEVNULL
        stderr = subprocess.STDOUT if out is not None else None if echo else subprocess.PIPE
        try:
            self.proc = subprocess.Popen(
                list(command),
                cwd=ROOT,
                env=child_env,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
            )
        finally:
            if out is not None:
                out.close()  # the child has its own copy of the descriptor
        if stderr == subprocess.PIPE:
            self._reader = threading.Thread(target=self._drain, daemon=True)
            self._reader.start()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in iter(self.proc.stderr.readline, b""):
            self._log.append(line.decode("utf-8", "replace"))

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def poll(self) -> int | None:
        return self.proc.poll()

    def log(self) -> str:
        """What the server wrote so far: the log file, or its stderr kept in memory."""
        if self.log_path is not None:
            return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "".join(self._log)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until the HTTP and RTMP ports accept; RuntimeError (with the log's tail) if the
        process exits first or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        try:
            for port in (self.http_port, self.rtmp_port):
                wait_port(port, max(0.0, deadline - time.monotonic()), self.proc)
        except RuntimeError as e:
            raise RuntimeError(f"aethex serve: {e}\n{self.log()[-4000:]}") from None

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM and a clean shutdown; SIGKILL if it takes longer than ``timeout``."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self._reader is not None:
            self._reader.join(10)

    def kill(self) -> None:
        """SIGKILL, which gives the server no chance to flush or mark anything (a crash)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def status_kib(self, name: str) -> int:
        """A ``kB`` line of /proc/PID/status (VmRSS, VmHWM, ...)."""
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(name + ":"):
                    return int(line.split()[1])
        raise RuntimeError(f"no {name} in /proc/{self.pid}/status")

    def reset_peak_rss(self) -> int:
        """Make VmHWM the current RSS (Linux ``clear_refs`` 5) and return it, in KiB: the next
        VmHWM reading is then the peak of what happened in between, however high the process
        went before (start-up, password hashing)."""
        with open(f"/proc/{self.pid}/clear_refs", "w") as f:
            f.write("5")
        return self.status_kib("VmHWM")
