"""A real Varnish (Debian's varnishd 7.1) in front of one of our servers, with the project's own
VCL (config/varnish/aethex.vcl) and only its backend address changed: used by
benchmarks/cluster.py and, through tests/varnish_server.py, by the tests.

``VarnishServer(backend_port, directory).start()`` runs ``varnishd -F`` on a free loopback
port, its work directory (-n) under ``directory``, a small malloc storage and no privilege
separation (the VCL sits in a private temporary directory); ``stop()`` ends it (SIGTERM, then
SIGKILL); ``stat(name)`` reads a varnishstat counter.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
from pathlib import Path

from benchmarks.lib.server import free_port, wait_port

ROOT = Path(__file__).resolve().parents[2]
VCL = ROOT / "config" / "varnish" / "aethex.vcl"


def find_varnishd() -> str | None:
    exe = shutil.which("varnishd")
    if exe is None and Path("/usr/sbin/varnishd").exists():
        exe = "/usr/sbin/varnishd"
    return exe


def vcl_for(backend_host: str, backend_port: int) -> str:
    """The shipped VCL with its backend pointed at ``backend_host:backend_port``."""
    text = VCL.read_text()
    text, n = re.subn(r'\.host = "[^"]*";', f'.host = "{backend_host}";', text, count=1)
    text, m = re.subn(r'\.port = "[^"]*";', f'.port = "{backend_port}";', text, count=1)
    if n != 1 or m != 1:
        raise RuntimeError("the VCL's backend block changed shape")
    return text


# What config/varnish/aethex.vcl recommends on varnishd's command line (see its header), put
# before a caller's own parameters (a later -p of the same name wins).
RECOMMENDED_PARAMS = (
    "thread_pool_min=20",
    "thread_pool_max=50",
    "thread_queue_limit=20000",
    "rush_exponent=1000",
)


class VarnishServer:
    def __init__(
        self,
        backend_port: int,
        directory: Path,
        backend_host: str = "127.0.0.1",
        storage: str = "malloc,64m",
        params: tuple[str, ...] = (),
    ) -> None:
        exe = find_varnishd()
        if exe is None:
            raise RuntimeError("varnishd is not installed (Debian package varnish)")
        self.exe = exe
        self.directory = directory
        self.backend = (backend_host, backend_port)
        self.storage = storage
        self.params = params
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def workdir(self) -> Path:
        return self.directory / "varnish-n"

    @property
    def log_path(self) -> Path:
        return self.directory / "varnishd.log"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        vcl = self.directory / "aethex.vcl"
        vcl.write_text(vcl_for(*self.backend))
        self.port = free_port()
        extra = [arg for p in (*RECOMMENDED_PARAMS, *self.params) for arg in ("-p", p)]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    self.exe,
                    "-F",
                    "-j",
                    "none",
                    "-n",
                    str(self.workdir),
                    "-a",
                    f"127.0.0.1:{self.port}",
                    "-T",
                    f"127.0.0.1:{free_port()}",
                    "-f",
                    str(vcl),
                    "-s",
                    self.storage,
                    *extra,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_port(self.port, 30, self.proc)
        except Exception:
            self.stop()
            raise RuntimeError(self.log_path.read_text()) from None

    def stat(self, name: str) -> int:
        """A varnishstat counter (e.g. MAIN.backend_req)."""
        out = subprocess.run(
            ["varnishstat", "-n", str(self.workdir), "-1", "-j", "-f", name],
            capture_output=True,
            check=True,
            timeout=10,
        ).stdout
        counters = json.loads(out)
        counters = counters.get("counters", counters)
        return int(counters[name]["value"])

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
