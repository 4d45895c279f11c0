"""Viewer counts cannot be faked: made-up ``session=`` values from one address count at most
``hls.max_sessions_per_address``, and only once that address fetches media (a part or a
segment); a real player on another address still counts.

A real server on a free port, real HTTP clients bound to distinct loopback addresses (any of
127/8 works), through the fast path and through aiohttp. The live edge is synthetic: parts are
opaque bytes to HTTP and counting never looks inside them, so no encoder is needed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from storage import queries
from storage.models import Stream
from tests.chat_support import auth, base_url, join
from tests.conftest import make_channel, running_server
from transcode.edge import LiveEdge, RenditionEdge
from transcode.hls import LivePlaylist, PartReady, SegmentReady
from webapp.hls import HLS_KEY
from webapp.keys import CHAT_KEY

pytestmark = pytest.mark.integration

SLUG = "crowd-tv"
CAP = 4
FAKES = 300


@dataclass
class Site:
    server: Any
    stream_id: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.http_port}"

    def counts(self) -> int:
        """What the next recount would publish for the channel (expires nothing here: the
        viewer timeout is a minute)."""
        service = self.server._runner.app[HLS_KEY]
        return service.viewers.sweep(time.monotonic()).get(SLUG, 0)

    def gauge(self) -> float | None:
        return self.server.metrics.sample("aethex_viewers", channel=SLUG)

    async def row_count(self) -> int:
        async with self.server.db.session() as db:
            return (await db.get(Stream, self.stream_id)).viewer_count

    async def published(self, expected: int) -> None:
        """Wait for the recount loop to publish ``expected`` to the gauge and the row."""
        deadline = time.monotonic() + 15
        while self.gauge() != expected or await self.row_count() != expected:
            assert time.monotonic() < deadline, (self.gauge(), await self.row_count())
            await asyncio.sleep(0.05)


def synthetic_edge(stream_id: int) -> LiveEdge:
    """One rendition with a whole segment (two parts) and the first part of the next."""
    edge = LiveEdge(SLUG, stream_id, 4)
    rendition = edge.renditions["360p"] = RenditionEdge(
        name="360p",
        init=b"init" * 16,
        codecs="avc1.64001e,mp4a.40.2",
        width=640,
        height=360,
        frame_rate=30.0,
        playlist=LivePlaylist(segment_duration=1.0, part_target=0.5, window_segments=4),
        bandwidth=800_000,
        average_bandwidth=700_000,
    )
    parts = []
    for msn, index in ((0, 0), (0, 1), (1, 0)):
        data = f"media {msn}.{index} ".encode() * 64
        parts.append(data)
        rendition.add_part(
            PartReady(segment=msn, index=index, data=data, duration=0.5, independent=index == 0)
        )
        if (msn, index) == (0, 1):
            rendition.add_segment(
                SegmentReady(
                    segment=0,
                    data=parts[0] + parts[1],
                    duration=1.0,
                    program_date_time=datetime.now(UTC),
                    discontinuity=False,
                ),
                edge.window,
            )
    edge.notify()
    return edge


@pytest.fixture(params=["fast_path", "aiohttp"])
async def site(request: pytest.FixtureRequest, settings_env: dict[str, str]) -> AsyncIterator[Site]:
    env = {
        **settings_env,
        "AETHEX_HLS__MAX_SESSIONS_PER_ADDRESS": str(CAP),
        "AETHEX_HLS__VIEWER_TIMEOUT": "60",
        "AETHEX_HLS__VIEWER_UPDATE_INTERVAL": "0.1",
        "AETHEX_HTTP__FAST_PATH": "true" if request.param == "fast_path" else "false",
        "AETHEX_HTTP__TRUST_FORWARDED_FOR": "true",
    }
    async with running_server(env) as server:
        channel_id, _ = await make_channel(server, SLUG, "carol")
        async with server.db.session() as db:
            row = await queries.start_stream(db, channel_id, datetime.now(UTC))
            await db.commit()
        server.broadcasts.edges.put(synthetic_edge(row.id))
        yield Site(server, row.id)


def client(source: str) -> aiohttp.ClientSession:
    """An HTTP client whose connections come from the loopback address ``source``."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(source, 0)))


async def status_of(http: aiohttp.ClientSession, url: str, **kw: Any) -> int:
    async with http.get(url, **kw) as resp:
        await resp.read()
        return resp.status


