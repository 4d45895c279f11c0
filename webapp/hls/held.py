"""Held requests: blocking playlist reloads (rfc8216bis 6.2.5.2), preload-hinted parts and a
master that waits for the ladder, answered when the live edge has what they ask for.

A held request is not a task: it is a callback in the group of its target (one group per
distinct target, however many viewers wait on it), and one watcher task per edge wakes on each
``LiveEdge.notify``; a notify costs one check per distinct target, not one wake-up per viewer.
Each request has a deadline (then 503), enforced by the watcher's scan every DEADLINE_TICK.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from mediaserver.metrics import Metrics
from transcode.edge import LiveEdge

from .reply import Reply

log = logging.getLogger(__name__)

# The watcher expires held requests at least this often: a 503 may come this much late.
DEADLINE_TICK = 0.5

Hold = Literal["ready", "wait", "bad", "gone", "timeout"]


@dataclass(slots=True)
class _Group:
    check: Callable[[], Hold]
    waiters: set[Held] = field(default_factory=set)


@dataclass
class Waiting:
    """The requests held on one live edge (part of the per-edge state, dropped with it)."""

    groups: dict[tuple[Any, ...], _Group] = field(default_factory=dict)
    watcher: asyncio.Task[None] | None = None
    # When the watcher next looks for held requests past their deadline (one scan per
    # DEADLINE_TICK instead of a timer per request: a timer handle per request, or a heap
    # keeping released requests until their deadline, cost more than the scan).
    next_expiry: float = 0.0


class Held:
    """A request held until the live edge has what it asks for, or until its deadline.

    Not a task per request: a callback registered in the edge's group for its target (one
    group per distinct target, however many viewers wait on it), released by the edge's
    watcher. ``then`` turns the outcome into the reply; ``start`` delivers it to a callback
    (the fast path writes it straight to the socket), ``wait`` to a coroutine (aiohttp).
    """

    __slots__ = (
        "holding",
        "edge",
        "state",
        "key",
        "check",
        "timeout",
        "then",
        "observe",
        "started",
        "deadline",
        "done",
        "group",
    )

    def __init__(
        self,
        holding: Holding,
        edge: LiveEdge,
        state: Waiting,
        key: tuple[Any, ...],
        check: Callable[[], Hold],
        timeout: float,
        then: Callable[[Hold], Reply],
        observe: bool = True,
    ) -> None:
        self.holding = holding
        self.edge = edge
        self.state = state
        self.key = key
        self.check = check
        self.timeout = timeout
        self.then = then
        self.observe = observe
        self.started = self.deadline = 0.0
        self.done: Callable[[Reply], None] | None = None
        self.group: _Group | None = None

    def start(self, done: Callable[[Reply], None]) -> None:
        loop = asyncio.get_running_loop()
        self.done = done
        self.started = loop.time()
        self.deadline = self.started + self.timeout
        if self.holding.closing:
            self._finish("timeout")
        else:
            self._register(loop)

    async def wait(self) -> Reply:
        fut: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()

        def done(reply: Reply) -> None:
            if not fut.done():
                fut.set_result(reply)

        self.start(done)
        try:
            return await fut
        finally:
            self.cancel()

    def cancel(self) -> None:
        """Forget the request (its client went away); nothing is delivered."""
        self.done = None
        self._unregister()

    def _register(self, loop: asyncio.AbstractEventLoop) -> None:
        state = self.state
        group = state.groups.get(self.key)
        if group is None:
            group = state.groups[self.key] = _Group(self.check)
        group.waiters.add(self)
        self.group = group
        if state.watcher is None:
            self.holding.watched[id(state)] = state
            state.watcher = loop.create_task(self.holding.watch(self.edge, state))

    def _unregister(self) -> None:
        group = self.group
        if group is not None:
            self.group = None
            group.waiters.discard(self)
            if not group.waiters and self.state.groups.get(self.key) is group:
                del self.state.groups[self.key]

    def release(self, ready: bool) -> None:
        """The watcher saw the target arrive (``ready``), or the deadline or shutdown came."""
        self._unregister()
        if self.done is None:
            return
        result = self.check()
        if result == "wait":
            loop = asyncio.get_running_loop()
            if ready and not self.holding.closing and loop.time() < self.deadline:
                self._register(loop)  # woken early: the edge moved, not to our target yet
                return
            result = "timeout"
        self._finish(result)

    def _finish(self, result: Hold) -> None:
        done, self.done = self.done, None
        if self.observe:
            waited = asyncio.get_running_loop().time() - self.started
            self.holding.metrics.hls_blocking_wait.observe(waited)
        if done is not None:
            done(self.then(result))


# What a route method returns when it cannot answer at once: a request held for the live
# edge, or (VOD loads) a coroutine.
Pending: TypeAlias = "Held | Coroutine[Any, Any, Reply]"


class Holding:
    """The held requests of one web application: the edges' watchers, and shutdown."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.closing = False
        self.watched: dict[int, Waiting] = {}  # by id(): only to release on shutdown

    async def watch(self, edge: LiveEdge, state: Waiting) -> None:
        """Release the groups whose wait is over: when it starts, on every change of the
        edge, and at least every DEADLINE_TICK.

        Each wake-up checks every group, whatever woke it: a notify is only a hint that can
        be lost. A tick that comes due in the loop iteration of a notify cancels the wait the
        notify had ended (``asyncio.timeout`` raises TimeoutError, not the wake-up), and a
        notify between this task's creation and its first wait sets an event it never waits
        on. Checking only after a notify held such requests until their own deadline (30 s
        for 10 s segments); checking each tick costs one check per distinct target."""
        try:
            loop = asyncio.get_running_loop()
            while True:
                self._expire(state, loop.time())
                self._release_ready(state)
                if not state.groups or self.closing:
                    break
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(DEADLINE_TICK):
                        await edge.changed()
        finally:
            state.watcher = None
            self.watched.pop(id(state), None)

    @staticmethod
    def _release_ready(state: Waiting) -> None:
        """Release every group whose target has come (or can no longer come)."""
        for key, group in list(state.groups.items()):
            try:
                done = group.check() != "wait"
            except Exception:  # the handler finds out; the watcher must live
                done = True
            if not done:
                continue
            del state.groups[key]
            for held in list(group.waiters):
                try:
                    held.release(True)
                except Exception:  # one broken reply must not strand the others
                    log.exception("releasing a held HLS request failed")

    @staticmethod
    def _expire(state: Waiting, now: float) -> None:
        """Answer the held requests whose deadline has passed (at most once a tick)."""
        if now < state.next_expiry:
            return
        state.next_expiry = now + DEADLINE_TICK
        for group in list(state.groups.values()):
            for held in [h for h in group.waiters if h.deadline <= now]:
                held.release(False)

    def shutdown(self) -> None:
        """Answer held requests now (503) instead of keeping the server's shutdown waiting."""
        self.closing = True
        for state in list(self.watched.values()):
            groups = list(state.groups.values())
            state.groups.clear()
            for group in groups:
                for held in list(group.waiters):
                    held.release(False)
            if state.watcher is not None:
                state.watcher.cancel()
