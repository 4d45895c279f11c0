"""Short SQLite reads run on the event loop's own thread instead of aiosqlite's worker thread.

Why: aiosqlite runs every cursor call (create, execute, fetch, close) in the connection's
worker thread and wakes the event loop for each answer. For an indexed read that takes
microseconds in SQLite, those four hand-offs cost more than the read and the statement's
Python work together (measured: ~0.65 ms of CPU per statement through SQLAlchemy's
AsyncSession over aiosqlite, 0.010 ms for the read itself through ``sqlite3`` inline). Page
and API requests are made of such reads, so on SQLite the hand-offs were a large part of a
request's cost.

What runs inline, and why it cannot stall the loop:

- Only ``SELECT`` statements outside a transaction (a session that has not written yet: the
  driver begins a transaction at the first write), executed and fetched whole in one go, and
  only while no call of this connection is queued on its worker thread. They run on a second
  ``sqlite3`` connection of the same file, the reader, opened read-only (``query_only``) with
  no busy timeout. Outside a transaction each statement reads the latest committed state on
  either connection, so the answer is the one the thread would have given.
- Writes, reads inside a write transaction, ``executemany``, scripts and anything else keep
  the thread: a writer may wait up to the busy timeout for another writer's lock.
- A read in WAL mode waits for no other connection's lock in normal operation, but SQLite may
  answer "database is locked" in rare moments (another process recovering the WAL, an
  exclusive checkpoint). With no busy timeout on the reader such a read fails at once and is
  run again on the thread, where waiting is harmless.
- Each inline read has a budget of CPU time (``database.inline_read_ms``), enforced with
  SQLite's progress handler: a read that runs over is interrupted and run again on the thread,
  and from its second overrun on its SQL text goes to the thread directly (one overrun may be
  a cold cache). What an interrupted read costs the loop is bounded by the budget. Rows
  fetched whole within the budget are few. A new reader parses the schema on the thread
  before its first read, so that cost never counts against a read.
- Any other error of an inline read (a function or temporary table made on the main
  connection, a syntax error) also sends it to the thread, which gives the authentic answer
  or error; such a statement is remembered too.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

import aiosqlite
from aiosqlite.context import contextmanager

log = logging.getLogger(__name__)

# SQLite virtual-machine instructions between two looks at the clock during an inline read:
# a look costs a Python call (~0.3 us), a thousand instructions take tens of microseconds.
PROGRESS_STEPS = 1000
# At most this many distinct SQL texts are remembered as too slow to run inline (statements
# with IN lists of varying length have one text per length); past it the memory starts over.
MAX_SLOW_STATEMENTS = 4096


class SlowStatements:
    """SQL texts that must run on the thread, shared by a pool's connections: those that ran
    over the inline budget ``STRIKES`` times (one overrun may be a first statement's price or
    a cold page cache), or failed inline for what the reader lacks."""

    STRIKES = 2

    def __init__(self) -> None:
        self.texts: set[str] = set()
        self._overruns: dict[str, int] = {}

    def add(self, sql: str) -> None:
        if len(self.texts) >= MAX_SLOW_STATEMENTS:
            self.texts.clear()
        self.texts.add(sql)

    def overran(self, sql: str) -> bool:
        """Count an overrun of ``sql``; True when it is now one of the slow statements."""
        if len(self._overruns) >= MAX_SLOW_STATEMENTS:
            self._overruns.clear()
        n = self._overruns[sql] = self._overruns.get(sql, 0) + 1
        if n < self.STRIKES:
            return False
        self.add(sql)
        return True


def _is_select(sql: str) -> bool:
    return sql.lstrip()[:6].upper() == "SELECT"


class InlineReadConnection(aiosqlite.Connection):
    """An aiosqlite connection that runs short reads inline (see the module's docstring)."""

    def __init__(
        self,
        connector: Callable[[], sqlite3.Connection],
        reader_connector: Callable[[], sqlite3.Connection],
        budget_seconds: float,
        slow: SlowStatements,
    ) -> None:
        super().__init__(connector, iter_chunk_size=64)
        self._reader_connector = reader_connector
        self._reader: sqlite3.Connection | None = None
        self._budget = budget_seconds
        self._slow = slow
        self._deadline = 0.0
        self._queued = 0  # calls handed to the worker thread
        self._done = 0  # of those, finished (counted by the worker thread itself)

    async def _connect(self) -> InlineReadConnection:
        await super()._connect()
        if self._reader is None:
            # On the thread like the main connection (opening reads the file's header).
            self._reader = await self._threaded(self._open_reader)
        return self

    def _open_reader(self) -> sqlite3.Connection:
        reader = self._reader_connector()
        reader.execute("PRAGMA query_only=ON")
        # A connection parses the whole schema at its first statement: done here, on the
        # thread, so that the first read inline does not pay it (and run over its budget).
        reader.execute("SELECT name FROM sqlite_master LIMIT 1").fetchall()
        reader.set_progress_handler(self._over_budget, PROGRESS_STEPS)
        return reader

    async def close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()
        await super().close()

    # -- the thread ---------------------------------------------------------------------

    def _finished(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        finally:
            self._done += 1

    async def _threaded(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if not self._running or self._connection is None:
            return await super()._execute(fn, *args, **kwargs)  # raises "Connection closed"
        self._queued += 1
        return await super()._execute(self._finished, partial(fn, *args, **kwargs))

    def _idle(self) -> bool:
        """Nothing of this connection is on its worker thread: the loop may use it."""
        return self._queued == self._done and self._running and self._connection is not None

    async def _execute(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if self._idle() and not args and not kwargs:
            target = getattr(fn, "__self__", None)
            name = getattr(fn, "__name__", "")
            if target is self._connection:
                if name == "cursor":
                    return fn()
                if name in ("commit", "rollback") and not self._conn.in_transaction:
                    return None  # nothing to end: a read-only session's reset on return
            elif name == "close" and isinstance(target, sqlite3.Cursor):
                return fn()
        return await self._threaded(fn, *args, **kwargs)

    # -- inline reads -------------------------------------------------------------------

    def _over_budget(self) -> int:
        return 1 if time.thread_time() > self._deadline else 0

    def read_inline(self, sql: str, parameters: Any) -> tuple[sqlite3.Cursor, list[Any]] | None:
        """The reader's cursor and every row of ``sql``, or None: run it on the thread."""
        reader = self._reader
        if (
            reader is None
            or not self._idle()
            or self._conn.in_transaction
            or not _is_select(sql)
            or sql in self._slow.texts
        ):
            return None
        cursor = reader.cursor()
        # CPU time, not the clock: a read the machine merely paused is not a slow statement.
        self._deadline = time.thread_time() + self._budget
        try:
            cursor.execute(sql, parameters)
            return cursor, cursor.fetchall()
        except sqlite3.Error as exc:
            # Run again on the thread, which gives the authentic answer or error. Remembered
            # unless it was only the moment (locked): over budget, or what the reader lacks
            # (a function or temporary table made on the main connection).
            cursor.close()
            text = str(exc)
            if "locked" in text or "busy" in text:
                return None
            if text != "interrupted":
                self._slow.add(sql)
            elif not self._slow.overran(sql):
                return None
            log.debug("on the database thread from now on (%s): %.200s", text, sql)
            return None

    @contextmanager
    async def cursor(self) -> aiosqlite.Cursor:
        return InlineReadCursor(self, await self._execute(self._conn.cursor))


class InlineReadCursor(aiosqlite.Cursor):
    """A cursor whose reads may be answered inline: their rows are kept and handed out by the
    fetch calls; anything else goes to the connection's thread as usual."""

    _conn: InlineReadConnection

    def __init__(self, conn: InlineReadConnection, cursor: sqlite3.Cursor) -> None:
        super().__init__(conn, cursor)
        self._main = cursor
        self._rows: deque[Any] | None = None

    def _drop_inline(self) -> None:
        if self._cursor is not self._main:
            self._cursor.close()
            self._cursor = self._main
        self._rows = None

    async def execute(self, sql: str, parameters: Iterable[Any] | None = None) -> InlineReadCursor:
        self._drop_inline()
        if parameters is None:
            parameters = []
        answered = self._conn.read_inline(sql, parameters)
        if answered is not None:
            self._cursor, rows = answered
            self._rows = deque(rows)
            return self
        await self._execute(self._main.execute, sql, parameters)
        return self

    async def fetchone(self) -> Any:
        if self._rows is None:
            return await super().fetchone()
        return self._rows.popleft() if self._rows else None

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        if self._rows is None:
            return list(await super().fetchmany(size))
        count = min(self.arraysize if size is None else size, len(self._rows))
        return [self._rows.popleft() for _ in range(count)]

    async def fetchall(self) -> list[Any]:
        if self._rows is None:
            return list(await super().fetchall())
        rows = list(self._rows)
        self._rows.clear()
        return rows

    async def close(self) -> None:
        self._drop_inline()
        await super().close()


def inline_creator(database: str, budget_seconds: float) -> Callable[[], InlineReadConnection]:
    """An ``async_creator`` for SQLAlchemy's aiosqlite dialect: connections to ``database`` (a
    file path) that run short reads inline, sharing one memory of slow statements."""
    slow = SlowStatements()

    def create() -> InlineReadConnection:
        conn = InlineReadConnection(
            partial(sqlite3.connect, database, check_same_thread=False),
            partial(
                sqlite3.connect, database, timeout=0, check_same_thread=False, isolation_level=None
            ),
            budget_seconds,
            slow,
        )
        conn._thread.daemon = True  # as SQLAlchemy does for aiosqlite's own connections
        return conn

    return create
