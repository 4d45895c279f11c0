"""Migrations on a real SQLite file: fresh upgrade, idempotence, schema equals the models."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from storage import Database, upgrade
from storage.db import current_revision, head_revision
from storage.models import Base
from storage.search_schema import SQLITE_SEARCH_TABLES, SQLITE_TRIGGERS, include_object

EXPECTED_TABLES = {
    "users",
    "profiles",
    "api_tokens",
    "channels",
    "streams",
    "messages",
    "follows",
    "channel_follows",
    "blocks",
    "reports",
    "sessions",
    "alembic_version",
    # chat moderation (storage/chat_models.py, migration 0004)
    "channel_moderators",
    "channel_bans",
    "channel_timeouts",
    "chat_settings",
    # discovery and notifications (storage/discovery_models.py, migration 0006)
    "categories",
    "watch_sessions",
    "notifications",
    "notification_settings",
    "webhooks",
    "webhook_deliveries",
    # creator tools (storage/creator_models.py, migration 0008)
    "stream_chapters",
    "media_views",
    "clips",
    # analytics (storage/analytics_models.py, migration 0009)
    "analytics_samples",
    "analytics_watch",
    "analytics_streams",
    "analytics_channel_hours",
    "analytics_channel_days",
    # restreaming (storage/restream_models.py, migration 0010)
    "restream_destinations",
    # channel points (storage/points_models.py, migration 0012)
    "point_settings",
    "point_balances",
    "point_ledger",
    "point_rewards",
    "point_redemptions",
    "predictions",
    "prediction_outcomes",
    "prediction_stakes",
    # emotes (storage/emote_models.py, migration 0011)
    "emotes",
    # polls (storage/poll_models.py, migration 0013)
    "polls",
    "poll_votes",
    # raids and chat extras (storage/raid_models.py, migration 0014)
    "channel_extras",
    "raids",
    # community channels (storage/community_models.py, migration 0015)
    "community_topics",
    "community_messages",
    "community_reads",
} | set(SQLITE_SEARCH_TABLES)  # full-text search (storage/search_schema.py, migration 0007)


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def table_names(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def test_upgrade_creates_schema_on_fresh_file_and_parent_dirs(tmp_path: Path) -> None:
    db_file = tmp_path / "nested" / "dir" / "aethex.db"
    upgrade(sqlite_url(db_file))
    assert db_file.exists()
    assert table_names(db_file) == EXPECTED_TABLES
    assert head_revision() == "0016"
    assert current_revision(sqlite_url(db_file)) == head_revision()


def test_upgrade_is_idempotent_and_keeps_data(tmp_path: Path) -> None:
    db_file = tmp_path / "aethex.db"
    url = sqlite_url(db_file)
    upgrade(url)
    with sqlite3.connect(db_file) as conn:
        conn.execute(
            "INSERT INTO users (username, email, password_hash, created_at) "
            "VALUES ('keep', 'keep@example.org', '!x', '2025-01-01 00:00:00')"
        )
    upgrade(url)
    upgrade(url)
    assert current_revision(url) == head_revision()
    with sqlite3.connect(db_file) as conn:
        assert conn.execute("SELECT username FROM users").fetchall() == [("keep",)]
        assert conn.execute("SELECT count(*) FROM alembic_version").fetchone() == (1,)


def _diffs(db_file: Path) -> list[object]:
    engine = sa.create_engine(f"sqlite:///{db_file}")
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(
                conn,
                opts={
                    "compare_type": True,
                    "compare_server_default": True,
                    "include_object": include_object,
                },
            )
            return list(compare_metadata(ctx, Base.metadata))
    finally:
        engine.dispose()


def test_migration_matches_models(tmp_path: Path) -> None:
    db_file = tmp_path / "aethex.db"
    upgrade(sqlite_url(db_file))
    assert _diffs(db_file) == []


def test_compare_would_notice_a_drift(tmp_path: Path) -> None:
    """Guard for the test above: a real difference must show up as a diff."""
    db_file = tmp_path / "aethex.db"
    upgrade(sqlite_url(db_file))
    with sqlite3.connect(db_file) as conn:
        conn.execute("DROP INDEX ix_channels_stream_key_hash")
        conn.execute("ALTER TABLE streams DROP COLUMN vod_path")
    diffs = _diffs(db_file)
    kinds = {d[0] if isinstance(d, tuple) else d[0][0] for d in diffs}
    assert "add_index" in kinds and "add_column" in kinds


async def test_upgrade_inside_running_event_loop(tmp_path: Path) -> None:
    db_file = tmp_path / "aethex.db"
    upgrade(sqlite_url(db_file))  # sync call from async code must not crash on asyncio.run
    assert "streams" in table_names(db_file)


async def test_database_pragmas_wal_foreign_keys_busy_timeout(tmp_path: Path) -> None:
    db_file = tmp_path / "aethex.db"
    url = sqlite_url(db_file)
    upgrade(url)
    db = Database(url)
    await db.connect()
    try:
        async with db.session() as s:
            assert (await s.execute(text("PRAGMA journal_mode"))).scalar_one() == "wal"
            assert (await s.execute(text("PRAGMA foreign_keys"))).scalar_one() == 1
            assert (await s.execute(text("PRAGMA busy_timeout"))).scalar_one() >= 1000
    finally:
        await db.dispose()
    # WAL is a property of the file: a plain sqlite3 connection sees it too.
    with sqlite3.connect(db_file) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_database_connect_creates_dir_and_session_requires_connect(tmp_path: Path) -> None:
    db = Database(sqlite_url(tmp_path / "new" / "x.db"))
    with pytest.raises(RuntimeError, match="connect"):
        async with db.session():
            pass
    async with db:
        async with db.session() as s:
            assert (await s.execute(text("SELECT 1"))).scalar_one() == 1
    assert (tmp_path / "new" / "x.db").exists()


async def test_database_connect_fails_early_on_bad_location(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    db = Database(sqlite_url(blocker / "x.db"))
    with pytest.raises(Exception):  # noqa: B017 - whichever error the driver raises
        await db.connect()


async def test_concurrent_writers_wait_instead_of_failing(tmp_path: Path) -> None:
    """Separate connections writing at once: busy_timeout makes them queue, not error."""
    import asyncio

    from storage import queries

    url = sqlite_url(tmp_path / "aethex.db")
    upgrade(url)
    db = Database(url)
    await db.connect()
    try:

        async def writer(i: int) -> None:
            async with db.session() as s:
                await queries.create_user(s, f"user_{i}", f"u{i}@example.org", None)
                await queries.create_channel(s, f"user_{i}", f"chan-{i}")
                await asyncio.sleep(0.01)  # hold the write lock across an await
                await s.commit()

        await asyncio.gather(*(writer(i) for i in range(8)))
        async with db.session() as s:
            assert await queries.count_users(s) == 8
    finally:
        await db.dispose()


def test_0005_gives_existing_streams_distinct_public_ids(tmp_path: Path) -> None:
    """Streams recorded before 0005 get their unguessable link too; the table rebuild that
    makes the column NOT NULL keeps the partial index (one live stream per channel)."""
    from alembic import command

    from storage.db import alembic_config

    db_file = tmp_path / "aethex.db"
    url = sqlite_url(db_file)
    command.upgrade(alembic_config(url), "0004")
    with sqlite3.connect(db_file) as conn:
        conn.execute(
            "INSERT INTO users (id, username, email, password_hash, created_at) "
            "VALUES (1, 'old', 'old@example.org', '!x', '2025-01-01 00:00:00')"
        )
        conn.execute(
            "INSERT INTO channels (id, owner_id, slug, name, description, tags, "
            "stream_key, stream_key_hash, created_at, updated_at) VALUES (1, 1, "
            "'old', 'Old', '', '[]', 'k', 'h', '2025-01-01 00:00:00', "
            "'2025-01-01 00:00:00')"
        )
        for i in (1, 2, 3):
            conn.execute(
                "INSERT INTO streams (id, channel_id, title, status) "
                "VALUES (?, 1, 't', 'archived')",
                (i,),
            )
    upgrade(url)
    with sqlite3.connect(db_file) as conn:
        ids = [row[0] for row in conn.execute("SELECT public_id FROM streams")]
        live_index = conn.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'uq_streams_channel_id_live'"
        ).fetchone()
    assert len(ids) == len(set(ids)) == 3
    assert all(len(public_id) == 22 for public_id in ids)
    assert live_index is not None and "WHERE" in live_index[0]
    assert _diffs(db_file) == []


def test_0006_moves_free_text_categories_into_the_catalogue_and_loses_no_child_row(
    tmp_path: Path,
) -> None:
    """Existing categories become catalogue entries (matched to the starter set without regard
    to case), channels and streams point at them, and the table rebuilds lose nothing: with
    foreign keys on, a rebuilt parent table would cascade-delete its streams, messages and
    follows (env.py turns them off for the migration and checks afterwards)."""
    from alembic import command

    from storage.db import alembic_config

    db_file = tmp_path / "aethex.db"
    url = sqlite_url(db_file)
    command.upgrade(alembic_config(url), "0005")
    with sqlite3.connect(db_file) as conn:
        conn.execute(
            "INSERT INTO users (id, username, email, password_hash, created_at) "
            "VALUES (1, 'old', 'old@example.org', '!x', '2025-01-01 00:00:00')"
        )
        for cid, category in ((1, "music"), (2, "Factorio"), (3, None)):
            conn.execute(
                "INSERT INTO channels (id, owner_id, slug, name, description, category, tags, "
                "stream_key, stream_key_hash, created_at, updated_at) VALUES (?, 1, ?, 'C', '', "
                "?, '[]', ?, ?, '2025-01-01 00:00:00', '2025-01-01 00:00:00')",
                (cid, f"c{cid}", category, f"k{cid}", f"h{cid}"),
            )
        conn.execute(
            "INSERT INTO streams (id, public_id, channel_id, title, category, status) "
            "VALUES (1, 'p1', 2, 't', 'Factorio', 'archived')"
        )
        conn.execute(
            "INSERT INTO messages (id, stream_id, channel_id, user_id, content, created_at) "
            "VALUES (1, 1, 2, 1, 'hi', '2025-01-01 00:00:00')"
        )
        conn.execute(
            "INSERT INTO channel_follows (user_id, channel_id, created_at) "
            "VALUES (1, 2, '2025-01-01 00:00:00')"
        )
    upgrade(url)
    with sqlite3.connect(db_file) as conn:
        names = dict(conn.execute("SELECT name, id FROM categories").fetchall())
        assert "Music" in names and "Just Chatting" in names and "Factorio" in names
        assert "music" not in names  # matched to the starter entry, not duplicated
        channels = dict(conn.execute("SELECT id, category_id FROM channels").fetchall())
        assert channels == {1: names["Music"], 2: names["Factorio"], 3: None}
        assert conn.execute("SELECT category_id FROM streams").fetchall() == [(names["Factorio"],)]
        assert conn.execute("SELECT stream_id FROM messages").fetchall() == [(1,)]
        assert conn.execute("SELECT notify FROM channel_follows").fetchall() == [(1,)]
        slugs = [row[0] for row in conn.execute("SELECT slug FROM categories")]
        assert "factorio" in slugs and "science-technology" in slugs
        assert len(slugs) == len(set(slugs))
    assert current_revision(url) == head_revision()


def test_search_triggers_exist_at_head_and_backfill_existing_rows(tmp_path: Path) -> None:
    """0007 indexes the rows already there, and every trigger that keeps the search index
    current exists at head (a later migration rebuilding an indexed table drops its triggers:
    this is where that shows)."""
    from alembic import command

    from storage.db import alembic_config

    db_file = tmp_path / "aethex.db"
    url = sqlite_url(db_file)
    command.upgrade(alembic_config(url), "0006")
    with sqlite3.connect(db_file) as conn:
        conn.execute(
            "INSERT INTO users (id, username, email, password_hash, created_at) "
            "VALUES (1, 'oldtimer', 'old@example.org', '!x', '2025-01-01 00:00:00')"
        )
        conn.execute(
            "INSERT INTO channels (id, owner_id, slug, name, description, tags, "
            "stream_key, stream_key_hash, created_at, updated_at) VALUES (1, 1, "
            "'old', 'Factorio Marathon', '', '[\"Belts\"]', 'k', 'h', '2025-01-01 00:00:00', "
            "'2025-01-01 00:00:00')"
        )
    upgrade(url)
    with sqlite3.connect(db_file) as conn:
        triggers = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'")
        }
        assert set(SQLITE_TRIGGERS) <= triggers
        found = conn.execute(
            "SELECT rowid FROM search_channels WHERE search_channels MATCH 'belts'"
        ).fetchall()
        assert found == [(1,)]
        found = conn.execute(
            "SELECT rowid FROM search_users WHERE search_users MATCH 'oldtim*'"
        ).fetchall()
        assert found == [(1,)]
