"""Shared fixtures: an in-process server on free ports with its own data dir, and publishers."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from db_template import migrate
from pg import (  # noqa: F401  (fixtures: a real PostgreSQL)
    postgres_head_url,
    postgres_server,
    postgres_url,
)
from redis_server import redis_server, redis_url  # noqa: F401  (fixtures: a real redis-server)
from seaweed import seaweed  # noqa: F401  (fixture: a real SeaweedFS S3 store with a bucket)

from mediaserver.settings import load_settings
from storage import Database

if TYPE_CHECKING:
    from mediaserver.app import Server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_ffmpeg() -> str:
    path = shutil.which("ffmpeg")
    if path is None:
        pytest.fail("the ffmpeg CLI is needed as a real RTMP client: run `make test` to install it")
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_on_both(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A connected Database at head on a real SQLite file, then on a real PostgreSQL: storage
    tests that take it run once on each, since every query must serve both."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'aethex.db'}"
    else:
        url = request.getfixturevalue("postgres_head_url")
    migrate(url)
    database = Database(url)
    await database.connect()
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
def settings_env(tmp_path: Path) -> dict[str, str]:
    """Environment for a server on loopback with short deadlines, in a private data dir."""
    return {
        "AETHEX_DATA_DIR": str(tmp_path / "data"),
        "AETHEX_HTTP_HOST": "127.0.0.1",
        "AETHEX_HTTP_PORT": "0",
        "AETHEX_RTMP_HOST": "127.0.0.1",
        "AETHEX_RTMP_PORT": "0",
        "AETHEX_RTMP__HANDSHAKE_TIMEOUT": "1.5",
        "AETHEX_RTMP__PUBLISH_TIMEOUT": "3",
        "AETHEX_RTMP__IDLE_TIMEOUT": "5",
        # Ingest tests need no ladder; the transcoding tests turn it on.
        "AETHEX_TRANSCODE__ENABLED": "false",
    }


@contextlib.asynccontextmanager
async def running_server(env: dict[str, str]) -> AsyncIterator[Server]:
    """An in-process server (migrated database, free ports) for the duration of the block."""
    from mediaserver.app import Server

    assert type(asyncio.get_running_loop()).__module__.startswith("uvloop")
    settings = load_settings(None, env=env)
    await asyncio.to_thread(migrate, settings.effective_database_url)
    srv = Server(settings)
    await srv.start()
    try:
        yield srv
    finally:
        await stop_server(srv)


# A stop that takes longer than this is a hang (one was seen once, under heavy load, and not
# again): fail with every task's stack instead of waiting for CI's own timeout.
STOP_BOUND = 180.0


async def stop_server(srv: Server) -> None:
    """``srv.stop()``, bounded: past ``STOP_BOUND`` the tasks' stacks go to stderr and the
    test fails there."""
    stopping = asyncio.ensure_future(srv.stop())
    done, _ = await asyncio.wait({stopping}, timeout=STOP_BOUND)
    if stopping in done:
        stopping.result()
        return
    import io
    import sys

    out = io.StringIO()
    for task in asyncio.all_tasks():
        task.print_stack(limit=12, file=out)
    print(
        f"--- Server.stop() still running after {STOP_BOUND:.0f} s ---\n{out.getvalue()}",
        file=sys.stderr,
    )
    stopping.cancel()
    raise AssertionError(f"Server.stop() hung for {STOP_BOUND:.0f} s (task stacks on stderr)")


@pytest.fixture
async def server(settings_env: dict[str, str]) -> AsyncIterator[Server]:
    async with running_server(settings_env) as srv:
        yield srv


async def make_channel(
    server: Server, slug: str = "alice-live", username: str = "alice"
) -> tuple[int, str]:
    """Create a user and a channel through the storage layer; returns (channel id, key)."""
    from storage import queries

    async with server.db.session() as db:
        try:
            await queries.create_user(db, username, f"{username}@example.test", "pw-123456789")
        except Exception:
            await db.rollback()
        channel = await queries.create_channel(db, username, slug)
        await db.commit()
        return channel.id, channel.stream_key


def ffmpeg_publish_args(
    url: str, *, seconds: float = 4.0, size: str = "1280x720", rate: int = 30, realtime: bool = True
) -> list[str]:
    """A real ffmpeg pushing H.264 + AAC test media, as an encoder would."""
    args = [require_ffmpeg(), "-hide_banner", "-loglevel", "error", "-nostdin"]
    if realtime:
        args.append("-re")
    args += [
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=size={size}:rate={rate}",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-t",
        str(seconds),
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-tune",
        "zerolatency",
        "-g",
        str(rate),
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-b:a",
        "96k",
        "-ac",
        "2",
        "-f",
        "flv",
        url,
    ]
    return args


async def start_ffmpeg(url: str, **kw: object) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *ffmpeg_publish_args(url, **kw),  # type: ignore[arg-type]
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


def rtmp_url(server: Server, key: str) -> str:
    return f"rtmp://127.0.0.1:{server.rtmp_port}/{server.settings.rtmp.app}/{key}"


def pytest_asyncio_loop_factories(config, item):
    """Tests run on uvloop, the loop ``aethex serve`` uses."""
    import uvloop

    return {"uvloop": uvloop.new_event_loop}


def make_source(
    path: Path, *, size: str, seconds: float, bitrate: str = "2M", gop: int = 30
) -> Path:
    """A short H.264 + AAC FLV test source, made once by the ffmpeg CLI."""
    import subprocess

    subprocess.run(
        [
            require_ffmpeg(),
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=size={size}:rate=30",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            str(seconds),
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            str(gop),
            "-b:v",
            bitrate,
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-b:a",
            "96k",
            "-ac",
            "2",
            "-f",
            "flv",
            str(path),
        ],
        check=True,
    )
    return path


async def push(source: Path, url: str) -> asyncio.subprocess.Process:
    """A real ffmpeg publishing a prepared source in real time without re-encoding."""
    return await asyncio.create_subprocess_exec(
        require_ffmpeg(),
        "-hide_banner",
        "-loglevel",
        "error",
        "-nostdin",
        "-re",
        "-i",
        str(source),
        "-c",
        "copy",
        "-f",
        "flv",
        url,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


def transcoding(env: dict[str, str]) -> dict[str, str]:
    """Settings for tests that run the ladder: the machine has 2 cores shared with ffmpeg
    (and Chromium), so the fastest preset keeps up; tests check structure, not quality."""
    return {
        **env,
        "AETHEX_TRANSCODE__ENABLED": "true",
        "AETHEX_TRANSCODE__PRESET": "ultrafast",
        "AETHEX_RTMP__IDLE_TIMEOUT": "20",
    }
