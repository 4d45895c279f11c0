"""``stop_task`` (mediaserver/tasks.py): a background loop whose cancellation is lost on the way
still stops. CI once hung for 180 s in Server.stop() on a viewer-count loop that lost its
cancellation inside redis-py (which sends through Python 3.11's ``asyncio.wait_for``)."""

from __future__ import annotations

import asyncio

import pytest

from mediaserver.tasks import stop_task, stop_tasks

# Small so a lost cancellation costs the test little; what is checked does not depend on it.
RECANCEL = 0.05
# A stop_task that regressed to a single cancel would wait for ever: fail instead.
HANG = 30.0


async def stopped_within_bound(task: asyncio.Task[None]) -> bool:
    """Whether ``stop_task`` ends ``task`` within HANG. The bound waits beside it rather than
    cancelling it, so the bound's own cancellation cannot be what stops the task."""
    stopper = asyncio.get_running_loop().create_task(stop_task(task, recancel_every=RECANCEL))
    done, _ = await asyncio.wait({stopper}, timeout=HANG)
    if not done:
        stopper.cancel()
        return False
    stopper.result()
    return True


async def test_a_loop_that_swallows_its_first_cancellation_still_stops() -> None:
    swallowed = 0

    async def loop() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1  # what a library that loses the cancellation looks like

    task = asyncio.get_running_loop().create_task(loop())
    await asyncio.sleep(0)
    assert await stopped_within_bound(task)
    assert task.cancelled()
    assert swallowed == 1


async def test_a_loop_that_loses_its_cancellation_in_wait_for_still_stops() -> None:
    """The real thing: the cancellation arrives in the loop turn where the awaited thing
    completes. Python 3.11's ``wait_for`` then returns instead of raising (later Pythons raise);
    either way the loop must end."""
    wake = asyncio.Event()
    rounds = 0

    async def loop() -> None:
        nonlocal rounds
        while True:
            try:
                await asyncio.wait_for(wake.wait(), 3600)  # what redis-py does on each send
            except Exception:
                pass
            rounds += 1
            wake.clear()

    task = asyncio.get_running_loop().create_task(loop())
    await asyncio.sleep(0)
    wake.set()  # the inner wait completes ...
    assert await stopped_within_bound(task)  # ... in the same turn as the cancellation
    assert task.done()


async def test_what_the_task_raised_is_raised_and_none_is_nothing() -> None:
    async def fails() -> None:
        raise ValueError("broken")

    task = asyncio.get_running_loop().create_task(fails())
    await asyncio.sleep(0)
    with pytest.raises(ValueError, match="broken"):
        await stop_task(task)
    await stop_task(None)


async def test_stop_tasks_cancels_all_before_waiting() -> None:
    order: list[str] = []

    async def sleeper(name: str) -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            order.append(name)

    loop = asyncio.get_running_loop()
    tasks = {loop.create_task(sleeper(n)) for n in ("a", "b", "c")}
    await asyncio.sleep(0)
    await stop_tasks(tasks)
    assert all(t.cancelled() for t in tasks)
    assert sorted(order) == ["a", "b", "c"]


async def test_stop_tasks_logs_a_failed_task_and_still_stops_the_others(caplog) -> None:
    async def fails() -> None:
        raise ValueError("broken")

    async def sleeper() -> None:
        await asyncio.sleep(3600)

    loop = asyncio.get_running_loop()
    failed = loop.create_task(fails(), name="the-failing-one")
    others = [loop.create_task(sleeper()) for _ in range(2)]
    await asyncio.sleep(0)
    await stop_tasks([failed, *others])
    assert all(t.cancelled() for t in others)
    assert "the-failing-one" in caplog.text and "broken" in caplog.text
