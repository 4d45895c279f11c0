"""The chat's message writer: group commit of the messages waiting to be stored.

Everything that arrived while the previous commit ran goes in one transaction, so a busy room
costs one disk sync per batch instead of one per message. A sender waits for its own message's
commit: only then is the message published, so nobody sees a message that is not in the history.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from storage import Database
from storage import chat as chat_store
from storage.chat import NewMessage
from storage.db import retry_busy

from .content import ChatError

log = logging.getLogger(__name__)


class MessageWriter:
    """Group commit: one transaction per batch of messages waiting to be stored."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._pending: list[tuple[NewMessage, asyncio.Future[int]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def store(self, row: NewMessage) -> int:
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append((row, fut))
        self._wake.set()
        return await fut

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            if not batch:
                continue
            rows = [r for r, _ in batch]

            async def write(rows: list[NewMessage] = rows) -> list[int]:
                async with self.db.session() as session:
                    # Looked up at call time: tests replace it to make storing fail.
                    ids = await chat_store.insert_messages(session, rows)
                    await session.commit()
                    return ids

            try:
                # A transaction the database was only too busy for (SQLite's one writer on an
                # overloaded machine) is tried again before the senders are told it failed.
                ids = await retry_busy(write, "chat")
            except Exception as exc:
                log.error("chat: storing %d message(s) failed: %s", len(batch), exc)
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(
                            ChatError(
                                "store_failed",
                                "the message could not be saved; it was not sent",
                                status=503,
                            )
                        )
                continue
            for (_, fut), new_id in zip(batch, ids, strict=False):
                if not fut.done():
                    fut.set_result(new_id)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for _, fut in self._pending:
            if not fut.done():
                fut.set_exception(
                    ChatError("shutting_down", "the server is shutting down", status=503)
                )
