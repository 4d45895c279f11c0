"""Group commit of votes: everything that arrived while the previous batch was being written
goes in one transaction (``storage.polls.votes``), like the chat's message writer. A poll
opened in a room of a thousand viewers gets its votes within a few seconds; one transaction
each would queue them behind each other (and behind chat's own writes) on SQLite's single
writer. A voter waits for its own answer, which is only given once the batch is committed.
The batching and the retry on a busy database are webapp.group_commit's.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from storage import Database
from storage import polls as store
from storage.db import retry_busy

from ..group_commit import GroupCommit

T = TypeVar("T")


async def retrying(attempt: Callable[[], Awaitable[T]]) -> T:
    """``attempt()`` again while it fails only because the database was busy."""
    return await retry_busy(attempt, "polls")


# (poll id, user id, option) -> (answer, the option kept for a DUPLICATE)
Ballot = tuple[int, int, int]
Answer = tuple[str, int | None]


class VoteFailed(Exception):
    """The batch holding this vote could not be written (the vote was not counted)."""


class VoteWriter(GroupCommit[Ballot, Answer]):
    area = "polls"
    unit = "vote(s)"
    log = logging.getLogger(__name__)

    def __init__(self, db: Database, now_ms: Callable[[], int]) -> None:
        super().__init__(db)
        self._now_ms = now_ms

    async def vote(self, ballot: Ballot) -> Answer:
        """Count a ballot with the next batch; its answer once the batch is committed."""
        return await self.submit(ballot)

    async def insert(self, session: AsyncSession, rows: list[Ballot]) -> list[Answer]:
        return await store.votes(session, rows, self._now_ms())

    def failed(self, exc: Exception) -> Exception:
        return VoteFailed(str(exc))

    def stopped(self) -> Exception:
        return VoteFailed("the server is shutting down")
