"""The analytics sampler on a live stream a real ffmpeg publishes: two HTTP players, each on
its own rendition, a chat message and a follow while it is live. The samples record the
viewers per rendition, the chat and the follow; after the stream ends its summary is final
with two unique viewers and their watch time, and the channel's hours add up to it."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import m3u8
import pytest
from sqlalchemy import func, select

from storage.analytics_models import AnalyticsChannelHour, AnalyticsSample, AnalyticsStream
from tests.chat_support import auth, base_url, make_user
from tests.conftest import make_channel, rtmp_url, running_server, start_ffmpeg, transcoding

pytestmark = pytest.mark.integration

SLUG = "sampled-tv"
LADDER = [
    {"name": "180p", "height": 180, "fps": 30, "video_kbps": 300},
    {"name": "144p", "height": 144, "fps": 30, "video_kbps": 150},
]


async def wait_for(check: Any, timeout: float, what: str) -> Any:
    """Poll ``check`` (a coroutine function) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        found = await check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def play(http: aiohttp.ClientSession, base: str, rendition: str, stop: asyncio.Event) -> None:
    """A player: the master once (one session), then its rendition's playlist and newest
    segment again and again, as hls.js does, until told to stop."""
    master_url = f"{base}/hls/{SLUG}/master.m3u8"
    async with http.get(master_url) as resp:
        text = await resp.text()
    uri = next(p.uri for p in m3u8.loads(text).playlists if f"/{rendition}/" in p.uri)
    playlist_url = f"{base}/hls/{SLUG}/{uri}"
    while not stop.is_set():
        async with http.get(playlist_url) as resp:
            body = await resp.text()
        # The last entry may be the live edge's partial segment (parts only, no URI yet).
        names = [segment.uri for segment in m3u8.loads(body).segments if segment.uri]
        if names:
            name = names[-1]
            media = playlist_url.split("?", 1)[0].rsplit("/", 1)[0] + "/" + name
            async with http.get(media) as resp:
                await resp.read()
        await asyncio.sleep(0.3)


async def test_the_sampler_records_a_published_stream(settings_env: dict[str, str]) -> None:
    env = {
        **transcoding(settings_env),
        "AETHEX_TRANSCODE__LADDER": json.dumps(LADDER),
        "AETHEX_HLS__SEGMENT_DURATION": "1",
        "AETHEX_HLS__VIEWER_TIMEOUT": "3",
        "AETHEX_HLS__VIEWER_UPDATE_INTERVAL": "0.3",
        "AETHEX_ANALYTICS__SAMPLE_INTERVAL": "1",
        "AETHEX_ANALYTICS__ACTIVITY_LAG": "0.5",
        "AETHEX_ANALYTICS__WATCH_FLUSH_INTERVAL": "1",
        "AETHEX_ANALYTICS__ROLLUP_INTERVAL": "1",
    }
    async with running_server(env) as server:
        channel_id, key = await make_channel(server, SLUG, "sam")
        _, fan = await make_user(server, "fan")
        base = base_url(server)
        proc = await start_ffmpeg(rtmp_url(server, key), seconds=60, size="320x180")
        stop = asyncio.Event()
        players: list[asyncio.Task[None]] = []
        try:
            async with aiohttp.ClientSession() as http:

                async def master_ready() -> bool:
                    async with http.get(f"{base}/hls/{SLUG}/master.m3u8") as resp:
                        await resp.read()
                        return resp.status == 200

                await wait_for(master_ready, 60, "the master playlist")
                live = server.registry.get(SLUG)
                assert live is not None
                stream_id = live.stream_id
                players = [
                    asyncio.create_task(play(http, base, name, stop)) for name in ("180p", "144p")
                ]
                for path, body in (
                    ("/api/messages", {"channel": SLUG, "content": "hello from the test"}),
                    (f"/api/channels/{SLUG}/follow", None),
                ):
                    async with http.post(f"{base}{path}", json=body, headers=auth(fan)) as resp:
                        assert resp.status in (200, 201), await resp.text()

                async def sampled() -> Any:
                    async with server.db.session() as s:
                        rows = (
                            await s.execute(
                                select(AnalyticsSample).where(
                                    AnalyticsSample.stream_id == stream_id
                                )
                            )
                        ).scalars()
                        rows = list(rows)
                    both = any(r.renditions == {"180p": 1, "144p": 1} for r in rows)
                    chatted = sum(r.messages for r in rows) >= 1
                    followed = sum(r.follows for r in rows) >= 1
                    return rows if both and chatted and followed else None

                rows = await wait_for(sampled, 60, "samples of both players, chat and follow")
                assert all(r.channel_id == channel_id and r.seconds >= 1 for r in rows)
                assert max(r.viewers for r in rows) == 2
                stop.set()
                await asyncio.gather(*players)
        finally:
            stop.set()
            for task in players:
                task.cancel()
            if proc.returncode is None:
                proc.terminate()
            await proc.wait()

        async def final() -> Any:
            async with server.db.session() as s:
                row = await s.get(AnalyticsStream, stream_id)
                return row if row is not None and row.final else None

        summary = await wait_for(final, 60, "the stream's final summary")
        assert summary.unique_viewers == 2
        assert summary.peak_viewers == 2
        assert set(summary.renditions) == {"180p", "144p"}
        assert all(r["viewers"] == 1 and r["seconds"] > 0 for r in summary.renditions.values())
        assert summary.messages == 1 and summary.chatters == 1 and summary.follows == 1
        # Each counted session was credited exactly the seconds of the samples it was in.
        assert summary.watch_seconds == summary.viewer_seconds
        async with server.db.session() as s:
            hours = await s.scalar(
                select(func.sum(AnalyticsChannelHour.live_seconds)).where(
                    AnalyticsChannelHour.channel_id == channel_id
                )
            )
        assert hours == summary.live_seconds > 0
