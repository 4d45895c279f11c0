"""A cluster node's view of the streams the origins ingest (issue 15).

The pages, the API and the watch-history heartbeat ask the live registry whether a channel is
live. A web node ingests nothing and an origin only its own publishers, so on every node of a
cluster, every ``sync_interval``, this reads which channels some origin holds a lease on
(Redis) and their LIVE rows (PostgreSQL), and mirrors the others' into the registry
(``LiveRegistry.mirror``): found by ``get``, never iterated and never heard by the registry's
listeners (the origin runs those). Ending a mirrored stream (the creator's End
button, answered here) asks its origin over Redis (``request_stop``).

If Redis does not answer, the mirror stays as it was until it does.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any

from mediaserver.cluster.leases import ClusterUnavailable, leased_channels, request_stop
from mediaserver.live import LiveRegistry
from mediaserver.tasks import stop_task
from storage import Database, queries

log = logging.getLogger(__name__)


class RemoteStreams:
    def __init__(
        self,
        redis: Any,
        db: Database,
        registry: LiveRegistry,
        interval: float,
        on_error: Callable[[str], None] = lambda op: None,
    ) -> None:
        self.redis = redis
        self.db = db
        self.registry = registry
        self.interval = interval
        self._on_error = on_error
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._failing = False

    async def sync(self) -> None:
        """Mirror the streams leased now; drop those that ended or changed hands."""
        try:
            leased = await leased_channels(self.redis)
        except ClusterUnavailable as exc:
            self._on_error("mirror")
            if not self._failing:
                log.warning(
                    "live streams of the origins unknown (Redis: %s); keeping the last", exc
                )
            self._failing = True
            return
        self._failing = False
        async with self.db.session() as session:
            rows = await queries.live_streams_of(session, leased)
        wanted = {row.slug: row for row in rows}
        for stream in self.registry.remote():
            row = wanted.get(stream.slug)
            if row is None or row.stream_id != stream.stream_id:
                self.registry.unmirror(stream.slug)
        for slug, row in wanted.items():
            current = self.registry.get(slug)
            if current is not None and (not current.remote or current.stream_id == row.stream_id):
                continue  # ingested here, or mirrored already
            self.registry.mirror(
                channel_id=row.channel_id,
                slug=slug,
                stream_id=row.stream_id,
                started_at=row.started_at,
                disconnect=functools.partial(self._stop, row.channel_id),
            )

    def _stop(self, channel_id: int, reason: str) -> None:
        async def ask() -> None:
            try:
                if not await request_stop(self.redis, channel_id, reason):
                    log.warning("no origin took the request to end channel %d", channel_id)
            except ClusterUnavailable as exc:
                self._on_error("stop")
                log.warning(
                    "could not ask the origin to end channel %d (Redis: %s)", channel_id, exc
                )

        task = asyncio.ensure_future(ask())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self) -> None:
        while True:
            try:
                await self.sync()
            except Exception:  # the database hiccuped: try again at the next tick
                log.exception("mirroring the origins' live streams failed")
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        await stop_task(self._task)
        self._task = None
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
