"""The category catalogue and the browse pages against a real server (real SQLite file, real
HTTP clients): catalogue CRUD and who may write it, a channel's category chosen from the
catalogue (unknown or retired: 400), renames reaching every display copy, retiring, the
channel language, /categories ordered by live viewers, a category page's tag and language
filters and past broadcasts (never of an unlisted channel), and /following's order; each on
SQLite and on PostgreSQL."""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from pg import postgres_server, postgres_url  # noqa: F401  (fixtures)
from PIL import Image

from storage import follows, queries
from storage.models import StreamStatus
from tests.accounts import csrf_of, register, user_of
from tests.conftest import running_server

pytestmark = pytest.mark.integration


class Client:
    """A logged-in user with their CSRF token on every write."""

    def __init__(self, http: aiohttp.ClientSession, token: str, user: dict[str, Any]) -> None:
        self.http = http
        self.token = token
        self.user = user

    def request(self, method: str, url: str, **kw: Any) -> Any:
        if method != "GET":
            kw.setdefault("headers", {})["X-CSRF-Token"] = self.token
        return self.http.request(method, url, **kw)


@pytest.fixture(params=["sqlite", "postgresql"])
async def site(
    request: pytest.FixtureRequest, settings_env: dict[str, str]
) -> AsyncIterator[tuple[Any, str, dict[str, Client]]]:
    """A server on a real SQLite file, and on a real PostgreSQL: the same queries serve both."""
    env = dict(settings_env)
    if request.param == "postgresql":
        env["AETHEX_DATABASE_URL"] = request.getfixturevalue("postgres_url")
    async with running_server(env) as server:
        base = f"http://127.0.0.1:{server.http_port}"
        users: dict[str, Client] = {}
        sessions = []
        try:
            for name in ("root", "alice", "bob"):  # the first account is the admin
                http = await register(base, name)
                sessions.append(http)
                users[name] = Client(http, await csrf_of(http, base), await user_of(http, base))
            yield server, base, users
        finally:
            for http in sessions:
                await http.close()


async def json_of(response: aiohttp.ClientResponse, status: int) -> Any:
    assert response.status == status, (response.status, await response.text())
    return await response.json()


async def error_of(response: aiohttp.ClientResponse, status: int) -> str:
    body = await json_of(response, status)
    assert set(body) == {"error"} and body["error"]["message"], body
    return str(body["error"]["message"])


async def create_channel(client: Client, slug: str, **fields: Any) -> dict[str, Any]:
    body = {"slug": slug, "name": fields.pop("name", slug.title()), **fields}
    async with client.request("POST", "/api/channels", json=body) as r:
        return await json_of(r, 201)


def png(size: tuple[int, int] = (600, 900)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (40, 120, 200)).save(out, "PNG")
    return out.getvalue()


def image_form(data: bytes, csrf: str | None = None) -> aiohttp.FormData:
    form = aiohttp.FormData()
    if csrf is not None:
        form.add_field("csrf_token", csrf)
    form.add_field("file", data, filename="art.png", content_type="image/png")
    return form


async def start(
    server: Any, channel_id: int, *, viewers: int = 0, at: datetime | None = None
) -> int:
    """A LIVE stream row with a viewer count, as ingest and the viewer counter write them."""
    async with server.db.session() as db:
        row = await queries.start_stream(db, channel_id, at or datetime.now(UTC))
        await queries.update_viewer_count(db, row.id, viewers)
        await db.commit()
        return row.id


async def end(server: Any, stream_id: int, at: datetime | None = None) -> None:
    async with server.db.session() as db:
        await queries.end_stream(db, stream_id, at or datetime.now(UTC), StreamStatus.OFFLINE)
        await db.commit()


def slugs_in(html: str, container_id: str, attribute: str = "data-slug") -> list[str]:
    """The ``attribute`` values in the element with ``container_id`` (up to the page's next
    heading), in page order."""
    start_at = html.find(f'id="{container_id}"')
    if start_at < 0:
        return []
    end_at = html.find("<h2", start_at)
    return re.findall(rf'{attribute}="([^"]+)"', html[start_at : None if end_at < 0 else end_at])


# -- the catalogue -----------------------------------------------------------------------------


