"""Search answers reused for a moment: the same query from many visitors costs one search.

Search results are the same for everybody (they hold only what anyone may see), so an answer
may serve every request for the same query, type, page size and cursor during
``search.cache_seconds`` (2 s by default: a rename, a new channel or a stream going live shows
in search that much later at most; 0 turns the cache off). Requests for a query already being
searched wait for that search instead of starting their own. At most ``search.cache_entries``
answers are kept, the least recently used going first.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

from aiohttp import web


class SearchCache:
    def __init__(self, seconds: float, entries: int) -> None:
        self.seconds = seconds
        self.entries = entries
        self._answers: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self._running: dict[Hashable, asyncio.Future[Any]] = {}

    async def get(self, key: Hashable, search: Callable[[], Awaitable[Any]]) -> Any:
        """The answer for ``key``: kept, being made by another request, or made now."""
        if self.seconds <= 0:
            return await search()
        now = time.monotonic()
        kept = self._answers.get(key)
        if kept is not None and kept[0] > now:
            self._answers.move_to_end(key)
            return kept[1]
        running = self._running.get(key)
        if running is not None:
            await asyncio.wait([running])
            if not running.cancelled() and running.exception() is None:
                return running.result()
            return await search()  # that search failed: this request tries on its own
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._running[key] = future
        try:
            answer = await search()
        except BaseException:
            future.cancel()
            raise
        finally:
            del self._running[key]
        future.set_result(answer)
        self._answers[key] = (time.monotonic() + self.seconds, answer)
        self._answers.move_to_end(key)
        while len(self._answers) > self.entries:
            self._answers.popitem(last=False)
        return answer


CACHE_KEY = web.AppKey("search_cache", SearchCache)
