"""Every query function against a real, migrated SQLite file: happy path, bad input, clashes."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage import Database, queries
from storage.errors import ConflictError, NotFoundError, ValidationError
from storage.models import ApiToken, Channel, Profile, Stream, StreamStatus, User
from storage.passwords import (
    hash_password,
    is_usable_password_hash,
    needs_rehash,
    verify_password,
)
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


@pytest.fixture
async def session(db: Database) -> AsyncIterator[AsyncSession]:
    async with db.session() as s:
        yield s


async def make_user(
    s: AsyncSession, name: str = "alice", password: str | None = "hunter2hunter2", **kw: bool
) -> User:
    return await queries.create_user(s, name, f"{name}@example.org", password, **kw)


# -- passwords -------------------------------------------------------------------------------


def test_password_hash_is_argon2id_and_verifies() -> None:
    h = hash_password("correct horse")
    assert h.startswith("$argon2id$")
    assert verify_password(h, "correct horse")
    assert not verify_password(h, "wrong horse")
    assert not verify_password("not-a-hash", "x")
    assert not needs_rehash(h)


# -- users -----------------------------------------------------------------------------------


async def test_create_user_with_password_and_profile(db: Database) -> None:
    async with db.session() as s:
        user = await queries.create_user(
            s, "alice_01", " Alice@Example.ORG ", "s3cret-pass", is_admin=True
        )
        await s.commit()
    assert user.id is not None
    async with db.session() as s:
        row = (await s.execute(select(User).where(User.username == "alice_01"))).scalar_one()
        assert row.email == "alice@example.org"
        assert row.is_admin is True
        assert row.password_hash.startswith("$argon2id$")
        assert verify_password(row.password_hash, "s3cret-pass")
        assert row.created_at.tzinfo is not None and row.created_at.utcoffset() == timedelta(0)
        profile = await s.get(Profile, row.id)
        assert profile is not None and profile.display_name == "alice_01"
        assert profile.social_links == {} and profile.theme == "dark"


async def test_create_user_without_password_is_unusable(session: AsyncSession) -> None:
    user = await queries.create_user(session, "bob", "bob@example.org", None)
    assert user.is_admin is False
    assert not is_usable_password_hash(user.password_hash)
    assert not verify_password(user.password_hash, "")
    assert not verify_password(user.password_hash, user.password_hash)
    other = await queries.create_user(session, "carol", "carol@example.org", None)
    assert other.password_hash != user.password_hash


@pytest.mark.parametrize(
    "username",
    [
        "ab",
        "a" * 33,
        "Alice",
        "al ice",
        "al-ice",
        "alïce",
        "",
        "alice\n",
    ],
)
async def test_create_user_rejects_bad_username(session: AsyncSession, username: str) -> None:
    with pytest.raises(ValidationError, match="username"):
        await queries.create_user(session, username, "x@example.org", None)


@pytest.mark.parametrize(
    "email",
    [
        "",
        "plain",
        "@example.org",
        "a@",
        "a@b",
        "a b@example.org",
        "a@@example.org",
        "a@" + "x" * 250 + ".org",
    ],
)
async def test_create_user_rejects_bad_email(session: AsyncSession, email: str) -> None:
    with pytest.raises(ValidationError, match="email"):
        await queries.create_user(session, "alice", email, None)


@pytest.mark.parametrize("password", ["", "short", "x" * 1025])
async def test_create_user_rejects_bad_password(session: AsyncSession, password: str) -> None:
    with pytest.raises(ValidationError, match="password"):
        await queries.create_user(session, "alice", "alice@example.org", password)


async def test_create_user_duplicates(db: Database) -> None:
    async with db.session() as s:
        await make_user(s, "alice")
        await s.commit()
    async with db.session() as s:
        with pytest.raises(ConflictError, match="username 'alice' is already taken"):
            await queries.create_user(s, "alice", "other@example.org", None)
        with pytest.raises(ConflictError, match="email 'alice@example.org' is already"):
            await queries.create_user(s, "alice2", "ALICE@example.org", None)
    async with db.session() as s:
        assert await queries.count_users(s) == 1


async def test_unique_constraints_back_up_the_checks(session: AsyncSession) -> None:
    await make_user(session, "alice")
    session.add(User(username="alice", email="z@example.org", password_hash="!x"))
    with pytest.raises(IntegrityError):
        await session.flush()


async def test_foreign_keys_are_enforced(session: AsyncSession) -> None:
    session.add(Profile(user_id=999, display_name="ghost", social_links={}))
    with pytest.raises(IntegrityError):
        await session.flush()


# -- channels and stream keys ----------------------------------------------------------------


async def test_create_channel_generates_key_and_hash(db: Database) -> None:
    async with db.session() as s:
        await make_user(s)
        channel = await queries.create_channel(s, "alice", "alice-live", "Alice Plays")
        await s.commit()
    assert channel.slug == "alice-live" and channel.name == "Alice Plays"
    key = channel.stream_key
    assert key.startswith("live_") and len(key) == len("live_") + 40
    assert all(c.isalnum() or c in "-_" for c in key[5:])
    assert channel.stream_key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert channel.tags == [] and channel.is_public is True
    assert channel.total_streams == 0 and channel.follower_count == 0
    async with db.session() as s:
        row = (await s.execute(select(Channel).where(Channel.slug == "alice-live"))).scalar_one()
        assert row.owner_id == (await queries.get_user_by_username(s, "alice")).id


async def test_create_channel_title_defaults_to_slug(session: AsyncSession) -> None:
    await make_user(session)
    channel = await queries.create_channel(session, "alice", "ab")
    assert channel.name == "ab"


@pytest.mark.parametrize(
    "slug",
    [
        "a",
        "-abc",
        "Abc",
        "ab_c",
        "ab c",
        "a" * 49,
        "",
        "ab/c",
        "ab.c",
    ],
)
async def test_create_channel_rejects_bad_slug(session: AsyncSession, slug: str) -> None:
    await make_user(session)
    with pytest.raises(ValidationError, match="slug"):
        await queries.create_channel(session, "alice", slug)


@pytest.mark.parametrize("title", ["", "   ", "x" * 121, "bad\x00title"])
async def test_create_channel_rejects_bad_title(session: AsyncSession, title: str) -> None:
    await make_user(session)
    with pytest.raises(ValidationError, match="title"):
        await queries.create_channel(session, "alice", "good-slug", title)


async def test_create_channel_unknown_owner_and_duplicate_slug(db: Database) -> None:
    async with db.session() as s:
        with pytest.raises(NotFoundError, match="no user named 'nobody'"):
            await queries.create_channel(s, "nobody", "some-slug")
        await make_user(s)
        await queries.create_channel(s, "alice", "taken")
        await s.commit()
    async with db.session() as s:
        await make_user(s, "bob")
        with pytest.raises(ConflictError, match="slug 'taken' is already taken"):
            await queries.create_channel(s, "bob", "taken")


async def test_find_channel_by_stream_key(db: Database) -> None:
    async with db.session() as s:
        await make_user(s)
        a = await queries.create_channel(s, "alice", "chan-a")
        b = await queries.create_channel(s, "alice", "chan-b")
        await s.commit()
    assert a.stream_key != b.stream_key
    async with db.session() as s:
        found_a = await queries.find_channel_by_stream_key(s, a.stream_key)
        found_b = await queries.find_channel_by_stream_key(s, b.stream_key)
        assert found_a is not None and found_a.id == a.id
        assert found_b is not None and found_b.id == b.id
        wrong = [
            "",
            "live_",
            a.stream_key[:-1],
            a.stream_key + "x",
            a.stream_key.upper(),
            "live_" + "A" * 40,
            "x" * 10_000,
            "lïve_ünicode",
            a.stream_key_hash,
        ]
        for key in wrong:
            assert await queries.find_channel_by_stream_key(s, key) is None, key


async def test_regenerate_stream_key(db: Database) -> None:
    async with db.session() as s:
        await make_user(s)
        channel = await queries.create_channel(s, "alice", "chan")
        await s.commit()
    old = channel.stream_key
    async with db.session() as s:
        new = await queries.regenerate_stream_key(s, channel.id)
        await s.commit()
    assert new != old and new.startswith("live_")
    async with db.session() as s:
        assert await queries.find_channel_by_stream_key(s, old) is None
        found = await queries.find_channel_by_stream_key(s, new)
        assert found is not None and found.id == channel.id
        with pytest.raises(NotFoundError):
            await queries.regenerate_stream_key(s, 9999)


# -- API tokens ------------------------------------------------------------------------------


async def test_api_token_roundtrip_and_only_hash_stored(db: Database) -> None:
    async with db.session() as s:
        user = await make_user(s)
        token = await queries.create_api_token(s, "alice")
        await s.commit()
    assert token.startswith("aethex_") and len(token) == len("aethex_") + 40
    async with db.session() as s:
        rows = (await s.execute(select(ApiToken))).scalars().all()
        assert len(rows) == 1
        row = rows[0]
        assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
        assert row.name == "cli" and row.prefix == token[:12] and row.last_used_at is None
        assert token not in {row.token_hash, row.prefix, row.name}
        found = await queries.find_user_by_token(s, token)
        assert found is not None and found.id == user.id
        api_token, owner = await queries.find_api_token(s, token)
        assert owner.id == user.id and queries.token_use_due(api_token, T0)
        await queries.record_token_use(s, api_token.id, T0)
        await s.commit()
    async with db.session() as s:
        row = (await s.execute(select(ApiToken))).scalar_one()
        assert row.last_used_at == T0
        # At most one write per resolution: a use a moment later is not due.
        assert not queries.token_use_due(row, T0 + queries.TOKEN_LAST_USED_RESOLUTION)
        assert queries.token_use_due(row, T0 + 2 * queries.TOKEN_LAST_USED_RESOLUTION)


async def test_api_token_wrong_and_revoked(db: Database) -> None:
    async with db.session() as s:
        await make_user(s)
        token = await queries.create_api_token(s, "alice", name="laptop")
        second = await queries.create_api_token(s, "alice", name="laptop")
        await s.commit()
    assert token != second
    async with db.session() as s:
        for bad in [
            "",
            "aethex_",
            token[:-1],
            token + "x",
            "x" * 5000,
            token.replace("aethex_", ""),
        ]:
            assert await queries.find_user_by_token(s, bad) is None, bad
        assert await queries.revoke_api_token(s, token, T0) is True
        assert await queries.revoke_api_token(s, token, T0) is False
        await s.commit()
    async with db.session() as s:
        assert await queries.find_user_by_token(s, token) is None
        assert await queries.find_user_by_token(s, second) is not None


async def test_api_token_bad_input(session: AsyncSession) -> None:
    with pytest.raises(NotFoundError, match="no user named 'ghost'"):
        await queries.create_api_token(session, "ghost")
    await make_user(session)
    with pytest.raises(ValidationError, match="token name"):
        await queries.create_api_token(session, "alice", name="")
    with pytest.raises(ValidationError, match="token name"):
        await queries.create_api_token(session, "alice", name="n" * 65)


# -- streams ---------------------------------------------------------------------------------


async def _channel(
    s: AsyncSession, slug: str = "chan", title: str | None = "My Channel"
) -> Channel:
    if await queries.get_user_by_username(s, "alice") is None:
        await make_user(s)
    return await queries.create_channel(s, "alice", slug, title)


async def test_start_and_end_stream(db: Database) -> None:
    async with db.session() as s:
        channel = await _channel(s)
        stream = await queries.start_stream(s, channel.id, T0)
        await s.commit()
    assert stream.status is StreamStatus.LIVE
    assert stream.started_at == T0 and stream.ended_at is None
    assert stream.title == "My Channel"
    async with db.session() as s:
        live = await queries.live_stream_for_channel(s, channel.id)
        assert live is not None and live.id == stream.id
        assert (await s.get(Channel, channel.id)).total_streams == 1
        ended = await queries.end_stream(s, stream.id, T0 + timedelta(minutes=90, seconds=5))
        await s.commit()
    assert ended.status is StreamStatus.OFFLINE
    assert ended.duration_seconds == 90 * 60 + 5
    async with db.session() as s:
        row = await s.get(Stream, stream.id)
        assert row.status is StreamStatus.OFFLINE
        assert row.ended_at == T0 + timedelta(minutes=90, seconds=5)
        assert row.ended_at.tzinfo is not None
        assert await queries.live_stream_for_channel(s, channel.id) is None


async def test_status_is_stored_as_string(db: Database) -> None:
    from sqlalchemy import text

    async with db.session() as s:
        channel = await _channel(s)
        await queries.start_stream(s, channel.id, T0)
        await s.commit()
        raw = (await s.execute(text("SELECT status FROM streams"))).scalar_one()
    assert raw == "live"


async def test_start_stream_title_and_counters(db: Database) -> None:
    async with db.session() as s:
        channel = await _channel(s)
        first = await queries.start_stream(s, channel.id, T0, title="  Speedrun  ")
        await queries.end_stream(s, first.id, T0 + timedelta(seconds=10))
        second = await queries.start_stream(s, channel.id, T0 + timedelta(seconds=20))
        await s.commit()
    assert first.title == "Speedrun" and second.title == "My Channel"
    async with db.session() as s:
        assert (await s.get(Channel, channel.id)).total_streams == 2


async def test_start_stream_bad_input(session: AsyncSession) -> None:
    with pytest.raises(NotFoundError, match="no channel with id 4242"):
        await queries.start_stream(session, 4242, T0)
    channel = await _channel(session)
    with pytest.raises(ValidationError, match="stream title"):
        await queries.start_stream(session, channel.id, T0, title=" ")
    with pytest.raises(ValidationError, match="stream title"):
        await queries.start_stream(session, channel.id, T0, title="t" * 141)


async def test_start_stream_ends_a_stale_live_row(db: Database) -> None:
    """A second start (takeover, or a crash leftover) leaves exactly one LIVE row."""
    async with db.session() as s:
        channel = await _channel(s)
        old = await queries.start_stream(s, channel.id, T0)
        await s.commit()
    async with db.session() as s:
        new = await queries.start_stream(s, channel.id, T0 + timedelta(seconds=30))
        await s.commit()
    async with db.session() as s:
        rows = (await s.execute(select(Stream).order_by(Stream.id))).scalars().all()
        assert [(r.id, r.status) for r in rows] == [
            (old.id, StreamStatus.OFFLINE),
            (new.id, StreamStatus.LIVE),
        ]
        assert rows[0].duration_seconds == 30
        assert (await queries.live_stream_for_channel(s, channel.id)).id == new.id
        # The ingest closing the old row later must not disturb anything.
        await queries.end_stream(s, old.id, T0 + timedelta(seconds=40))
        await s.commit()
        assert (await s.get(Stream, old.id)).duration_seconds == 30


async def test_database_allows_one_live_stream_per_channel(session: AsyncSession) -> None:
    channel = await _channel(session)
    await queries.start_stream(session, channel.id, T0)
    session.add(Stream(channel_id=channel.id, title="dup", status=StreamStatus.LIVE, started_at=T0))
    with pytest.raises(IntegrityError):
        await session.flush()


async def test_live_streams_on_other_channels_are_independent(session: AsyncSession) -> None:
    a = await _channel(session, "chan-a")
    b = await _channel(session, "chan-b")
    sa_ = await queries.start_stream(session, a.id, T0)
    sb = await queries.start_stream(session, b.id, T0)
    assert (await queries.live_stream_for_channel(session, a.id)).id == sa_.id
    assert (await queries.live_stream_for_channel(session, b.id)).id == sb.id
    assert await queries.live_stream_for_channel(session, 9999) is None


async def test_end_stream_twice_keeps_first_end_and_moves_status(session: AsyncSession) -> None:
    channel = await _channel(session)
    stream = await queries.start_stream(session, channel.id, T0)
    await queries.update_viewer_count(session, stream.id, 7)
    await queries.end_stream(session, stream.id, T0 + timedelta(seconds=60), StreamStatus.ENDING)
    ended = await queries.end_stream(
        session, stream.id, T0 + timedelta(seconds=75), StreamStatus.ARCHIVED
    )
    assert ended.status is StreamStatus.ARCHIVED
    assert ended.ended_at == T0 + timedelta(seconds=60) and ended.duration_seconds == 60
    assert ended.viewer_count == 0 and ended.peak_viewers == 7


async def test_end_stream_bad_input(session: AsyncSession) -> None:
    with pytest.raises(NotFoundError, match="no stream with id 77"):
        await queries.end_stream(session, 77, T0)
    channel = await _channel(session)
    stream = await queries.start_stream(session, channel.id, T0)
    with pytest.raises(ValidationError):
        await queries.end_stream(session, stream.id, T0, StreamStatus.LIVE)
    with pytest.raises(ValidationError):
        await queries.end_stream(session, stream.id, T0, "offline")  # type: ignore[arg-type]


async def test_end_stream_never_negative_duration(session: AsyncSession) -> None:
    channel = await _channel(session)
    stream = await queries.start_stream(session, channel.id, T0)
    ended = await queries.end_stream(session, stream.id, T0 - timedelta(seconds=5))
    assert ended.duration_seconds == 0


async def test_naive_datetimes_are_taken_as_utc(session: AsyncSession) -> None:
    channel = await _channel(session)
    stream = await queries.start_stream(session, channel.id, T0.replace(tzinfo=None))
    assert stream.started_at == T0
    await session.commit()
    await session.refresh(stream)
    assert stream.started_at == T0 and stream.started_at.tzinfo is not None


async def test_take_orphaned_streams(db: Database) -> None:
    async with db.session() as s:
        a = await _channel(s, "chan-a")
        b = await _channel(s, "chan-b")
        c = await _channel(s, "chan-c")
        live = await queries.start_stream(s, a.id, T0)
        await queries.update_viewer_count(s, live.id, 7)
        ending = await queries.start_stream(s, b.id, T0)
        await queries.end_stream(s, ending.id, T0 + timedelta(seconds=5), StreamStatus.ENDING)
        done = await queries.start_stream(s, c.id, T0)
        await queries.end_stream(s, done.id, T0 + timedelta(seconds=8), StreamStatus.ARCHIVED)
        await s.commit()
    async with db.session() as s:
        orphans = await queries.take_orphaned_streams(s)
        await s.commit()
    assert orphans == [
        queries.OrphanedStream(live.id, "chan-a", T0),
        queries.OrphanedStream(ending.id, "chan-b", T0),
    ]
    async with db.session() as s:
        rows = {r.id: r for r in (await s.execute(select(Stream))).scalars()}
        # Out of LIVE (the channel may go live again), but the end time is recovery's to give.
        assert rows[live.id].status is StreamStatus.ENDING
        assert rows[live.id].ended_at is None and rows[live.id].viewer_count == 0
        assert rows[ending.id].status is StreamStatus.ENDING
        assert rows[ending.id].ended_at == T0 + timedelta(seconds=5)
        assert rows[done.id].status is StreamStatus.ARCHIVED
        # A new stream of the channel starts without touching the orphan.
        again = await queries.start_stream(s, a.id, T0 + timedelta(hours=1))
        await s.commit()
        assert again.status is StreamStatus.LIVE
        assert (await s.get(Stream, live.id)).status is StreamStatus.ENDING
    async with db.session() as s:
        # Recovery ends it at the time media last reached the disk.
        ended = await queries.end_stream(
            s, live.id, T0 + timedelta(seconds=30), StreamStatus.ARCHIVED
        )
        assert ended.ended_at == T0 + timedelta(seconds=30) and ended.duration_seconds == 30
        await s.commit()
        assert [o.id for o in await queries.take_orphaned_streams(s)] == [ending.id, again.id]


async def test_set_stream_source_info(db: Database) -> None:
    info = {
        "video": {"codec": "h264", "width": 1920, "height": 1080, "fps": 29.97},
        "audio": {"codec": "aac", "sample_rate": 48000, "channels": 2},
        "encoder": "obs",
    }
    async with db.session() as s:
        channel = await _channel(s)
        stream = await queries.start_stream(s, channel.id, T0)
        await queries.set_stream_source_info(s, stream.id, info)
        await s.commit()
    async with db.session() as s:
        assert (await s.get(Stream, stream.id)).source_info == info
        await queries.set_stream_source_info(s, stream.id, {"video": None})
        await s.commit()
    async with db.session() as s:
        assert (await s.get(Stream, stream.id)).source_info == {"video": None}
        with pytest.raises(NotFoundError):
            await queries.set_stream_source_info(s, 999, info)
        with pytest.raises(ValidationError):
            await queries.set_stream_source_info(s, stream.id, {"bad": object()})
        with pytest.raises(ValidationError):
            await queries.set_stream_source_info(s, stream.id, {"nan": float("nan")})
        with pytest.raises(ValidationError):
            await queries.set_stream_source_info(s, stream.id, ["not", "a", "dict"])  # type: ignore[arg-type]


async def test_update_viewer_count_tracks_peak(session: AsyncSession) -> None:
    channel = await _channel(session)
    stream = await queries.start_stream(session, channel.id, T0)
    for n in (3, 12, 5):
        await queries.update_viewer_count(session, stream.id, n)
    await session.refresh(stream)
    assert (stream.viewer_count, stream.peak_viewers) == (5, 12)
    with pytest.raises(ValidationError):
        await queries.update_viewer_count(session, stream.id, -1)
    with pytest.raises(NotFoundError):
        await queries.update_viewer_count(session, 999, 1)


async def test_deleting_a_user_cascades(db: Database) -> None:
    async with db.session() as s:
        channel = await _channel(s)
        await queries.start_stream(s, channel.id, T0)
        await queries.create_api_token(s, "alice")
        await s.commit()
    async with db.session() as s:
        user = await queries.get_user_by_username(s, "alice")
        await s.delete(user)
        await s.commit()
    async with db.session() as s:
        for model in (Channel, Stream, ApiToken, Profile):
            assert (await s.execute(select(model))).first() is None, model
