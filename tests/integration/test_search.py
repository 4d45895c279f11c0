"""Search on both databases: the same tests against a real SQLite file and a real PostgreSQL.

Storage level (``storage.search``): ranking (exact, then prefix, then other matches; live before
offline; followers), typo tolerance, what must never be found (unlisted channels and their
broadcasts, disabled users and their channels, retired categories), the index kept current by
inserts, updates and deletes, hostile query strings, and cursor pagination. HTTP level (a real
server on each database): ``/api/search``, ``/api/search/suggest`` and the ``/search`` page,
with 400s for bad parameters and never a 500 for any query string.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from sqlalchemy import delete, select, update

from storage import Database, queries
from storage import search as search_api
from storage.discovery_models import Category
from storage.models import Channel, Profile, Stream, StreamStatus, User
from storage.search import InvalidCursor, SearchLimits
from tests.conftest import running_server

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)

HOSTILE = [
    '"',
    '""""',
    "'",
    "*",
    "factorio*",
    "NEAR(factorio belts)",
    "NEAR",
    "-factorio",
    "factorio -belts",
    "(",
    "((factorio",
    ")",
    "a OR b AND NOT c",
    "{name}: x",
    "name:factorio",
    "^factorio",
    "factorio + belts",
    "\\",
    "%_%",
    "!@#$%^&*()",
    ":*",
    "' & | ! <-> :*",
    "\x00",
    "factorio\x00",
    "fact\x01orio \ud800",
    "😀 emoji",
    "ǅ ﬁ ß İ",
    "a" * 40,
    "x " * 50,
]


@pytest.fixture
def db(db_on_both: Database) -> Database:
    """The test's database, on SQLite and on PostgreSQL (tests/conftest.py)."""
    return db_on_both


async def _user(s: Any, username: str, display_name: str | None = None, **kw: Any) -> User:
    user = await queries.create_user(s, username, f"{username}@example.test", None)
    if display_name is not None:
        await s.execute(
            update(Profile).where(Profile.user_id == user.id).values(display_name=display_name)
        )
    for name, value in kw.items():
        setattr(user, name, value)
    await s.flush()
    return user


async def _channel(
    s: Any,
    owner: str,
    slug: str,
    name: str,
    *,
    followers: int = 0,
    live: bool = False,
    description: str = "",
    tags: list[str] | None = None,
    public: bool = True,
) -> Channel:
    channel = await queries.create_channel(s, owner, slug, name)
    channel.follower_count = followers
    channel.description = description
    channel.tags = tags or []
    channel.is_public = public
    await s.flush()
    if live:
        await queries.start_stream(s, channel.id, T0)
    return channel


async def _past(s: Any, channel: Channel, title: str, minutes: int = 30) -> Stream:
    stream = await queries.start_stream(s, channel.id, T0 - timedelta(hours=2))
    stream.title = title
    await s.flush()
    await queries.end_stream(
        s, stream.id, T0 - timedelta(hours=2) + timedelta(minutes=minutes), StreamStatus.ARCHIVED
    )
    return stream


async def _seed(db: Database) -> dict[str, int]:
    ids: dict[str, int] = {}
    async with db.session() as s:
        await _user(s, "factoryfan", "Factory Fan")
        await _user(s, "speedrunner_sam", "Sam Speedruns")
        await _user(s, "factorio_villain", "Factorio Villain", is_disabled=True)
        await _user(s, "quiet_owner")
        ids["exact"] = (await _channel(s, "factoryfan", "factorio-hub", "Factorio", followers=5)).id
        ids["prefix_live"] = (
            await _channel(s, "factoryfan", "fspeed", "Factorio Speedruns", followers=1, live=True)
        ).id
        ids["prefix_big"] = (
            await _channel(s, "factoryfan", "fmega", "Factorio Megabase", followers=50)
        ).id
        ids["prefix_small"] = (
            await _channel(s, "factoryfan", "ftrains", "Factorio Trains", followers=10)
        ).id
        ids["text_live"] = (
            await _channel(
                s,
                "speedrunner_sam",
                "belts",
                "Belts and Bots",
                followers=100,
                live=True,
                description="all about factorio",
                tags=["Automation"],
            )
        ).id
        ids["text_offline"] = (
            await _channel(
                s, "speedrunner_sam", "gears", "Gears Daily", followers=900, tags=["factorio"]
            )
        ).id
        secret = await _channel(s, "quiet_owner", "secret", "Factorio Secret", public=False)
        ids["secret"] = secret.id
        ids["banned"] = (
            await _channel(s, "factorio_villain", "banned", "Factorio Banned", followers=10**6)
        ).id
        ids["video"] = (
            await _past(s, await s.get(Channel, ids["text_offline"]), "Rocket launch")
        ).id
        ids["secret_video"] = (await _past(s, secret, "Factorio rocket secret")).id
        await s.commit()
    return ids


