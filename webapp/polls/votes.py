"""Group commit of votes: everything that arrived while the previous batch was being written
goes in one transaction (``storage.polls.votes``), like the chat's message writer. A poll
opened in a room of a thousand viewers gets its votes within a few seconds; one transaction
each would queue them behind each other (and behind chat's own writes) on SQLite's single
writer. A voter waits for its own answer, which is only given once the batch is committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from storage import Database
from storage import polls as store
from storage.db import retry_busy

log = logging.getLogger(__name__)

T = TypeVar("T")


async def retrying(attempt: Callable[[], Awaitable[T]]) -> T:
    """``attempt()`` again while it fails only because the database was busy."""
    return await retry_busy(attempt, "polls")


# (poll id, user id, option) -> (answer, the option kept for a DUPLICATE)
Ballot = tuple[int, int, int]
Answer = tuple[str, int | None]


class VoteFailed(Exception):
    """The batch holding this vote could not be written (the vote was not counted)."""


class VoteWriter:
    def __init__(self, db: Database, now_ms: Callable[[], int]) -> None:
        self.db = db
        self._now_ms = now_ms
        self._pending: list[tuple[Ballot, asyncio.Future[Answer]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def vote(self, ballot: Ballot) -> Answer:
        fut: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._pending.append((ballot, fut))
        self._wake.set()
        return await fut

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            if not batch:
                continue
            try:
                answers = await retrying(functools.partial(self._write, [b for b, _ in batch]))
            except Exception as exc:
                log.error("polls: storing %d vote(s) failed: %s", len(batch), exc)
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(VoteFailed(str(exc)))
                continue
            for (_, fut), answer in zip(batch, answers, strict=True):
                if not fut.done():
                    fut.set_result(answer)

    async def _write(self, ballots: list[Ballot]) -> list[Answer]:
        async with self.db.session() as session:
            answers = await store.votes(session, ballots, self._now_ms())
            await session.commit()
        return answers

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for _, fut in self._pending:
            if not fut.done():
                fut.set_exception(VoteFailed("the server is shutting down"))