async def test_catalogue_crud_and_permissions(site) -> None:
    server, base, u = site
    root, alice = u["root"], u["alice"]
    async with aiohttp.ClientSession(base) as anon:
        async with anon.get("/api/categories") as r:
            names = [c["name"] for c in (await json_of(r, 200))["categories"]]
        assert {"Music", "Gaming", "Just Chatting"} <= set(names)
        assert names == sorted(names, key=str.lower)

        # Anonymous: every write refused (401), the admin page sends to the login page.
        async with anon.post("/api/categories", json={"name": "Chess"}) as r:
            await error_of(r, 401)
        async with anon.patch("/api/categories/music", json={"name": "Tunes"}) as r:
            await error_of(r, 401)
        async with anon.post("/api/categories/music/boxart", data=image_form(png())) as r:
            await error_of(r, 401)
        async with anon.delete("/api/categories/music/boxart") as r:
            await error_of(r, 401)
        async with anon.get("/dashboard/admin/categories", allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"].startswith("/auth/login")

    # A logged-in non-admin: 403 on every write, the page too.
    async with alice.request("POST", "/api/categories", json={"name": "Chess"}) as r:
        await error_of(r, 403)
    async with alice.request("PATCH", "/api/categories/music", json={"retired": True}) as r:
        await error_of(r, 403)
    async with alice.request("POST", "/api/categories/music/boxart", data=image_form(png())) as r:
        await error_of(r, 403)
    async with alice.request("DELETE", "/api/categories/music/boxart") as r:
        await error_of(r, 403)
    async with alice.request("GET", "/dashboard/admin/categories") as r:
        assert r.status == 403
    form = {"csrf_token": alice.token, "name": "Chess"}
    async with alice.http.post("/dashboard/admin/categories", data=form) as r:
        assert r.status == 403
    async with alice.http.post(
        "/dashboard/admin/categories/1", data={**form, "action": "retire"}
    ) as r:
        assert r.status == 403

    # The admin: create (slug made from the name), refuse clashes and bad fields.
    async with root.request(
        "POST", "/api/categories", json={"name": "Baldur's Gate 3", "description": "RPG"}
    ) as r:
        made = await json_of(r, 201)
    assert (made["slug"], made["name"], made["retired"]) == (
        "baldur-s-gate-3",
        "Baldur's Gate 3",
        False,
    )
    assert made["url"] == "/categories/baldur-s-gate-3"
    async with root.request("POST", "/api/categories", json={"name": "baldur's GATE 3"}) as r:
        await error_of(r, 409)
    async with root.request("POST", "/api/categories", json={"name": "X", "slug": "music"}) as r:
        await error_of(r, 409)
    # Case is ignored beyond ASCII too (SQLite's lower() is ASCII only).
    async with root.request("POST", "/api/categories", json={"name": "Émission Spéciale"}) as r:
        assert (await json_of(r, 201))["slug"] == "emission-speciale"
    async with root.request("POST", "/api/categories", json={"name": "ÉMISSION SPÉCIALE"}) as r:
        await error_of(r, 409)
    assert (await create_channel(alice, "alice-fr", category="émission spéciale"))[
        "category"
    ] == "Émission Spéciale"
    for bad in ({"name": ""}, {"name": "Y", "slug": "Bad Slug"}, {"name": "Y", "colour": 1}, {}):
        async with root.request("POST", "/api/categories", json=bad) as r:
            await error_of(r, 400)

    # Edit: name, slug, description.
    async with root.request(
        "PATCH",
        "/api/categories/baldur-s-gate-3",
        json={"name": "BG3", "slug": "bg3", "description": ""},
    ) as r:
        edited = await json_of(r, 200)
    assert (edited["name"], edited["slug"], edited["description"]) == ("BG3", "bg3", "")
    async with root.request("PATCH", "/api/categories/baldur-s-gate-3", json={}) as r:
        await error_of(r, 404)

    # Box art through the image pipeline: re-encoded into the box, served from /uploads/.
    async with root.request("POST", "/api/categories/bg3/boxart", data=image_form(png())) as r:
        stored = await json_of(r, 200)
    assert stored["width"] <= 300 and stored["height"] <= 400
    assert stored["url"].startswith("/uploads/boxart-")
    async with root.request("GET", stored["url"]) as r:
        assert r.status == 200
        assert Image.open(io.BytesIO(await r.read())).size == (stored["width"], stored["height"])
    async with root.request(
        "POST", "/api/categories/bg3/boxart", data=image_form(b"not an image at all")
    ) as r:
        await error_of(r, 400)
    async with root.request("GET", "/api/categories/bg3") as r:
        assert (await json_of(r, 200))["box_art_url"] == stored["url"]  # unchanged by the failure
    async with root.request("DELETE", "/api/categories/bg3/boxart") as r:
        assert (await json_of(r, 200))["category"]["box_art_url"] is None
    async with root.request("GET", stored["url"]) as r:
        assert r.status == 404  # the old file went with it

    # The admin page: lists everything, creates with box art, retires and brings back.
    async with root.request("GET", "/dashboard/admin/categories") as r:
        page = await r.text()
        assert r.status == 200
    assert 'id="category-bg3"' in page and 'href="/dashboard/admin/categories"' in page
    form_data = aiohttp.FormData()
    for key, value in (
        ("csrf_token", root.token),
        ("name", "Chess"),
        ("slug", ""),
        ("description", ""),
    ):
        form_data.add_field(key, value)
    form_data.add_field("file", png((400, 400)), filename="c.png", content_type="image/png")
    async with root.http.post(
        "/dashboard/admin/categories", data=form_data, allow_redirects=False
    ) as r:
        assert r.status == 303, await r.text()
    async with root.request("GET", "/api/categories/chess") as r:
        chess = await json_of(r, 200)
    assert chess["box_art_url"] and chess["box_art_url"].startswith("/uploads/boxart-")
    retire = {"csrf_token": root.token, "action": "retire"}
    async with root.http.post(
        f"/dashboard/admin/categories/{chess['id']}", data=retire, allow_redirects=False
    ) as r:
        assert r.status == 303
    async with root.request("GET", "/api/categories/chess") as r:
        assert (await json_of(r, 200))["retired"] is True
    dup = {"csrf_token": root.token, "name": "music", "slug": "", "description": ""}
    async with root.http.post("/dashboard/admin/categories", data=dup) as r:
        assert r.status == 409 and "already exists" in await r.text()


async def test_channel_category_from_catalogue_rename_and_retire(site) -> None:
    server, base, u = site
    root, alice, bob = u["root"], u["alice"], u["bob"]
    made = await create_channel(alice, "alice-tv", category="gaming", language="pt-br")
    assert (made["category"], made["category_slug"], made["language"]) == (
        "Gaming",
        "gaming",
        "pt-BR",
    )
    other = await create_channel(alice, "alice-two", category="RETRO-GAMING")
    assert (other["category"], other["category_slug"]) == ("Retro Gaming", "retro-gaming")

    # Unknown category, bad language: 400 saying so; nothing created.
    async with alice.request(
        "POST", "/api/channels", json={"slug": "alice-bad", "name": "x", "category": "Nope"}
    ) as r:
        assert "unknown category" in await error_of(r, 400)
    async with alice.request("GET", "/api/channels/alice-bad") as r:
        assert r.status == 404
    for bad in ({"category": "Knitting"}, {"language": "english!"}, {"language": 5}):
        async with alice.request("PATCH", "/api/channels/alice-tv", json=bad) as r:
            await error_of(r, 400)

    # A stream started now runs under the channel's category; it ends, and stays there.
    stream_id = await start(server, made["id"])
    async with alice.request("GET", f"/api/streams/{stream_id}") as r:
        doc = await json_of(r, 200)
    assert (doc["category"], doc["category_slug"]) == ("Gaming", "gaming")
    async with alice.request("GET", f"/api/streams/{stream_id}/status") as r:
        assert (await json_of(r, 200))["category_slug"] == "gaming"
    # A live edit by name or slug; unknown is a 400.
    async with alice.request(
        "PATCH", f"/api/streams/{stream_id}", json={"category": "Speedrunning"}
    ) as r:
        assert (await json_of(r, 200))["category_slug"] == "speedrunning"
    async with alice.request("PATCH", f"/api/streams/{stream_id}", json={"category": "zzz"}) as r:
        assert "unknown category" in await error_of(r, 400)
    async with alice.request(
        "PATCH", f"/api/streams/{stream_id}", json={"category": "gaming"}
    ) as r:
        await json_of(r, 200)
    await end(server, stream_id)

    # Rename: every channel's and stream's display copy follows; the slug stays.
    async with root.request("PATCH", "/api/categories/gaming", json={"name": "Video Games"}) as r:
        await json_of(r, 200)
    async with bob.request("GET", "/api/channels/alice-tv") as r:
        doc = await json_of(r, 200)
    assert (doc["category"], doc["category_slug"]) == ("Video Games", "gaming")
    async with bob.request("GET", f"/api/streams/{stream_id}") as r:
        assert (await json_of(r, 200))["category"] == "Video Games"

    # Retire: gone from the list, /categories and the dashboard's picker; kept on the channel.
    async with root.request("PATCH", "/api/categories/gaming", json={"retired": True}) as r:
        assert (await json_of(r, 200))["retired"] is True
    async with bob.request("GET", "/api/categories") as r:
        assert "gaming" not in [c["slug"] for c in (await json_of(r, 200))["categories"]]
    async with bob.request("GET", "/categories") as r:
        assert 'data-slug="gaming"' not in await r.text()
    async with bob.request("GET", "/dashboard") as r:
        assert '<option value="Video Games"' not in await r.text()
    async with alice.request("GET", "/dashboard") as r:  # her channel's form keeps it
        assert "Video Games (retired)" in await r.text()
    async with bob.request("GET", "/api/channels/alice-tv") as r:
        assert (await json_of(r, 200))["category"] == "Video Games"
    async with bob.request(
        "POST", "/api/channels", json={"slug": "bob-tv", "name": "Bob", "category": "gaming"}
    ) as r:
        assert "retired" in await error_of(r, 400)
    # Saving a form that still shows it is fine; choosing it elsewhere is not.
    async with alice.request(
        "PATCH", "/api/channels/alice-tv", json={"name": "Alice TV", "category": "Video Games"}
    ) as r:
        assert (await json_of(r, 200))["category"] == "Video Games"
    async with alice.request("PATCH", "/api/channels/alice-two", json={"category": "gaming"}) as r:
        await error_of(r, 400)
    # The category page of a retired entry still answers (old links), marked retired.
    async with bob.request("GET", "/categories/gaming") as r:
        assert r.status == 200 and "retired" in await r.text()

    # Back again, then clear with null and "", and the language with null.
    async with root.request("PATCH", "/api/categories/gaming", json={"retired": False}) as r:
        await json_of(r, 200)
    async with bob.request(
        "POST", "/api/channels", json={"slug": "bob-tv", "name": "Bob", "category": "Video games"}
    ) as r:
        assert (await json_of(r, 201))["category_slug"] == "gaming"
    async with alice.request(
        "PATCH", "/api/channels/alice-tv", json={"category": None, "language": None}
    ) as r:
        doc = await json_of(r, 200)
    assert (doc["category"], doc["category_slug"], doc["language"]) == (None, None, None)
    async with alice.request("PATCH", "/api/channels/alice-two", json={"category": ""}) as r:
        assert (await json_of(r, 200))["category"] is None


# -- browse pages ------------------------------------------------------------------------------


async def test_categories_ordered_by_live_viewers_with_counts(site) -> None:
    server, base, u = site
    alice, bob = u["alice"], u["bob"]
    music = [await create_channel(alice, f"music-{i}", category="Music") for i in range(2)]
    gaming = await create_channel(bob, "bob-games", category="Gaming")
    hidden = await create_channel(bob, "bob-secret", category="Art", is_public=False)
    idle = await create_channel(bob, "bob-idle", category="Art")
    await start(server, music[0]["id"], viewers=5)
    await start(server, music[1]["id"], viewers=3)
    await start(server, gaming["id"], viewers=20)
    await start(server, hidden["id"], viewers=500)  # unlisted: never counted
    ended = await start(server, idle["id"], viewers=900)
    await end(server, ended)

    async with aiohttp.ClientSession(base) as anon:
        async with anon.get("/categories") as r:
            assert r.status == 200
            html = await r.text()
    order = slugs_in(html, "categories")
    assert order[:2] == ["gaming", "music"], order
    assert "art" in order  # with nobody live, after them
    cards = dict(re.findall(r'data-slug="([^"]+)" data-viewers="\d+" data-live="(\d+)"', html))
    assert (cards["gaming"], cards["music"], cards["art"]) == ("1", "2", "0")
    assert re.search(r'data-slug="music" data-viewers="8"', html)
    assert "2 live channels" in html and 'href="/categories"' in html


async def test_category_page_filters_past_broadcasts_and_unlisted(site) -> None:
    server, base, u = site
    alice, bob = u["alice"], u["bob"]
    m1 = await create_channel(alice, "m-one", category="Music", language="en", tags=["piano"])
    m2 = await create_channel(alice, "m-two", category="Music", language="pt-BR", tags=["guitar"])
    m3 = await create_channel(
        bob, "m-three", category="Music", language="en-GB", tags=["Piano", "jazz"]
    )
    secret = await create_channel(
        bob, "m-secret", category="Music", language="en", tags=["piano"], is_public=False
    )
    art = await create_channel(bob, "art-one", category="Art", language="en", tags=["piano"])
    now = datetime.now(UTC)
    old = await start(server, m1["id"], at=now - timedelta(days=2))
    await end(server, old, now - timedelta(days=2) + timedelta(hours=1))
    hidden_past = await start(server, secret["id"], at=now - timedelta(days=1))
    await end(server, hidden_past, now - timedelta(hours=20))
    art_past = await start(server, art["id"], at=now - timedelta(days=1))
    await end(server, art_past, now - timedelta(hours=20))
    for channel, viewers in ((m1, 10), (m2, 30), (m3, 20), (secret, 99), (art, 50)):
        await start(server, channel["id"], viewers=viewers)

    async with aiohttp.ClientSession(base) as anon:

        async def page(query: str = "") -> str:
            async with anon.get(f"/categories/music{query}") as r:
                assert r.status == 200, await r.text()
                return await r.text()

        html = await page()
        assert slugs_in(html, "live-channels") == ["m-two", "m-three", "m-one"]
        assert slugs_in(html, "past-broadcasts", "data-channel") == ["m-one"]
        assert "m-secret" not in html and "art-one" not in html
        # The filter controls are on the page, with the live channels' languages.
        assert 'name="tag"' in html and '<select name="language">' in html
        assert '<option value="pt-BR"' in html and '<option value="en-GB"' in html
        assert ">en-GB<" in html  # the language on the channel card

        assert slugs_in(await page("?tag=PIANO"), "live-channels") == ["m-three", "m-one"]
        assert slugs_in(await page("?language=en"), "live-channels") == ["m-three", "m-one"]
        assert slugs_in(await page("?language=en-gb"), "live-channels") == ["m-three"]
        assert slugs_in(await page("?language=pt-BR"), "live-channels") == ["m-two"]
        assert slugs_in(await page("?language=en&tag=jazz"), "live-channels") == ["m-three"]
        filtered = await page("?tag=drums")
        assert slugs_in(filtered, "live-channels") == [] and "No live channel matches" in filtered

        async with anon.get("/categories/music?language=not a language") as r:
            assert r.status == 400
        async with anon.get("/categories/no-such-thing") as r:
            assert r.status == 404 and "category" in await r.text()


async def test_following_live_first_then_by_last_live(site) -> None:
    server, base, u = site
    alice, bob = u["alice"], u["bob"]
    now = datetime.now(UTC)
    chans = {
        name: await create_channel(alice, name, category="Music")
        for name in ("f-live", "f-days", "f-hours", "f-never", "f-busy", "not-followed")
    }
    for name, ago in (("f-days", timedelta(days=3)), ("f-hours", timedelta(hours=2))):
        sid = await start(server, chans[name]["id"], at=now - ago - timedelta(hours=1))
        await end(server, sid, now - ago)
    await start(server, chans["f-live"]["id"], viewers=1)
    await start(server, chans["f-busy"]["id"], viewers=9)
    await start(server, chans["not-followed"]["id"], viewers=50)
    async with server.db.session() as db:
        for name in ("f-days", "f-never", "f-hours", "f-live", "f-busy"):
            await follows.follow(db, bob.user["id"], chans[name]["id"])
        await db.commit()

    async with bob.request("GET", "/following") as r:
        assert r.status == 200
        html = await r.text()
    assert slugs_in(html, "following-live") == ["f-busy", "f-live"]
    assert slugs_in(html, "following-offline") == ["f-hours", "f-days", "f-never"]
    assert "2 hours ago" in html and "3 days ago" in html and "Never live yet" in html
    assert "not-followed" not in html
    assert 'href="/following"' in html  # the header links to it when logged in

    async with aiohttp.ClientSession(base) as anon:
        async with anon.get("/following", allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"].startswith("/auth/login")
        async with anon.get("/") as r:
            text = await r.text()
        assert 'href="/categories"' in text and 'href="/following"' not in text
