"""Each room's recent messages in memory, so a join (or a storm of 10,000 joins) reads no DB.

Why: every join used to run a query for the last ``chat.history`` messages. When a popular
stream starts, or every client reconnects after a restart, thousands of sockets join within a
second and the queries exhaust the connection pool (joins then fail after the pool timeout).
Here a room's window is loaded once (single-flight: concurrent joins await the same load) and
then kept current from the bus: every ``chat:message`` and ``chat:deleted`` a process delivers,
its own or another process's, goes through ``ChatService._deliver`` into ``apply``. Messages
are published only after they are committed, so the window never holds an unsaved message.

The window keeps up to twice ``chat.history`` messages (the extra half covers deletions and
readers who blocked someone, whose copy is the window filtered by author). If deletions bring
it below ``chat.history`` while older messages exist, the next join reloads it (again once).

Consistency with the DB during a load: events delivered while the query runs are held and
merged afterwards by message id (a message in both the snapshot and the held events is kept
once; a deletion applies whichever side the message came from), so a load racing with sends
and deletes ends with what the DB holds.
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Awaitable, Callable
from typing import Any

Loader = Callable[[int], Awaitable[list[dict[str, Any]]]]


class RecentMessages:
    """One room's window: message events sorted by id, newest last."""

    def __init__(self, size: int) -> None:
        self.size = size  # what a join gets
        self.cap = 2 * size  # what is kept
        self.items: list[dict[str, Any]] = []
        self.ids: list[int] = []
        self.complete = False  # True when the window holds every visible message of the room
        self.loaded = False
        self.stale = False  # deletions left fewer than ``size`` while older messages exist
        self.badges_for: object = None  # the chat state whose badges the items carry
        self._loading: asyncio.Future[None] | None = None
        self._held: list[dict[str, Any]] | None = None
        self.loads = 0

    # -- updates from the bus ---------------------------------------------------------------
    def apply(self, event: dict[str, Any]) -> None:
        """A chat:message or chat:deleted delivered to this process."""
        if self._held is not None:
            self._held.append(event)
        if not self.loaded:
            return
        self._apply(event)

    def _apply(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        mid = event.get("id")
        if not isinstance(mid, int):
            return
        i = bisect.bisect_left(self.ids, mid)
        present = i < len(self.ids) and self.ids[i] == mid
        if kind == "chat:message":
            if present:
                return
            if i == 0 and not self.complete and len(self.ids) >= self.cap:
                return  # older than everything kept: it can never be served
            self.ids.insert(i, mid)
            self.items.insert(i, event)
            if len(self.ids) > self.cap:
                del self.ids[0], self.items[0]
                self.complete = False
        elif kind == "chat:deleted" and present:
            del self.ids[i], self.items[i]
            if len(self.ids) < self.size and not self.complete:
                self.stale = True

    # -- reading --------------------------------------------------------------------------
    async def window(self, load: Loader) -> list[dict[str, Any]]:
        """Every kept event (loaded first if needed; concurrent callers share one load)."""
        while not self.loaded or self.stale:
            if self._loading is None:
                self._loading = asyncio.get_running_loop().create_future()
                asyncio.get_running_loop().create_task(self._load(load, self._loading))
            # shield: one waiter being cancelled (its socket closed) must not cancel the load
            await asyncio.shield(self._loading)
        return self.items

    async def _load(self, load: Loader, done: asyncio.Future[None]) -> None:
        self._held = []
        try:
            rows = await load(self.cap)
        except BaseException as exc:
            self._held = None
            self._loading = None
            done.set_exception(exc)
            done.exception()  # retrieved here too: no "never retrieved" warning without waiters
            return
        held, self._held = self._held, None
        self.items = list(rows)
        self.ids = [e["id"] for e in self.items]
        self.complete = len(self.items) < self.cap
        self.loaded, self.stale = True, False
        self.badges_for = None
        self.loads += 1
        for event in held:  # messages first, then deletions, whatever order they came in
            if event.get("type") == "chat:message":
                self._apply(event)
        for event in held:
            if event.get("type") == "chat:deleted":
                self._apply(event)
        self._loading = None
        done.set_result(None)

    def for_reader(self, blocked: set[int]) -> list[dict[str, Any]]:
        """The last ``size`` messages, without those by authors the reader blocked."""
        if not blocked:
            return self.items[-self.size :]
        out = [e for e in self.items if e["user"]["id"] not in blocked]
        return out[-self.size :]
