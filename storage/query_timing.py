"""How many statements a unit of work ran and how long it waited on them.

Why: a request's wall time under load mixes its own work, its database round trips and its
wait for the event loop behind other requests; the ``Server-Timing`` header (webapp.timing)
reports the database share separately so an operator (and the discovery benchmark) can tell a
slow query from a busy process. The clock runs from just before the statement is handed to the
driver to just after its result is back on the event loop, so on SQLite it includes the hop to
aiosqlite's thread and back, and on PostgreSQL the network round trip.

A ``ContextVar`` carries the clock: each asyncio task (each request) sees its own, and the
engine's cursor events, which run in SQLAlchemy's greenlet for that task, see it too. Outside a
measured unit (no clock set) the events cost one ``ContextVar.get``.
"""

from __future__ import annotations

import time
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine


@dataclass
class QueryClock:
    """Statements run and seconds spent in them, for one unit of work."""

    statements: int = 0
    seconds: float = 0.0


_clock: ContextVar[QueryClock | None] = ContextVar("aethex_query_clock", default=None)
# Where a statement's start time is kept between the two cursor events.
_STARTED = "aethex_query_started"


def start() -> tuple[QueryClock, Token[QueryClock | None]]:
    """A fresh clock for the current task; ``stop`` with the token when the unit ends."""
    clock = QueryClock()
    return clock, _clock.set(clock)


def stop(token: Token[QueryClock | None]) -> None:
    _clock.reset(token)


def _before(
    conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
) -> None:
    if _clock.get() is not None:
        conn.info[_STARTED] = time.perf_counter()


def _after(
    conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
) -> None:
    clock = _clock.get()
    started = conn.info.pop(_STARTED, None)
    if clock is not None and started is not None:
        clock.statements += 1
        clock.seconds += time.perf_counter() - started


def install(engine: AsyncEngine) -> None:
    """Measure ``engine``'s statements for whichever task has a clock."""
    event.listen(engine.sync_engine, "before_cursor_execute", _before)
    event.listen(engine.sync_engine, "after_cursor_execute", _after)
