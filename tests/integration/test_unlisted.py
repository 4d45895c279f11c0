"""Unlisted channels are reachable only by their link, everywhere.

Stream ids are sequential, so looking a stream up by id must not reach an unlisted channel's
stream (API, chat history, posting, VOD through the fast path and through aiohttp, the
recording page) for anyone but its owner and admins, and must answer exactly as for a stream
that does not exist. The stream's public id (its link) reaches it; a listed channel's streams
keep the documented ``/vod/{stream_id}/…`` URLs. ``/metrics`` folds unlisted channels' series
into ``channel="_unlisted"`` and can be restricted by token and address.

A real server on free ports, real accounts through the JSON API, real HTTP (aiohttp clients
and raw sockets), and for the metrics a real ffmpeg publishing over RTMP. The recordings are
small synthetic VOD directories: HTTP never looks inside segments.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mediaserver.settings import SettingsError, load_settings
from storage import queries
from storage.models import Message, Stream, StreamStatus
from tests.accounts import csrf_of, register, user_of
from tests.conftest import rtmp_url, running_server, start_ffmpeg

pytestmark = pytest.mark.integration

SECRET, OPEN = "secret-tv", "open-tv"
MASTER = (
    "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360\n"
    "360p/index.m3u8\n"
)
MEDIA = (
    "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:1\n#EXT-X-PLAYLIST-TYPE:VOD\n"
    '#EXT-X-MAP:URI="init.mp4"\n#EXTINF:1.0,\nseg0.m4s\n#EXT-X-ENDLIST\n'
)


@dataclass
class Site:
    server: Any
    base: str
    users: dict[str, aiohttp.ClientSession]
    channels: dict[str, dict]
    streams: dict[str, Stream]  # an archived stream with a VOD, per channel slug

    async def as_user(self, who: str, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        http = self.users[who] if who != "anon" else None
        if http is not None and method != "GET":
            kw.setdefault("headers", {})["X-CSRF-Token"] = await csrf_of(http, self.base)
        async with aiohttp.ClientSession() as anon:
            async with (http or anon).request(method, f"{self.base}{path}", **kw) as resp:
                body = await resp.read()
                try:
                    return resp.status, await resp.json(content_type=None)
                except ValueError:
                    return resp.status, body


async def archived_with_vod(server: Any, channel_id: int, author_id: int) -> Stream:
    """An ARCHIVED stream with a one-segment VOD on disk and two chat messages."""
    now = datetime.now(UTC)
    async with server.db.session() as db:
        row = await queries.start_stream(db, channel_id, now)
        await queries.end_stream(db, row.id, now, StreamStatus.ARCHIVED)
        row.vod_available, row.vod_duration_seconds = True, 1.0
        for text in ("first", "second"):
            db.add(
                Message(stream_id=row.id, channel_id=channel_id, user_id=author_id, content=text)
            )
        await db.commit()
    directory = server.settings.data_dir / "streams" / str(row.id)
    (directory / "360p").mkdir(parents=True)
    (directory / "master.m3u8").write_text(MASTER)
    (directory / "360p" / "index.m3u8").write_text(MEDIA)
    (directory / "360p" / "init.mp4").write_bytes(b"init" * 32)
    (directory / "360p" / "seg0.m4s").write_bytes(b"recorded media " * 64)
    return row


@pytest.fixture
async def site(settings_env: dict[str, str]) -> AsyncIterator[Site]:
    async with running_server(settings_env) as server:
        base = f"http://127.0.0.1:{server.http_port}"
        users = {}
        try:
            for name in ("root", "alice", "bob"):  # the first account is the admin
                users[name] = await register(base, name)
            channels = {}
            for slug, public in ((SECRET, False), (OPEN, True)):
                async with users["alice"].post(
                    f"{base}/api/channels",
                    json={"slug": slug, "name": slug, "is_public": public},
                    headers={"X-CSRF-Token": await csrf_of(users["alice"], base)},
                ) as r:
                    assert r.status == 201, await r.text()
                    channels[slug] = await r.json()
            alice_id = (await user_of(users["alice"], base))["id"]
            streams = {
                slug: await archived_with_vod(server, channels[slug]["id"], alice_id)
                for slug in (SECRET, OPEN)
            }
            yield Site(server, base, users, channels, streams)
        finally:
            for http in users.values():
                await http.close()


async def raw_get(port: int, path: str, *, via_aiohttp: bool) -> tuple[int, bytes]:
    """A GET on a raw socket. A repeated header is something the fast path never answers
    itself: it hands the request to aiohttp, so both HTTP layers get tested."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    extra = "X-Twice: 1\r\nX-Twice: 2\r\n" if via_aiohttp else ""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: t\r\n{extra}Connection: close\r\n\r\n".encode())
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return int(data.split(b" ", 2)[1]), data.partition(b"\r\n\r\n")[2]