async def test_made_up_sessions_count_only_with_media_and_at_most_the_cap(site: Site) -> None:
    playlist = f"{site.base}/hls/{SLUG}/360p/index.m3u8"
    async with client("127.0.0.2") as faker:
        for i in range(FAKES):
            assert await status_of(faker, f"{playlist}?session=fake-viewer-{i:06d}") == 200
        # Playlist polls alone are nobody watching, however many sessions they name.
        assert site.counts() == 0
        # One segment fetched from that address: its sessions count, up to the cap.
        assert await status_of(faker, f"{site.base}/hls/{SLUG}/360p/seg0.m4s") == 200
        assert site.counts() == CAP
        await site.published(CAP)

        # A real player elsewhere: master, its media playlist, then a part. It counts.
        async with client("127.0.0.3") as viewer:
            async with viewer.get(f"{site.base}/hls/{SLUG}/master.m3u8") as resp:
                assert resp.status == 200
                media = next(
                    line
                    for line in (await resp.text()).splitlines()
                    if line and not line.startswith("#")
                )
            media_url = f"{site.base}/hls/{SLUG}/{media}"
            assert await status_of(viewer, media_url) == 200
            assert site.counts() == CAP  # no media yet
            assert (
                await status_of(viewer, media_url.split("?")[0].rsplit("/", 1)[0] + "/part1.0.m4s")
                == 200
            )
            await site.published(CAP + 1)

        # A playlist poller on a third address that never fetches media adds nobody, and
        # more made-up sessions from the first address add nobody either.
        async with client("127.0.0.4") as poller:
            for i in range(20):
                assert await status_of(poller, f"{playlist}?session=poll-viewer-{i:06d}") == 200
        for i in range(20):
            assert await status_of(faker, f"{playlist}?session=more-fakes-{i:06d}") == 200
        assert await status_of(faker, f"{site.base}/hls/{SLUG}/360p/seg0.m4s") == 200
        assert site.counts() == CAP + 1


async def test_behind_a_trusted_proxy_the_forwarded_address_is_the_client(site: Site) -> None:
    """All requests come from one proxy address; X-Forwarded-For's last entry (what the proxy
    appended) tells the clients apart, and what the client put before it does not count."""
    playlist = f"{site.base}/hls/{SLUG}/360p/index.m3u8"
    async with client("127.0.0.5") as proxy:
        for i in range(FAKES):
            # The faker varies the entry it controls; the proxy's entry stays its address.
            xff = {"X-Forwarded-For": f"10.9.{i // 250}.{i % 250}, 198.51.100.7"}
            assert (
                await status_of(proxy, f"{playlist}?session=proxied-fake-{i:06d}", headers=xff)
                == 200
            )
        # Media fetched by another client of the proxy credits only that client.
        other = {"X-Forwarded-For": "198.51.100.8"}
        assert (
            await status_of(proxy, f"{playlist}?session=proxied-real-000001", headers=other) == 200
        )
        assert (
            await status_of(proxy, f"{site.base}/hls/{SLUG}/360p/part0.1.m4s", headers=other) == 200
        )
        assert site.counts() == 1
        assert (
            await status_of(
                proxy,
                f"{site.base}/hls/{SLUG}/360p/seg0.m4s",
                headers={"X-Forwarded-For": "198.51.100.7"},
            )
            == 200
        )
        assert site.counts() == 1 + CAP
        await site.published(1 + CAP)


async def test_counts_reach_this_processes_chat_from_memory(settings_env: dict[str, str]) -> None:
    """The process that counts a stream's viewers gives its chat the count in memory (the
    registry's LiveStream), not through the stream's row: a row that says otherwise is not
    read. A joining socket starts from that count and from the stream's title, and an edited
    title reaches the next join without waiting for a recount. (Rooms whose stream another
    process counts read the row: test_chat_basic's stream:viewers test.)"""
    env = {
        **settings_env,
        "AETHEX_HLS__VIEWER_UPDATE_INTERVAL": "3600",
        "AETHEX_TRANSCODE__ENABLED": "false",
    }  # the recounts below are the only ones
    async with running_server(env) as server:
        channel_id, _ = await make_channel(server, SLUG, "carol")
        async with server.db.session() as db:
            token = await queries.create_api_token(db, "carol")
            await db.commit()
        base = base_url(server)
        app = server._runner.app
        hls, chat = app[HLS_KEY], app[CHAT_KEY]
        async with aiohttp.ClientSession() as http:
            room = await join(http, base, SLUG)
            assert (await room.next("stream:viewers"))["viewers"] == 0
            now = datetime.now(UTC)
            async with server.db.session() as db:
                row = await queries.start_stream(db, channel_id, now)
                await db.commit()
            live = server.registry.start(
                channel_id=channel_id, slug=SLUG, stream_id=row.id, started_at=now
            )
            server.broadcasts.edges.put(synthetic_edge(row.id))
            await room.next("stream:status", live=True)

            playlist = f"{base}/hls/{SLUG}/360p/index.m3u8?session=one-real-viewer-01"
            assert await status_of(http, playlist) == 200
            assert await status_of(http, f"{base}/hls/{SLUG}/360p/seg0.m4s") == 200
            await hls.update_viewers(time.monotonic())
            assert live.viewers == 1
            async with server.db.session() as db:
                (await db.get(Stream, row.id)).viewer_count = 42
                await db.commit()
            await chat.update_viewers()
            assert (await room.next("stream:viewers"))["viewers"] == 1

            late = await join(http, base, SLUG)
            status = await late.next("stream:status")
            assert status["live"] is True and status["title"] == row.title
            assert (await late.next("stream:viewers"))["viewers"] == 1

            async with http.patch(
                f"{base}/api/streams/{row.id}", headers=auth(token), json={"title": "A new title"}
            ) as resp:
                assert resp.status == 200, await resp.text()
            later = await join(http, base, SLUG)
            assert (await later.next("stream:status"))["title"] == "A new title"
            assert (await later.next("stream:viewers"))["viewers"] == 1
            for client in (room, late, later):
                await client.ws.close()
