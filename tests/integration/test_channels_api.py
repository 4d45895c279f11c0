"""The channels and streams JSON API against a real server: every route's happy path,
unauthenticated and wrong-owner calls, bad input, stream-key privacy, live edits that the
viewer page sees, health for the owner only, and the OpenAPI document covering every route."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from storage import queries
from storage.models import Stream, StreamStatus
from tests.accounts import csrf_of, register
from tests.conftest import running_server

pytestmark = pytest.mark.integration


class Client:
    """A logged-in user with their CSRF token on every write."""

    def __init__(self, http: aiohttp.ClientSession, token: str) -> None:
        self.http = http
        self.token = token

    def request(self, method: str, url: str, **kw: Any) -> Any:
        if method != "GET":
            kw.setdefault("headers", {})["X-CSRF-Token"] = self.token
        return self.http.request(method, url, **kw)


@pytest.fixture
async def site(settings_env: dict[str, str]) -> AsyncIterator[tuple[Any, str, dict[str, Client]]]:
    async with running_server(settings_env) as server:
        base = f"http://127.0.0.1:{server.http_port}"
        users: dict[str, Client] = {}
        sessions = []
        try:
            for name in ("root", "alice", "bob"):  # the first account is the admin
                http = await register(base, name)
                sessions.append(http)
                users[name] = Client(http, await csrf_of(http, base))
            yield server, base, users
        finally:
            for http in sessions:
                await http.close()


async def error_of(response: aiohttp.ClientResponse, status: int, code: str | None = None) -> dict:
    assert response.status == status, (response.status, await response.text())
    body = await response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]


async def create(client: Client, slug: str = "alice-tv", **fields: Any) -> dict:
    body = {"slug": slug, "name": "Alice TV", **fields}
    async with client.request("POST", "/api/channels", json=body) as r:
        assert r.status == 201, await r.text()
        return await r.json()


async def go_live(server: Any, channel_id: int, slug: str) -> int:
    """A LIVE row and a registry entry, as ingest makes them (no media needed here)."""
    now = datetime.now(UTC)
    async with server.db.session() as db:
        row = await queries.start_stream(db, channel_id, now)
        await db.commit()
    server.registry.start(channel_id=channel_id, slug=slug, stream_id=row.id, started_at=now)
    return row.id


async def wait_status(
    server: Any, stream_id: int, status: StreamStatus, timeout: float = 10.0
) -> Stream:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        async with server.db.session() as db:
            row = await db.get(Stream, stream_id)
        if row.status is status or loop.time() > deadline:
            assert row.status is status, (row.status, status)
            return row
        await asyncio.sleep(0.05)


# -- channels ---------------------------------------------------------------------------------


async def test_create_get_list_update_delete(site) -> None:
    server, base, u = site
    alice, bob = u["alice"], u["bob"]
    made = await create(
        alice,
        description="Games\nand talk",
        category="Gaming",
        tags=["speedrun", "Speedrun", "retro"],
        is_public=True,
    )
    assert made["slug"] == "alice-tv" and made["owner"] == "alice"
    assert made["tags"] == ["speedrun", "retro"]  # duplicates (any case) dropped
    key = made["stream_key"]
    assert key.startswith("live_")
    assert made["rtmp"] == {
        "server": f"rtmp://127.0.0.1:{server.rtmp_port}/live",
        "stream_key": key,
        "url": f"rtmp://127.0.0.1:{server.rtmp_port}/live/{key}",
    }

    # A user may own several channels.
    second = await create(alice, "alice-music", is_public=False)
    async with alice.request("GET", "/api/channels?owner=me") as r:
        mine = (await r.json())["channels"]
    assert [c["slug"] for c in mine] == ["alice-tv", "alice-music"]
    assert all(c["stream_key"] for c in mine)

    # Others and anonymous readers: public fields only, unlisted channels left out of lists.
    async with aiohttp.ClientSession(base) as anon:
        async with anon.get("/api/channels") as r:
            listed = (await r.json())["channels"]
        assert [c["slug"] for c in listed] == ["alice-tv"]
        async with anon.get("/api/channels/alice-music") as r:  # reachable by its slug
            assert r.status == 200 and r.headers["Cache-Control"] == "no-store"
            unlisted = await r.json()
    for doc in listed + [unlisted]:
        assert "stream_key" not in doc and "rtmp" not in doc
    async with bob.request("GET", "/api/channels/alice-tv") as r:
        text = await r.text()
    assert key not in text and second["stream_key"] not in text
    async with u["root"].request("GET", "/api/channels/alice-tv") as r:  # an admin sees it
        assert (await r.json())["stream_key"] == key

    async with alice.request(
        "PATCH",
        "/api/channels/alice-tv",
        json={"name": "Alice plays", "category": "", "tags": [], "is_public": False},
    ) as r:
        assert r.status == 200, await r.text()
        doc = await r.json()
    assert (doc["name"], doc["category"], doc["tags"], doc["is_public"]) == (
        "Alice plays",
        None,
        [],
        False,
    )

    async with alice.request("DELETE", "/api/channels/alice-music") as r:
        assert r.status == 204
    async with alice.request("GET", "/api/channels/alice-music") as r:
        await error_of(r, 404, "not_found")


async def test_channel_routes_refuse_the_unauthenticated_and_other_users(site) -> None:
    server, base, u = site
    made = await create(u["alice"])
    async with aiohttp.ClientSession(base) as anon:
        async with anon.post("/api/channels", json={"slug": "nobody"}) as r:
            await error_of(r, 401, "unauthenticated")
        async with anon.get("/api/channels?owner=me") as r:
            await error_of(r, 401)
        for method, url in (
            ("PATCH", "/api/channels/alice-tv"),
            ("DELETE", "/api/channels/alice-tv"),
            ("POST", "/api/channels/alice-tv/stream-key"),
        ):
            async with anon.request(method, url, json={"name": "x"}) as r:
                await error_of(r, 401)
    bob = u["bob"]
    for method, url in (
        ("PATCH", "/api/channels/alice-tv"),
        ("DELETE", "/api/channels/alice-tv"),
        ("POST", "/api/channels/alice-tv/stream-key"),
    ):
        async with bob.request(method, url, json={"name": "mine now"}) as r:
            err = await error_of(r, 403, "forbidden")
            assert made["stream_key"] not in err["message"]
    # A cookie without the CSRF token changes nothing either.
    async with u["alice"].http.patch("/api/channels/alice-tv", json={"name": "x"}) as r:
        await error_of(r, 403, "csrf_failed")
    async with u["alice"].request("GET", "/api/channels/alice-tv") as r:
        doc = await r.json()
    assert doc["name"] == "Alice TV" and doc["stream_key"] == made["stream_key"]


@pytest.mark.parametrize(
    "body, status, code",
    [
        ({"name": "No slug"}, 400, "missing_field"),
        ({"slug": 42, "name": "x"}, 400, "invalid"),
        ({"slug": "Bad Slug!", "name": "x"}, 400, "invalid"),
        ({"slug": "ok-slug", "name": "x" * 121}, 400, "invalid"),
        ({"slug": "ok-slug", "name": ""}, 400, "invalid"),
        ({"slug": "ok-slug", "description": "d" * 2001}, 400, "invalid"),
        ({"slug": "ok-slug", "tags": "a,b"}, 400, "invalid"),
        ({"slug": "ok-slug", "tags": [1, 2]}, 400, "invalid"),
        ({"slug": "ok-slug", "tags": [f"t{i}" for i in range(11)]}, 400, "invalid"),
        ({"slug": "ok-slug", "tags": ["<script>"]}, 400, "invalid"),
        ({"slug": "ok-slug", "is_public": "yes"}, 400, "invalid"),
        ({"slug": "ok-slug", "stream_key": "live_mine"}, 400, "invalid"),
        ({"slug": "taken"}, 409, "conflict"),
    ],
)
async def test_create_rejects_bad_input_and_changes_nothing(site, body, status, code) -> None:
    server, base, u = site
    await create(u["bob"], "taken")
    async with u["alice"].request("POST", "/api/channels", json=body) as r:
        await error_of(r, status, code)
    async with u["alice"].request("GET", "/api/channels?owner=me") as r:
        assert (await r.json())["channels"] == []


async def test_bad_bodies_oversized_and_not_json(site) -> None:
    server, base, u = site
    alice = u["alice"]
    await create(alice)
    async with alice.request(
        "PATCH",
        "/api/channels/alice-tv",
        data="not json",
        headers={"Content-Type": "application/json"},
    ) as r:
        await error_of(r, 400, "invalid_json")
    async with alice.request("PATCH", "/api/channels/alice-tv", json=["a list"]) as r:
        await error_of(r, 400, "invalid_json")
    async with alice.request("PATCH", "/api/channels/alice-tv", json={"slug": "renamed"}) as r:
        await error_of(r, 400, "invalid")
    big = {"description": "x" * (server.settings.uploads.max_bytes + (128 << 10))}
    async with alice.request("PATCH", "/api/channels/alice-tv", json=big) as r:
        await error_of(r, 413)
    async with alice.request("GET", "/api/channels/alice-tv") as r:
        assert (await r.json())["description"] == ""


async def test_regenerating_the_key_invalidates_the_old_one(site) -> None:
    server, base, u = site
    made = await create(u["alice"])
    old = made["stream_key"]
    async with u["alice"].request("POST", "/api/channels/alice-tv/stream-key") as r:
        assert r.status == 200 and r.headers["Cache-Control"] == "no-store"
        new = (await r.json())["stream_key"]
    assert new != old and new.startswith("live_")
    async with server.db.session() as db:
        assert await queries.find_channel_by_stream_key(db, old) is None
        assert (await queries.find_channel_by_stream_key(db, new)).slug == "alice-tv"
    async with u["alice"].request("GET", "/api/channels/alice-tv") as r:
        assert (await r.json())["stream_key"] == new


async def test_a_live_channel_cannot_be_deleted(site) -> None:
    server, base, u = site
    made = await create(u["alice"])
    await go_live(server, made["id"], "alice-tv")
    async with u["alice"].request("DELETE", "/api/channels/alice-tv") as r:
        await error_of(r, 409)


# -- streams ----------------------------------------------------------------------------------


async def test_stream_routes_edit_status_and_end(site, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    server, base, u = site
    alice, bob = u["alice"], u["bob"]
    made = await create(alice, category="Gaming", tags=["retro"])
    other = await create(bob, "bob-live")
    stream_id = await go_live(server, made["id"], "alice-tv")

    async with aiohttp.ClientSession(base) as anon:
        async with anon.get("/api/streams?live=true") as r:
            streams = (await r.json())["streams"]
        assert [(s["id"], s["status"], s["channel"]) for s in streams] == [
            (stream_id, "live", "alice-tv")
        ]
        async with anon.get(f"/api/streams/{stream_id}") as r:
            doc = await r.json()
        assert doc["title"] == "Alice TV" and doc["category"] == "Gaming"
        assert doc["tags"] == ["retro"] and doc["vod_url"] is None
        async with anon.get(f"/api/streams/{stream_id}/status") as r:
            status = await r.json()
        assert status["live"] is True and status["status"] == "live"
        assert status["uptime_seconds"] >= 0 and "health" not in status
        async with anon.patch(f"/api/streams/{stream_id}", json={"title": "x"}) as r:
            await error_of(r, 401)
        async with anon.post(f"/api/streams/{stream_id}/end") as r:
            await error_of(r, 401)
        for bad in ("abc", "99999", "1e3"):
            async with anon.get(f"/api/streams/{bad}") as r:
                await error_of(r, 404)
        async with anon.get("/api/streams?live=maybe") as r:
            await error_of(r, 400)
        async with anon.get("/api/streams?limit=1000") as r:
            await error_of(r, 400)
        async with anon.get("/api/streams?channel=nope") as r:
            await error_of(r, 404)

    # Health is the owner's (and admins').
    async with bob.request("GET", f"/api/streams/{stream_id}/status") as r:
        assert "health" not in await r.json()
    async with alice.request("GET", f"/api/streams/{stream_id}/status") as r:
        health = (await r.json())["health"]
    assert set(health) == {"ingest", "transcode", "warnings", "segment_duration"}
    async with u["root"].request("GET", "/api/dashboard") as r:
        assert (await r.json())["channels"] == []  # the admin owns no channel

    # Live edits reach the viewer page's poll.
    async with bob.request("PATCH", f"/api/streams/{stream_id}", json={"title": "mine"}) as r:
        await error_of(r, 403)
    for bad in (
        {"title": ""},
        {"title": 5},
        {"title": "t" * 141},
        {"tags": "x"},
        {"status": "archived"},
        {"category": ["a"]},
    ):
        async with alice.request("PATCH", f"/api/streams/{stream_id}", json=bad) as r:
            await error_of(r, 400)
    async with alice.request(
        "PATCH",
        f"/api/streams/{stream_id}",
        json={"title": "Boss fight", "category": "Retro Gaming", "tags": ["snes"]},
    ) as r:
        assert r.status == 200, await r.text()
        doc = await r.json()
    assert (doc["title"], doc["category"], doc["tags"]) == ("Boss fight", "Retro Gaming", ["snes"])
    async with alice.request("GET", "/api/channels/alice-tv/live") as r:
        live = await r.json()
    assert (live["title"], live["category"]) == ("Boss fight", "Retro Gaming")

    # The dashboard poll: the owner's channels only, with health for the live one.
    async with alice.request("GET", "/api/dashboard") as r:
        dash = (await r.json())["channels"]
    assert [c["slug"] for c in dash] == ["alice-tv"]
    assert dash[0]["stream"]["id"] == stream_id and dash[0]["stream"]["health"] is not None
    assert "stream_key" not in dash[0]

    # Ending: not someone else's stream; a row with no publisher is closed at once.
    async with bob.request("POST", f"/api/streams/{stream_id}/end") as r:
        await error_of(r, 403)
    live_stream = server.registry.get("alice-tv")
    closed: list[str] = []
    live_stream.disconnect = lambda reason: (
        closed.append(reason),
        server.registry.end(live_stream),
    )
    async with alice.request("POST", f"/api/streams/{stream_id}/end") as r:
        assert r.status == 202, await r.text()
        assert (await r.json())["status"] == "ending"
    assert closed == ["ended"] and server.registry.get("alice-tv") is None
    row = await wait_status(server, stream_id, StreamStatus.OFFLINE)
    assert row.duration_seconds is not None and row.ended_at is not None
    async with alice.request("POST", f"/api/streams/{stream_id}/end") as r:
        await error_of(r, 409, "not_live")

    # No key in any log line.
    for key in (made["stream_key"], other["stream_key"]):
        assert key not in caplog.text


async def test_stream_row_without_publisher_is_closed_by_end(site) -> None:
    server, base, u = site
    made = await create(u["alice"])
    now = datetime.now(UTC)
    async with server.db.session() as db:  # LIVE in the database, nobody publishing
        row = await queries.start_stream(db, made["id"], now)
        await db.commit()
    async with u["alice"].request("POST", f"/api/streams/{row.id}/end") as r:
        assert r.status == 202
        assert (await r.json())["status"] == "offline"


async def test_public_pages_never_show_a_stream_key(site) -> None:
    server, base, u = site
    made = await create(u["alice"])
    await go_live(server, made["id"], "alice-tv")
    async with aiohttp.ClientSession(base) as anon:
        for path in (
            "/",
            "/streams/alice-tv",
            "/api/channels",
            "/api/channels/alice-tv",
            "/api/channels/alice-tv/live",
            "/api/streams",
            "/api/openapi.json",
        ):
            async with anon.get(path) as r:
                assert made["stream_key"] not in await r.text(), path
        async with anon.get("/dashboard", allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"].startswith("/auth/login")
    async with u["bob"].request("GET", "/dashboard") as r:
        assert made["stream_key"] not in await r.text()
    async with u["alice"].request("GET", "/dashboard") as r:  # the owner's own page has it
        page = await r.text()
    assert made["stream_key"] in page and 'type="password"' in page


# -- OpenAPI ----------------------------------------------------------------------------------


async def test_openapi_describes_every_api_route(site) -> None:
    server, base, u = site
    async with aiohttp.ClientSession(base) as anon:
        async with anon.get("/api/openapi.json") as r:
            assert r.status == 200
            doc = await r.json()
    assert doc["openapi"].startswith("3.1")
    from webapp import create_app  # a fresh app: the router as the server builds it

    app = create_app(
        settings=server.settings,
        db=server.db,
        metrics=server.metrics,
        registry=server.registry,
        edges=server.broadcasts.edges,
    )
    routes = {
        (res.canonical, route.method.lower())
        for res in app.router.resources()
        for route in res
        if res.canonical.startswith("/api/") and route.method != "HEAD"
    }
    assert ("/api/channels", "post") in routes and ("/api/streams/{id}/end", "post") in routes
    described = {
        (path, method)
        for path, item in doc["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }
    missing = routes - described
    assert not missing, f"routes under /api/ missing from /api/openapi.json: {sorted(missing)}"
    stale = described - routes
    assert not stale, f"described but not routed: {sorted(stale)}"
    # Every $ref points at something that exists.
    import json
    import re

    text = json.dumps(doc)
    for ref in set(re.findall(r'"\$ref": "#/components/(\w+)/(\w+)"', text)):
        assert ref[1] in doc["components"][ref[0]], ref


def test_merging_refuses_two_descriptions_of_one_operation() -> None:
    from webapp.openapi import merge

    op = {"summary": "x", "responses": {}}
    with pytest.raises(ValueError, match="GET /api/x"):
        merge([("a", {"/api/x": {"get": op}}, {}), ("b", {"/api/x": {"get": op}}, {})])
    with pytest.raises(ValueError, match="schema 'S'"):
        merge([("a", {}, {"S": {"type": "string"}}), ("b", {}, {"S": {"type": "integer"}})])
    with pytest.raises(ValueError, match="not under /api/"):
        merge([("a", {"/hls/x": {"get": op}}, {})])
    merged = merge([("a", {"/api/x": {"get": op}}, {}), ("b", {"/api/x": {"post": op}}, {})])
    assert set(merged["paths"]["/api/x"]) == {"get", "post"}