def vod_paths(ref: str | int) -> list[str]:
    return [
        f"/vod/{ref}/master.m3u8",
        f"/vod/{ref}/360p/index.m3u8",
        f"/vod/{ref}/360p/init.mp4",
        f"/vod/{ref}/360p/seg0.m4s",
    ]


async def test_unlisted_streams_answer_by_id_as_if_they_did_not_exist(site: Site) -> None:
    """Every way to name a stream by id, as a visitor and as another user: each answers as a
    stream that does not exist would. All paths are tried and the leaks listed together."""
    secret, listed = site.streams[SECRET], site.streams[OPEN]
    missing = max(secret.id, listed.id) + 1000
    leaks: list[tuple[str, ...]] = []

    def leak(*what: Any) -> None:
        leaks.append(tuple(str(w)[:120] for w in what))

    for who in ("anon", "bob"):
        for suffix in ("", "/status", "/messages"):
            status, body = await site.as_user(who, "GET", f"/api/streams/{secret.id}{suffix}")
            gone, gone_body = await site.as_user(who, "GET", f"/api/streams/{missing}{suffix}")
            assert gone == 404, gone_body
            if (
                status != 404
                or body["error"]["code"] != gone_body["error"]["code"]
                or SECRET in str(body)
            ):
                leak(who, f"GET /api/streams/{{id}}{suffix}", status, body)
    # A write names the stream too: 404 like a missing one, not 403.
    status, body = await site.as_user(
        "bob", "PATCH", f"/api/streams/{secret.id}", json={"title": "x"}
    )
    if status != 404:
        leak("bob", "PATCH /api/streams/{id}", status, body)
    status, body = await site.as_user(
        "bob", "POST", "/api/messages", json={"stream_id": secret.id, "content": "hi"}
    )
    if status != 404 or SECRET in str(body):
        leak("bob", "POST /api/messages {stream_id}", status, body)
    status, page = await site.as_user("anon", "GET", f"/videos/{secret.id}")
    if status != 404 or SECRET.encode() in page:
        leak("anon", "GET /videos/{id}", status)
    # VOD by id: 404 through both HTTP layers, for everyone (those answers are cacheable and
    # cookieless, so not even the owner gets one by id: the owner is given the link).
    for path in vod_paths(secret.id):
        for via_aiohttp in (False, True):
            status, body = await raw_get(site.server.http_port, path, via_aiohttp=via_aiohttp)
            if status != 404 or b"recorded media" in body or b"EXTM3U" in body:
                leak("anon", path, "aiohttp" if via_aiohttp else "fast path", status)
    assert not leaks, "\n".join(" | ".join(leak) for leak in leaks)