async def _ids(db: Database, q: str, kind: str, limit: int = 20, **kw: Any) -> list[int]:
    async with db.session() as s:
        page = await search_api.search(s, q, kind, limit, **kw)
    return [hit.id for hit in page.items]


async def test_channel_ranking_exact_prefix_live_followers(db: Database) -> None:
    ids = await _seed(db)
    found = await _ids(db, "factorio", "channels")
    assert found == [
        ids["exact"],  # the name is the query
        ids["prefix_live"],  # starts with it, live
        ids["prefix_big"],  # starts with it, offline, 50 followers
        ids["prefix_small"],  # 10 followers
        ids["text_live"],  # mentions it (description), live
        ids["text_offline"],  # mentions it (a tag), offline, more followers
    ]
    # A prefix of a word: as-you-type.
    assert (await _ids(db, "facto", "channels"))[:4] == [
        ids["prefix_live"],
        ids["prefix_big"],
        ids["prefix_small"],
        ids["exact"],  # 5 followers: a prefix match like the others here
    ]
    # The live stream's title is searchable too, and the slug exactly.
    assert await _ids(db, "gears", "channels") == [ids["text_offline"]]
    assert (await _ids(db, "fmega", "channels")) == [ids["prefix_big"]]


async def test_typo_tolerance(db: Database) -> None:
    ids = await _seed(db)
    assert (await _ids(db, "factroio", "channels"))[0] == ids["exact"]
    async with db.session() as s:
        cats = (await search_api.search(s, "speedrunnig", "categories", 5)).items
        users = (await search_api.search(s, "speedrunnr", "users", 5)).items
        videos = (await search_api.search(s, "rockte", "videos", 5)).items
    assert [c.name for c in cats] == ["Speedrunning"]
    assert [u.username for u in users] == ["speedrunner_sam"]
    assert [v.id for v in videos] == [ids["video"]]
    # Not everything is a typo of everything.
    assert await _ids(db, "zzzzqqqq", "channels") == []


async def test_unlisted_and_disabled_are_never_found(db: Database) -> None:
    ids = await _seed(db)
    for q in ("factorio secret", "secret", "factorio banned", "banned", "factorio"):
        found = await _ids(db, q, "channels", 50)
        assert ids["secret"] not in found and ids["banned"] not in found
    for q in ("villain", "factorio_villain", "factorio villain"):
        assert await _ids(db, q, "users") == []
    assert ids["secret_video"] not in await _ids(db, "rocket", "videos")
    assert await _ids(db, "factorio rocket secret", "videos") == []
    # Live broadcasts are not past broadcasts.
    assert await _ids(db, "factorio speedruns", "videos") == []
    async with db.session() as s:
        await s.execute(update(Category).where(Category.name == "Music").values(retired_at=T0))
        await s.commit()
    assert await _ids(db, "music", "categories") == []


