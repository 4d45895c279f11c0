"""The viewer pages' HTTP side with a real client (no browser): status JSON, thumbnails,
404s, headers, escaping and the self-served hls.js."""

from __future__ import annotations

from datetime import UTC, datetime

import aiohttp
import pytest
from sqlalchemy import update

from storage import queries
from storage.models import Channel
from tests.conftest import make_channel, running_server

pytestmark = pytest.mark.integration

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64 + b"\xff\xd9"


@pytest.fixture
async def site(settings_env):
    async with running_server(settings_env) as server:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{server.http_port}") as http:
            yield server, http


async def test_live_status_follows_the_registry_and_the_stream_row(site) -> None:
    server, http = site
    channel_id, _ = await make_channel(server, "carol-live", "carol")
    async with server.db.session() as db:
        await db.execute(
            update(Channel)
            .where(Channel.id == channel_id)
            .values(name="Carol's <b>channel</b>", category="Music")
        )
        await db.commit()

    async with http.get("/api/channels/carol-live/live") as r:
        assert r.status == 200 and r.headers["Cache-Control"] == "no-store"
        body = await r.json()
    assert body == {
        "live": False,
        "playable": False,
        "stream_id": None,
        "title": "Carol's <b>channel</b>",
        "category": "Music",
        "tags": [],
        "viewers": 0,
        "started_at": None,
        "creator": "carol",
        "hls_url": "/hls/carol-live/master.m3u8",
    }

    # Live as the ingest makes it: a LIVE row and the stream in the registry.
    now = datetime.now(UTC)
    async with server.db.session() as db:
        row = await queries.start_stream(db, channel_id, now, title="Tonight: <script>")
        await queries.update_viewer_count(db, row.id, 3)
        await db.commit()
        stream_id = row.id
    live = server.registry.start(
        channel_id=channel_id, slug="carol-live", stream_id=stream_id, started_at=now
    )
    try:
        async with http.get("/api/channels/carol-live/live") as r:
            body = await r.json()
        assert body["live"] is True and body["stream_id"] == stream_id
        assert body["title"] == "Tonight: <script>" and body["viewers"] == 3
        assert body["started_at"] == now.isoformat()
        # Transcoding is off in this server: nothing on the live edge, so not playable yet.
        assert body["playable"] is False

        # Both pages escape the title.
        async with http.get("/streams/carol-live") as r:
            html = await r.text()
            assert r.status == 200 and r.content_type == "text/html"
            assert "script-src 'self'" in r.headers["Content-Security-Policy"]
        assert "Tonight: &lt;script&gt;" in html and "<script>" not in html.replace(
            "<script src=", ""
        )
        assert 'data-state="starting"' in html
        async with http.get("/") as r:
            home = await r.text()
        assert 'href="/streams/carol-live"' in home and "Tonight: &lt;script&gt;" in home
        assert "3 viewers" in home
    finally:
        server.registry.end(live)

    async with http.get("/api/channels/carol-live/live") as r:
        assert (await r.json())["live"] is False


async def test_unknown_channels_are_404(site) -> None:
    _, http = site
    for path in ("/streams/nobody-here", "/streams/Bad_Slug", "/streams/a"):
        async with http.get(path) as r:
            assert r.status == 404, path
            assert "Not found" in await r.text()
    async with http.get("/api/channels/nobody-here/live") as r:
        assert r.status == 404
        assert (await r.json())["error"]["code"] == "not_found"  # the API's error shape


async def test_home_page_empty_state(site) -> None:
    _, http = site
    async with http.get("/") as r:
        assert r.status == 200
        assert "Nobody is live right now" in await r.text()


async def test_thumbnails_only_for_valid_slugs_with_a_file(site) -> None:
    server, http = site
    thumbs = server.settings.data_dir / "thumbnails"
    thumbs.mkdir(parents=True, exist_ok=True)
    (thumbs / "dave-live.jpg").write_bytes(JPEG)
    (server.settings.data_dir / "secret.jpg").write_bytes(b"not for you")

    async with http.get("/thumbnails/dave-live.jpg") as r:
        assert r.status == 200 and await r.read() == JPEG
        assert r.headers["Content-Type"] == "image/jpeg"
        assert r.headers["Cache-Control"] == "public, max-age=10"
    for path in (
        "/thumbnails/nobody.jpg",
        "/thumbnails/Dave-Live.jpg",
        "/thumbnails/..%2Fsecret.jpg",
        "/thumbnails/%2E%2E.jpg",
        "/thumbnails/-x.jpg",
        "/thumbnails/dave-live.png",
    ):
        async with http.get(path) as r:
            assert r.status == 404, path


async def test_hls_js_and_assets_are_served_by_us(site) -> None:
    _, http = site
    async with http.get("/streams/nobody-here") as r:
        html = await r.text()
    assert "/static/css/site.css?v=" in html
    async with http.get("/static/js/player.js") as r:
        assert r.status == 200 and "aethexPlayer" in await r.text()
        assert r.headers["Cache-Control"] == "public, max-age=3600"
    async with http.get("/static/vendor/hls.min.js") as r:
        if r.status == 404:
            pytest.fail(
                "webapp/static/vendor/hls.min.js is missing: `make test` (or "
                "`make frontend`) installs hls.js with npm ci and copies it there"
            )
        assert r.status == 200 and len(await r.read()) > 100_000