async def test_unlisted_streams_are_reached_by_their_link_and_by_their_owner(site: Site) -> None:
    secret = site.streams[SECRET]
    # The channel's slug is its link: its streams are listed there, with the VOD link.
    status, body = await site.as_user("anon", "GET", f"/api/streams?channel={SECRET}")
    assert status == 200
    (doc,) = body["streams"]
    link = secret.public_id
    assert len(link) == 22 and doc["vod_url"] == f"/vod/{link}/master.m3u8"
    assert doc["watch_url"] == f"/videos/{link}"
    for path in vod_paths(link):
        for via_aiohttp in (False, True):
            status, body = await raw_get(site.server.http_port, path, via_aiohttp=via_aiohttp)
            assert status == 200, (path, via_aiohttp, body[:100])
    status, body = await site.as_user("anon", "GET", f"/api/streams/{link}")
    assert status == 200 and body["id"] == secret.id
    status, body = await site.as_user("anon", "GET", f"/api/streams/{link}/messages")
    assert status == 200 and [m["content"] for m in body["messages"]] == ["first", "second"]
    status, page = await site.as_user("anon", "GET", doc["watch_url"])
    assert status == 200 and f"/vod/{link}/master.m3u8".encode() in page
    status, _ = await site.as_user(
        "bob", "POST", "/api/messages", json={"channel": SECRET, "content": "by the slug"}
    )
    assert status == 201
    # Its owner and admins still reach it by id (the dashboard does).
    for who in ("alice", "root"):
        status, body = await site.as_user(who, "GET", f"/api/streams/{secret.id}")
        assert status == 200 and body["vod_url"] == f"/vod/{link}/master.m3u8", (who, body)
        status, body = await site.as_user(who, "GET", f"/api/streams/{secret.id}/messages")
        assert status == 200 and len(body["messages"]) == 2
    status, _ = await site.as_user("alice", "GET", f"/videos/{secret.id}")
    assert status == 200
    status, body = await site.as_user(
        "alice", "PATCH", f"/api/streams/{secret.id}", json={"title": "renamed"}
    )
    assert status == 200 and body["title"] == "renamed"


async def test_listed_channels_keep_their_id_urls(site: Site) -> None:
    listed = site.streams[OPEN]
    status, body = await site.as_user("anon", "GET", f"/api/streams/{listed.id}")
    assert status == 200 and body["vod_url"] == f"/vod/{listed.id}/master.m3u8"
    for path in vod_paths(listed.id) + vod_paths(listed.public_id):
        status, _ = await raw_get(site.server.http_port, path, via_aiohttp=False)
        assert status == 200, path
    status, body = await site.as_user("anon", "GET", f"/api/streams/{listed.id}/messages")
    assert status == 200 and len(body["messages"]) == 2


async def test_a_channel_made_unlisted_stops_answering_by_id(site: Site, monkeypatch) -> None:
    import webapp.hls

    # The VOD routes re-check a link every VOD_LINK_SECONDS; a short one keeps this test short.
    monkeypatch.setattr(webapp.hls, "VOD_LINK_SECONDS", 0.2)
    listed = site.streams[OPEN]
    path = f"/vod/{listed.id}/master.m3u8"
    assert (await raw_get(site.server.http_port, path, via_aiohttp=False))[0] == 200
    status, _ = await site.as_user(
        "alice", "PATCH", f"/api/channels/{OPEN}", json={"is_public": False}
    )
    assert status == 200
    assert (await site.as_user("anon", "GET", f"/api/streams/{listed.id}"))[0] == 404
    deadline = time.monotonic() + 10
    while (await raw_get(site.server.http_port, path, via_aiohttp=False))[0] != 404:
        assert time.monotonic() < deadline, "the id still reaches the recording"
        await asyncio.sleep(0.1)
    status, _ = await raw_get(
        site.server.http_port, f"/vod/{listed.public_id}/master.m3u8", via_aiohttp=False
    )
    assert status == 200


async def test_lists_and_the_home_page_leave_unlisted_channels_out(site: Site) -> None:
    now = datetime.now(UTC)
    async with site.server.db.session() as db:
        for slug in (SECRET, OPEN):
            row = await queries.start_stream(db, site.channels[slug]["id"], now)
            row.viewer_count = 500 if slug == SECRET else 1
        await db.commit()
    for path in (
        "/api/streams",
        "/api/streams?live=true",
        "/api/channels",
        "/api/channels?owner=alice",
        "/",
    ):
        status, body = await site.as_user("bob", "GET", path)
        assert status == 200
        text = body.decode() if isinstance(body, bytes) else str(body)
        assert OPEN in text and SECRET not in text, path


# -- /metrics -------------------------------------------------------------------------------


