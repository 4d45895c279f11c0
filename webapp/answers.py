"""Answers reused for a moment: what is the same for every visitor costs one making.

Search results and a category page's listing hold only what anyone may see, so one answer may
serve every request for the same key for ``seconds`` (``search.cache_seconds``,
``browse.cache_seconds``: a rename, a new channel or a stream going live shows that much later
at most; 0 turns the cache off). Requests for a key already being made wait for it instead of
starting their own, so a burst of visitors is one database read, not fifty. At most ``entries``
answers are kept, the least recently used going first; a failure is never kept.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any


class AnswerCache:
    def __init__(self, seconds: float, entries: int) -> None:
        self.seconds = seconds
        self.entries = entries
        self._answers: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self._running: dict[Hashable, asyncio.Future[Any]] = {}

    async def get(self, key: Hashable, make: Callable[[], Awaitable[Any]]) -> Any:
        """The answer for ``key``: kept, being made by another request, or made now."""
        if self.seconds <= 0:
            return await make()
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
            return await make()  # that making failed: this request tries on its own
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._running[key] = future
        try:
            answer = await make()
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
