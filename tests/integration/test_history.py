"""Watch history against a real server: heartbeats are attributed to the logged-in caller only
(a body cannot name another user, anonymous players are refused), credited no more than the
time that passed, written in batches; the history API and /dashboard/history list a user's
own entries, delete one and clear all, and nobody else can delete them.

The channel is made live the way the viewer-counting tests do it: a LIVE stream row and the
live registry's entry, no publisher. The tracker's clock is set by the test, so the seconds
credited are exact instead of depending on how fast the machine is. Each test runs on SQLite
and on PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from chat_support import auth, base_url, make_chat_channel, make_user
from conftest import running_server
from sqlalchemy import func, select

from storage import queries
from storage.discovery_models import WatchSession
from tests.accounts import csrf_of, register, user_of
from webapp.history import TRACKER_KEY, WatchTracker

pytestmark = pytest.mark.integration


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    server: Any
    base: str
    tracker: WatchTracker
    clock: Clock
    channel_id: int
    stream_id: int
    fan: aiohttp.ClientSession
    csrf: dict[str, str]
    fan_id: int
    other_token: str
    other_id: int
    anon: aiohttp.ClientSession


@pytest.fixture(params=["sqlite", "postgresql"])
async def world(
    request: pytest.FixtureRequest, settings_env: dict[str, str]
) -> AsyncIterator[World]:
    if request.param == "postgresql":
        settings_env = {
            **settings_env,
            "AETHEX_DATABASE_URL": request.getfixturevalue("postgres_url"),
        }
    env = {
        **settings_env,
        "AETHEX_HISTORY__FLUSH_INTERVAL": "3600",  # the test flushes when it wants
        "AETHEX_HISTORY__SESSION_GAP": "90",
        "AETHEX_HISTORY__HEARTBEAT_INTERVAL": "30",
        "AETHEX_TRANSCODE__ENABLED": "false",
    }
    async with running_server(env) as server:
        channel_id, _, _ = await make_chat_channel(server, "host", "show")
        now = datetime.now(UTC)
        async with server.db.session() as db:
            row = await queries.start_stream(db, channel_id, now, "The show")
            await db.commit()
        server.registry.start(channel_id=channel_id, slug="show", stream_id=row.id, started_at=now)
        other_id, other_token = await make_user(server, "other")
        tracker = server._runner.app[TRACKER_KEY]
        clock = Clock()
        tracker.clock = clock
        base = base_url(server)
        async with await register(base, "fan") as fan, aiohttp.ClientSession() as anon:
            yield World(
                server,
                base,
                tracker,
                clock,
                channel_id,
                row.id,
                fan,
                {"X-CSRF-Token": await csrf_of(fan, base)},
                (await user_of(fan, base))["id"],
                other_token,
                other_id,
                anon,
            )


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    headers: dict[str, str] | None = None,
    json: Any = None,
) -> tuple[int, Any]:
    async with http.request(method, url, headers=headers or {}, json=json) as r:
        return r.status, await r.json()


async def beat(w: World, http: aiohttp.ClientSession, headers: dict[str, str], body: Any = None):
    return await call(
        http, "POST", f"{w.base}/api/watch/heartbeat", headers, body or {"slug": "show"}
    )


async def history(w: World, http: aiohttp.ClientSession, headers: dict[str, str] | None = None):
    status, body = await call(http, "GET", f"{w.base}/api/me/history", headers)
    assert status == 200, body
    return body["entries"]


async def rows(w: World) -> int:
    async with w.server.db.session() as db:
        return await db.scalar(select(func.count()).select_from(WatchSession))


async def test_heartbeats_are_attributed_to_the_caller_only(world: World) -> None:
    w = world
    status, body = await beat(w, w.fan, w.csrf)
    assert status == 200 and body == {"recorded": True, "stream_id": w.stream_id, "next_in": 30.0}
    # A body naming someone else changes nothing: the user is who the request authenticated.
    w.clock.now += 20
    status, _ = await beat(w, w.fan, w.csrf, {"slug": "show", "user_id": w.other_id})
    assert status == 200
    # The other user plays too, with a bearer token.
    assert (await beat(w, w.anon, auth(w.other_token)))[0] == 200
    # Anonymous playback is never recorded; a cookie without its CSRF token is refused.
    status, body = await beat(w, w.anon, {})
    assert status == 401, body
    status, body = await beat(w, w.fan, {})
    assert status == 403 and body["error"]["code"] == "csrf_failed"
    assert await rows(w) == 0  # nothing is written per heartbeat
    assert await w.tracker.flush() == 2
    assert await rows(w) == 2

    mine = await history(w, w.fan)
    assert len(mine) == 1
    entry = mine[0]
    assert entry["channel"] == {"slug": "show", "name": "show", "url": "/streams/show"}
    assert entry["stream_id"] == w.stream_id and entry["stream_title"] == "The show"
    assert entry["watched_seconds"] == 20
    theirs = await history(w, w.anon, auth(w.other_token))
    assert len(theirs) == 1 and theirs[0]["id"] != entry["id"]
    assert theirs[0]["watched_seconds"] == 0
    assert (await call(w.anon, "GET", f"{w.base}/api/me/history"))[0] == 401

    # Someone else cannot delete my entry: it answers as if it did not exist.
    status, body = await call(
        w.anon, "DELETE", f"{w.base}/api/me/history/{entry['id']}", auth(w.other_token)
    )
    assert status == 404, body
    status, body = await call(w.anon, "DELETE", f"{w.base}/api/me/history", auth(w.other_token))
    assert (status, body) == (200, {"deleted": 1})
    assert [e["id"] for e in await history(w, w.fan)] == [entry["id"]]

    # Heartbeats credit at most the time that passed: a burst adds nothing, a long silence
    # adds at most the session gap... and then the next heartbeat starts a new entry.
    for _ in range(5):
        assert (await beat(w, w.fan, w.csrf))[0] == 200
    w.clock.now += 60
    assert (await beat(w, w.fan, w.csrf))[0] == 200
    await w.tracker.flush()
    assert [e["watched_seconds"] for e in await history(w, w.fan)] == [80]
    w.clock.now += 1000
    assert (await beat(w, w.fan, w.csrf))[0] == 200
    w.clock.now += 30
    assert (await beat(w, w.fan, w.csrf))[0] == 200
    await w.tracker.flush()
    entries = await history(w, w.fan)
    assert [e["watched_seconds"] for e in entries] == [30, 80]  # newest first

    # Paging.
    status, body = await call(w.fan, "GET", f"{w.base}/api/me/history?limit=1")
    assert status == 200 and len(body["entries"]) == 1 and body["next_before"]
    status, body = await call(
        w.fan, "GET", f"{w.base}/api/me/history?limit=1&before={body['next_before']}"
    )
    assert [e["watched_seconds"] for e in body["entries"]] == [80] and body["next_before"] is None


async def test_bad_heartbeats(world: World) -> None:
    w = world
    status, body = await beat(w, w.fan, w.csrf, {"slug": "nobody-here"})
    assert status == 409 and body["error"]["code"] == "not_live"
    status, body = await beat(w, w.fan, w.csrf, {"slug": 5})
    assert status == 400, body
    status, body = await beat(w, w.fan, w.csrf, {"nothing": True})
    assert status == 400, body
    w.server.registry.end(w.server.registry.get("show"))
    status, body = await beat(w, w.fan, w.csrf)
    assert status == 409 and body["error"]["code"] == "not_live"
    assert await w.tracker.flush() == 0
    status, body = await call(w.fan, "GET", f"{w.base}/api/me/history?limit=0")
    assert status == 400, body
    status, body = await call(w.fan, "DELETE", f"{w.base}/api/me/history/abc", w.csrf)
    assert status == 404, body


async def test_clear_and_delete_from_the_page(world: World) -> None:
    w = world
    assert (await beat(w, w.fan, w.csrf))[0] == 200
    await w.tracker.flush()
    async with w.fan.get(f"{w.base}/dashboard/history") as r:
        assert r.status == 200
        page = await r.text()
    assert 'id="history-table"' in page and "The show" in page
    (entry_id,) = re.findall(r'data-entry-id="(\d+)"', page)
    token = w.csrf["X-CSRF-Token"]

    # Another user's delete form does nothing to my entry.
    async with await register(w.base, "mallory") as mallory:
        mallory_token = await csrf_of(mallory, w.base)
        async with mallory.post(
            f"{w.base}/dashboard/history/{entry_id}/delete",
            data={"csrf_token": mallory_token},
            allow_redirects=False,
        ) as r:
            assert r.status == 303
    assert len(await history(w, w.fan)) == 1
    # Without the CSRF token the form is refused.
    async with w.fan.post(
        f"{w.base}/dashboard/history/{entry_id}/delete", data={}, allow_redirects=False
    ) as r:
        assert r.status == 403
    async with w.fan.post(
        f"{w.base}/dashboard/history/{entry_id}/delete",
        data={"csrf_token": token},
        allow_redirects=False,
    ) as r:
        assert r.status == 303 and r.headers["Location"] == "/dashboard/history"
    assert await history(w, w.fan) == []

    # A session still being watched is not written back after "Clear history".
    assert (await beat(w, w.fan, w.csrf))[0] == 200
    await w.tracker.flush()
    w.clock.now += 10
    assert (await beat(w, w.fan, w.csrf))[0] == 200  # not flushed yet
    async with w.fan.post(
        f"{w.base}/dashboard/history/clear", data={"csrf_token": token}, allow_redirects=False
    ) as r:
        assert r.status == 303
    await w.tracker.flush()
    assert await history(w, w.fan) == []
    async with w.fan.get(f"{w.base}/dashboard/history") as r:
        assert 'id="history-empty"' in await r.text()
    # Logged out: the page sends to the login page.
    async with w.anon.get(f"{w.base}/dashboard/history", allow_redirects=False) as r:
        assert r.status == 303 and r.headers["Location"].startswith("/auth/login")


async def test_only_logged_in_player_pages_send_heartbeats(world: World) -> None:
    w = world
    async with w.fan.get(f"{w.base}/streams/show") as r:
        assert "/static/js/watch.js" in await r.text()
    async with w.anon.get(f"{w.base}/streams/show") as r:
        assert "/static/js/watch.js" not in await r.text()
    async with w.fan.get(f"{w.base}/dashboard") as r:
        assert 'href="/dashboard/history"' in await r.text()
