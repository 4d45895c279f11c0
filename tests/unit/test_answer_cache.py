"""webapp.answers (the search and category-page caches): one making for concurrent identical
requests, answers kept
for ``seconds`` then made again, failures never kept, the number of entries bounded."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from webapp.answers import AnswerCache


async def test_concurrent_requests_share_one_search_and_the_answer_is_kept() -> None:
    cache = AnswerCache(seconds=60, entries=10)
    calls = 0
    release = asyncio.Event()

    async def search() -> str:
        nonlocal calls
        calls += 1
        await release.wait()
        return "answer"

    waiting = [asyncio.create_task(cache.get("q", search)) for _ in range(5)]
    while calls == 0:
        await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*waiting) == ["answer"] * 5
    assert calls == 1
    assert await cache.get("q", search) == "answer" and calls == 1


async def test_expired_answers_are_made_again_and_off_means_off() -> None:
    calls = 0

    async def search() -> int:
        nonlocal calls
        calls += 1
        return calls

    expired = AnswerCache(seconds=1e-9, entries=10)
    assert await expired.get("q", search) == 1
    await asyncio.sleep(0.001)
    assert await expired.get("q", search) == 2
    off = AnswerCache(seconds=0, entries=10)
    assert await off.get("q", search) == 3
    assert await off.get("q", search) == 4


async def test_failures_are_not_kept_and_waiters_try_on_their_own() -> None:
    cache = AnswerCache(seconds=60, entries=10)
    release = asyncio.Event()
    attempts = 0

    async def failing() -> str:
        nonlocal attempts
        attempts += 1
        await release.wait()
        raise ValueError("boom")

    first = asyncio.create_task(cache.get("q", failing))
    while attempts == 0:
        await asyncio.sleep(0)
    second = asyncio.create_task(cache.get("q", failing))
    await asyncio.sleep(0)
    release.set()
    for task in (first, second):
        with pytest.raises(ValueError):
            await task
    assert attempts == 2

    async def works() -> str:
        return "ok"

    assert await cache.get("q", works) == "ok"


async def test_entries_are_bounded_least_recently_used_first() -> None:
    cache = AnswerCache(seconds=60, entries=2)
    made: list[str] = []

    def maker(key: str) -> Callable[[], Awaitable[str]]:
        async def search() -> str:
            made.append(key)
            return key

        return search

    for key in ("a", "b", "a", "c", "a", "b"):
        await cache.get(key, maker(key))
    # a kept (used again), b evicted by c, then b made again.
    assert made == ["a", "b", "c", "b"]
