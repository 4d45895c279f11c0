"""Stopping the server's background tasks when a cancellation can be lost on the way.

On Python 3.11 (Debian's, what the product runs on) ``asyncio.wait_for`` returns the inner
result instead of raising when the cancellation arrives in the same loop turn as the inner
awaitable completes (CPython gh-86296, fixed in 3.12). redis-py sends every command through
``wait_for`` when a socket timeout is set, so a task cancelled while it talks to Redis often loses
the cancellation (84 of 300 cancellations of a loop of commands to a healthy local Redis).
A loop written ``while True: await sleep(); try: ... except Exception`` then goes round for
ever, and whatever awaited it waits with it: Server.stop() hung that way in CI.

Our own code does not call ``wait_for`` (ruff bans it outside tests; ``asyncio.timeout`` has no
such window); the libraries still may, so every long-lived loop is stopped with ``stop_task``,
which cancels again until the task has really finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)

# Seconds between cancellations of a task that is still running. A lost cancellation costs this
# much once; a task that finishes promptly (the usual case) is awaited without delay.
RECANCEL_EVERY = 1.0


async def stop_task(
    task: asyncio.Task[Any] | None, *, recancel_every: float = RECANCEL_EVERY
) -> None:
    """Cancel ``task`` and wait until it is done; cancel it again each ``recancel_every``
    seconds while it runs on. Only for tasks whose cancellation needs no cleanup longer than
    that (periodic loops, readers, workers). What the task raised other than the cancellation
    is raised here, as ``await task`` would."""
    if task is None:
        return
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=recancel_every)
    with contextlib.suppress(asyncio.CancelledError):
        task.result()


async def stop_tasks(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """``stop_task`` for several tasks at once: all are cancelled before any is awaited, and
    every one is awaited. A task that had failed is logged, not raised: one failed background
    task must not leave the others (and the rest of a shutdown) unfinished."""
    pending = list(tasks)
    for task in pending:
        task.cancel()
    for task in pending:
        try:
            await stop_task(task)
        except Exception:
            log.exception("background task %s had failed", task.get_name())
