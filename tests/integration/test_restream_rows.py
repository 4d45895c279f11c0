"""When the restream manager reads the destination rows (issue 14): not at every refresh.

On one node every edit goes through this process's API, which reports it (``changed``), so a
refresh reads the rows only after such a report, when the live channels change, or once the
30 s recheck has passed (a row edited by hand). In a cluster the web nodes edit them, so every
refresh reads. Counted as statements on the destinations table, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import event

from mediaserver.live import LiveRegistry
from mediaserver.restream.manager import ROWS_RECHECK, RestreamManager
from mediaserver.settings import RestreamSettings
from storage import Database, queries
from storage import restream as store

pytestmark = pytest.mark.integration


@contextmanager
def statements(db: Database) -> Iterator[list[str]]:
    """The SQL statements run while the block is open."""
    seen: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    engine = db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", before)


async def reads(manager: RestreamManager, db: Database) -> int:
    """Run one refresh; how many times it read the destination rows."""
    with statements(db) as seen:
        await manager.refresh()
    return sum("restream_destinations" in s for s in seen)


async def add_destination(db: Database, channel_id: int, name: str) -> int:
    async with db.session() as s:
        row = await store.create_destination(
            s,
            channel_id,
            name=name,
            preset="custom",
            # Nothing listens there: the relay started for it retries, which is all this needs.
            ingest_url="rtmp://127.0.0.1:9/live",
            stream_key=f"key-{name}",
        )
        await s.commit()
        return row.id


async def test_rows_are_read_when_an_edit_is_reported_or_the_recheck_is_due(
    db_on_both: Database,
) -> None:
    db = db_on_both
    async with db.session() as s:
        await queries.create_user(s, "ann", "ann@example.test", None)
        await queries.create_user(s, "ben", "ben@example.test", None)
        ann = await queries.create_channel(s, "ann", "ann-live")
        ben = await queries.create_channel(s, "ben", "ben-live")
        await s.commit()
    now = [1000.0]
    registry = LiveRegistry()
    manager = RestreamManager(
        RestreamSettings(), db, registry, CollectorRegistry(), clock=lambda: now[0]
    )
    try:
        assert await reads(manager, db) == 0  # nothing live: nothing to read
        registry.start(channel_id=ann.id, slug=ann.slug, stream_id=1, started_at=datetime.now(UTC))
        assert await reads(manager, db) == 1  # a channel went live
        assert await reads(manager, db) == 0  # nothing changed since
        assert await reads(manager, db) == 0

        # A row added behind the manager's back (no report) waits for the recheck.
        first = await add_destination(db, ann.id, "first")
        assert await reads(manager, db) == 0
        assert manager.relays == {}
        now[0] += ROWS_RECHECK
        assert await reads(manager, db) == 1
        assert set(manager.relays) == {(1, first)}
        assert await reads(manager, db) == 0

        # One added through the API is reported, and read at the next refresh.
        second = await add_destination(db, ann.id, "second")
        manager.changed(ann.id)
        assert await reads(manager, db) == 1
        assert set(manager.relays) == {(1, first), (1, second)}
        assert await reads(manager, db) == 0

        # A report about a channel that is not live reads nothing: its go-live will.
        manager.changed(ben.id)
        assert await reads(manager, db) == 0
        registry.start(channel_id=ben.id, slug=ben.slug, stream_id=2, started_at=datetime.now(UTC))
        assert await reads(manager, db) == 1
    finally:
        await manager.stop()


async def test_in_a_cluster_every_refresh_reads_the_rows(db_on_both: Database) -> None:
    """Web nodes edit destinations there, and only the rows tell the origin."""
    db = db_on_both
    async with db.session() as s:
        await queries.create_user(s, "cyd", "cyd@example.test", None)
        cy = await queries.create_channel(s, "cyd", "cyd-live")
        await s.commit()
    now = [1000.0]
    registry = LiveRegistry()
    settings = RestreamSettings()
    manager = RestreamManager(
        settings, db, registry, CollectorRegistry(), edited_elsewhere=True, clock=lambda: now[0]
    )
    try:
        registry.start(channel_id=cy.id, slug=cy.slug, stream_id=7, started_at=datetime.now(UTC))
        assert await reads(manager, db) == 1
        now[0] += settings.refresh_interval
        assert await reads(manager, db) == 1
        assert manager.relays == {}
        made = await add_destination(db, cy.id, "elsewhere")  # as another node's API would
        now[0] += settings.refresh_interval
        assert await reads(manager, db) == 1
        assert set(manager.relays) == {(7, made)}
    finally:
        await manager.stop()
