"""Helpers for the chat tests (not a test module): users with API tokens made through the
storage layer, WebSocket clients, and waiting for one kind of event on a socket."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import aiohttp
from sqlalchemy import update

if TYPE_CHECKING:
    from mediaserver.app import Server


async def make_user(server: Server, username: str, *, admin: bool = False) -> tuple[int, str]:
    """A user and an API token for them; (user id, token)."""
    from storage import queries
    from storage.models import User

    async with server.db.session() as db:
        user = await queries.create_user(db, username, f"{username}@example.test", None)
        if admin:
            await db.execute(update(User).where(User.id == user.id).values(is_admin=True))
        await db.commit()
        token = await queries.create_api_token(db, username)
        await db.commit()
        return user.id, token


async def make_chat_channel(server: Server, owner: str, slug: str) -> tuple[int, int, str]:
    """A channel owned by a new user; (channel id, owner id, owner token)."""
    from storage import queries

    owner_id, token = await make_user(server, owner)
    async with server.db.session() as db:
        channel = await queries.create_channel(db, owner, slug)
        await db.commit()
    return channel.id, owner_id, token


def auth(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


# How long ``ChatClient.next`` waits for an event by default. Generous on purpose: the events
# come within milliseconds on an idle machine, but a run on 2 cores at load 10-18 once took
# over 5 s (the old default) to get a join's chat:history; only a failing test waits this long.
EVENT_DEADLINE = 30.0


class ChatClient:
    """A WebSocket in a room that keeps every event it received, in order."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self._seen = 0

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(frame))

    async def say(self, content: str) -> None:
        await self.send({"type": "chat:send", "content": content})

    async def _read_one(self, timeout: float) -> None:
        msg = await self.ws.receive(timeout=timeout)
        if msg.type != aiohttp.WSMsgType.TEXT:
            raise ConnectionError(f"socket ended: {msg.type} {msg.data!r} {msg.extra!r}")
        frame = json.loads(msg.data)
        assert isinstance(frame, list) and frame, frame  # always a non-empty JSON array
        self.events.extend(frame)

    async def next(
        self, kind: str, timeout: float = EVENT_DEADLINE, **match: Any
    ) -> dict[str, Any]:
        """The next not-yet-returned event of type ``kind`` (and matching fields), waited for
        up to ``timeout`` seconds: a bound for a server that is stuck, not a speed to meet."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            while self._seen < len(self.events):
                ev = self.events[self._seen]
                self._seen += 1
                if ev.get("type") == kind and all(ev.get(k) == v for k, v in match.items()):
                    return ev
            left = deadline - loop.time()
            try:
                if left <= 0:
                    raise TimeoutError
                await self._read_one(left)
            except TimeoutError:
                raise AssertionError(
                    f"no {kind} {match} within {timeout} s; got {self.events}"
                ) from None

    async def quiet(self, seconds: float) -> list[dict[str, Any]]:
        """Everything that arrives within ``seconds`` (for "nothing was delivered" checks)."""
        start = len(self.events)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        try:
            while (left := deadline - loop.time()) > 0:
                await self._read_one(left)
        except TimeoutError:
            pass
        self._seen = len(self.events)
        return self.events[start:]

    async def closed(self, timeout: float = 10.0) -> int | None:
        """Read to the end of the socket (the server closes it); the close code it sent.

        The code of the server's close frame, not ``ws.close_code``: a server that closes the
        connection right after its close frame makes aiohttp's automatic reply fail, and the
        client then reports 1006 although it received the server's code."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            msg = await self.ws.receive(timeout=max(0.0, deadline - loop.time()))
            if msg.type == aiohttp.WSMsgType.CLOSE:
                return int(msg.data)
            if msg.type != aiohttp.WSMsgType.TEXT:
                return self.ws.close_code
            self.events.extend(json.loads(msg.data))

    def messages(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == "chat:message"]


async def probe(
    client: ChatClient, frame: dict[str, Any], until: str, timeout: float = 10.0
) -> dict[str, Any]:
    """Send ``frame`` again and again until the server answers with chat:error ``until`` (a
    change made elsewhere has reached this socket). Every answer must be a chat:error: pick
    frames that cannot succeed either way (e.g. ``timeout_probe``)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        await client.send(frame)
        err = await client.next("chat:error")
        if err["code"] == until:
            return err
        if loop.time() > deadline:
            raise AssertionError(f"still {err} after {timeout} s, never {until}")
        await asyncio.sleep(0.02)


def timeout_probe(target_id: int) -> dict[str, Any]:
    """A moderation frame that changes nothing: moderators get "invalid" (0 seconds is no
    timeout), everyone else "forbidden"."""
    return {"type": "chat:timeout", "user_id": target_id, "seconds": 0}


async def join(
    http: aiohttp.ClientSession, base: str, slug: str, token: str | None = None, **kw: Any
) -> ChatClient:
    """Connect and read up to the chat:history event."""
    ws = await http.ws_connect(f"{base}/ws/chat/{slug}", headers=auth(token), **kw)
    client = ChatClient(ws)
    await client.next("chat:history")
    client._seen = 0  # callers may look at the history too
    return client


def base_url(server: Server) -> str:
    return f"http://127.0.0.1:{server.http_port}"
