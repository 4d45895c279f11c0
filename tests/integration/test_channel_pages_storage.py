"""storage.channel_pages on SQLite and on a real PostgreSQL: past broadcasts page by keyset
without skipping or repeating one (start times that tie to the microsecond included), only
ended broadcasts count, last live, catalogue category names, and public profiles that hide
disabled users and unlisted channels."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, select, update

from storage import Database, queries, upgrade
from storage.channel_pages import (
    Cursor,
    channel_category,
    last_live_at,
    parse_cursor,
    past_broadcasts,
    public_profile,
)
from storage.discovery_models import Category
from storage.errors import ValidationError
from storage.models import StreamStatus, User

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture
def db(db_on_both: Database) -> Database:
    """The test's database, on SQLite and on PostgreSQL (tests/conftest.py)."""
    return db_on_both


async def test_past_broadcasts_pages_and_profiles(db: Database) -> None:
    async with db.session() as s:
        await queries.create_user(s, "ana", "ana@example.org", "pg-password-1")
        channel = await queries.create_channel(s, "ana", "ana-tv")
        hidden = await queries.create_channel(s, "ana", "ana-hidden")
        hidden.is_public = False
        never = await queries.create_channel(s, "ana", "ana-never")
        assert await last_live_at(s, never.id) is None
        starts = [T0, T0 + timedelta(minutes=1), T0 + timedelta(minutes=1), T0 + timedelta(hours=1)]
        ids = []
        for i, start in enumerate(starts):
            row = await queries.start_stream(s, channel.id, start, title=f"run {i}")
            status = StreamStatus.ARCHIVED if i % 2 else StreamStatus.OFFLINE
            await queries.end_stream(s, row.id, start + timedelta(seconds=30), status)
            ids.append(row.id)
        await queries.start_stream(s, channel.id, T0 + timedelta(days=1), title="on air")
        category = await s.scalar(select(Category).where(Category.name == "Music"))
        assert category is not None
        channel.category_id = category.id
        await s.commit()

        seen: list[int] = []
        cursor = None
        for _ in range(3):
            page = await past_broadcasts(s, channel.id, limit=1, before=cursor)
            seen += [b.id for b in page.broadcasts]
            cursor = page.next_cursor
            if cursor is not None:  # a cursor survives its trip through a URL
                cursor = parse_cursor(cursor.encode())
        page = await past_broadcasts(s, channel.id, limit=1, before=cursor)
        seen += [b.id for b in page.broadcasts]
        assert page.next_cursor is None
        assert seen[0] == ids[3] and seen[-1] == ids[0] and sorted(seen) == sorted(ids)
        whole = await past_broadcasts(s, channel.id, limit=10)
        assert [b.id for b in whole.broadcasts] == seen and whole.next_cursor is None
        assert await last_live_at(s, channel.id) == starts[3] + timedelta(seconds=30)
        found_category = await channel_category(s, channel)
        assert found_category is not None and found_category.name == "Music"
        assert found_category.slug == category.slug
        with pytest.raises(ValidationError):
            await past_broadcasts(s, channel.id, limit=0)
        for bad in ("", "1", "abc.AAAAAAAAAAAAAAAAAAAAAA", "1.AAAA", "99999999999999999999.x"):
            with pytest.raises(ValidationError):
                parse_cursor(bad)

        found = await public_profile(s, "ana", max_channels=10)
        assert found is not None
        assert [c.slug for c in found.channels] == ["ana-tv", "ana-never"]
        assert hidden.slug not in [c.slug for c in found.channels]
        assert await public_profile(s, "Ana", max_channels=10) is None
        assert await public_profile(s, "nobody", max_channels=10) is None
        await s.execute(update(User).where(User.username == "ana").values(is_disabled=True))
        await s.commit()
        assert await public_profile(s, "ana", max_channels=10) is None


async def test_channel_page_queries_walk_indexes(tmp_path: Path) -> None:
    """SQLite's own plan of every query the channel home and the profile make: each row
    lookup goes through an index (``SEARCH ... USING INDEX``), never a scan of a table."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'plans.db'}"
    upgrade(url)
    database = Database(url)
    await database.connect()
    seen: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    event.listen(database.engine.sync_engine, "before_cursor_execute", record)
    try:
        async with database.session() as s:
            await queries.create_user(s, "bea", "bea@example.org", "pg-password-1")
            channel = await queries.create_channel(s, "bea", "bea-tv")
            row = await queries.start_stream(s, channel.id, T0, title="one")
            await queries.end_stream(s, row.id, T0 + timedelta(seconds=5))
            await s.commit()
            seen.clear()
            page = await past_broadcasts(s, channel.id, limit=5)
            cursor = Cursor(T0 + timedelta(days=1), "A" * 22)
            await past_broadcasts(s, channel.id, limit=5, before=cursor)
            await last_live_at(s, channel.id)
            await public_profile(s, "bea", max_channels=5)
            assert page.broadcasts
            statements = list(seen)
            plans = []
            for statement, parameters in statements:
                connection = await s.connection()
                result = await connection.exec_driver_sql(
                    "EXPLAIN QUERY PLAN " + statement, tuple(parameters)
                )
                plans.append(" | ".join(str(r[-1]) for r in result.all()))
    finally:
        await database.dispose()
    assert len(plans) >= 4, plans
    for statement_plan in plans:
        assert " SCAN streams" not in f" {statement_plan}", statement_plan
        assert " SCAN channels" not in f" {statement_plan}", statement_plan
        assert " SCAN users" not in f" {statement_plan}", statement_plan
    streams_plans = [p for p in plans if "streams" in p]
    assert streams_plans and all("ix_streams_channel_id_started_at" in p for p in streams_plans)
    # A later page starts its range at the cursor, not at the newest broadcast.
    assert any("started_at<?" in p for p in streams_plans), streams_plans
