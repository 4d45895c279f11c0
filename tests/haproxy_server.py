"""A real haproxy for tests, run from the shipped config/haproxy/aethex.cfg with the test's
addresses put in (not a config of its own: the test checks the file operators use).

Not a test module. ``render_config`` swaps the example addresses, ports and paths for the
test's; ``HaproxyProcess`` runs it in the foreground (``-db``) and reads the servers' health
from the runtime API (``show stat``). The cluster tests and ``make cluster-demo`` can use the
same pieces.
"""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config" / "haproxy" / "aethex.cfg"


def require_haproxy() -> str:
    path = shutil.which("haproxy")
    if path is None:
        pytest.fail("haproxy is needed (Debian package haproxy): run `make test` to install it")
    return path


@dataclass
class Ports:
    rtmp: int  # haproxy's RTMP frontend
    rtmps: int  # haproxy's RTMPS frontend
    stats: int  # haproxy's metrics/status page
    # (host, RTMP port, HTTP port) of each origin, in the config's order (origin1, origin2);
    # haproxy checks GET /healthz on the HTTP port.
    origins: list[tuple[str, int, int]] = field(default_factory=list)
    tls_origins: list[tuple[str, int, int]] = field(default_factory=list)


def _swap(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"{old!r} is not once in {CONFIG.name}: update render_config"
    return text.replace(old, new)


def render_config(
    ports: Ports, socket_path: Path, source: str | None = None, proxy_version: int = 2
) -> str:
    """The shipped config with the test's frontends, origins and runtime socket. ``source``:
    the local address haproxy connects to the origins from (e.g. 127.0.0.2, so a test on
    loopback can tell haproxy's address from its clients'). ``proxy_version`` 1 swaps the
    shipped send-proxy-v2 for send-proxy (the text form)."""
    text = CONFIG.read_text()
    text = _swap(text, "log /dev/log local0", "log stderr format raw local0")
    text = _swap(text, "stats socket /run/haproxy/aethex.sock", f"stats socket {socket_path}")
    text = _swap(text, "bind :1935", f"bind 127.0.0.1:{ports.rtmp}")
    text = _swap(text, "bind :1936", f"bind 127.0.0.1:{ports.rtmps}")
    text = _swap(text, "bind 127.0.0.1:8404", f"bind 127.0.0.1:{ports.stats}")
    for suffix, origins in (("1935", ports.origins), ("1936", ports.tls_origins)):
        for i, (host, port, http) in enumerate(origins, 1):
            text = _swap(
                text,
                f"origin{i} 10.0.0.1{i}:{suffix} port 8080",
                f"origin{i} {host}:{port} port {http}",
            )
    if source:
        text = text.replace("send-proxy-v2\n", f"send-proxy-v2 source {source}\n")
    if proxy_version == 1:
        text = re.sub(r"^(\s*default-server .*) send-proxy-v2", r"\1 send-proxy", text, flags=re.M)
    return text


class HaproxyProcess:
    def __init__(self, config: str, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "haproxy.cfg"
        self.path.write_text(config)
        self.socket_path = directory / "haproxy.sock"
        self.log_path = directory / "haproxy.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        haproxy = require_haproxy()
        check = subprocess.run([haproxy, "-c", "-f", str(self.path)], capture_output=True)
        assert check.returncode == 0, check.stderr.decode() + check.stdout.decode()
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [haproxy, "-db", "-f", str(self.path)], stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 20
        while not self.socket_path.exists():
            assert self.proc.poll() is None, f"haproxy exited: {self.log()}"
            assert time.monotonic() < deadline, f"haproxy did not start: {self.log()}"
            time.sleep(0.05)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def command(self, line: str) -> str:
        """One command on the runtime API."""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(str(self.socket_path))
            s.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def status(self, backend: str) -> dict[str, str]:
        """Each server's status in ``backend`` (UP, DOWN, ...), from ``show stat``."""
        lines = self.command("show stat").splitlines()
        head = lines[0].lstrip("# ").split(",")
        out = {}
        for line in lines[1:]:
            row = dict(zip(head, line.split(","), strict=False))
            if row.get("pxname") == backend and row.get("svname") not in ("FRONTEND", "BACKEND"):
                out[row["svname"]] = row["status"]
        return out

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        self.proc = None
