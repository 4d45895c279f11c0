"""The registry of live streams, keyed by channel slug, with started/ended listeners.

Listeners are how later stages (transcoder, packager, chat status) attach to a stream without
ingest knowing about them: ingest -> live -> transcode, never the other way round.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import datetime

from .stream import LiveStream

log = logging.getLogger(__name__)

Listener = Callable[[LiveStream], None]


class AlreadyLive(Exception):
    """The channel already has a publisher."""


class LiveRegistry:
    def __init__(
        self, queue_size: int = 512, on_drop: Callable[[str, str, int], None] | None = None
    ) -> None:
        self.queue_size = queue_size
        self._streams: dict[str, LiveStream] = {}
        # Streams another node of a cluster ingests (issue 15): ``get`` finds them, so pages
        # and the API see them live; iteration, ``len`` and the listeners are this node's own.
        self._remote: dict[str, LiveStream] = {}
        self._on_started: list[Listener] = []
        self._on_ended: list[Listener] = []
        self._on_drop = on_drop

    def on_started(self, listener: Listener) -> None:
        self._on_started.append(listener)

    def on_ended(self, listener: Listener) -> None:
        self._on_ended.append(listener)

    def get(self, slug: str) -> LiveStream | None:
        return self._streams.get(slug) or self._remote.get(slug)

    def mirror(
        self,
        *,
        channel_id: int,
        slug: str,
        stream_id: int,
        started_at: datetime,
        disconnect: Callable[[str], None] | None = None,
    ) -> LiveStream:
        """Know a stream another node ingests (``disconnect`` asks that node to end it). No
        listener hears it: the node that ingests it runs them."""
        stream = LiveStream(
            channel_id=channel_id,
            slug=slug,
            stream_id=stream_id,
            started_at=started_at,
            queue_size=1,
        )
        stream.remote = True
        stream.disconnect = disconnect
        old = self._remote.get(slug)
        if old is not None:
            old.end()
        self._remote[slug] = stream
        return stream

    def unmirror(self, slug: str) -> None:
        stream = self._remote.pop(slug, None)
        if stream is not None:
            stream.end()

    def remote(self) -> list[LiveStream]:
        return list(self._remote.values())

    def __iter__(self) -> Iterator[LiveStream]:
        return iter(list(self._streams.values()))

    def __len__(self) -> int:
        return len(self._streams)

    def start(
        self, *, channel_id: int, slug: str, stream_id: int, started_at: datetime
    ) -> LiveStream:
        if slug in self._streams:
            raise AlreadyLive(slug)
        mirrored = self._remote.pop(slug, None)
        if mirrored is not None:  # it was another origin's; from now on it is this one's
            mirrored.end()
        on_drop = None
        if self._on_drop is not None:
            hook = self._on_drop
            on_drop = lambda consumer, n: hook(slug, consumer, n)  # noqa: E731
        stream = LiveStream(
            channel_id=channel_id,
            slug=slug,
            stream_id=stream_id,
            started_at=started_at,
            queue_size=self.queue_size,
            on_drop=on_drop,
        )
        self._streams[slug] = stream
        self._notify(self._on_started, stream)
        return stream

    def end(self, stream: LiveStream) -> None:
        if self._streams.get(stream.slug) is not stream:
            return
        del self._streams[stream.slug]
        stream.end()
        self._notify(self._on_ended, stream)

    @staticmethod
    def _notify(listeners: list[Listener], stream: LiveStream) -> None:
        for listener in listeners:
            try:
                listener(stream)
            except Exception:  # a broken listener must not take ingest down
                log.exception("live stream listener %r failed for %s", listener, stream.slug)
