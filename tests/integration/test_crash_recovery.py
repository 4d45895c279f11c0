"""A server killed mid-stream (a real SIGKILL of ``aethex serve``) keeps the recording.

A real ffmpeg pushes into a real server process that transcodes; once the live playlists show
a few segments and those segments are on disk, the process is killed with SIGKILL, which
gives it no chance to flush or mark anything. The next start, on the same data dir, must close
the stream ARCHIVED with a VOD of everything that reached the disk: every segment the live
playlists announced, at most the segment in progress lost, and the recording playable.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar
from urllib.parse import urljoin

import aiohttp
import av
import m3u8
import pytest

from benchmarks.lib.server import ServerProcess
from tests.conftest import ffmpeg_publish_args, free_port

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SLUG = "crashy"
SEGMENT = 2.0  # hls.segment_duration (the default)
SEGMENTS_BEFORE_KILL = 3
# Two rungs for a 640x360 source: a copy of it and one small encode, to keep the CPU low.
LADDER = [
    {"name": "360p", "height": 360, "fps": 30, "video_kbps": 800},
    {"name": "180p", "height": 180, "fps": 30, "video_kbps": 200},
]
WAIT = 120.0  # overall bound on each wait below (a loaded 2-core machine); events end them

T = TypeVar("T")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AETHEX_")}
    return {
        **clean,
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
        ),
        "AETHEX_DATA_DIR": str(tmp_path / "data"),
        "AETHEX_HTTP_HOST": "127.0.0.1",
        "AETHEX_RTMP_HOST": "127.0.0.1",
        "AETHEX_RTMP_PORT": str(free_port()),
        "AETHEX_TRANSCODE__ENABLED": "true",
        "AETHEX_TRANSCODE__PRESET": "ultrafast",
        "AETHEX_TRANSCODE__LADDER": json.dumps(LADDER),
        "AETHEX_RTMP__IDLE_TIMEOUT": "20",
        # The live window covers the whole push, so the playlists say all that was received.
        "AETHEX_HLS__LIVE_SEGMENTS": "60",
    }


def aethex(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "mediaserver", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def servers() -> Iterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    yield started
    for server in started:
        server.kill()


async def until(
    what: str, probe: Callable[[], Awaitable[T | None]], check: Callable[[], None] = lambda: None
) -> T:
    """Poll ``probe`` until it gives something; fail after WAIT seconds, saying ``what``."""
    deadline = time.monotonic() + WAIT
    while True:
        check()
        try:
            value = await probe()
        except (aiohttp.ClientError, OSError):
            value = None
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, bytes]:
    async with http.get(url) as response:
        return response.status, await response.read()


async def answering(http: aiohttp.ClientSession, server: ServerProcess) -> bool | None:
    status, _ = await get(http, f"{server.base}/api/streams?channel={SLUG}")
    return status == 200 or None


async def the_stream(http: aiohttp.ClientSession, server: ServerProcess) -> dict | None:
    status, body = await get(http, f"{server.base}/api/streams?channel={SLUG}")
    if status != 200:
        return None
    items = json.loads(body)["streams"]
    return items[0] if items else None


def alive(server: ServerProcess) -> Callable[[], None]:
    def check() -> None:
        assert server.proc.poll() is None, server.log()[-4000:]

    return check


def complete(playlist: m3u8.M3U8) -> list[m3u8.Segment]:
    """Closed segments of a live playlist (the one in progress has parts but no URI yet)."""
    return [s for s in playlist.segments if s.uri]


def open_parts(playlist: m3u8.M3U8) -> float:
    return sum(p.duration for s in playlist.segments if not s.uri for p in s.parts)


async def test_sigkill_mid_stream_recovers_an_archived_vod(
    env: dict[str, str], tmp_path: Path, servers: list[ServerProcess]
) -> None:
    aethex(
        env,
        "user",
        "create",
        "alice",
        "--email",
        "alice@example.test",
        "--password-stdin",
        stdin="correct horse battery\n",
    )
    key = json.loads(
        aethex(env, "channel", "create", "--owner", "alice", "--slug", SLUG, "--json")
    )["stream_key"]
    log = tmp_path / "server.log"
    first = ServerProcess(env, log)
    servers.append(first)
    async with aiohttp.ClientSession() as http:
        await until("the server to answer", lambda: answering(http, first), alive(first))
    ffmpeg_log = tmp_path / "ffmpeg.log"
    with open(ffmpeg_log, "wb") as out:
        publisher = subprocess.Popen(
            ffmpeg_publish_args(
                f"rtmp://127.0.0.1:{env['AETHEX_RTMP_PORT']}/live/{key}", seconds=60, size="640x360"
            ),
            stdout=subprocess.DEVNULL,
            stderr=out,
        )

    def pushing() -> None:
        alive(first)()
        assert publisher.poll() is None, ffmpeg_log.read_text()

    try:
        async with aiohttp.ClientSession() as http:
            stream = await until("the stream to go live", lambda: the_stream(http, first), pushing)
            assert stream["status"] == "live"
            directory = Path(env["AETHEX_DATA_DIR"]) / "streams" / str(stream["id"])
            master_url = f"{first.base}/hls/{SLUG}/master.m3u8"

            async def variants() -> dict[str, str] | None:
                status, body = await get(http, master_url)
                if status != 200:
                    return None
                master = m3u8.loads(body.decode())
                return {p.uri.split("/")[-2]: urljoin(master_url, p.uri) for p in master.playlists}

            urls = await until("the master playlist", variants, pushing)
            assert sorted(urls) == ["180p", "360p"]

            async def live_playlists() -> dict[str, m3u8.M3U8]:
                out = {}
                for name, url in urls.items():
                    status, body = await get(http, url)
                    assert status == 200, (status, body)
                    out[name] = m3u8.loads(body.decode())
                return out

            def on_disk(name: str, playlist: m3u8.M3U8) -> bool:
                return all(
                    (directory / name / s.uri.split("/")[-1].split("?")[0]).is_file()
                    for s in complete(playlist)
                )

            async def enough() -> dict[str, m3u8.M3U8] | None:
                playlists = await live_playlists()
                if all(
                    len(complete(p)) >= SEGMENTS_BEFORE_KILL and on_disk(n, p)
                    for n, p in playlists.items()
                ):
                    return playlists
                return None

            await until(f"{SEGMENTS_BEFORE_KILL} segments live and on disk", enough, pushing)
            # What was received: the playlists once more, and their closed segments on disk.
            received = await live_playlists()

            async def received_on_disk() -> bool | None:
                return all(on_disk(n, p) for n, p in received.items()) or None

            await until("the announced segments on disk", received_on_disk, pushing)
            first.kill()
    finally:
        publisher.kill()
        publisher.wait(30)

    # The first run never closed the stream: the files are all there is.
    files = {name: sorted(p.name for p in (directory / name).glob("seg*.m4s")) for name in urls}
    assert all(files.values()), files

    second = ServerProcess(env, log)
    servers.append(second)
    async with aiohttp.ClientSession() as http:

        async def archived() -> dict | None:
            row = await the_stream(http, second)
            assert row is None or row["status"] != "offline", "closed OFFLINE: recording lost"
            return row if row is not None and row["status"] == "archived" else None

        row = await until("the stream to be recovered ARCHIVED", archived, alive(second))
        assert row["vod_available"] and row["ended_at"] is not None
        vod_master_url = f"{second.base}{row['vod_url']}"
        status, body = await get(http, vod_master_url)
        assert status == 200, body
        master = m3u8.loads(body.decode())
        assert sorted(p.uri.split("/")[0] for p in master.playlists) == ["180p", "360p"]
        durations = {}
        for variant in master.playlists:
            name = variant.uri.split("/")[0]
            url = urljoin(vod_master_url, variant.uri)
            status, body = await get(http, url)
            assert status == 200, body
            vod = m3u8.loads(body.decode())
            assert vod.playlist_type == "vod" and vod.is_endlist
            # Every whole segment that reached the disk, and only those.
            assert sorted(s.uri for s in vod.segments) == files[name]
            duration = sum(s.duration for s in vod.segments)
            durations[name] = duration
            live = received[name]
            announced = sum(s.duration for s in complete(live))
            # Nothing the live playlist announced was lost...
            assert duration >= announced - 1e-3, (name, duration, announced)
            # ...and of what was received, at most the segment in progress is missing.
            assert announced + open_parts(live) - duration <= SEGMENT, (name, duration)

            # The recording plays: its initialization section and first segment decode.
            status, init = await get(http, urljoin(url, vod.segment_map[0].uri))
            assert status == 200
            status, media = await get(http, urljoin(url, vod.segments[0].uri))
            assert status == 200
            with av.open(io.BytesIO(init + media)) as container:
                frames = list(container.decode(video=0))
            assert len(frames) >= 30 * vod.segments[0].duration - 1
        assert row["vod_duration_seconds"] == pytest.approx(max(durations.values()), abs=1e-3)
    assert "Traceback" not in log.read_text()