async def test_index_follows_inserts_updates_and_deletes(db: Database) -> None:
    ids = await _seed(db)
    async with db.session() as s:
        await s.execute(
            update(Channel).where(Channel.id == ids["text_offline"]).values(name="Cog Central")
        )
        await s.execute(
            update(Profile)
            .where(
                Profile.user_id
                == select(User.id).where(User.username == "factoryfan").scalar_subquery()
            )
            .values(display_name="Grand Architect")
        )
        await s.execute(update(Category).where(Category.name == "Art").values(name="Pixel Art"))
        stream = await queries.live_stream_for_channel(s, ids["prefix_live"])
        assert stream is not None
        stream.title = "Any percent glitchless"
        await s.commit()
    assert await _ids(db, "cog central", "channels") == [ids["text_offline"]]
    assert await _ids(db, "daily", "channels") == []  # the old name
    assert await _ids(db, "glitchless", "channels") == [ids["prefix_live"]]
    async with db.session() as s:
        users = (await search_api.search(s, "grand architect", "users", 5)).items
        assert [u.username for u in users] == ["factoryfan"]
        cats = (await search_api.search(s, "pixel", "categories", 5)).items
        assert [c.name for c in cats] == ["Pixel Art"]
        # New rows are found at once.
        await _user(s, "newcomer", "Brand New")
        await _channel(s, "newcomer", "fresh", "Fresh Paint")
        await s.commit()
    assert len(await _ids(db, "fresh paint", "channels")) == 1
    assert len(await _ids(db, "newcomer", "users")) == 1
    async with db.session() as s:
        await s.execute(delete(Channel).where(Channel.slug == "fresh"))
        await s.execute(delete(User).where(User.username == "newcomer"))
        await s.commit()
    assert await _ids(db, "fresh paint", "channels") == []
    assert await _ids(db, "newcomer", "users") == []
    assert await _ids(db, "rocket launch", "videos") == [ids["video"]]
    async with db.session() as s:
        await s.execute(delete(Stream).where(Stream.id == ids["video"]))
        await s.commit()
    assert await _ids(db, "rocket launch", "videos") == []
    # A channel deleted with its broadcasts (a cascade): gone from every index, no error.
    async with db.session() as s:
        await s.execute(delete(Channel).where(Channel.id == ids["prefix_live"]))
        await s.commit()
    assert await _ids(db, "glitchless", "channels") == []
    assert ids["prefix_live"] not in await _ids(db, "factorio", "channels")


async def test_hostile_queries_never_raise(db: Database) -> None:
    await _seed(db)
    async with db.session() as s:
        for q in HOSTILE:
            for kind in search_api.SEARCH_TYPES:
                await search_api.search(s, q, kind, 10)
            await search_api.suggest(s, q)
    assert await _ids(db, '"factorio"', "channels")  # the words still count
    assert await _ids(db, "factorio* -(", "channels")


async def test_cursor_pagination_is_stable_and_complete(db: Database) -> None:
    async with db.session() as s:
        await _user(s, "pager")
        for i in range(13):
            await _channel(s, "pager", f"page-{i}", f"Pager Channel {i}", followers=i % 4)
        await s.commit()
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        async with db.session() as s:
            page = await search_api.search(s, "pager", "channels", 5, cursor)
        seen += [hit.id for hit in page.items]
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert pages == 3 and len(seen) == len(set(seen)) == 13
    assert seen == await _ids(db, "pager", "channels", 50)
    async with db.session() as s:
        with pytest.raises(InvalidCursor):
            await search_api.search(s, "pager", "users", 5, cursor)
        with pytest.raises(InvalidCursor):
            await search_api.search(s, "pager", "channels", 5, "not-a-cursor")
        # A bounded candidate set bounds pagination too, and it still ends.
        small = SearchLimits(candidates=4, fuzzy_below=0)
        assert len((await search_api.search(s, "pager", "channels", 50, None, small)).items) <= 8


async def test_suggest_has_a_few_of_each(db: Database) -> None:
    await _seed(db)
    async with db.session() as s:
        got = await search_api.suggest(s, "fact", per_type=3)
    assert len(got["channels"]) == 3
    assert [u.username for u in got["users"]] == ["factoryfan"]
    assert set(got) == set(search_api.SEARCH_TYPES)


# -- HTTP ----------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
async def site(
    request: pytest.FixtureRequest, settings_env: dict[str, str]
) -> AsyncIterator[tuple[str, dict[str, int]]]:
    env = dict(settings_env)
    if request.param == "postgresql":
        env["AETHEX_DATABASE_URL"] = request.getfixturevalue("postgres_url")
    async with running_server(env) as server:
        ids = await _seed(server.db)
        yield f"http://127.0.0.1:{server.http_port}", ids


