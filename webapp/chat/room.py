"""A chat room in one process: its sockets, the events waiting for the next tick, presence.

Fan-out: events arriving from the bus are appended to the room's batch; at most once per
``chat.tick`` the batch becomes one frame (``frames.events_frame``) written as the same bytes
to every socket. A socket whose send queue holds more than ``chat.send_queue_bytes`` is
dropped (close 1013) instead of being waited for, so one slow reader never delays the room.
Sockets of users who blocked the author of a message in the batch get a copy without it (built
once per distinct set of hidden authors in that tick).

The join history is not part of that backlog: it is one frame of up to ``chat.history``
messages (megabytes in a busy room), written when the socket joins, and a client on a slow
link, or with small kernel buffers, is still reading it when the next ticks come. What counts
is what was queued after it, which the transport's FIFO order makes exact (``Client.backlog``).
So a joining reader is never taken for a slow one because its first frame is large, and a
socket that never reads still costs at most its history plus ``chat.send_queue_bytes``.

Presence: ``chat:user-joined`` / ``chat:user-left`` events carry a list of users and are
coalesced: within one flush window a join and a leave of the same user cancel out, and in
rooms bigger than ``chat.big_room`` the window widens to ``chat.presence_interval``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiohttp import web

from mediaserver.tasks import stop_task

from .frames import encode_events, events_frame, text_frame
from .principal import Principal

log = logging.getLogger(__name__)

CLOSE_OVERFLOW = 1013  # "try again later": the reader could not keep up
OVERFLOW_REASON = "send queue overflow: reading too slowly"


class Client:
    """One WebSocket in a room."""

    __slots__ = (
        "ws",
        "transport",
        "user_id",
        "user",
        "blocked",
        "buffer",
        "closed",
        "principal",
        "after_history",
    )

    def __init__(
        self,
        ws: web.WebSocketResponse,
        transport: Any,
        user_id: int | None,
        user: dict[str, Any] | None,
        blocked: set[int],
        principal: Principal | None = None,
    ) -> None:
        self.ws = ws
        self.transport = transport
        self.user_id = user_id
        self.user = user  # {id, username, display_name} or None for an anonymous reader
        self.blocked = blocked
        # Frames held back while the history is being loaded (then flushed after it).
        self.buffer: list[bytes] | None = []
        self.closed = False
        # Who a logged-in socket acts for, kept current by the service (principal.py).
        self.principal = principal
        # Bytes written after the history frame while that frame may still be queued; None
        # before the history is written and once it has left the queue.
        self.after_history: int | None = None

    def backlog(self) -> int:
        """Bytes waiting in this socket's send queue, not counting the join history.

        The transport sends in order, so while any of the history is still queued, every
        byte written after it is queued too: the backlog is then exactly ``after_history``.
        Once the queue holds no more than that, the history has gone and everything counts.
        """
        size = int(self.transport.get_write_buffer_size())
        after = self.after_history
        if after is None:
            return size
        if size <= after:
            self.after_history = None
            return size
        return after

    def write(self, frame: bytes, limit: int) -> bool:
        """Queue ``frame``; False if the socket is gone or its send queue would overflow."""
        if self.closed:
            return True
        if self.buffer is not None:
            if sum(map(len, self.buffer)) > limit:
                return False
            self.buffer.append(frame)
            return True
        t = self.transport
        if t is None or t.is_closing() or self.ws.closed:
            return False
        # The bound is on the backlog: a frame is refused when what is still waiting already
        # passes the limit (so one big tick never drops a reader that is keeping up).
        if self.backlog() > limit:
            return False
        t.write(frame)
        if self.after_history is not None:
            self.after_history += len(frame)
        return True

    def send_events(self, events: list[dict[str, Any]], limit: int) -> bool:
        return self.write(events_frame(events), limit)

    def release(self, first: bytes, limit: int) -> bool:
        """Write ``first`` (the history) then everything held back since the join."""
        held, self.buffer = self.buffer or [], None
        ok = self.write(first, limit)
        self.after_history = 0  # from here on, only what follows the history counts
        for frame in held:
            ok = ok and self.write(frame, limit)
        return ok


class Room:
    def __init__(
        self,
        slug: str,
        *,
        tick: float,
        send_limit: int,
        big_room: int,
        presence_interval: float,
        on_empty: Callable[[Room], None],
        on_drop: Callable[[str], None] | None = None,
    ) -> None:
        self.slug = slug
        self.tick = tick
        self.send_limit = send_limit
        self.big_room = big_room
        self.presence_interval = presence_interval
        self.clients: set[Client] = set()
        self.by_user: dict[int, set[Client]] = {}
        # Users this process announced with chat:user-joined (their first socket here).
        self.announced: set[int] = set()
        # Who is in the room across all processes: user id -> (public info, processes).
        self.presence: dict[int, dict[str, Any]] = {}
        self._presence_count: Counter[int] = Counter()
        # Cluster presence (Redis, issue 15): a sequence number of presence events and, per
        # user, the number of the last one about them, so a reconcile with what was read from
        # Redis never undoes an event that arrived while it was being read.
        self.presence_seq = 0
        self._touched: dict[int, int] = {}
        self.presence_synced = False  # reconciled with Redis at least once
        self._events: list[dict[str, Any]] = []
        self._private: list[dict[str, Any]] = []
        self._joined: dict[int, dict[str, Any]] = {}
        self._left: dict[int, dict[str, Any]] = {}
        self._wake = asyncio.Event()
        self._on_empty = on_empty
        self._on_drop = on_drop
        self._last_flush = 0.0
        self._last_presence = 0.0
        self.viewers: int | None = None  # last stream:viewers figure sent
        self.closed = False
        self._task = asyncio.get_running_loop().create_task(self._run())

    # -- membership -----------------------------------------------------------------------
    def add(self, client: Client) -> None:
        self.clients.add(client)
        if client.user_id is not None:
            self.by_user.setdefault(client.user_id, set()).add(client)

    def remove(self, client: Client) -> bool:
        """Forget ``client``; True if it was the user's last socket in this process."""
        client.closed = True
        self.clients.discard(client)
        last = False
        if client.user_id is not None:
            mine = self.by_user.get(client.user_id)
            if mine is not None:
                mine.discard(client)
                if not mine:
                    del self.by_user[client.user_id]
                    last = True
        self._wake.set()  # let the loop notice an empty room
        return last

    def flush_at(self, earliest: float) -> float | None:
        """The loop time of the first broadcast at or after ``earliest`` while the room is
        busy (its next one is already waiting on the tick), None when an event now would go
        out at once. Producers that batch on their own timer (reactions) publish just before
        it, so their batch rides that broadcast instead of waiting for the one after."""
        at = self._last_flush + self.tick
        if self.closed or at <= asyncio.get_running_loop().time():
            return None
        while at < earliest:
            at += self.tick
        return at

    def viewer_list(self) -> list[dict[str, Any]]:
        return sorted(self.presence.values(), key=lambda u: u["username"])

    # -- events from the bus --------------------------------------------------------------
    def push(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "chat:user-joined":
            self.presence_seq += 1
            for user in event.get("users", ()):
                uid = user["id"]
                self._touched[uid] = self.presence_seq
                self._presence_count[uid] += 1
                self.presence[uid] = user
                if self._left.pop(uid, None) is None:
                    self._joined[uid] = user
        elif kind == "chat:user-left":
            self.presence_seq += 1
            for user in event.get("users", ()):
                uid = user["id"]
                self._touched[uid] = self.presence_seq
                self._presence_count[uid] -= 1
                if self._presence_count[uid] > 0:
                    continue
                del self._presence_count[uid]
                self.presence.pop(uid, None)
                if self._joined.pop(uid, None) is None:
                    self._left[uid] = user
        elif "to_user" in event:
            self._private.append(event)
        else:
            self._events.append(event)
        self._wake.set()

    def reconcile(self, users: dict[int, tuple[dict[str, Any], int]], since: int) -> None:
        """Make the presence what the cluster's record in Redis says (``users``: user id ->
        (public info, nodes holding them), read after ``presence_seq`` was ``since``): users
        of a node that died are announced as left, users a node announced before this room
        opened here as joined. Users an event touched since the read began keep that event's
        word."""
        touched = self._touched
        for uid in [u for u in self.presence if u not in users]:
            if touched.get(uid, -1) > since:
                continue
            user = self.presence.pop(uid)
            self._presence_count.pop(uid, None)
            if self._joined.pop(uid, None) is None:
                self._left[uid] = user
        for uid, (user, nodes) in users.items():
            if touched.get(uid, -1) > since:
                continue
            if uid not in self.presence:
                self.presence[uid] = user
                if self._left.pop(uid, None) is None:
                    self._joined[uid] = user
            self._presence_count[uid] = nodes
        self._touched = {u: n for u, n in touched.items() if n > since}
        self.presence_synced = True
        if self._joined or self._left:
            self._wake.set()

    # -- the tick -------------------------------------------------------------------------
    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                if not self.clients:
                    break
                delay = self._last_flush + self.tick - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                self._last_flush = loop.time()
                try:
                    self.flush(self._last_flush)
                except Exception:  # a bug in one batch must not stop the room
                    log.exception("chat room %s: broadcast failed", self.slug)
        finally:
            self.closed = True
            self._on_empty(self)

    def _presence_events(self, now: float) -> list[dict[str, Any]]:
        if not (self._joined or self._left):
            return []
        big = max(len(self.clients), len(self.presence)) > self.big_room
        if big and now - self._last_presence < self.presence_interval:
            self._wake.set()  # come back for them at the end of the window
            return []
        self._last_presence = now
        out = []
        if self._joined:
            out.append(
                {
                    "type": "chat:user-joined",
                    "users": list(self._joined.values()),
                    "count": len(self.presence),
                }
            )
        if self._left:
            out.append(
                {
                    "type": "chat:user-left",
                    "users": list(self._left.values()),
                    "count": len(self.presence),
                }
            )
        self._joined, self._left = {}, {}
        return out

    def flush(self, now: float) -> None:
        events, self._events = self._events, []
        events += self._presence_events(now)
        private, self._private = self._private, []
        dropped: list[Client] = []
        if events:
            frame = text_frame(encode_events(events))
            authors = {e["user"]["id"] for e in events if e.get("type") == "chat:message"}
            filtered: dict[frozenset[int], bytes] = {}
            limit = self.send_limit
            for client in self.clients:
                hidden = client.blocked & authors if client.blocked else None
                if hidden:
                    key = frozenset(hidden)
                    out = filtered.get(key)
                    if out is None:
                        keep = [
                            e
                            for e in events
                            if not (e.get("type") == "chat:message" and e["user"]["id"] in key)
                        ]
                        out = filtered[key] = events_frame(keep) if keep else b""
                    if not out:
                        continue
                    ok = client.write(out, limit)
                else:
                    ok = client.write(frame, limit)
                if not ok:
                    dropped.append(client)
        for event in private:
            target = event.get("to_user")
            body = {k: v for k, v in event.items() if k != "to_user"}
            for client in self.by_user.get(target, ()):  # type: ignore[arg-type]
                if not client.send_events([body], self.send_limit):
                    dropped.append(client)
        for client in dropped:
            self.drop(client)

    def drop(self, client: Client) -> None:
        """Disconnect a reader that fell behind; the room goes on without waiting for it."""
        if client.closed:
            return
        # Out of the broadcast now; the socket's handler calls remove() when it ends, which
        # also reports the user's leaving if this was their last socket here.
        client.closed = True
        self.clients.discard(client)
        if self._on_drop is not None:
            self._on_drop(self.slug)
        asyncio.get_running_loop().create_task(
            close_client(client, CLOSE_OVERFLOW, OVERFLOW_REASON)
        )

    async def stop(self) -> None:
        await stop_task(self._task)


async def close_client(client: Client, code: int, reason: str) -> None:
    """Close from outside the socket's handler (its read loop then ends); a peer that does not
    answer the close within 2 s is cut off."""
    try:
        async with asyncio.timeout(2.0):
            await client.ws.close(code=code, message=reason.encode())
    except Exception:
        pass
    if client.transport is not None and not client.transport.is_closing():
        client.transport.abort()
