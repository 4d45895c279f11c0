"""Group commit: the rows waiting to be stored go in one transaction per batch.

Everything submitted while the previous batch was being written goes in the next one, so a
busy room costs one disk sync per batch instead of one per row (SQLite has a single writer).
A submitter waits for its own row's answer, given only once the batch is committed. The chat's
message writer and the polls' vote writer are both one of these; each says how its rows are
written and which error its submitters get when that fails.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from abc import ABC, abstractmethod
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from mediaserver.tasks import stop_task
from storage import Database
from storage.db import retry_busy

R = TypeVar("R")  # a row to store
A = TypeVar("A")  # its answer (a new id, a vote's outcome...)


class GroupCommit(ABC, Generic[R, A]):
    """One transaction per batch of the rows submitted; ``start()`` runs it, ``stop()`` ends it.

    A subclass writes a batch (``insert``: one answer per row, in order, without committing)
    and maps failures to its own errors (``failed`` when the batch's transaction fails,
    ``stopped`` for the rows still waiting at ``stop()``). ``area`` names it in the log lines
    and ``unit`` names its rows there ("message(s)"); ``log`` is the subclass's logger.
    """

    area = "group commit"
    unit = "row(s)"
    log = logging.getLogger(__name__)

    def __init__(self, db: Database) -> None:
        self.db = db
        self._pending: list[tuple[R, asyncio.Future[A]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @abstractmethod
    async def insert(self, session: AsyncSession, rows: list[R]) -> list[A]:
        """Supplied by each writer (see the class docstring)."""

    @abstractmethod
    def failed(self, exc: Exception) -> Exception:
        """Supplied by each writer (see the class docstring)."""

    @abstractmethod
    def stopped(self) -> Exception:
        """Supplied by each writer (see the class docstring)."""

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def submit(self, row: R) -> A:
        """Store ``row`` with the next batch; its answer once that batch is committed."""
        fut: asyncio.Future[A] = asyncio.get_running_loop().create_future()
        self._pending.append((row, fut))
        self._wake.set()
        return await fut

    async def _write(self, rows: list[R]) -> list[A]:
        async with self.db.session() as session:
            answers = await self.insert(session, rows)
            await session.commit()
        return answers

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            if not batch:
                continue
            rows = [r for r, _ in batch]
            try:
                # A transaction the database was only too busy for (SQLite's one writer on an
                # overloaded machine) is tried again before the submitters are told it failed.
                answers = await retry_busy(functools.partial(self._write, rows), self.area)
            except Exception as exc:
                self.log.error(
                    "%s: storing %d %s failed: %s", self.area, len(batch), self.unit, exc
                )
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(self.failed(exc))
                continue
            for (_, fut), answer in zip(batch, answers, strict=True):
                if not fut.done():
                    fut.set_result(answer)

    async def stop(self) -> None:
        if self._task is not None:
            await stop_task(self._task)
        for _, fut in self._pending:
            if not fut.done():
                fut.set_exception(self.stopped())
