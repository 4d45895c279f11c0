"""Alembic environment: async engines (aiosqlite, asyncpg) driven through ``run_sync``.

The URL comes from ``config.attributes["url"]`` (set by ``storage.db.upgrade``), else the
``sqlalchemy.url`` option, else ``AETHEX_DATABASE_URL``. The engine is built by
``storage.db.create_engine`` so SQLite gets the same pragmas (WAL, foreign keys, busy timeout)
as the running server.
"""

from __future__ import annotations

import asyncio
import os
from logging.config import fileConfig
from typing import Any

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

from storage.db import create_engine
from storage.models import Base
from storage.search_schema import include_object

config = context.config
target_metadata = Base.metadata

if config.config_file_name is not None and not config.attributes.get("skip_logging_config"):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _url() -> str:
    url = (
        config.attributes.get("url")
        or config.get_main_option("sqlalchemy.url")
        or os.environ.get("AETHEX_DATABASE_URL")
    )
    if not url:
        raise RuntimeError(
            "no database URL: pass one to storage.db.upgrade() or set AETHEX_DATABASE_URL"
        )
    return url


def _configure(**kwargs: Any) -> None:
    context.configure(
        target_metadata=target_metadata,
        compare_type=True,
        # The search objects (FTS5 tables, expression indexes) are not models: not a drift.
        include_object=include_object,
        # SQLite cannot ALTER most things; batch mode recreates tables for later revisions.
        render_as_batch=True,
        **kwargs,
    )


def run_migrations_offline() -> None:
    _configure(url=_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def _run_sync(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # SQLite's own rule for schema changes: foreign keys off while a batch migration
        # rebuilds a table (copy, DROP, rename), or the DROP cascades to every child row and a
        # channel would lose its streams, messages and follows. The pragma only takes effect
        # outside a transaction, hence before it begins; the check after it proves nothing
        # dangles, and it goes back on for whatever uses this connection next.
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
    try:
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
            if sqlite:
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise RuntimeError(f"migration left dangling foreign keys: {broken[:5]}")
    finally:
        if sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")


async def _run_async() -> None:
    engine = create_engine(_url(), poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_sync)
            await connection.commit()
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        # A caller (tests) handed us a sync connection already inside run_sync.
        _run_sync(connection)
        return
    asyncio.run(_run_async())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
