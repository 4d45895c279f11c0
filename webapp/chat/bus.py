"""The bus every chat event goes through, so several server processes can share each room.

A process publishes a room's events to the bus and delivers to its own sockets only what comes
back from the bus; with the in-process bus that is an immediate call, with Redis it is a
pub/sub round trip that every process (the publisher included) receives. Either way each
process sees the same events in the same order per room, so history, presence and moderation
look the same whichever process a viewer's socket landed on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any, Protocol

from mediaserver.tasks import stop_task

log = logging.getLogger(__name__)

Deliver = Callable[[str, list[dict[str, Any]]], None]
CHANNEL_PREFIX = "aethex:chat:"


class ChatBus(Protocol):
    async def start(self, deliver: Deliver) -> None: ...

    async def publish(self, slug: str, events: list[dict[str, Any]]) -> None: ...

    async def close(self) -> None: ...


class MemoryBus:
    """One process: publishing is delivering."""

    def __init__(self) -> None:
        self._deliver: Deliver | None = None

    async def start(self, deliver: Deliver) -> None:
        self._deliver = deliver

    async def publish(self, slug: str, events: list[dict[str, Any]]) -> None:
        if self._deliver is not None:
            self._deliver(slug, events)

    async def close(self) -> None:
        self._deliver = None


class RedisBus:
    """Redis pub/sub: one channel per room (``aethex:chat:{slug}``), one pattern subscription
    per process. A message is a JSON array of events, as on the WebSocket."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._redis: Any = None
        self._pubsub: Any = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, deliver: Deliver) -> None:
        import redis.asyncio as aioredis  # noqa: PLC0415 - only with chat.bus: 150 ms, 5 MB

        self._redis = aioredis.from_url(self.url)
        await self._redis.ping()  # fail at startup, not on the first message
        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        await self._pubsub.psubscribe(CHANNEL_PREFIX + "*")
        self._task = asyncio.get_running_loop().create_task(self._read(deliver))

    async def _read(self, deliver: Deliver) -> None:
        assert self._pubsub is not None
        while True:
            try:
                msg = await self._pubsub.get_message(timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("chat bus: reading from Redis failed; retrying in 1 s")
                await asyncio.sleep(1.0)
                continue
            if msg is None or msg.get("type") != "pmessage":
                continue
            channel = (
                msg["channel"].decode() if isinstance(msg["channel"], bytes) else msg["channel"]
            )
            try:
                events = json.loads(msg["data"])
            except ValueError:
                log.warning("chat bus: ignoring a malformed message on %s", channel)
                continue
            try:
                deliver(channel[len(CHANNEL_PREFIX) :], events)
            except Exception:
                log.exception("chat bus: delivering to %s failed", channel)

    async def publish(self, slug: str, events: list[dict[str, Any]]) -> None:
        await self._redis.publish(
            CHANNEL_PREFIX + slug, json.dumps(events, separators=(",", ":"), ensure_ascii=False)
        )

    async def close(self) -> None:
        if self._task is not None:
            await stop_task(self._task)
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()


def make_bus(url: str) -> ChatBus:
    return MemoryBus() if url == "memory" else RedisBus(url)
