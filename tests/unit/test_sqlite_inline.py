"""Short SQLite reads on the loop's thread (storage/sqlite_inline.py): the same answers as
aiosqlite's thread gives, no hand-off for a read-only session's reads, and every case that must
not run inline (writes, reads in a write transaction, over the budget, a locked file, what the
reader connection lacks) answered by the thread."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from storage.db import create_engine
from storage.sqlite_inline import InlineReadConnection, inline_creator

ROWS = 3000


def _seed(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, blob BLOB, maybe REAL)")
    conn.executemany(
        "INSERT INTO t VALUES (?, ?, ?, ?)",
        [(i, f"name {i}", bytes([i % 256]) * 3, None if i % 3 else i / 7) for i in range(ROWS)],
    )
    conn.commit()
    conn.close()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    path = tmp_path / "inline.db"
    _seed(path)
    return path


@pytest.fixture
async def engines(db_path: Path) -> AsyncIterator[tuple[AsyncEngine, AsyncEngine]]:
    """(inline, aiosqlite's own way) on the same file. The budget, 100 ms of CPU, is some 100
    times what the test's reads take (a 3,000-row scan); the slow read takes 100 times more."""
    inline = create_engine(f"sqlite+aiosqlite:///{db_path}", 100.0)
    threaded = create_engine(f"sqlite+aiosqlite:///{db_path}", 0.0)
    yield inline, threaded
    await inline.dispose()
    await threaded.dispose()


async def _driver(session: AsyncSession) -> InlineReadConnection:
    raw = await (await session.connection()).get_raw_connection()
    driver = raw.driver_connection
    assert isinstance(driver, InlineReadConnection)
    return driver


READS: list[tuple[str, dict[str, Any]]] = [
    ("SELECT * FROM t WHERE id = :id", {"id": 7}),
    ("SELECT id, name, blob, maybe FROM t WHERE id < :n ORDER BY id DESC", {"n": 50}),
    ("SELECT count(*), sum(id), max(name) FROM t", {}),
    ("SELECT * FROM t WHERE name = :name", {"name": "nobody"}),
    ("SELECT maybe FROM t WHERE id IN (0, 1, 3, 6) ORDER BY id", {}),
]


async def test_reads_answer_as_the_thread_does_without_a_hand_off(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    inline, threaded = engines
    async with AsyncSession(inline) as s, AsyncSession(threaded) as ref:
        driver = await _driver(s)
        queued = driver._queued
        for sql, params in READS:
            got = (await s.execute(text(sql), params)).all()
            want = (await ref.execute(text(sql), params)).all()
            assert got == want and (got or "nobody" in str(params))
        one = (await s.execute(text("SELECT name FROM t WHERE id = 5"))).scalar_one()
        assert one == "name 5"
        part = await s.stream(text("SELECT id FROM t ORDER BY id LIMIT 10"))
        assert [row[0] async for row in part] == list(range(10))
        assert driver._queued == queued, "a read-only session's reads went to the thread"
    # The session ended without a hand-off either (nothing to roll back).
    assert driver._queued == queued


async def test_writes_and_reads_in_a_write_transaction_use_the_thread(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    inline, _ = engines
    async with AsyncSession(inline) as s:
        driver = await _driver(s)
        queued = driver._queued
        await s.execute(text("UPDATE t SET name = 'renamed' WHERE id = 1"))
        assert driver._queued == queued + 1
        # In the transaction: its own uncommitted write, read on the main connection (two
        # hand-offs: execute, fetch).
        assert (await s.execute(text("SELECT name FROM t WHERE id = 1"))).scalar() == "renamed"
        assert driver._queued == queued + 3
        await s.commit()
    async with AsyncSession(inline) as s:
        assert (await s.execute(text("SELECT name FROM t WHERE id = 1"))).scalar() == "renamed"


async def test_a_read_over_the_budget_is_answered_by_the_thread_and_remembered(
    db_path: Path,
) -> None:
    # 3,000 x 1,000 row pairs: a few hundred ms of CPU, some 100 times the 2 ms budget.
    slow = "SELECT count(*) FROM t AS a, t AS b WHERE a.id + b.id = :n AND b.id < 1000"
    engine = create_engine(f"sqlite+aiosqlite:///{db_path}", 2.0)
    try:
        async with AsyncSession(engine) as s:
            driver = await _driver(s)
            queued = driver._queued
            assert (await s.execute(text(slow), {"n": 10})).scalar() == 11
            assert driver._queued == queued + 2  # interrupted inline; execute, fetch on the thread
            assert not driver._slow.texts  # one overrun may be a cold cache
            assert (await s.execute(text(slow), {"n": 9})).scalar() == 10
            assert driver._queued == queued + 4  # interrupted again: now a slow statement
            assert any("a.id + b.id" in sql for sql in driver._slow.texts)
            assert (await s.execute(text(slow), {"n": 2})).scalar() == 3
            assert driver._queued == queued + 6  # straight to the thread
            # Other reads still run inline.
            assert (await s.execute(text("SELECT id FROM t WHERE id = 3"))).scalar() == 3
            assert driver._queued == queued + 6
    finally:
        await engine.dispose()


async def test_a_locked_file_is_waited_for_on_the_thread(tmp_path: Path) -> None:
    """A reader of a file another connection holds exclusively is refused at once inline (no
    busy timeout there) and waits on the thread. WAL readers are refused only in rare moments
    (recovery), so the case is made in rollback-journal mode, where a writer's exclusive lock
    refuses every reader."""
    path = tmp_path / "journal.db"
    _seed(path)
    plain = sqlite3.connect(path)
    plain.execute("PRAGMA journal_mode=DELETE")
    plain.close()
    engine = create_async_engine(
        f"sqlite+aiosqlite:///{path}", async_creator=inline_creator(str(path), 0.1)
    )
    try:
        async with AsyncSession(engine) as s:
            driver = await _driver(s)
            queued = driver._queued
            holder = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            holder.execute("BEGIN EXCLUSIVE")
            read = asyncio.ensure_future(s.execute(text("SELECT name FROM t WHERE id = 9")))
            try:
                while driver._queued == queued:  # refused inline; now waiting on the thread
                    assert not read.done(), read.result()
                    await asyncio.sleep(0.01)
            finally:
                holder.execute("ROLLBACK")
                holder.close()
            assert (await read).scalar() == "name 9"
            assert not driver._slow.texts  # only the moment: it may run inline next time
            assert (await s.execute(text("SELECT name FROM t WHERE id = 8"))).scalar() == "name 8"
            assert driver._queued == queued + 2
    finally:
        await engine.dispose()


async def test_what_the_reader_lacks_is_answered_by_the_thread(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    inline, _ = engines
    async with AsyncSession(inline) as s:
        driver = await _driver(s)
        await driver.create_function("twice", 1, lambda v: v * 2)
        queued = driver._queued
        assert (await s.execute(text("SELECT twice(id) FROM t WHERE id = 4"))).scalar() == 8
        assert driver._queued == queued + 2
        # A syntax error is still the caller's error, as the thread gives it.
        with pytest.raises(Exception, match="syntax"):
            await s.execute(text("SELECT FROM WHERE"))
