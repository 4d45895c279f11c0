"""The video library (issue 13): who may watch a video on every route, the dashboard API's
permissions and edits, views counted once per viewer session, retention.

A real server on free ports, real accounts through the JSON API, real HTTP clients (each
aiohttp session is one browser with its own cookies; raw sockets for the VOD routes so both
HTTP layers answer). Recordings are small synthetic VOD directories: HTTP never looks inside
segments.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from storage import queries
from storage import videos as video_queries
from storage.models import Stream, StreamStatus
from tests.accounts import csrf_of, register, user_of
from tests.conftest import make_channel, make_source, push, rtmp_url, running_server, transcoding
from webapp.videos.retention import apply_retention

pytestmark = pytest.mark.integration

CHANNEL = "vid-tv"
MASTER = (
    "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360\n"
    "360p/index.m3u8\n"
)
MEDIA = (
    "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:1\n#EXT-X-PLAYLIST-TYPE:VOD\n"
    '#EXT-X-MAP:URI="init.mp4"\n#EXTINF:1.0,\nseg0.m4s\n#EXT-X-ENDLIST\n'
)
KINDS = ("public", "unlisted", "private", "deleted")
WHO = ("anon", "bob", "alice", "root")  # root: the admin; alice: the owner


@dataclass
class Site:
    server: Any
    base: str
    users: dict[str, aiohttp.ClientSession]
    channel_id: int
    videos: dict[str, Stream]

    async def call(self, who: str, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        http = self.users[who] if who != "anon" else None
        if http is not None and method != "GET":
            kw.setdefault("headers", {})["X-CSRF-Token"] = await csrf_of(http, self.base)
        async with aiohttp.ClientSession() as anon:
            async with (http or anon).request(method, f"{self.base}{path}", **kw) as resp:
                body = await resp.read()
                try:
                    return resp.status, await resp.json(content_type=None)
                except ValueError:
                    return resp.status, body.decode("utf-8", "replace")


async def recorded(
    server: Any,
    channel_id: int,
    *,
    title: str = "a broadcast",
    ended: datetime | None = None,
    segment_bytes: int = 960,
) -> Stream:
    """An ARCHIVED stream with a one-segment VOD on disk (its size measured as on archive)."""
    ended = ended or datetime.now(UTC)
    async with server.db.session() as db:
        row = await queries.start_stream(db, channel_id, ended - timedelta(minutes=5), title)
        await queries.end_stream(db, row.id, ended, StreamStatus.ARCHIVED)
        row.vod_available, row.vod_duration_seconds = True, 1.0
        await db.commit()
    directory = video_queries.recording_dir(server.settings.data_dir, row.id)
    (directory / "360p").mkdir(parents=True)
    (directory / "master.m3u8").write_text(MASTER)
    (directory / "360p" / "index.m3u8").write_text(MEDIA)
    (directory / "360p" / "init.mp4").write_bytes(b"init" * 32)
    (directory / "360p" / "seg0.m4s").write_bytes(b"m" * segment_bytes)
    (directory / "previews").mkdir()
    (directory / "previews" / "previews.vtt").write_text("WEBVTT\n")
    thumbnail = server.settings.data_dir / "thumbnails" / "streams" / f"{row.id}.jpg"
    thumbnail.parent.mkdir(parents=True, exist_ok=True)
    thumbnail.write_bytes(b"\xff\xd8 not really a jpeg \xff\xd9")
    async with server.db.session() as db:
        await video_queries.set_size(db, row.id, video_queries.measure_recording(directory))
        await set_thumbnail(db, row.id, f"thumbnails/streams/{row.id}.jpg")
        await db.commit()
        stream = await db.get(Stream, row.id)
        assert stream is not None
        return stream


async def wait_archived(server: Any, timeout: float = 90.0) -> Stream:
    """The newest stream, once it is ARCHIVED with its VOD (polled: no timing assumed)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        async with server.db.session() as db:
            rows = await db.scalars(select(Stream).order_by(Stream.id.desc()).limit(1))
            row = rows.first()
        if row is not None and row.status is StreamStatus.ARCHIVED and row.vod_available:
            return row
        assert asyncio.get_running_loop().time() < deadline, f"never archived: {row}"
        await asyncio.sleep(0.2)


