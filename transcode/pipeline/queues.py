"""The bounded hand-off from the reader to one rendition's worker: the reader never waits.

A rung that falls behind loses frames up to the next segment boundary, and every loss is
counted, just as a subscription drops to the next keyframe so that ingest never waits on the
reader.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

# Kinds of queue items, (kind, payload, boundary): a frame to encode, a source packet to copy,
# an encoded audio packet, a new video or audio track description, the end (payload: flush?).
FRAME, COPY, AUDIO, VINFO, AINFO, END = range(6)


class RungQueue:
    """Bounded hand-off from the reader to one rendition's worker; ``put`` never blocks.

    Only video counts against ``maxsize``. When full, video is dropped (and counted) until the
    next segment boundary, which is always accepted so every rendition keeps every segment
    start. ``hard_limit`` bounds everything, boundaries and audio included, for a worker that
    is stuck altogether.
    """

    def __init__(self, maxsize: int, wait: threading.Event | None = None) -> None:
        self.maxsize = max(1, maxsize)
        # Lossless mode (files, benchmarks): put_video waits for room until this event is set.
        self._wait_until = wait
        self.hard_limit = self.maxsize * 4 + 256
        self.dropped = 0
        self.dropped_audio = 0
        self._video = 0
        self._skipping = False
        self._items: deque[tuple[int, Any, bool]] = deque()
        self._cond = threading.Condition()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def skipping(self) -> bool:
        return self._skipping

    def put_video(self, kind: int, payload: Any, boundary: bool, force: bool = False) -> bool:
        """Queue a frame or copy packet; False if it was dropped (and counted).

        ``force`` skips the bound: the start-up backlog replayed once the ladder is planned
        is not a sign of a slow rung.
        """
        with self._cond:
            if force:
                self._skipping = False
            elif self._wait_until is not None:
                while self._video >= self.maxsize and not self._wait_until.is_set():
                    self._cond.wait(0.1)
            elif boundary:
                if len(self._items) >= self.hard_limit:
                    self.dropped += 1
                    self._skipping = True
                    return False
                self._skipping = False
            elif self._skipping or self._video >= self.maxsize:
                self._skipping = True
                self.dropped += 1
                return False
            self._items.append((kind, payload, boundary))
            self._video += 1
            self._cond.notify()
            return True

    def put(self, kind: int, payload: Any) -> None:
        with self._cond:
            if kind == AUDIO and len(self._items) >= self.hard_limit:
                self.dropped_audio += 1
                return
            self._items.append((kind, payload, False))
            self._cond.notify()

    def abort(self) -> None:
        """Discard what is queued and tell the worker to stop without flushing."""
        with self._cond:
            self._items.clear()
            self._video = 0
            self._items.append((END, False, False))
            self._cond.notify()

    def get(self) -> tuple[int, Any, bool]:
        with self._cond:
            while not self._items:
                self._cond.wait()
            item = self._items.popleft()
            if item[0] == FRAME or item[0] == COPY:
                self._video -= 1
                if self._wait_until is not None:
                    self._cond.notify()
            return item