async def test_metrics_fold_unlisted_channels(site: Site) -> None:
    """Real publishers on both channels: the listed one keeps its label, the unlisted one is
    summed under _unlisted, and its slug appears nowhere in the scrape."""
    server = site.server
    procs = [
        await start_ffmpeg(
            rtmp_url(server, site.channels[slug]["stream_key"]),
            seconds=2.0,
            size="320x240",
            rate=15,
        )
        for slug in (SECRET, OPEN)
    ]
    for proc in procs:
        await asyncio.wait_for(proc.wait(), 60)

    def sent(slug: str) -> float:
        return server.metrics.sample("aethex_ingest_bytes_total", channel=slug) or 0.0

    deadline = time.monotonic() + 15
    while not (sent(SECRET) > 0 and sent(OPEN) > 0):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    secret_bytes = sent(SECRET)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{site.base}/metrics") as resp:
            assert resp.status == 200
            text = await resp.text()
    assert SECRET not in text
    assert f'aethex_ingest_bytes_total{{channel="{OPEN}"}}' in text
    line = next(
        line
        for line in text.splitlines()
        if line.startswith('aethex_ingest_bytes_total{channel="_unlisted"}')
    )
    assert float(line.split()[-1]) == secret_bytes


async def test_metrics_can_require_a_token_and_an_address(
    settings_env: dict[str, str], tmp_path: Path
) -> None:
    token = "scrape-token-0123456789"
    (tmp_path / "token").write_text(token + "\n")
    cases = [
        # (settings, request headers, expected status)
        ({"AETHEX_METRICS__ALLOW": "10.0.0.0/8"}, {}, 403),
        ({"AETHEX_METRICS__ALLOW": "10.0.0.0/8, 127.0.0.0/8"}, {}, 200),
        ({"AETHEX_METRICS__TOKEN": token}, {}, 401),
        ({"AETHEX_METRICS__TOKEN": token}, {"Authorization": "Bearer wrong-token-0123456789"}, 401),
        ({"AETHEX_METRICS__TOKEN": token}, {"Authorization": f"Bearer {token}"}, 200),
        (
            {"AETHEX_METRICS__TOKEN_FILE": str(tmp_path / "token")},
            {"Authorization": f"Bearer {token}"},
            200,
        ),
        (
            {"AETHEX_METRICS__TOKEN": token, "AETHEX_METRICS__ALLOW": "10.0.0.0/8"},
            {"Authorization": f"Bearer {token}"},
            403,
        ),
        # Behind a trusted proxy the allow-list sees the client, not the proxy on 127.0.0.1.
        (
            {"AETHEX_METRICS__ALLOW": "127.0.0.1/32", "AETHEX_HTTP__TRUST_FORWARDED_FOR": "true"},
            {"X-Forwarded-For": "203.0.113.5"},
            403,
        ),
        (
            {"AETHEX_METRICS__ALLOW": "10.0.0.0/8", "AETHEX_HTTP__TRUST_FORWARDED_FOR": "true"},
            {"X-Forwarded-For": "127.0.0.1, 10.1.2.3"},
            200,
        ),
    ]
    for extra, headers, expected in cases:
        async with (
            running_server({**settings_env, **extra}) as server,
            aiohttp.ClientSession() as http,
        ):
            async with http.get(
                f"http://127.0.0.1:{server.http_port}/metrics", headers=headers
            ) as resp:
                body = await resp.read()
                assert resp.status == expected, (extra, headers, body[:200])
                if expected == 200:
                    assert b"aethex_rtmp_connections" in body
                else:
                    assert (await resp.json())["error"]["code"] in ("forbidden", "unauthenticated")
                if expected == 401:
                    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


def test_metrics_settings_are_checked_when_they_load(
    settings_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "empty").write_text("")
    (tmp_path / "short").write_text("short\n")
    for extra, key in (
        ({"AETHEX_METRICS__ALLOW": "10.0.0.0/8, nonsense"}, "metrics.allow"),
        ({"AETHEX_METRICS__TOKEN": "short"}, "metrics.token"),
        (
            {
                "AETHEX_METRICS__TOKEN": "x" * 20,
                "AETHEX_METRICS__TOKEN_FILE": str(tmp_path / "empty"),
            },
            "metrics.token_file",
        ),
        ({"AETHEX_METRICS__TOKEN_FILE": str(tmp_path / "missing")}, "metrics.token_file"),
        ({"AETHEX_METRICS__TOKEN_FILE": str(tmp_path / "empty")}, "metrics.token_file"),
        ({"AETHEX_METRICS__TOKEN_FILE": str(tmp_path / "short")}, "metrics.token_file"),
    ):
        with pytest.raises(SettingsError) as err:
            load_settings(None, env={**settings_env, **extra})
        assert err.value.key == key, extra
