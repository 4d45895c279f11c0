"""The lookups webapp's handlers call instead of writing SQL (storage.channels, storage.chat,
storage.reports), against a real, migrated SQLite file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from storage import Database, ReportStatus, queries
from storage import channels as channel_queries
from storage import chat as chat_store
from storage import reports as report_store
from storage.accounts import display_name
from storage.errors import NotFoundError, ValidationError
from storage.models import Channel, Profile, StreamStatus, User
from tests.db_template import migrate

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'aethex.db'}"
    migrate(url)
    database = Database(url)
    await database.connect()
    try:
        yield database
    finally:
        await database.dispose()


async def _user(s: AsyncSession, name: str, *, admin: bool = False) -> User:
    return await queries.create_user(s, name, f"{name}@example.org", None, is_admin=admin)


async def _channel(s: AsyncSession, owner: str, slug: str, *, public: bool = True) -> Channel:
    channel = await queries.create_channel(s, owner, slug)
    channel.is_public = public
    await s.flush()
    return channel


# -- channel_with_owner ------------------------------------------------------------------------


async def test_channel_with_owner_gives_the_channel_its_owner_and_their_name(db: Database) -> None:
    async with db.session() as s:
        alice = await _user(s, "alice")
        bob = await _user(s, "bob")
        carol = await _user(s, "carol")
        profile = await s.get(Profile, alice.id)
        assert profile is not None
        profile.display_name = "Alice A."
        bob_profile = await s.get(Profile, bob.id)
        assert bob_profile is not None
        bob_profile.display_name = "   "
        await _channel(s, "alice", "alice-live", public=False)  # unlisted: still found by slug
        await _channel(s, "bob", "bob-live")
        await _channel(s, "carol", "carol-live")
        await s.delete(await s.get(Profile, carol.id))  # a user without a profile row
        await s.commit()
    async with db.session() as s:
        found = await channel_queries.channel_with_owner(s, "alice-live")
        assert found is not None
        assert found.channel.slug == "alice-live" and found.owner.username == "alice"
        assert found.profile is not None and found.creator == "Alice A."
        blank = await channel_queries.channel_with_owner(s, "bob-live")
        assert blank is not None and blank.creator == "bob"  # a blank display name
        none = await channel_queries.channel_with_owner(s, "carol-live")
        assert none is not None and none.profile is None and none.creator == "carol"


@pytest.mark.parametrize("slug", ["nobody-here", "", "Bad Slug", "a", "x" * 60, "-dash"])
async def test_channel_with_owner_unknown_or_malformed_slug_is_none(
    db: Database, slug: str
) -> None:
    async with db.session() as s:
        await _user(s, "alice")
        await _channel(s, "alice", "alice-live")
        await s.commit()
        assert await channel_queries.channel_with_owner(s, slug) is None


def test_display_name_falls_back_to_the_username() -> None:
    user = User(username="dave")
    assert display_name(user, None) == "dave"
    assert display_name(user, Profile(display_name="")) == "dave"
    assert display_name(user, Profile(display_name="Dave D")) == "Dave D"


# -- channels and streams ----------------------------------------------------------------------


async def test_get_channel_and_get_stream(db: Database) -> None:
    async with db.session() as s:
        await _user(s, "alice")
        channel = await _channel(s, "alice", "alice-live")
        stream = await queries.start_stream(s, channel.id, T0)
        await s.commit()
        ids = channel.id, stream.id
    async with db.session() as s:
        got = await channel_queries.get_channel(s, ids[0])
        assert got is not None and got.slug == "alice-live"
        live = await channel_queries.get_stream(s, ids[1])
        assert live is not None and live.channel_id == ids[0]
        assert live.status is StreamStatus.LIVE
        assert await channel_queries.get_channel(s, ids[0] + 100) is None
        assert await channel_queries.get_stream(s, ids[1] + 100) is None


async def test_channel_slugs_sorted_and_unknown_ids_left_out(db: Database) -> None:
    async with db.session() as s:
        await _user(s, "alice")
        zed = await _channel(s, "alice", "zed-live")
        abe = await _channel(s, "alice", "abe-live", public=False)
        await _channel(s, "alice", "mid-live")
        await s.commit()
        assert await channel_queries.channel_slugs(s, [zed.id, abe.id, 9999]) == [
            "abe-live",
            "zed-live",
        ]
        assert await channel_queries.channel_slugs(s, []) == []


async def test_list_channels_by_owner_listed_and_by_username(db: Database) -> None:
    async with db.session() as s:
        alice = await _user(s, "alice")
        await _user(s, "bob")
        await _channel(s, "alice", "a-one")
        await _channel(s, "alice", "a-hidden", public=False)
        await _channel(s, "bob", "b-one")
        await _channel(s, "bob", "b-hidden", public=False)
        await s.commit()
    async with db.session() as s:
        mine = await channel_queries.list_channels(
            s, limit=10, owner_id=alice.id, owner_username="bob"
        )  # the id wins
        assert [(c.slug, n) for c, n in mine] == [("a-one", "alice"), ("a-hidden", "alice")]
        listed = await channel_queries.list_channels(s, limit=10)
        assert [(c.slug, n) for c, n in listed] == [("a-one", "alice"), ("b-one", "bob")]
        assert [
            c.slug for c, _ in await channel_queries.list_channels(s, limit=10, owner_username="")
        ] == ["a-one", "b-one"]
        bobs = await channel_queries.list_channels(s, limit=10, owner_username="bob")
        assert [(c.slug, n) for c, n in bobs] == [("b-one", "bob")]
        assert await channel_queries.list_channels(s, limit=10, owner_username="nobody") == []
        assert [c.slug for c, _ in await channel_queries.list_channels(s, limit=1)] == ["a-one"]


async def test_live_channels_busiest_first_listed_only(db: Database) -> None:
    async with db.session() as s:
        alice = await _user(s, "alice")
        await _user(s, "bob")
        profile = await s.get(Profile, alice.id)
        assert profile is not None
        profile.display_name = "Alice A."
        quiet = await _channel(s, "alice", "quiet")
        busy = await _channel(s, "bob", "busy")
        newer = await _channel(s, "bob", "newer")
        hidden = await _channel(s, "alice", "hidden", public=False)
        ended = await _channel(s, "alice", "ended")
        await _channel(s, "alice", "offline")
        streams = {}
        for i, channel in enumerate((quiet, busy, newer, hidden, ended)):
            streams[channel.slug] = await queries.start_stream(
                s, channel.id, T0 + timedelta(minutes=i)
            )
        streams["quiet"].viewer_count = 1
        streams["busy"].viewer_count = streams["hidden"].viewer_count = 50
        streams["newer"].viewer_count = 1  # ties with quiet: the newer start goes first
        await queries.end_stream(s, streams["ended"].id, T0 + timedelta(hours=1))
        await s.commit()
    async with db.session() as s:
        rows = await channel_queries.live_channels(s, 10)
        assert [(r.channel.slug, r.creator, r.stream.viewer_count) for r in rows] == [
            ("busy", "bob", 50),
            ("newer", "bob", 1),
            ("quiet", "Alice A.", 1),
        ]
        assert all(r.stream.channel_id == r.channel.id for r in rows)
        assert [r.channel.slug for r in await channel_queries.live_channels(s, 1)] == ["busy"]


# -- chat: admins --------------------------------------------------------------------------------


async def test_admin_ids(db: Database) -> None:
    async with db.session() as s:
        root = await _user(s, "root", admin=True)
        alice = await _user(s, "alice")
        await s.commit()
        assert await chat_store.admin_ids(s, {root.id, alice.id, 9999}) == {root.id}
        assert await chat_store.admin_ids(s, set()) == set()
        assert await chat_store.admin_ids(s, [alice.id]) == set()


# -- reports -------------------------------------------------------------------------------------


async def test_moderated_channel_ids_owned_moderated_or_all_for_an_admin(db: Database) -> None:
    async with db.session() as s:
        alice = await _user(s, "alice")
        bob = await _user(s, "bob")
        carol = await _user(s, "carol")
        a = await _channel(s, "alice", "a-live")
        b = await _channel(s, "bob", "b-live")
        await chat_store.add_moderator(s, a.id, bob.id, alice.id)
        await s.commit()
        assert await report_store.moderated_channel_ids(s, alice.id, is_admin=False) == [a.id]
        assert sorted(await report_store.moderated_channel_ids(s, bob.id, is_admin=False)) == [
            a.id,
            b.id,
        ]
        assert await report_store.moderated_channel_ids(s, carol.id, is_admin=False) == []
        assert sorted(await report_store.moderated_channel_ids(s, carol.id, is_admin=True)) == [
            a.id,
            b.id,
        ]


async def test_report_create_get_list_resolve(db: Database) -> None:
    async with db.session() as s:
        alice = await _user(s, "alice")
        bob = await _user(s, "bob")
        a = await _channel(s, "alice", "a-live")
        with pytest.raises(ValidationError):
            await report_store.create_report(
                s,
                reporter_id=bob.id,
                channel_id=a.id,
                message_id=None,
                target_user_id=alice.id,
                reason="  ",
                details="",
            )
        with pytest.raises(ValidationError):
            await report_store.create_report(
                s,
                reporter_id=bob.id,
                channel_id=a.id,
                message_id=None,
                target_user_id=alice.id,
                reason="spam",
                details="x" * (report_store.REPORT_DETAILS_MAX + 1),
            )
        report = await report_store.create_report(
            s,
            reporter_id=bob.id,
            channel_id=a.id,
            message_id=None,
            target_user_id=alice.id,
            reason=" spam ",
            details=" often ",
        )
        await s.commit()
        report_id = report.id
    async with db.session() as s:
        got = await report_store.get_report(s, report_id)
        assert got is not None and got.reason == "spam" and got.details == "often"
        assert got.status is ReportStatus.OPEN and got.channel_id == a.id
        assert await report_store.get_report(s, report_id + 1) is None
        [listed] = await report_store.channel_reports(s, [a.id])
        assert listed["id"] == report_id and listed["channel"] == "a-live"
        assert listed["reporter"]["username"] == "bob"
        assert listed["target_user"]["username"] == "alice" and listed["message"] is None
        assert await report_store.channel_reports(s, []) == []
        await report_store.resolve_report(s, report_id, ReportStatus.DISMISSED, alice.id, T0)
        with pytest.raises(NotFoundError):
            await report_store.resolve_report(s, report_id + 1, ReportStatus.RESOLVED, alice.id, T0)
        await s.commit()
        assert await report_store.channel_reports(s, [a.id]) == []
        [done] = await report_store.channel_reports(s, [a.id], status=None)
        assert done["status"] == "dismissed"
