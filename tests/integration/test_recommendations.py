"""The home page's sections against a real server and a real SQLite file: followed channels
live now, recommendations with the reason each one gives (the category and tags the viewer
watches and follows, co-viewing), popular now spread across categories for anonymous
visitors (the per-category cap), new creators, and never a blocked or an unlisted channel.

Data is seeded through the storage functions; "live" is a LIVE stream row, as the home page
reads it (no publisher needed). Each test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import html
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from chat_support import base_url, make_chat_channel, make_user
from conftest import running_server
from sqlalchemy import select, update

from storage import chat as chat_queries
from storage import follows, queries
from storage import history as history_queries
from storage.discovery_models import Category
from storage.models import Channel, Stream, StreamStatus
from tests.accounts import csrf_of, register, user_of

pytestmark = pytest.mark.integration

LONG_AGO = timedelta(days=90)


@pytest.fixture(params=["sqlite", "postgresql"])
def env(request: pytest.FixtureRequest, settings_env: dict[str, str]) -> dict[str, str]:
    if request.param == "postgresql":
        settings_env = {
            **settings_env,
            "AETHEX_DATABASE_URL": request.getfixturevalue("postgres_url"),
        }
    return {
        **settings_env,
        # Every load sees the latest rows: the caches are the subject of other checks.
        "AETHEX_RECOMMENDATIONS__LIVE_CACHE_SECONDS": "0.001",
        "AETHEX_RECOMMENDATIONS__USER_CACHE_SECONDS": "0",
        "AETHEX_RECOMMENDATIONS__FOLLOWS_CACHE_SECONDS": "0",
        "AETHEX_BROWSE__PAGE_CACHE_SECONDS": "0",
        "AETHEX_RECOMMENDATIONS__COVIEW_REFRESH": "0.05",
        "AETHEX_RECOMMENDATIONS__POPULAR_MAX": "6",
        "AETHEX_RECOMMENDATIONS__POPULAR_PER_CATEGORY": "2",
        "AETHEX_TRANSCODE__ENABLED": "false",
    }


@dataclass
class Card:
    slug: str
    reason: str | None


def section(page: str, section_id: str) -> list[Card] | None:
    """The cards of one home page section (None when the page has no such section)."""
    match = re.search(rf'<section class="home-section" id="{section_id}".*?</section>', page, re.S)
    if match is None:
        return None
    cards = []
    for item in re.findall(r'<li class="channel-card">(.*?)</li>', match.group(0), re.S):
        slug = re.search(r'data-slug="([^"]+)"', item)
        reason = re.search(r'<span class="card-reason">(.*?)</span>', item, re.S)
        assert slug is not None
        cards.append(Card(slug.group(1), html.unescape(reason.group(1)) if reason else None))
    return cards


def slugs(cards: list[Card] | None) -> list[str]:
    return [c.slug for c in cards or []]


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


class Site:
    def __init__(self, server) -> None:
        self.server = server
        self.base = base_url(server)
        self.categories: dict[str, Category] = {}

    async def load_categories(self) -> None:
        async with self.server.db.session() as db:
            for entry in (await db.scalars(select(Category))).all():
                self.categories[entry.name] = entry

    async def channel(
        self,
        slug: str,
        *,
        name: str | None = None,
        category: str | None = None,
        tags: list[str] | None = None,
        public: bool = True,
    ) -> tuple[int, int]:
        """A channel of a new user named after it: (channel id, owner id)."""
        channel_id, owner_id, _ = await make_chat_channel(
            self.server, f"{slug.replace('-', '_')}_owner", slug
        )
        entry = self.categories[category] if category else None
        async with self.server.db.session() as db:
            await db.execute(
                update(Channel)
                .where(Channel.id == channel_id)
                .values(
                    name=name or slug,
                    category_id=entry.id if entry else None,
                    category=entry.name if entry else None,
                    tags=tags or [],
                    is_public=public,
                )
            )
            await db.commit()
        return channel_id, owner_id

    async def go_live(
        self, channel_id: int, *, viewers: int = 0, first: datetime | None = None
    ) -> None:
        """A LIVE stream now; with ``first``, an earlier broadcast then (not a new creator)."""
        now = datetime.now(UTC)
        async with self.server.db.session() as db:
            if first is not None:
                old = await queries.start_stream(db, channel_id, first, "Earlier")
                await queries.end_stream(db, old.id, first + timedelta(hours=1))
            row = await queries.start_stream(db, channel_id, now, f"Live on {channel_id}")
            await db.execute(update(Stream).where(Stream.id == row.id).values(viewer_count=viewers))
            await db.commit()

    async def watched(self, user_id: int, channel_id: int, seconds: int) -> None:
        now = datetime.now(UTC)
        async with self.server.db.session() as db:
            await history_queries.write_batch(
                db,
                [
                    history_queries.NewWatch(
                        user_id, channel_id, None, now - timedelta(seconds=seconds), now, seconds
                    )
                ],
                [],
            )
            await db.commit()

    async def home(self, http: aiohttp.ClientSession) -> str:
        async with http.get(f"{self.base}/") as response:
            assert response.status == 200
            return await response.text()


async def test_sections_reasons_blocks_and_unlisted(env) -> None:
    async with running_server(env) as server:
        site = Site(server)
        await site.load_categories()
        old = datetime.now(UTC) - LONG_AGO
        oldfav, _ = await site.channel(
            "oldfav", name="Old Fav", category="Music", tags=["synthwave"]
        )
        tune, _ = await site.channel("tune", category="Music")
        fol_live, _ = await site.channel("fol-live", category="Art")
        fol_off, _ = await site.channel("fol-off", category="Education")
        edu, _ = await site.channel("edu", category="Education")
        synthy, _ = await site.channel("synthy", category="Art", tags=["Synthwave"])
        cooking, _ = await site.channel("cooking", category="Food & Drink")
        blockme, blocked_owner = await site.channel("blockme", category="Music")
        secret, _ = await site.channel("secret", category="Music", public=False)
        newbie, _ = await site.channel("newbie", category="Just Chatting")
        for cid in (tune, fol_live, edu, synthy, cooking, blockme, secret):
            await site.go_live(cid, viewers=5, first=old)
        await site.go_live(newbie, viewers=1)  # first broadcast today

        async with await register(site.base, "fan") as fan, aiohttp.ClientSession() as anon:
            fan_id = (await user_of(fan, site.base))["id"]
            others = [(await make_user(server, f"viewer{i}"))[0] for i in range(2)]
            async with server.db.session() as db:
                for cid in (fol_live, fol_off):
                    await follows.follow(db, fan_id, cid)
                await chat_queries.block(db, fan_id, blocked_owner)
                await db.commit()
            await site.watched(fan_id, oldfav, 3600)
            for viewer in others:  # viewers of Old Fav also watch cooking
                await site.watched(viewer, oldfav, 600)
                await site.watched(viewer, cooking, 600)

            async def coview_seen() -> bool:
                cards = section(await site.home(fan), "recommended") or []
                return any(c.slug == "cooking" for c in cards)

            await eventually(coview_seen, "the co-viewing count to include cooking")
            page = await site.home(fan)

            assert slugs(section(page, "following-live")) == ["fol-live"]
            recommended = {c.slug: c.reason for c in section(page, "recommended") or []}
            assert recommended == {
                "cooking": "Viewers of Old Fav also watch this",
                "tune": "Because you watch Music",
                "synthy": "Because you watch synthwave streams",
                "edu": "Because you follow Education channels",
            }
            # The strongest signal first: co-viewing of a long watch, then the category.
            assert slugs(section(page, "recommended"))[:2] == ["cooking", "tune"]
            assert section(page, "new-creators") == [
                Card("newbie", "New creator, first live today")
            ]
            for slug in ("blockme", "secret"):
                assert f'data-slug="{slug}"' not in page, slug
            # Each channel once on the page.
            all_slugs = re.findall(r'data-slug="([^"]+)"', page)
            assert len(all_slugs) == len(set(all_slugs))

            # Following a recommended channel moves it to "Following" at the next load.
            async with server.db.session() as db:
                await follows.follow(db, fan_id, tune)
                await db.commit()
            page = await site.home(fan)
            assert sorted(slugs(section(page, "following-live"))) == ["fol-live", "tune"]
            assert "tune" not in slugs(section(page, "recommended"))

            # The blocked creator's channel is back for someone who did not block them, and
            # the unlisted one for nobody.
            page = await site.home(anon)
            assert section(page, "recommended") is None
            assert section(page, "following-live") is None
            assert 'data-slug="blockme"' in page and 'data-slug="secret"' not in page

            # A user blocked by a creator is not offered the creator's channels either.
            async with server.db.session() as db:
                await chat_queries.unblock(db, fan_id, blocked_owner)
                await chat_queries.block(db, blocked_owner, fan_id)
                await db.commit()
            assert 'data-slug="blockme"' not in await site.home(fan)


async def test_popular_now_is_spread_across_categories(env) -> None:
    async with running_server(env) as server:
        site = Site(server)
        await site.load_categories()
        old = datetime.now(UTC) - LONG_AGO
        # Five busy Gaming channels, then quieter ones of other categories.
        for i in range(5):
            cid, _ = await site.channel(f"game{i}", category="Gaming")
            await site.go_live(cid, viewers=100 - i, first=old)
        for slug, category, viewers in (
            ("song", "Music", 9),
            ("paint", "Art", 8),
            ("talk", "Just Chatting", 7),
            ("lesson", "Education", 6),
        ):
            cid, _ = await site.channel(slug, category=category)
            await site.go_live(cid, viewers=viewers, first=old)
        hidden, _ = await site.channel("hidden", category="Art", public=False)
        await site.go_live(hidden, viewers=500, first=old)

        async with aiohttp.ClientSession() as anon:
            page = await site.home(anon)
        popular = section(page, "popular-now")
        assert popular is not None
        assert 'id="live-channels"' in page  # the grid's id, as before
        # Six cards (popular_max), two of Gaming (popular_per_category), the rest by viewers.
        assert slugs(popular) == ["game0", "game1", "song", "paint", "talk", "lesson"]
        assert [c.reason for c in popular] == [
            "Popular in Gaming",
            "Popular in Gaming",
            "Popular in Music",
            "Popular in Art",
            "Popular in Just Chatting",
            "Popular in Education",
        ]
        assert 'data-slug="hidden"' not in page

        # When one category is all there is, it fills the section anyway (nothing is held
        # back for categories that have nobody live).
        async with server.db.session() as db:
            await db.execute(
                update(Stream)
                .where(
                    Stream.channel_id.in_(select(Channel.id).where(Channel.category != "Gaming"))
                )
                .values(status=StreamStatus.OFFLINE)
            )
            await db.commit()
        async with aiohttp.ClientSession() as anon:
            page = await site.home(anon)
        assert slugs(section(page, "popular-now")) == [f"game{i}" for i in range(5)]


async def test_nobody_live(env) -> None:
    async with running_server(env) as server:
        async with aiohttp.ClientSession() as anon:
            async with anon.get(f"{base_url(server)}/") as response:
                page = await response.text()
        assert 'id="nobody-live"' in page and "home-section" not in page


async def test_a_follow_through_the_site_shows_at_once(settings_env) -> None:
    """With the caches on (their defaults), following through the API drops the user's
    cached follows: the next home page has the channel under "Following"."""
    env = {**settings_env, "AETHEX_TRANSCODE__ENABLED": "false"}
    async with running_server(env) as server:
        site = Site(server)
        await site.load_categories()
        cid, _ = await site.channel("tune", category="Music")
        await site.go_live(cid, viewers=3, first=datetime.now(UTC) - LONG_AGO)
        async with await register(site.base, "fan") as fan:
            page = await site.home(fan)
            assert section(page, "following-live") is None
            assert slugs(section(page, "popular-now")) == ["tune"]
            csrf = {"X-CSRF-Token": await csrf_of(fan, site.base)}
            async with fan.post(f"{site.base}/api/channels/tune/follow", headers=csrf) as r:
                assert r.status == 200
            page = await site.home(fan)
            assert slugs(section(page, "following-live")) == ["tune"]
            assert section(page, "popular-now") is None
