"""What each role starts (issue 15): ``aethex serve --role all|origin|web``.

"all" is the one process of before (no Redis: no leases, nothing new); "origin" listens for
RTMP and serves live HLS, /metrics and /healthz (and has the whole app, for what reacts to its
streams); "web" serves pages, the API and chat and has no RTMP listener. A role other than all
without PostgreSQL and Redis is refused at start with the settings error, through the CLI.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from benchmarks.lib.server import SERVE, ServerProcess, wait_port
from tests.cluster_nodes import shared_secret
from tests.conftest import free_port, running_server
from tests.serve_process import SERVE_READY

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def serve_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AETHEX_")}
    return subprocess.run(
        [sys.executable, "-m", "mediaserver", "serve", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=SERVE_READY,  # it refuses to start, after its imports: slow on a loaded machine
    )


def test_cluster_roles_need_postgresql_and_redis(tmp_path: Path) -> None:
    env = {"AETHEX_DATA_DIR": str(tmp_path / "data")}
    done = serve_cli(["--role", "origin"], env)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (
        "aethex: error: setting 'cluster.redis_url': role 'origin' needs Redis (cluster mode)"
    )
    env["AETHEX_CLUSTER__REDIS_URL"] = "redis://127.0.0.1:6379/0"
    done = serve_cli(["--role", "web"], env)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (
        "aethex: error: setting 'database_url': role 'web' needs PostgreSQL (cluster mode)"
    )
    # The flag wins over the environment, and is checked like it.
    env["AETHEX_CLUSTER__ROLE"] = "web"
    done = serve_cli(["--role", "all", "--advertise-url", "ftp://x"], env)
    assert done.returncode == 2
    assert "cluster.advertise_url" in done.stderr and "Traceback" not in done.stderr
    done = serve_cli(["--role", "edge"], env)
    assert done.returncode == 2 and "invalid choice: 'edge'" in done.stderr


def cluster_env(
    settings_env: dict[str, str], role: str, postgres_url: str, redis_url: str
) -> dict[str, str]:
    return {
        **settings_env,
        "AETHEX_RTMP_PORT": str(free_port()),
        "AETHEX_DATABASE_URL": postgres_url,
        "AETHEX_CLUSTER__ROLE": role,
        "AETHEX_CLUSTER__NODE_ID": f"{role}-1",
        "AETHEX_CLUSTER__ADVERTISE_URL": f"http://{role}-1.test:8080",
        "AETHEX_CLUSTER__REDIS_URL": redis_url,
        **shared_secret(Path(settings_env["AETHEX_DATA_DIR"]).parent),
    }


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return True
    except OSError:
        return False


async def status(http: aiohttp.ClientSession, url: str) -> int:
    async with http.get(url, allow_redirects=False) as resp:
        await resp.read()
        return resp.status


async def health(http: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    async with http.get(f"{base}/healthz") as resp:
        assert resp.status == 200
        assert resp.headers["Cache-Control"] == "no-store"
        return await resp.json()  # type: ignore[no-any-return]


async def test_web_node_runs_no_ingest(
    settings_env: dict[str, str], postgres_url: str, redis_url: str
) -> None:
    env = cluster_env(settings_env, "web", postgres_url, redis_url)
    async with running_server(env) as web, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{web.http_port}"
        assert await health(http, base) == {
            "status": "ok",
            "role": "web",
            "node": "web-1",
            "url": "http://web-1.test:8080",
            "streams_live": 0,
        }
        assert not accepts(int(env["AETHEX_RTMP_PORT"]))  # no RTMP listener
        assert web.leases is None  # nothing to claim without publishers
        assert web.rtmp_port == int(env["AETHEX_RTMP_PORT"])  # what the dashboard shows
        assert await status(http, f"{base}/") == 200  # pages
        assert await status(http, f"{base}/api/openapi.json") == 200  # API
        assert await status(http, f"{base}/auth/login") == 200
        assert await status(http, f"{base}/metrics") == 200


async def test_origin_node_runs_ingest(
    settings_env: dict[str, str], postgres_url: str, redis_url: str
) -> None:
    env = cluster_env(settings_env, "origin", postgres_url, redis_url)
    async with running_server(env) as origin, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{origin.http_port}"
        info = await health(http, base)
        assert (info["role"], info["node"], info["url"]) == (
            "origin",
            "origin-1",
            "http://origin-1.test:8080",
        )
        assert accepts(origin.rtmp_port) and origin.rtmp_port == int(env["AETHEX_RTMP_PORT"])
        assert origin.leases is not None
        assert await status(http, f"{base}/metrics") == 200
        assert await status(http, f"{base}/hls/nobody/master.m3u8") == 404  # HLS is served
        # The areas that act on its streams' start and end run here (the front sends pages
        # to the web nodes), so the app is whole.
        assert await status(http, f"{base}/") == 200


async def test_all_without_redis_is_the_one_process(settings_env: dict[str, str]) -> None:
    async with running_server(settings_env) as one, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{one.http_port}"
        info = await health(http, base)
        assert info["role"] == "all" and info["status"] == "ok" and info["node"]
        assert one.redis is None and one.leases is None and one.ingest.leases is None
        assert accepts(one.rtmp_port)
        assert await status(http, f"{base}/") == 200
        assert await status(http, f"{base}/hls/nobody/master.m3u8") == 404


async def test_serve_flags_set_role_node_and_url(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    env = {
        "AETHEX_DATABASE_URL": postgres_url,
        "AETHEX_CLUSTER__REDIS_URL": redis_url,
        "AETHEX_CLUSTER__ROLE": "origin",  # the flag wins
        **shared_secret(tmp_path),
    }
    flags = ("--role", "web", "--node-id", "web-7", "--advertise-url", "http://w7.test:9000")
    proc = ServerProcess(env, data_dir=tmp_path / "data", command=(*SERVE, *flags))
    try:
        await asyncio.to_thread(wait_port, proc.http_port, SERVE_READY, proc.proc)
        async with aiohttp.ClientSession() as http:
            info = await health(http, proc.base)
        assert (info["role"], info["node"], info["url"]) == ("web", "web-7", "http://w7.test:9000")
        assert not accepts(proc.rtmp_port)
    finally:
        await asyncio.to_thread(proc.stop, 30.0)
