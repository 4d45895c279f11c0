"""A real Varnish (Debian's varnishd 7.1) in front of a test server, with the project's own VCL
(config/varnish/aethex.vcl) and only its backend address changed.

``VarnishServer(backend_port, directory).start()`` runs ``varnishd -F`` on free loopback
ports, its work directory (-n) under ``directory``, a small malloc storage; ``stop()`` ends
it (SIGTERM, then SIGKILL). ``stat(name)`` reads a counter with varnishstat.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
from pathlib import Path

from tests.redis_server import free_port, missing, wait_port

ROOT = Path(__file__).resolve().parents[1]
VCL = ROOT / "config" / "varnish" / "aethex.vcl"


def vcl_for(backend_host: str, backend_port: int) -> str:
    """The shipped VCL with its backend pointed at ``backend_host:backend_port``."""
    text = VCL.read_text()
    text, n = re.subn(r'\.host = "[^"]*";', f'.host = "{backend_host}";', text, count=1)
    text, m = re.subn(r'\.port = "[^"]*";', f'.port = "{backend_port}";', text, count=1)
    assert n == m == 1, "the VCL's backend block changed shape"
    return text


class VarnishServer:
    def __init__(self, backend_port: int, directory: Path, backend_host: str = "127.0.0.1"):
        exe = shutil.which("varnishd") or (
            "/usr/sbin/varnishd" if Path("/usr/sbin/varnishd").exists() else None
        )
        if exe is None:
            missing("varnishd (Debian package varnish)")
        self.exe = str(exe)
        self.directory = directory
        self.backend = (backend_host, backend_port)
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def workdir(self) -> Path:
        return self.directory / "varnish-n"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        vcl = self.directory / "aethex.vcl"
        vcl.write_text(vcl_for(*self.backend))
        self.port = free_port()
        admin = free_port()
        self.log = (self.directory / "varnishd.log").open("wb")
        self.proc = subprocess.Popen(
            [
                self.exe,
                "-F",
                # No privilege separation: the test's temporary directory (0700) holds the
                # VCL and the work directory, and a test needs no jail.
                "-j",
                "none",
                "-n",
                str(self.workdir),
                "-a",
                f"127.0.0.1:{self.port}",
                "-T",
                f"127.0.0.1:{admin}",
                "-f",
                str(vcl),
                "-s",
                "malloc,64m",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_port(self.port, 30)
        except Exception:
            self.stop()
            raise AssertionError((self.directory / "varnishd.log").read_text()) from None

    def stat(self, name: str) -> int:
        """A counter of varnishstat (e.g. MAIN.backend_req)."""
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
        self.log.close()
