"""A throwaway PostgreSQL server for tests, from the Debian ``postgresql`` package.

``initdb`` into a fresh directory, ``pg_ctl start`` on a free loopback port with the unix
socket in the same directory, ``pg_ctl stop`` at the end. PostgreSQL refuses to run as root,
so when the tests run as root the server runs as the ``postgres`` OS user (``runuser``), in a
directory under /tmp that user owns (pytest's tmp_path is root-only, 0700).

Use the ``postgres_url`` fixture (import it into a test module), or ``PostgresServer``.
If no ``initdb`` is installed the fixture fails when ``CI`` is set and skips otherwise.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
OS_USER = "postgres"


def find_pg_bin() -> Path | None:
    """The newest ``/usr/lib/postgresql/N/bin`` holding initdb and pg_ctl (or $PATH's)."""
    candidates = sorted(
        glob.glob(PG_BIN_GLOB),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
        reverse=True,
    )
    for directory in candidates:
        if os.access(Path(directory) / "initdb", os.X_OK) and os.access(
            Path(directory) / "pg_ctl", os.X_OK
        ):
            return Path(directory)
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).parent
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """One postmaster in a private directory; ``start()`` then ``stop()``."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.port = _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="aethex-pg-"))
        self.data_dir = self.root / "data"
        self.socket_dir = self.root / "sock"
        self.log_file = self.root / "postgres.log"
        self.as_root = os.geteuid() == 0
        self.started = False
        self.head_template = False  # HEAD_TEMPLATE made (postgres_head_url)

    def _cmd(self, *args: str) -> list[str]:
        if not self.as_root:
            return list(args)
        if shutil.which("runuser"):
            return ["runuser", "-u", OS_USER, "--", *args]
        return ["su", OS_USER, "-s", "/bin/sh", "-c", " ".join(f"'{a}'" for a in args)]

    def _run(self, *args: str, timeout: float = 120) -> None:
        result = subprocess.run(
            self._cmd(*args), capture_output=True, text=True, timeout=timeout, cwd=self.root
        )
        if result.returncode != 0:
            log = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
            raise RuntimeError(
                f"{' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}\n{log}"
            )

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://{OS_USER}@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        self.socket_dir.mkdir()
        if self.as_root:
            try:
                user = pwd.getpwnam(OS_USER)
            except KeyError:
                raise RuntimeError(
                    f"running as root but there is no {OS_USER!r} OS user to run PostgreSQL as"
                ) from None
            for path in (self.root, self.socket_dir):
                os.chown(path, user.pw_uid, user.pw_gid)
        self._run(
            str(self.bin_dir / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            OS_USER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
        )
        options = (
            f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            str(self.bin_dir / "pg_ctl"),
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )
        self.started = True

    def stop(self) -> None:
        try:
            if self.started:
                self._run(
                    str(self.bin_dir / "pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-m",
                    "fast",
                    "-w",
                    "-t",
                    "60",
                    "stop",
                )
                self.started = False
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bin_dir = find_pg_bin()
    if bin_dir is None:
        message = (
            f"no PostgreSQL server binaries (initdb, pg_ctl) under {PG_BIN_GLOB} or on "
            "PATH: install the Debian 'postgresql' package"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    server = PostgresServer(bin_dir)
    try:
        server.start()
    except Exception:
        server.stop()
        raise
    try:
        yield server
    finally:
        server.stop()


HEAD_TEMPLATE = "t_migrated_head"


def _admin(postgres_server: PostgresServer) -> list[str]:
    return [
        str(postgres_server.bin_dir / "psql"),
        "-h",
        "127.0.0.1",
        "-p",
        str(postgres_server.port),
        "-U",
        OS_USER,
        "-d",
        "postgres",
        "-v",
        "ON_ERROR_STOP=1",
        "-q",
        "-c",
    ]


def _url(postgres_server: PostgresServer, name: str) -> str:
    return f"postgresql+asyncpg://{OS_USER}@127.0.0.1:{postgres_server.port}/{name}"


def _fresh_database(postgres_server: PostgresServer, template: str | None) -> Iterator[str]:
    import uuid

    name = "t_" + uuid.uuid4().hex[:12]
    admin = _admin(postgres_server)
    create = f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")
    subprocess.run([*admin, create], check=True, capture_output=True, timeout=60)
    yield _url(postgres_server, name)
    subprocess.run(
        [*admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'], capture_output=True, timeout=60
    )


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A URL to a fresh, empty database on the shared test server."""
    yield from _fresh_database(postgres_server, None)


@pytest.fixture
def postgres_head_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh database already at the migrations' head: a copy of one migrated once per
    server (``CREATE DATABASE ... TEMPLATE``), for tests of what the schema holds rather than
    of the migrations (running them all took a second or two per test)."""
    if not postgres_server.head_template:
        from storage import upgrade

        admin = _admin(postgres_server)
        subprocess.run(
            [*admin, f'CREATE DATABASE "{HEAD_TEMPLATE}"'],
            check=True,
            capture_output=True,
            timeout=60,
        )
        upgrade(_url(postgres_server, HEAD_TEMPLATE))  # its engine is gone when this returns
        postgres_server.head_template = True
    yield from _fresh_database(postgres_server, HEAD_TEMPLATE)