async def set_thumbnail(db: Any, stream_id: int, path: str) -> None:
    row = await db.get(Stream, stream_id)
    row.thumbnail_path = path


async def set_fields(server: Any, stream_id: int, **fields: Any) -> None:
    async with server.db.session() as db:
        row = await db.get(Stream, stream_id)
        assert row is not None
        for key, value in fields.items():
            setattr(row, key, value)
        await db.commit()


@pytest.fixture
async def site(settings_env: dict[str, str]) -> AsyncIterator[Site]:
    async with running_server(settings_env) as server:
        base = f"http://127.0.0.1:{server.http_port}"
        users: dict[str, aiohttp.ClientSession] = {}
        try:
            for name in ("root", "alice", "bob"):  # the first account is the admin
                users[name] = await register(base, name)
            async with users["alice"].post(
                f"{base}/api/channels",
                json={"slug": CHANNEL, "name": "Vid TV"},
                headers={"X-CSRF-Token": await csrf_of(users["alice"], base)},
            ) as r:
                assert r.status == 201, await r.text()
                channel_id = (await r.json())["id"]
            videos = {}
            for kind in KINDS:
                row = await recorded(server, channel_id, title=f"the {kind} one")
                if kind == "deleted":
                    await set_fields(server, row.id, deleted_at=datetime.now(UTC))
                else:
                    await set_fields(server, row.id, visibility=kind)
                videos[kind] = row
            yield Site(server, base, users, channel_id, videos)
        finally:
            for http in users.values():
                await http.close()


