"""Crash recovery from the bucket (issue 15): an origin in S3 mode is killed with SIGKILL
mid-stream and its disk loses the recording; the next start (on the same database) finds the
open stream, copies what the bucket holds (the segments, init sections and the journal the
origin sent as it went), rebuilds the VOD and plays it, and the VOD's playlists land in the
bucket after the segments they name."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path

import aiohttp
import pytest
from seaweed import BUCKET, SeaweedFS, make_s3_settings, seaweed  # noqa: F401

from benchmarks.lib.server import ServerProcess
from tests.conftest import ffmpeg_publish_args, free_port
from tests.integration.test_crash_recovery import SLUG, aethex, alive, get, servers, the_stream
from tests.integration.test_crash_recovery import until as wait_for

pytestmark = pytest.mark.integration
_ = servers  # the fixture: every server process started is killed at the end


async def test_an_origin_killed_mid_stream_is_recovered_from_the_bucket(
    tmp_path: Path,
    seaweed: SeaweedFS,  # noqa: F811
    servers: list[ServerProcess],
) -> None:
    prefix = f"crash-{tmp_path.name}"
    data_dir = tmp_path / "data"
    env = {
        "AETHEX_DATA_DIR": str(data_dir),
        "AETHEX_HTTP_HOST": "127.0.0.1",
        "AETHEX_RTMP_HOST": "127.0.0.1",
        "AETHEX_RTMP_PORT": str(free_port()),
        "AETHEX_TRANSCODE__ENABLED": "true",
        "AETHEX_TRANSCODE__PRESET": "ultrafast",
        "AETHEX_TRANSCODE__PASSTHROUGH": "auto",
        "AETHEX_RTMP__IDLE_TIMEOUT": "20",
        "AETHEX_OBJECTS__JOURNAL_SEGMENTS": "2",
        **make_s3_settings(seaweed, prefix=prefix),
    }
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AETHEX_")}
    cli_env = {**clean, **env, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    aethex(
        cli_env,
        "user",
        "create",
        "alice",
        "--email",
        "a@example.test",
        "--password-stdin",
        stdin="correct horse battery\n",
    )
    key = json.loads(
        aethex(cli_env, "channel", "create", "--owner", "alice", "--slug", SLUG, "--json")
    )["stream_key"]
    log = tmp_path / "server.log"
    first = ServerProcess(env, log)
    servers.append(first)
    publisher = None
    async with aiohttp.ClientSession() as http:
        await wait_for(
            "the server to answer", lambda: the_stream_or_empty(http, first), alive(first)
        )
        publisher = subprocess.Popen(
            ffmpeg_publish_args(
                f"rtmp://127.0.0.1:{env['AETHEX_RTMP_PORT']}/live/{key}", seconds=60, size="320x180"
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            stream = await wait_for(
                "the stream to go live", lambda: the_stream(http, first), alive(first)
            )
            base = f"{prefix}/streams/{stream['id']}"

            async def enough_in_bucket() -> dict[str, bytes] | None:
                objects = await asyncio.to_thread(seaweed.objects, BUCKET, f"{base}/")
                segments = [k for k in objects if k.endswith(".m4s")]
                has_journal = f"{base}/recording.jsonl" in objects
                return objects if len(segments) >= 3 and has_journal else None

            await wait_for("segments and the journal in the bucket", enough_in_bucket, alive(first))
            first.kill()
        finally:
            publisher.kill()
            publisher.wait(30)
    stored = await asyncio.to_thread(seaweed.objects, BUCKET, f"{base}/")
    segments = sorted(k[len(base) + 1 :] for k in stored if k.endswith(".m4s"))
    shutil.rmtree(data_dir / "streams")  # the disk lost the recording; the database is kept

    second = ServerProcess(env, log)
    servers.append(second)
    async with aiohttp.ClientSession() as http:

        async def archived() -> dict | None:
            row = await the_stream(http, second)
            assert row is None or row["status"] != "offline", "closed OFFLINE: recording lost"
            return row if row is not None and row["status"] == "archived" else None

        row = await wait_for("the stream recovered ARCHIVED", archived, alive(second))
        assert row["vod_available"]
        url = f"{second.base}{row['vod_url']}"
        status, master = await get(http, url)
        assert status == 200, master
        listed = []
        for line in master.decode().splitlines():
            if line and not line.startswith("#"):
                rendition = line.split("/")[0]
                status, text = await get(http, url.replace("master.m3u8", line))
                assert status == 200
                for entry in text.decode().splitlines():
                    if entry.endswith(".m4s"):
                        listed.append(f"{rendition}/{entry}")
                        status, body = await get(
                            http, url.replace("master.m3u8", f"{rendition}/{entry}")
                        )
                        assert status == 200 and len(body) > 0
        # Every whole segment the bucket held when the origin died is in the VOD.
        assert set(segments) <= set(listed), (segments, listed)

        async def master_in_bucket() -> bool | None:
            objects = await asyncio.to_thread(seaweed.objects, BUCKET, f"{base}/")
            return f"{base}/master.m3u8" in objects or None

        await wait_for("the recovered VOD's master in the bucket", master_in_bucket, alive(second))
    assert "Traceback" not in log.read_text()


async def the_stream_or_empty(http: aiohttp.ClientSession, server: ServerProcess) -> bool | None:
    status, _ = await get(http, f"{server.base}/api/streams?channel={SLUG}")
    return status == 200 or None
