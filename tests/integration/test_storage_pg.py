"""The storage layer against a real PostgreSQL server (asyncpg), started for the test run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select, text

from storage import Database, queries, upgrade
from storage.db import head_revision
from storage.errors import ConflictError, ValidationError
from storage.models import Base, Channel, Stream, StreamStatus
from storage.passwords import verify_password
from storage.search_schema import include_object

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


async def test_postgres_migrate_and_core_queries(postgres_url: str) -> None:
    upgrade(postgres_url)
    upgrade(postgres_url)  # idempotent at head

    db = Database(postgres_url)
    await db.connect()
    try:
        async with db.session() as s:
            version = (await s.execute(text("SELECT version_num FROM alembic_version"))).all()
            assert version == [(head_revision(),)]
            user = await queries.create_user(
                s, "alice", "alice@example.org", "pg-password-1", is_admin=True
            )
            channel = await queries.create_channel(s, "alice", "alice-live", "Alice on PG")
            other = await queries.create_channel(s, "alice", "alice-two")
            token = await queries.create_api_token(s, "alice")
            await s.commit()
        assert verify_password(user.password_hash, "pg-password-1")

        async with db.session() as s:
            with pytest.raises(ConflictError):
                await queries.create_user(s, "alice", "other@example.org", None)
            with pytest.raises(ConflictError):
                await queries.create_channel(s, "alice", "alice-live")
            with pytest.raises(ValidationError):
                await queries.create_channel(s, "alice", "Bad Slug")

        async with db.session() as s:
            found = await queries.find_channel_by_stream_key(s, channel.stream_key)
            assert found is not None and found.id == channel.id
            found_other = await queries.find_channel_by_stream_key(s, other.stream_key)
            assert found_other is not None and found_other.id == other.id
            assert await queries.find_channel_by_stream_key(s, channel.stream_key + "x") is None
            assert await queries.find_channel_by_stream_key(s, "live_wrong") is None
            assert (await queries.find_user_by_token(s, token)).id == user.id

            stream = await queries.start_stream(s, channel.id, T0)
            await queries.set_stream_source_info(s, stream.id, {"video": {"codec": "h264"}})
            await queries.update_viewer_count(s, stream.id, 4)
            await s.commit()
        assert stream.status is StreamStatus.LIVE

        async with db.session() as s:
            live = await queries.live_stream_for_channel(s, channel.id)
            assert live is not None and live.id == stream.id
            assert live.started_at == T0 and live.started_at.tzinfo is not None
            ended = await queries.end_stream(
                s, stream.id, T0 + timedelta(seconds=125), StreamStatus.ARCHIVED
            )
            assert ended.duration_seconds == 125
            await s.commit()

        async with db.session() as s:
            row = await s.get(Stream, stream.id)
            assert row.status is StreamStatus.ARCHIVED
            assert row.ended_at == T0 + timedelta(seconds=125)
            assert row.source_info == {"video": {"codec": "h264"}}
            assert row.peak_viewers == 4 and row.viewer_count == 0
            assert (await s.get(Channel, channel.id)).total_streams == 1
            assert await queries.live_stream_for_channel(s, channel.id) is None
            raw = (await s.execute(text("SELECT status FROM streams"))).scalar_one()
            assert raw == "archived"

        # Crash recovery and the one-LIVE-row-per-channel rule on PostgreSQL too.
        async with db.session() as s:
            a = await queries.start_stream(s, other.id, T0)
            b = await queries.start_stream(s, other.id, T0 + timedelta(seconds=1))
            await s.commit()
        async with db.session() as s:
            statuses = dict(
                (
                    await s.execute(
                        select(Stream.id, Stream.status).where(Stream.channel_id == other.id)
                    )
                ).all()
            )
            assert statuses == {a.id: StreamStatus.OFFLINE, b.id: StreamStatus.LIVE}
            s.add(Stream(channel_id=other.id, title="dup", status=StreamStatus.LIVE, started_at=T0))
            with pytest.raises(sa.exc.IntegrityError):
                await s.flush()
            await s.rollback()
        async with db.session() as s:
            assert [o.id for o in await queries.take_orphaned_streams(s)] == [b.id]
            await s.commit()
    finally:
        await db.dispose()


def test_postgres_schema_matches_models(postgres_url: str) -> None:
    import asyncio

    from storage.db import create_engine

    upgrade(postgres_url)

    async def diffs() -> list[object]:
        engine = create_engine(postgres_url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(
                    lambda c: list(
                        compare_metadata(
                            MigrationContext.configure(
                                c, opts={"compare_type": True, "include_object": include_object}
                            ),
                            Base.metadata,
                        )
                    )
                )
        finally:
            await engine.dispose()

    assert asyncio.run(diffs()) == []


def test_postgres_upgrade_leaves_planner_statistics_for_added_columns(postgres_url: str) -> None:
    """Migration 0008 added ``streams.visibility`` and ``deleted_at`` without rewriting a row,
    so PostgreSQL had no statistics for them and planned the past-broadcasts listing for one
    row (130 ms on the discovery benchmark's seed instead of 2); 0016 analyzes the database."""
    import asyncio

    from alembic import command

    from storage.db import alembic_config

    command.upgrade(alembic_config(postgres_url), "0015")  # the models are 0015's schema too

    async def fill() -> None:
        db = Database(postgres_url)
        await db.connect()
        try:
            async with db.session() as s:
                # Autovacuum could analyze the new rows at any moment: off for this table, so
                # the statistics seen after the upgrade are the migration's.
                await s.execute(text("ALTER TABLE streams SET (autovacuum_enabled = false)"))
                await queries.create_user(s, "owner", "owner@example.org", None)
                channel = await queries.create_channel(s, "owner", "one")
                s.add_all(
                    Stream(
                        public_id=f"p{i}",
                        title=f"Broadcast {i}",
                        channel_id=channel.id,
                        status=StreamStatus.ARCHIVED,
                        started_at=T0 + timedelta(minutes=i),
                    )
                    for i in range(500)
                )
                await s.commit()
        finally:
            await db.dispose()

    async def analyzed() -> set[str]:
        db = Database(postgres_url)
        await db.connect()
        try:
            async with db.session() as s:
                rows = await s.execute(
                    text("SELECT attname FROM pg_stats WHERE tablename = 'streams'")
                )
                return {r[0] for r in rows}
        finally:
            await db.dispose()

    asyncio.run(fill())
    assert "visibility" not in asyncio.run(analyzed())  # nothing has analyzed the table yet
    upgrade(postgres_url)
    assert {"visibility", "deleted_at", "status", "started_at"} <= asyncio.run(analyzed())
