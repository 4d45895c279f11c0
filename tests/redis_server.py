"""A real redis-server on a free loopback port, started and stopped by the test.

Shared by the chat bus and the cluster tests. ``RedisServer.restart`` stops the process and
starts a new one on the same port with an empty data set (what a Redis restart without
persistence looks like to the nodes), so tests can show what survives it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.lib.server import wait_port

# Until redis-server listens: only a hung start waits this long; an exit fails at once, with
# its log (a loaded 2-core machine, CI up to 2.5x slower: the bound is not a speed).
REDIS_READY = 120.0


def missing(what: str) -> None:
    """Fail under CI (make test installs every peer, so a missing one is a broken set-up) and
    skip on a developer's machine that has not run make test yet."""
    if os.environ.get("CI"):
        pytest.fail(f"{what}: run `make test`, which installs it", pytrace=False)
    pytest.skip(f"{what}: run `make test`, which installs it")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    def __init__(self, exe: str, directory: Path) -> None:
        self.exe = exe
        self.directory = directory
        self.port = free_port()
        self.log = directory / f"redis-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
            + ["--appendonly", "no", "--dir", str(self.directory), "--logfile", str(self.log)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_port(self.port, REDIS_READY, self.proc)
        except RuntimeError as e:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"redis-server: {e}\n{log}") from None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    exe = shutil.which("redis-server")
    if exe is None:
        missing("redis-server (Debian's redis-server package) is missing")
    assert exe is not None
    server = RedisServer(exe, tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url