async def raw_get(port: int, path: str, *, via_aiohttp: bool) -> tuple[int, bytes]:
    """A GET on a raw socket; a repeated header makes the fast path hand it to aiohttp."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    extra = "X-Twice: 1\r\nX-Twice: 2\r\n" if via_aiohttp else ""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: t\r\n{extra}Connection: close\r\n\r\n".encode())
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return int(data.split(b" ", 2)[1]), data.partition(b"\r\n\r\n")[2]


def vod_paths(ref: str | int) -> list[str]:
    return [f"/vod/{ref}/{name}" for name in ("master.m3u8", "360p/index.m3u8", "360p/seg0.m4s")]


def may_watch(kind: str, who: str, by_public_id: bool) -> bool:
    """The rule the issue states, written out independently of storage.videos."""
    if kind == "deleted":
        return False
    if who in ("alice", "root"):
        return True
    return kind == "public" or (kind == "unlisted" and by_public_id)


async def test_who_may_watch_each_video_on_the_page_and_the_api(site: Site) -> None:
    wrong = []
    for kind, row in site.videos.items():
        for who in WHO:
            for ref in (str(row.id), row.public_id):
                expected = may_watch(kind, who, ref == row.public_id)
                status, page = await site.call(who, "GET", f"/videos/{ref}")
                if (status == 200) != expected or (status != 200 and status != 404):
                    wrong.append(("page", kind, who, ref, status))
                if status == 200 and f"the {kind} one" not in page:
                    wrong.append(("page title", kind, who, ref))
                if status == 404 and f"the {kind} one" in str(page):
                    wrong.append(("404 leaks the title", kind, who, ref))
                # The API: a deleted video's row stays visible to its owner and admins.
                api_expected = expected or (kind == "deleted" and who in ("alice", "root"))
                status, doc = await site.call(who, "GET", f"/api/videos/{ref}")
                if (status == 200) != api_expected or status not in (200, 404):
                    wrong.append(("api", kind, who, ref, status))
                if status == 200 and (doc["id"] != row.id or doc["deleted"] != (kind == "deleted")):
                    wrong.append(("api doc", kind, who, ref, doc))
                if status == 200 and ("size_bytes" in doc) != (who in ("alice", "root")):
                    wrong.append(("api private fields", kind, who, ref))
                # The thumbnail: as the video; kept by shared caches only for a public one.
                http = site.users.get(who)
                async with aiohttp.ClientSession() as anon:
                    async with (http or anon).get(f"{site.base}/thumbnails/streams/{ref}.jpg") as r:
                        status, cache = r.status, r.headers.get("Cache-Control", "")
                if (status == 200) != expected:
                    wrong.append(("thumbnail", kind, who, ref, status))
                if status == 200 and ("public" in cache) != (kind == "public"):
                    wrong.append(("thumbnail cache", kind, who, ref, cache))
                # What hangs off the media (chat replay, chapters, scrubbing previews): as the
                # page; the stream's row and chat history: as the video API.
                for path, want in (
                    (f"/api/videos/{ref}/chat", expected),
                    (f"/api/videos/{ref}/chapters", expected),
                    (f"/videos/{ref}/previews/previews.vtt", expected),
                    (f"/api/streams/{ref}", api_expected),
                    (f"/api/streams/{ref}/status", api_expected),
                    (f"/api/streams/{ref}/messages", api_expected),
                ):
                    status, _ = await site.call(who, "GET", path)
                    if (status == 200) != want or status not in (200, 404):
                        wrong.append((path, kind, who, status))
    assert not wrong, "\n".join(map(str, wrong))


async def test_vod_hls_follows_the_rule_without_cookies(site: Site) -> None:
    """The VOD routes never look at cookies: an anonymous request answers as the rule says for
    anyone, through both HTTP layers; a private video's page hands its owner and admins a
    signed link that plays, and that nobody can forge or use once the video is deleted."""
    port = site.server.http_port
    wrong = []
    for kind, row in site.videos.items():
        for ref in (row.id, row.public_id):
            expected = may_watch(kind, "anon", ref == row.public_id)
            for path in vod_paths(ref):
                for via in (False, True):
                    status, body = await raw_get(port, path, via_aiohttp=via)
                    if (status == 200) != expected or status not in (200, 404):
                        wrong.append((kind, path, via, status))
    assert not wrong, "\n".join(map(str, wrong))

    private = site.videos["private"]
    for who in ("alice", "root"):
        status, page = await site.call(who, "GET", f"/videos/{private.id}")
        assert status == 200
        m = re.search(r'data-src="(/vod/([^/"]+)/master\.m3u8)"', page)
        assert m is not None, page
        grant = m.group(2)
        assert grant != private.public_id and grant != str(private.id)
        for path in vod_paths(grant):
            for via in (False, True):
                status, _ = await raw_get(port, path, via_aiohttp=via)
                assert status == 200, (who, path, via, status)
    forged = grant[:-1] + ("0" if grant[-1] != "0" else "1")
    status, _ = await raw_get(port, f"/vod/{forged}/master.m3u8", via_aiohttp=False)
    assert status == 404
    # A grant for one video does not open another.
    other = site.videos["unlisted"].public_id
    status, _ = await raw_get(port, f"/vod/{other}{grant[22:]}/master.m3u8", via_aiohttp=True)
    assert status == 404
    # The API's and the page's doc of a private video for its owner carry no bare VOD link
    # that would not play.
    status, doc = await site.call("alice", "GET", f"/api/videos/{private.id}")
    assert status == 200 and doc["visibility"] == "private"


async def test_listings_show_only_public_videos(site: Site) -> None:
    public = site.videos["public"]
    status, body = await site.call("anon", "GET", f"/api/streams?channel={CHANNEL}")
    assert status == 200 and [s["id"] for s in body["streams"]] == [public.id]
    assert body["streams"][0]["watch_url"] == f"/videos/{public.id}"
    status, body = await site.call("bob", "GET", "/api/streams")
    assert status == 200 and [s["id"] for s in body["streams"]] == [public.id]
    # Its owner sees every one of them through the same API.
    status, body = await site.call("alice", "GET", f"/api/streams?channel={CHANNEL}")
    assert status == 200 and {s["id"] for s in body["streams"]} == {
        v.id for v in site.videos.values()
    }
    # Search finds the public one only.
    status, body = await site.call("bob", "GET", "/api/search?q=one&type=videos")
    assert status == 200, body
    assert [item["title"] for item in body["items"]] == ["the public one"], body
    # The channel's home (offline) lists the public one only.
    status, page = await site.call("anon", "GET", f"/streams/{CHANNEL}")
    assert status == 200 and "the public one" in page
    for kind in ("unlisted", "private", "deleted"):
        row = site.videos[kind]
        assert f"the {kind} one" not in page, kind
        assert f"/videos/{row.public_id}" not in page and f'/videos/{row.id}"' not in page


async def test_old_address_redirects(site: Site) -> None:
    public = site.videos["public"]
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{site.base}/vods/{public.id}", allow_redirects=False) as r:
            assert r.status in (301, 308)
            assert r.headers["Location"] == f"/videos/{public.id}"


async def test_dashboard_api_permissions_and_edits(site: Site) -> None:
    public, private = site.videos["public"], site.videos["private"]
    data_dir = site.server.settings.data_dir
    # Nobody but the owner and admins: a video one can reach answers 403, one one cannot 404.
    assert (await site.call("anon", "PATCH", f"/api/videos/{public.id}", json={"title": "x"}))[
        0
    ] == 401
    assert (await site.call("bob", "PATCH", f"/api/videos/{public.id}", json={"title": "x"}))[
        0
    ] == 403
    assert (await site.call("bob", "PATCH", f"/api/videos/{private.id}", json={"title": "x"}))[
        0
    ] == 404
    assert (await site.call("bob", "DELETE", f"/api/videos/{public.id}"))[0] == 403
    assert (await site.call("bob", "GET", f"/api/channels/{CHANNEL}/videos"))[0] == 403
    assert (await site.call("anon", "GET", f"/api/channels/{CHANNEL}/videos"))[0] == 401
    settings_url = f"/api/channels/{CHANNEL}/video-settings"
    assert (await site.call("bob", "PATCH", settings_url, json={"allow_downloads": True}))[0] == 403
    # Bad input: 400 in the error shape.
    for body in (
        {"visibility": "secret"},
        {"title": ""},
        {"title": 5},
        {"pinned": "yes"},
        {"colour": "red"},
        {"description": "x" * 5001},
    ):
        status, doc = await site.call("alice", "PATCH", f"/api/videos/{public.id}", json=body)
        assert status == 400 and doc["error"]["code"] == "invalid", (body, status, doc)
    for body in ({"retention_days": -1}, {"retention_max_gb": "lots"}, {"allow_downloads": 1}):
        status, doc = await site.call("alice", "PATCH", settings_url, json=body)
        assert status == 400 and "error" in doc, (body, status, doc)
    # The owner edits; an admin too.
    status, doc = await site.call(
        "alice",
        "PATCH",
        f"/api/videos/{public.id}",
        json={"title": " Best bits ", "description": "line 1\nline 2", "visibility": "unlisted"},
    )
    assert status == 200 and doc["title"] == "Best bits" and doc["visibility"] == "unlisted"
    assert doc["ref"] == public.public_id  # no longer named by its id
    assert (await site.call("anon", "GET", f"/videos/{public.id}"))[0] == 404
    assert (await site.call("anon", "GET", f"/videos/{public.public_id}"))[0] == 200
    status, doc = await site.call(
        "root", "PATCH", f"/api/videos/{public.id}", json={"pinned": True}
    )
    assert status == 200 and doc["pinned"] is True
    status, doc = await site.call(
        "alice", "PATCH", f"/api/videos/{public.id}", json={"pinned": False}
    )
    assert status == 200 and doc["pinned"] is False
    status, doc = await site.call(
        "alice",
        "PATCH",
        settings_url,
        json={"retention_days": 30, "retention_max_gb": 1.5, "allow_downloads": True},
    )
    assert status == 200 and doc["retention_days"] == 30 and doc["retention_max_gb"] == 1.5
    assert doc["allow_downloads"] is True and doc["allow_vod_clips"] is False
    # The library: every video, storage used = the kept ones' sizes.
    status, lib = await site.call("alice", "GET", f"/api/channels/{CHANNEL}/videos")
    assert status == 200 and len(lib["videos"]) == 4
    kept = [v for v in lib["videos"] if not v["deleted"]]
    assert lib["storage_bytes"] == sum(v["size_bytes"] for v in kept) > 0
    # Delete: files gone, row kept, every route 404, storage used drops.
    directory = video_queries.recording_dir(data_dir, private.id)
    thumbnail = data_dir / "thumbnails" / "streams" / f"{private.id}.jpg"
    assert directory.is_dir() and thumbnail.is_file()
    status, doc = await site.call("alice", "DELETE", f"/api/videos/{private.id}")
    assert status == 200 and doc["deleted"] is True and doc["deleted_at"]
    assert not directory.exists() and not thumbnail.exists()
    for who in ("alice", "root", "bob", "anon"):
        assert (await site.call(who, "GET", f"/videos/{private.id}"))[0] == 404
    for path in vod_paths(private.public_id):
        assert (await raw_get(site.server.http_port, path, via_aiohttp=True))[0] == 404
    status, doc = await site.call(
        "alice", "PATCH", f"/api/videos/{private.id}", json={"title": "y"}
    )
    assert status == 409
    assert (await site.call("root", "DELETE", f"/api/videos/{private.id}"))[0] == 200  # again: ok
    status, after = await site.call("alice", "GET", f"/api/channels/{CHANNEL}/videos")
    assert after["storage_bytes"] == lib["storage_bytes"] - next(
        v["size_bytes"] for v in lib["videos"] if v["id"] == private.id
    )
    async with site.server.db.session() as db:
        row = await db.get(Stream, private.id)
        assert row is not None and row.deleted_at is not None and not row.vod_available


async def test_a_view_counts_once_per_viewer_session(site: Site) -> None:
    public = site.videos["public"]

    async def views() -> int:
        status, doc = await site.call("alice", "GET", f"/api/videos/{public.id}")
        assert status == 200
        return int(doc["views"])

    assert await views() == 0
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as browser:
        for _ in range(3):  # reloads
            async with browser.get(f"{site.base}/videos/{public.id}") as r:
                assert r.status == 200
        # The player's requests count nothing.
        async with browser.get(f"{site.base}/vod/{public.id}/master.m3u8") as r:
            assert r.status == 200
    # A HEAD (a link checker) from a new client is nobody watching.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as checker:
        async with checker.head(f"{site.base}/videos/{public.id}") as r:
            assert r.status == 200
    assert await views() == 1
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as other:
        async with other.get(f"{site.base}/videos/{public.public_id}") as r:
            assert r.status == 200 and "2 views" in await r.text()
    assert await views() == 2
    for _ in range(2):  # a logged-in viewer: the same user in any browser is one viewer
        status, _page = await site.call("bob", "GET", f"/videos/{public.id}")
        assert status == 200
    assert await views() == 3
    # A page that is refused counts nothing.
    private = site.videos["private"]
    assert (await site.call("bob", "GET", f"/videos/{private.id}"))[0] == 404
    status, doc = await site.call("alice", "GET", f"/api/videos/{private.id}")
    assert doc["views"] == 0


async def test_retention_removes_exactly_what_it_should(settings_env: dict[str, str]) -> None:
    async with running_server(settings_env) as server:
        async with server.db.session() as db:
            await queries.create_user(db, "carol", "carol@example.test", "pw-123456789")
            ids = {}
            for slug in ("plain", "shorter", "forever", "sized"):
                ids[slug] = (await queries.create_channel(db, "carol", f"ret-{slug}")).id
            await db.commit()
        now = datetime.now(UTC)

        def ago(days: float) -> datetime:
            return now - timedelta(days=days)

        made: dict[str, Stream] = {}
        # Server default: 30 days.
        made["plain old"] = await recorded(server, ids["plain"], ended=ago(40))
        made["plain old pinned"] = await recorded(server, ids["plain"], ended=ago(45))
        made["plain recent"] = await recorded(server, ids["plain"], ended=ago(10))
        # The channel's own 5 days wins over the server's 30.
        made["shorter 10d"] = await recorded(server, ids["shorter"], ended=ago(10))
        made["shorter 2d"] = await recorded(server, ids["shorter"], ended=ago(2))
        # The channel's own 0 (forever) wins too.
        made["forever 400d"] = await recorded(server, ids["forever"], ended=ago(400))
        # By size: each video about 100 KB, the channel keeps at most 250 KB of unpinned ones;
        # a pinned one of 1 MB neither goes nor counts.
        for n, days in enumerate((6, 5, 4, 3)):
            made[f"sized {n}"] = await recorded(
                server, ids["sized"], ended=ago(days), segment_bytes=100_000
            )
        made["sized pinned"] = await recorded(
            server, ids["sized"], ended=ago(7), segment_bytes=1_000_000
        )
        for name in ("plain old pinned", "sized pinned"):
            await set_fields(server, made[name].id, pinned=True)
        async with server.db.session() as db:
            for slug, fields in (
                ("shorter", {"retention_days": 5}),
                ("forever", {"retention_days": 0}),
                ("sized", {"retention_max_gb": 250_000 / (1 << 30), "retention_days": 0}),
            ):
                channel = await queries.get_channel_by_slug(db, f"ret-{slug}")
                assert channel is not None
                await video_queries.update_channel_video_settings(db, channel, fields)
            await db.commit()
        # One without a measured size is measured by the pass.
        await set_fields(server, made["plain recent"].id, size_bytes=None)

        settings = dataclasses.replace(
            server.settings,
            videos=dataclasses.replace(server.settings.videos, retention_days=30),
        )
        removed = await apply_retention(settings, server.db, now)
        expected = {"plain old", "shorter 10d", "sized 0", "sized 1"}
        assert {r.stream_id for r in removed} == {made[n].id for n in expected}
        for name, row in made.items():
            directory = video_queries.recording_dir(server.settings.data_dir, row.id)
            async with server.db.session() as db:
                fresh = await db.get(Stream, row.id)
            assert fresh is not None
            assert (fresh.deleted_at is not None) == (name in expected), name
            assert directory.exists() == (name not in expected), name
            if name == "plain recent":
                assert fresh.size_bytes and fresh.size_bytes > 0
        # Nothing left beyond the limits: a second pass removes nothing.
        assert await apply_retention(settings, server.db, now) == []
        # With the server's defaults at 0 (keep forever), only channels with limits of
        # their own are read, and nothing else goes.
        assert await apply_retention(server.settings, server.db, now + timedelta(days=1)) == []


async def test_dashboard_page_lists_the_creators_videos(site: Site) -> None:
    status, page = await site.call("alice", "GET", "/dashboard/videos")
    assert status == 200
    for kind in KINDS:
        assert f"the {kind} one" in page
    assert "Storage used" in page
    status, page = await site.call("alice", "GET", "/dashboard")
    assert status == 200 and 'href="/dashboard/videos"' in page
    async with aiohttp.ClientSession() as anon:
        async with anon.get(f"{site.base}/dashboard/videos", allow_redirects=False) as r:
            assert r.status in (302, 303, 401)
    status, page = await site.call("bob", "GET", "/dashboard/videos")
    assert status == 200 and "the public one" not in page
    assert (await user_of(site.users["alice"], site.base))["username"] == "alice"


async def test_a_real_broadcast_is_sized_on_archive_and_plays_by_its_page(
    settings_env: dict[str, str], tmp_path: Path
) -> None:
    """A real ffmpeg publishes; once archived the stream's size on disk is on its row, its
    page plays with ffprobe as a client (public by id; private through the signed link the
    owner's page gives), and the library counts its bytes."""
    source = make_source(tmp_path / "src.flv", size="320x180", seconds=3, bitrate="300k")
    env = {**transcoding(settings_env), "AETHEX_TRANSCODE__PASSTHROUGH": "auto"}
    async with running_server(env) as server:
        base = f"http://127.0.0.1:{server.http_port}"
        alice = await register(base, "alice")
        try:
            _, key = await make_channel(server, "alice-live", "alice")
            proc = await push(source, rtmp_url(server, key))
            _, err = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode == 0, err.decode()
            row = await wait_archived(server)
            directory = video_queries.recording_dir(server.settings.data_dir, row.id)
            media = sum(
                p.stat().st_size for p in directory.rglob("*") if p.suffix in (".m4s", ".mp4")
            )
            assert row.size_bytes is not None and media <= row.size_bytes
            assert row.size_bytes <= video_queries.measure_recording(directory)
            async with alice.get(f"{base}/api/channels/alice-live/videos") as r:
                lib = await r.json()
            assert lib["storage_bytes"] == row.size_bytes

            async def played(who: aiohttp.ClientSession) -> float:
                async with who.get(f"{base}/videos/{row.id}") as r:
                    assert r.status == 200
                    m = re.search(r'data-src="([^"]+)"', await r.text())
                assert m is not None
                out = await asyncio.to_thread(
                    subprocess.run,
                    [
                        "ffprobe",
                        "-v",
                        "error",
                        "-show_entries",
                        "format=duration",
                        "-of",
                        "json",
                        f"{base}{m.group(1)}",
                    ],
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                assert out.returncode == 0, out.stderr
                return float(json.loads(out.stdout)["format"]["duration"])

            async with aiohttp.ClientSession() as anon:
                assert abs(await played(anon) - (row.vod_duration_seconds or 0)) < 0.5
            async with alice.patch(
                f"{base}/api/videos/{row.id}",
                json={"visibility": "private"},
                headers={"X-CSRF-Token": await csrf_of(alice, base)},
            ) as r:
                assert r.status == 200
            assert abs(await played(alice) - (row.vod_duration_seconds or 0)) < 0.5
        finally:
            await alice.close()


async def test_link_previews_for_shareable_videos_only(site: Site) -> None:
    public, unlisted, private = (site.videos[k] for k in ("public", "unlisted", "private"))
    status, page = await site.call("anon", "GET", f"/videos/{public.id}")
    assert status == 200 and 'property="og:title" content="the public one · Vid TV"' in page
    assert f'/videos/{public.id}"' in page and "noindex" not in page
    status, page = await site.call("anon", "GET", f"/videos/{unlisted.public_id}")
    assert status == 200 and "og:title" in page and "noindex" in page
    status, page = await site.call("alice", "GET", f"/videos/{private.id}")
    assert status == 200 and "og:" not in page and "noindex" in page


async def test_the_library_pages_older_videos(settings_env: dict[str, str]) -> None:
    env = {**settings_env, "AETHEX_VIDEOS__PAGE_SIZE": "2"}
    async with running_server(env) as server:
        base = f"http://127.0.0.1:{server.http_port}"
        alice = await register(base, "alice")
        try:
            channel_id, _ = await make_channel(server, "alice-tv", "alice")
            rows = [await recorded(server, channel_id, title=f"video {n}") for n in range(3)]
            async with alice.get(f"{base}/dashboard/videos") as r:
                page = await r.text()
            assert "video 2" in page and "video 1" in page and "video 0" not in page
            m = re.search(r'href="(/dashboard/videos\?channel=alice-tv&amp;before=\d+)"', page)
            assert m is not None, page
            async with alice.get(base + m.group(1).replace("&amp;", "&")) as r:
                older = await r.text()
            assert "video 0" in older and "video 1" not in older and "Older videos" not in older
            async with alice.get(f"{base}/api/channels/alice-tv/videos") as r:
                doc = await r.json()
            assert [v["id"] for v in doc["videos"]] == [rows[2].id, rows[1].id]
            async with alice.get(
                f"{base}/api/channels/alice-tv/videos?before={doc['next_before']}"
            ) as r:
                doc = await r.json()
            assert [v["id"] for v in doc["videos"]] == [rows[0].id]
            assert doc["next_before"] is None
            async with alice.get(f"{base}/api/channels/alice-tv/videos?limit=3") as r:
                assert r.status == 400  # over videos.page_size
        finally:
            await alice.close()
