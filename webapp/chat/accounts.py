"""The accounts behind open chat sockets, kept current while the sockets live (principal.py
says why), and the policy close of a socket that may no longer act.

A re-check reads each distinct credential once, however many sockets share it; a newer check
of a principal wins over an older one still in flight (the principal's ``generation``).

Sockets found stale when they act are re-checked in batches, one batch (one database session)
at a time: sockets that joined together go stale together, and a thousand viewers each sending
a frame a second (reactions, issue 16) would otherwise open a thousand sessions at the same
moment, emptying the connection pool and timing out.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Iterable
from datetime import UTC, datetime
from typing import Any

from mediaserver.settings import ChatSettings
from storage import Database
from storage import chat as chat_store

from .content import ChatError
from .metrics import ChatMetrics
from .principal import ENDED_REASONS, Principal
from .room import Client, close_client

CLOSE_POLICY = 1008


class SocketAccounts:
    def __init__(
        self,
        db: Database,
        cs: ChatSettings,
        metrics: ChatMetrics,
        spawn: Callable[[Coroutine[Any, Any, Any]], None],
    ) -> None:
        self.db = db
        self.cs = cs
        self.metrics = metrics
        self._spawn = spawn  # runs a task the chat service cancels when it stops
        # Stale sockets waiting for the next batch of re-checks, and whether one is running.
        self._waiting: dict[Client, asyncio.Future[None]] = {}
        self._draining = False

    async def recheck(self, clients: Iterable[Client]) -> None:
        """Re-read the account and credential behind these sockets (a few queries for all
        their distinct credentials) and apply the answer: a new admin flag, or the end of
        the socket."""
        groups: dict[tuple[int, str, str], list[tuple[Client, Principal, int]]] = {}
        for client in clients:
            p = client.principal
            if p is None or p.ended is not None:
                continue
            p.generation += 1
            groups.setdefault((p.id, p.kind, p.token_hash), []).append((client, p, p.generation))
        if not groups:
            return
        mono = time.monotonic()
        now = datetime.now(UTC)
        async with self.db.session() as session:
            standings = await chat_store.credential_standings(session, groups, now)
        for credential, members in groups.items():
            standing = standings[credential]
            for client, p, generation in members:
                if p.generation != generation or p.ended is not None:
                    continue  # a newer check is under way; its answer wins
                p.is_admin, p.checked = standing.is_admin, mono
                if standing.ended is not None:
                    self.end_socket(client, standing.ended)

    async def current(self, client: Client) -> Principal | None:
        """The socket's principal, re-checked first if its last check is older than
        ``chat.recheck_interval``; None once the socket may no longer act."""
        p = client.principal
        if p is not None and p.ended is None and p.stale(self.cs.recheck_interval):
            fut = self._waiting.get(client)
            if fut is None:
                fut = self._waiting[client] = asyncio.get_running_loop().create_future()
            if not self._draining:
                self._draining = True
                self._spawn(self._drain())
            await asyncio.shield(fut)
        return p if p is not None and p.ended is None else None

    async def _drain(self) -> None:
        """Re-check the waiting stale sockets, a batch at a time, until none wait."""
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, {}
                try:
                    await self.recheck(batch)
                except Exception as exc:
                    for fut in batch.values():
                        if not fut.done():
                            fut.set_exception(exc)
                else:
                    for fut in batch.values():
                        if not fut.done():
                            fut.set_result(None)
        finally:
            self._draining = False

    def end_socket(self, client: Client, code: str, message: str | None = None) -> None:
        """Tell the socket why (chat:error ``code``) and close it with 1008: its account may
        no longer act (a key of principal.ENDED_REASONS) or it ignored its frame budget."""
        message = message or ENDED_REASONS[code]
        if client.principal is not None and code in ENDED_REASONS:
            client.principal.ended = code
        if client.closed:
            return
        self.metrics.closed.labels(code).inc()
        client.send_events([ChatError(code, message, status=403).event()], self.cs.send_queue_bytes)
        client.closed = True  # no more broadcasts; the handler's remove() still runs at the end
        self._spawn(close_client(client, CLOSE_POLICY, message))
