"""Controlling live streams with a real ffmpeg publishing: health figures from real media,
End stream disconnecting the encoder (and keeping it off for the cooldown), a regenerated key
refusing the old one, stream keys kept out of the log, and crash leftovers closed at start."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from storage import queries
from storage.models import Stream, StreamStatus
from tests.accounts import csrf_of, register
from tests.conftest import make_channel, rtmp_url, running_server, start_ffmpeg

pytestmark = pytest.mark.integration


async def wait_for(predicate: Any, timeout: float = 10.0, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def exits_within(proc: asyncio.subprocess.Process, timeout: float) -> int:
    try:
        return await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"ffmpeg still running after {timeout} s") from None


async def count_streams(server: Any) -> int:
    async with server.db.session() as db:
        return (await db.execute(select(func.count()).select_from(Stream))).scalar_one()


@pytest.fixture
async def creator(settings_env: dict[str, str]):
    """A server with a short end cooldown, and a logged-in creator owning channel 'alice-tv'."""
    env = {**settings_env, "AETHEX_RTMP__ENDED_COOLDOWN": "3"}
    async with running_server(env) as server:
        base = f"http://127.0.0.1:{server.http_port}"
        async with await register(base, "alice") as http:
            headers = {"X-CSRF-Token": await csrf_of(http, base)}
            async with http.post(
                "/api/channels", json={"slug": "alice-tv", "name": "Alice"}, headers=headers
            ) as r:
                assert r.status == 201
                channel = await r.json()
            yield server, http, headers, channel


async def test_end_stream_disconnects_the_encoder_and_keeps_it_off(creator, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    server, http, headers, channel = creator
    key = channel["stream_key"]
    proc = await start_ffmpeg(rtmp_url(server, key), seconds=60, size="640x360")
    try:
        await wait_for(lambda: server.registry.get("alice-tv") is not None, what="live")
        live = server.registry.get("alice-tv")
        await wait_for(lambda: live.stats.media_seconds >= 1.5, what="1.5 s of media")
        async with http.get(f"/api/streams/{live.stream_id}/status") as r:
            status = await r.json()
        ingest = status["health"]["ingest"]
        assert ingest["video_codec"] == "avc1" and ingest["audio_codec"] == "mp4a"
        assert (ingest["width"], ingest["height"]) == (640, 360)
        assert 20 < ingest["frame_rate"] < 40, ingest
        assert ingest["keyframe_interval_s"] == pytest.approx(1.0, abs=0.1)  # -g 30 at 30 fps
        assert ingest["bitrate_kbps"] > 0
        assert status["health"]["transcode"] is None  # this server does not transcode

        async with http.post(f"/api/streams/{live.stream_id}/end", headers=headers) as r:
            assert r.status == 202, await r.text()
        rc = await exits_within(proc, 10)
        assert rc != 0  # ffmpeg lost its connection before its input ended
        await wait_for(lambda: server.registry.get("alice-tv") is None, what="unpublished")
        for _ in range(100):
            async with server.db.session() as db:
                row = await db.get(Stream, live.stream_id)
            if row.status is not StreamStatus.LIVE:
                break
            await asyncio.sleep(0.05)
        assert row.status is StreamStatus.OFFLINE and row.ended_at is not None
        assert row.duration_seconds is not None and row.duration_seconds >= 1

        # The encoder's reconnect within the cooldown is refused, and makes no stream row.
        before = await count_streams(server)
        again = await start_ffmpeg(rtmp_url(server, key), seconds=30, size="640x360")
        assert await exits_within(again, 10) != 0
        assert server.registry.get("alice-tv") is None and await count_streams(server) == before
        assert server.metrics.rtmp_rejected.labels("ended_cooldown")._value.get() == 1
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert key not in caplog.text


async def test_a_regenerated_key_refuses_the_old_one(creator, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    server, http, headers, channel = creator
    old = channel["stream_key"]
    async with http.post("/api/channels/alice-tv/stream-key", headers=headers) as r:
        new = (await r.json())["stream_key"]
    refused = await start_ffmpeg(rtmp_url(server, old), seconds=30, size="320x180")
    assert await exits_within(refused, 10) != 0
    assert server.registry.get("alice-tv") is None and await count_streams(server) == 0
    assert server.metrics.rtmp_rejected.labels("bad_key")._value.get() == 1
    accepted = await start_ffmpeg(rtmp_url(server, new), seconds=30, size="320x180")
    try:
        await wait_for(lambda: server.registry.get("alice-tv") is not None, what="live")
    finally:
        accepted.kill()
        await accepted.wait()
    assert old not in caplog.text and new not in caplog.text


async def test_server_start_closes_streams_a_crash_left_live(settings_env) -> None:
    started = datetime.now(UTC) - timedelta(minutes=5)
    async with running_server(settings_env) as server:
        channel_id, _ = await make_channel(server, "crashy", "carol")
        async with server.db.session() as db:
            row = await queries.start_stream(db, channel_id, started)
            await db.commit()
            stream_id = row.id
    # The first server stopped without ending the row (as a crash would leave it).
    async with running_server(settings_env) as server:
        # Out of LIVE before ingest starts; closed by recovery in the background: with
        # nothing recorded on disk, OFFLINE as before.
        async with server.db.session() as db:
            assert await queries.live_stream_for_channel(db, channel_id) is None
        for _ in range(600):
            async with server.db.session() as db:
                row = await db.get(Stream, stream_id)
            if row.status is not StreamStatus.ENDING:
                break
            await asyncio.sleep(0.1)
        assert row.status is StreamStatus.OFFLINE
        assert row.ended_at is not None and row.duration_seconds >= 300
