"""Bounded per-consumer packet queues: the publisher is never blocked by a consumer.

A consumer that falls behind loses packets instead of slowing ingest. Because a decoder cannot
resume in the middle of a GOP, an overflow empties the queue and then skips video until the
next keyframe; audio resumes at once. Every lost packet is counted, so loss is never silent.
Codec configurations travel in the same queue, in order with the packets they describe, and
are never dropped. Consumers may be asyncio tasks (``await get()``) or threads
(``get_blocking()``); the producer always runs on the event loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable

from transcode.media import CodecConfig, MediaKind, MediaPacket

Item = MediaPacket | CodecConfig

_CLOSED = object()


class Subscription:
    def __init__(
        self, name: str, maxsize: int, on_drop: Callable[[int], None] | None = None
    ) -> None:
        self.name = name
        self.maxsize = maxsize
        self.dropped = 0
        self._on_drop = on_drop
        self._items: deque[object] = deque()
        self._need_keyframe = False
        self._skips_are_loss = True
        self._closed = False
        self._cond = threading.Condition()
        self._blocked = 0  # consumer threads inside get_blocking (see put)
        self._waiter: asyncio.Future[None] | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return len(self._items)

    def _drop(self, count: int) -> None:
        if count:
            self.dropped += count
            if self._on_drop is not None:
                self._on_drop(count)

    def put(self, packet: Item) -> None:
        """Offer a packet or config; never blocks. Called on the event loop by the live stream.

        The common case takes no lock: ``deque.append`` is atomic, and a consumer thread
        announces itself (``_blocked``) before it looks at the queue and sleeps, so it is
        notified whenever it could be asleep. Only an overflow, which empties the queue under
        the consumer's feet, takes the lock. (The lock and notify per packet cost more than the
        rest of a relay's per-packet work.)
        """
        if self._closed:
            return
        items = self._items
        if isinstance(packet, CodecConfig):
            items.append(packet)
        else:
            if self._need_keyframe and packet.kind is MediaKind.VIDEO:
                if not packet.keyframe:
                    if self._skips_are_loss:
                        self._drop(1)
                    return
                self._need_keyframe = False
            if len(items) >= self.maxsize:
                with self._cond:
                    # Keep the newest config of each kind so decoding can resume after the gap.
                    latest = {i.kind: i for i in items if isinstance(i, CodecConfig)}
                    lost = sum(1 for i in items if isinstance(i, MediaPacket))
                    items.clear()
                    items.extend(latest.values())
                self._drop(lost)
                if not (packet.kind is MediaKind.VIDEO and packet.keyframe):
                    self._need_keyframe = True
                    self._skips_are_loss = True
                    if packet.kind is MediaKind.VIDEO:
                        self._drop(1)
                        return
            items.append(packet)
        if self._blocked:
            with self._cond:
                self._cond.notify()
        self._wake()

    def skip_to_keyframe(self) -> None:
        """Skip video until the next keyframe: a new consumer cannot start mid-GOP.

        These skips are not loss (the consumer never had those frames), so they are not counted.
        """
        self._need_keyframe = True
        self._skips_are_loss = False

    def close(self) -> None:
        """End of stream: consumers drain what is queued, then get ``None``."""
        if self._closed:
            return
        self._closed = True
        with self._cond:
            self._items.append(_CLOSED)
            self._cond.notify_all()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> Item | None:
        """Next packet, or ``None`` once the stream has ended and the queue is drained."""
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._pop()

    def get_nowait(self) -> Item | None:
        """``get`` for when ``len(self)`` says an item waits: no coroutine and no await, for
        a consumer that drains what one ingest read brought in one go (a restream relay)."""
        return self._pop()

    def get_blocking(self, timeout: float | None = None) -> Item | None:
        """Thread-side ``get``; raises ``TimeoutError`` if nothing arrives in time."""
        with self._cond:
            self._blocked += 1  # before looking: a put after this look will notify
            try:
                if not self._items and not self._cond.wait_for(lambda: bool(self._items), timeout):
                    raise TimeoutError
            finally:
                self._blocked -= 1
            return self._pop()

    def _pop(self) -> Item | None:
        item = self._items[0]
        if item is _CLOSED:
            return None  # stays queued so every later get also sees the end
        self._items.popleft()
        return item  # type: ignore[return-value]
