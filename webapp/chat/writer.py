"""The chat's message writer: group commit of the messages waiting to be stored.

Everything that arrived while the previous commit ran goes in one transaction, so a busy room
costs one disk sync per batch instead of one per message. A sender waits for its own message's
commit: only then is the message published, so nobody sees a message that is not in the history.
The batching, the retry on a busy database and the answers to the senders are
webapp.group_commit's; this module says how messages are stored and what a sender is told.
"""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession

from storage import chat as chat_store
from storage.chat import NewMessage

from ..group_commit import GroupCommit
from .content import ChatError


class MessageWriter(GroupCommit[NewMessage, int]):
    """Group commit: one transaction per batch of messages waiting to be stored."""

    area = "chat"
    unit = "message(s)"
    log = logging.getLogger(__name__)

    async def store(self, row: NewMessage) -> int:
        """Store a message with the next batch; its new id once the batch is committed."""
        return await self.submit(row)

    async def insert(self, session: AsyncSession, rows: list[NewMessage]) -> list[int]:
        # Looked up at call time: tests replace it to make storing fail.
        return await chat_store.insert_messages(session, rows)

    def failed(self, exc: Exception) -> Exception:
        return ChatError(
            "store_failed", "the message could not be saved; it was not sent", status=503
        )

    def stopped(self) -> Exception:
        return ChatError("shutting_down", "the server is shutting down", status=503)