async def _get(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with http.get(url) as resp:
        if resp.content_type == "application/json":
            return resp.status, await resp.json()
        return resp.status, await resp.text()


async def test_search_api_page_and_suggest(site: tuple[str, dict[str, int]]) -> None:
    base, ids = site
    async with aiohttp.ClientSession() as http:
        status, body = await _get(http, f"{base}/api/search?q=factorio")
        assert status == 200 and body["type"] == "channels"
        assert [item["id"] for item in body["items"]][:2] == [ids["exact"], ids["prefix_live"]]
        first = body["items"][0]
        assert first["type"] == "channel" and first["url"] == "/streams/factorio-hub"
        assert body["items"][1]["live"] is True
        assert {item["id"] for item in body["items"]}.isdisjoint({ids["secret"], ids["banned"]})

        status, body = await _get(http, f"{base}/api/search?q=factroio&type=channels")
        assert status == 200 and body["items"][0]["id"] == ids["exact"]
        status, body = await _get(http, f"{base}/api/search?q=speedrunnig&type=categories")
        assert [item["name"] for item in body["items"]] == ["Speedrunning"]
        status, body = await _get(http, f"{base}/api/search?q=rocket&type=videos")
        assert [item["id"] for item in body["items"]] == [ids["video"]]
        assert body["items"][0]["duration"] == "30:00"
        status, body = await _get(http, f"{base}/api/search?q=sam&type=users")
        assert [item["username"] for item in body["items"]] == ["speedrunner_sam"]

        # Pagination: every page through next_cursor is the one long page, in order.
        status, whole = await _get(http, f"{base}/api/search?q=factorio&limit=50")
        seen: list[int] = []
        url = f"{base}/api/search?q=factorio&limit=2"
        while True:
            status, body = await _get(http, url)
            assert status == 200
            seen += [item["id"] for item in body["items"]]
            if body["next_cursor"] is None:
                break
            url = f"{base}/api/search?q=factorio&limit=2&cursor={body['next_cursor']}"
        assert seen == [item["id"] for item in whole["items"]] and len(seen) == 6

        status, body = await _get(http, f"{base}/api/search/suggest?q=fact")
        assert status == 200 and set(body) == {"query", "channels", "users", "categories", "videos"}
        assert 1 <= len(body["channels"]) <= 3
        assert [u["username"] for u in body["users"]] == ["factoryfan"]

        # Bad parameters: 400 in the error shape.
        for path in (
            "/api/search?q=x&type=streams",
            "/api/search?q=x&limit=0",
            "/api/search?q=x&limit=abc",
            "/api/search?q=x&limit=100000",
            "/api/search?q=x&cursor=not-a-cursor",
            "/api/search?q=x&type=users&cursor=" + (whole["next_cursor"] or "eyJ4IjoxfQ"),
            "/api/search?q=" + "a" * 101,
            "/api/search/suggest?q=" + "a" * 101,
            "/search?q=factorio&cursor=zzz",
        ):
            status, body = await _get(http, f"{base}{path}")
            assert status == 400, path
            if path.startswith("/api/"):
                assert body["error"]["code"] == "invalid"

        # Hostile queries: 200 (or 400), never a 500, on every route.
        for q in HOSTILE:
            for path in ("/api/search", "/api/search/suggest", "/search"):
                for kind in ("channels", "users", "categories", "videos"):
                    async with http.get(f"{base}{path}", params={"q": q, "type": kind}) as resp:
                        assert resp.status in (200, 400), (path, q, resp.status)
                    if path == "/api/search/suggest":
                        break

        # The page: tabs, cards, the next page's link; a long query is cut, not refused.
        status, html = await _get(http, f"{base}/search?q=factorio")
        assert status == 200
        assert 'data-slug="factorio-hub"' in html and 'aria-current="page"' in html
        assert 'data-type="users"' in html and "badge-live" in html
        status, html = await _get(http, f"{base}/search?q=factorio&type=videos&limit=1")
        assert status == 200 and "Nothing found" in html
        status, html = await _get(http, f"{base}/search?q=factorio&limit=2")
        assert 'rel="next"' in html
        status, html = await _get(http, f"{base}/search?q={'factorio' * 30}&type=nonsense")
        assert status == 200
        # The header's box on every page.
        status, html = await _get(http, f"{base}/")
        assert 'role="combobox"' in html and "/static/js/search.js" in html
