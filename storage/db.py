"""Engines, sessions and migrations.

SQLite (aiosqlite) is the default and gets WAL journaling (readers never wait for the writer),
foreign keys on (SQLite leaves them off per connection) and a busy timeout (a second writer
waits instead of failing at once). PostgreSQL (asyncpg) needs nothing special.

Query functions in ``storage.queries`` flush but never commit: the caller owns the
transaction, e.g. ``async with db.session() as s: ...; await s.commit()``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar, cast

from sqlalchemy import event
from sqlalchemy.engine import URL, CursorResult, Result, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from storage import query_timing
from storage.sqlite_inline import inline_creator

log = logging.getLogger(__name__)
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
T = TypeVar("T")
# Waits before each new attempt of a transaction the database was too busy for.
BUSY_RETRY_WAITS = (0.1, 0.5, 1.0)


def busy(exc: BaseException) -> bool:
    """Whether a write failed only because the database was busy (SQLite's "database is
    locked": past the busy timeout on a loaded machine, or at once when a deferred
    transaction's snapshot went stale; PostgreSQL's deadlock or serialization failure), so
    that trying the same transaction again is right."""
    if not isinstance(exc, DBAPIError):
        return False
    text = str(exc.orig).lower()
    return "database is locked" in text or "deadlock" in text or "could not serialize" in text


async def retry_busy(attempt: Callable[[], Awaitable[T]], what: str) -> T:
    """``attempt()`` (a whole transaction) again while it fails only because the database was
    busy, after each of ``BUSY_RETRY_WAITS``; any other failure, or the last one, is raised."""
    for wait in BUSY_RETRY_WAITS:
        try:
            return await attempt()
        except Exception as exc:
            if not busy(exc):
                raise
            log.warning("%s: the database was busy; trying again in %.1f s", what, wait)
        await asyncio.sleep(wait)
    return await attempt()


# Milliseconds a SQLite connection waits for another writer's lock before "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 5000


def rowcount(result: Result[Any]) -> int:
    """Rows an UPDATE or DELETE matched (an INSERT ... ON CONFLICT DO NOTHING: rows added).

    Executing such a statement returns a ``CursorResult``, but ``AsyncSession.execute`` is typed
    as returning a plain ``Result``, which has no ``rowcount``.
    """
    return cast(CursorResult[Any], result).rowcount


def _is_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite"


def _ensure_sqlite_dir(url: URL) -> None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def _sqlite_on_connect(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        # Durable at every checkpoint and safe against corruption in WAL mode; fsync per
        # commit (FULL) would cost every chat message a disk flush.
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _sqlite_file(url: URL) -> str | None:
    """The file path of a SQLite URL naming a plain file (not memory, not a ``file:`` URI)."""
    database = url.database
    if not _is_sqlite(url) or not database or database == ":memory:":
        return None
    if database.startswith("file:") or url.query:
        return None
    return str(Path(database).expanduser())


def create_engine(url: str | URL, inline_read_ms: float = 0.0, **kwargs: Any) -> AsyncEngine:
    """An AsyncEngine for ``url`` with this project's per-dialect setup applied; on a SQLite
    file with ``inline_read_ms`` > 0, short reads run on the loop's thread
    (``storage.sqlite_inline``)."""
    parsed = make_url(url)
    if _is_sqlite(parsed):
        _ensure_sqlite_dir(parsed)
    path = _sqlite_file(parsed)
    if path is not None and inline_read_ms > 0:
        kwargs["async_creator"] = inline_creator(path, inline_read_ms / 1000)
    engine = create_async_engine(parsed, **kwargs)
    if _is_sqlite(parsed):
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
    return engine


# aiosqlite's debug lines print every statement with its parameters: stream keys, password
# and token hashes. Keep them out of the log even when the server runs with log.level=debug.
logging.getLogger("aiosqlite").setLevel(logging.INFO)


class Database:
    """One engine and its session factory for the life of the process."""

    def __init__(self, url: str, *, echo: bool = False, inline_read_ms: float = 2.0) -> None:
        self.url = url
        self._echo = echo
        self._inline_read_ms = inline_read_ms
        self._engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("Database.connect() has not been called")
        return self._engine

    async def connect(self) -> None:
        if self._engine is not None:
            return
        # A ping at each checkout finds a PostgreSQL connection the server dropped; a SQLite
        # file has no server to drop it, and there the ping is a thread hop per session.
        engine = create_engine(
            self.url,
            self._inline_read_ms,
            echo=self._echo,
            pool_pre_ping=not _is_sqlite(make_url(self.url)),
        )
        # Open one connection now so a bad URL, unreachable server or unwritable directory
        # fails at startup rather than on the first publish.
        try:
            async with engine.connect():
                pass
        except BaseException:
            await engine.dispose()
            raise
        query_timing.install(engine)
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session; rolled back if the block raises, closed on exit. Commit explicitly."""
        if self._sessions is None:
            raise RuntimeError("Database.connect() has not been called")
        async with self._sessions() as session:
            try:
                yield session
            except BaseException:
                await session.rollback()
                raise

    async def dispose(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
        self._engine = None
        self._sessions = None

    async def __aenter__(self) -> Database:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.dispose()


def alembic_config(url: str) -> Any:
    """An Alembic Config for this package's migrations, independent of the current directory."""
    from alembic.config import Config  # noqa: PLC0415 - alembic (~0.2 s) only when migrating

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("path_separator", "os")
    # Passed as an attribute, not an ini option: configparser would choke on '%' in passwords.
    cfg.attributes["url"] = url
    cfg.attributes["skip_logging_config"] = True
    return cfg


def _upgrade(url: str) -> None:
    from alembic import command  # noqa: PLC0415 - alembic (~0.2 s) only when migrating

    command.upgrade(alembic_config(url), "head")


def upgrade(url: str) -> None:
    """Apply all migrations up to head; a no-op when the database is already there.

    Synchronous. The async engine inside runs on its own event loop, so when called from a
    running loop (an async test, an app hook) the work moves to a short-lived thread.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        _upgrade(url)
        return
    errors: list[BaseException] = []

    def target() -> None:
        try:
            _upgrade(url)
        except BaseException as exc:  # re-raised in the calling thread below
            errors.append(exc)

    thread = threading.Thread(target=target, name="aethex-db-upgrade")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def current_revision(url: str) -> str | None:
    """The revision the database is at (None for an empty database). For tests and tooling."""
    from alembic.runtime.migration import MigrationContext  # noqa: PLC0415 - alembic only when used

    async def run() -> str | None:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(
                    lambda sync_conn: MigrationContext.configure(sync_conn).get_current_revision()
                )
        finally:
            await engine.dispose()

    return asyncio.run(run())


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory  # noqa: PLC0415 - alembic only when used

    return ScriptDirectory.from_config(alembic_config("")).get_current_head()
