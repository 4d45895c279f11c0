"""Block lists of the users with chat sockets in this process.

A reader's sockets skip messages from the users they blocked (room.py filters on the set), so
the set must be at hand for every message without a query: it is loaded once per user while
they have sockets here (concurrent joins share the load, so a reconnect storm of logged-in users
costs no query per socket for it) and shared by all their sockets. A block change is announced
on the bus (``ChatService.blocks_changed``) and every process reloads the sets it holds, in
place; a per-user version makes a load that raced with a change read again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from storage import Database
from storage import chat as chat_store

Spawn = Callable[[Coroutine[Any, Any, Any]], None]


class BlockLists:
    def __init__(self, db: Database, spawn: Spawn) -> None:
        self.db = db
        self._spawn = spawn  # runs a task the chat service cancels when it stops
        # user id -> (set shared by their sockets, sockets holding it)
        self.held: dict[int, tuple[set[int], int]] = {}
        self._loads: dict[int, asyncio.Future[set[int]]] = {}
        self._version: dict[int, int] = {}

    async def acquire(self, user_id: int) -> set[int]:
        """The ids ``user_id`` blocked, as one set shared by all their sockets here. Every
        socket that got the set must give it back with ``release``."""
        entry = self.held.get(user_id)
        if entry is None:
            load = self._loads.get(user_id)
            if load is None:
                load = asyncio.get_running_loop().create_future()
                self._loads[user_id] = load
                self._spawn(self._load(user_id, load))
            await asyncio.shield(load)
            entry = self.held.get(user_id)
            if entry is None:  # loaded and already released by everyone else: start over
                return await self.acquire(user_id)
        self.held[user_id] = (entry[0], entry[1] + 1)
        return entry[0]

    async def _load(self, user_id: int, done: asyncio.Future[set[int]]) -> None:
        try:
            while True:
                version = self._version.get(user_id, 0)
                async with self.db.session() as session:
                    blocked = await chat_store.blocked_ids(session, user_id)
                if self._version.get(user_id, 0) == version:
                    break  # no block change committed while we read: the answer is current
        except BaseException as exc:
            done.set_exception(exc)
            done.exception()
            return
        finally:
            self._loads.pop(user_id, None)
        self.held[user_id] = (blocked, 0)
        done.set_result(blocked)

    def release(self, user_id: int) -> None:
        entry = self.held.get(user_id)
        if entry is None:
            return
        if entry[1] <= 1:
            del self.held[user_id]
            self._version.pop(user_id, None)
        else:
            self.held[user_id] = (entry[0], entry[1] - 1)

    async def reload(self, user_id: int) -> None:
        """``user_id`` blocked or unblocked someone: re-read their set if it is held here."""
        if user_id not in self.held and user_id not in self._loads:
            return
        version = self._version[user_id] = self._version.get(user_id, 0) + 1
        if user_id not in self.held:
            return  # the load in flight sees the new version and reads again
        async with self.db.session() as session:
            blocked = await chat_store.blocked_ids(session, user_id)
        entry = self.held.get(user_id)
        if entry is not None and self._version.get(user_id) == version:
            entry[0].clear()  # in place: every socket of the user shares this set
            entry[0].update(blocked)
