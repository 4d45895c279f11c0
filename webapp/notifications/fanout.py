"""Go-live fan-out: every follower with the channel's bell on gets a ``stream.online`` row.

Only the process that took the publish hears its registry's start (``LiveRegistry.on_started``),
so exactly one process fans out per go-live. The listener only starts a background task:
going live, and the stream's first playlist, never wait for it. The task writes a batch of
``notifications.fanout_batch_size`` followers per transaction (one ``INSERT ... SELECT``) and
yields between batches, so the event loop and the other writers of the database get their
turn; after each batch the bells open here for those followers are recounted.

An encoder that drops and reconnects starts a new stream row; within
``notifications.renotify_after`` of the channel's last fan-out nobody is notified again.

``results`` keeps the last few fan-outs (stream, rows, seconds): the benchmark and tests read
them; ``aethex_notification_fanout_seconds`` and ``aethex_notifications_created_total`` on
/metrics say the same to operators.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime

from mediaserver.live import LiveRegistry
from mediaserver.live.stream import LiveStream
from mediaserver.settings import Settings
from mediaserver.tasks import stop_tasks
from storage import Database
from storage import notifications as store

from .hub import NotificationHub
from .metrics import NotificationMetrics

log = logging.getLogger(__name__)

# A batch that fails (the database busy past its timeout) is tried this many times in all,
# waiting RETRY_DELAY seconds longer each time.
BATCH_ATTEMPTS = 3
RETRY_DELAY = 1.0


@dataclass(frozen=True)
class FanoutResult:
    stream_id: int
    channel_id: int
    rows: int
    batches: int
    seconds: float
    finished: float  # time.monotonic() when the last row was committed


class Fanout:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        hub: NotificationHub,
        metrics: NotificationMetrics,
    ) -> None:
        self.settings = settings
        self.db = db
        self.hub = hub
        self.metrics = metrics
        self.results: deque[FanoutResult] = deque(maxlen=32)
        self.running: set[int] = set()  # stream ids being fanned out now
        self._tasks: set[asyncio.Task[FanoutResult | None]] = set()
        self._last: dict[int, float] = {}  # channel id -> monotonic time of its last fan-out
        self._turns = asyncio.Semaphore(settings.notifications.fanout_concurrency)

    def listen(self, registry: LiveRegistry) -> None:
        registry.on_started(self.started)

    def started(self, stream: LiveStream) -> None:
        now = time.monotonic()
        quiet = self.settings.notifications.renotify_after
        last = self._last.get(stream.channel_id)
        if quiet > 0 and last is not None and now - last < quiet:
            log.info("notifications: %s went live again within %.0f s", stream.slug, quiet)
            return
        self._last[stream.channel_id] = now
        task = asyncio.get_running_loop().create_task(self.run(stream.stream_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run(self, stream_id: int) -> FanoutResult | None:
        """Notify the followers of the stream's channel; None when the stream is gone (or
        the database kept failing). Times from the go-live, waiting for a turn included."""
        started = time.monotonic()
        self.running.add(stream_id)
        try:
            async with self._turns:
                return await self._run(stream_id, started)
        finally:
            self.running.discard(stream_id)

    async def _batch(self, event: store.GoLive, after: int, email: bool) -> store.FanoutBatch:
        """One batch in its own transaction, tried again after a failure (a database busy
        with other writers): a batch is all or nothing, so a retry never writes twice."""
        size = self.settings.notifications.fanout_batch_size
        for attempt in range(BATCH_ATTEMPTS):
            try:
                async with self.db.session() as session:
                    batch = await store.fanout_batch(
                        session,
                        event,
                        after_user_id=after,
                        batch_size=size,
                        now=datetime.now(UTC),
                        email=email,
                    )
                    await session.commit()
                return batch
            except Exception as exc:
                if attempt + 1 == BATCH_ATTEMPTS:
                    raise
                log.warning("notifications: a fan-out batch failed (%s); trying again", exc)
                await asyncio.sleep(RETRY_DELAY * (attempt + 1))
        raise AssertionError("unreachable")

    async def _run(self, stream_id: int, started: float) -> FanoutResult | None:
        try:
            async with self.db.session() as session:
                event = await store.go_live(session, stream_id)
            if event is None:
                return None
            email = bool(self.settings.email.smtp_host)
            after, rows, batches = 0, 0, 0
            while True:
                batch = await self._batch(event, after, email)
                rows += batch.inserted
                batches += 1
                self.metrics.created.inc(batch.inserted)
                self.hub.dirty_range(after, batch.last_user_id)
                if batch.last_user_id is None:
                    break
                after = batch.last_user_id
                await asyncio.sleep(0)  # let the loop (and the publish) breathe
            finished = time.monotonic()
            result = FanoutResult(
                stream_id, event.channel_id, rows, batches, finished - started, finished
            )
            self.results.append(result)
            self.metrics.fanout_seconds.observe(result.seconds)
            log.info(
                "notifications: stream %d: %d follower(s) notified in %.2f s (%d batch(es))",
                stream_id,
                rows,
                result.seconds,
                batches,
            )
            return result
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("notifications: go-live fan-out of stream %d failed", stream_id)
            return None

    async def stop(self) -> None:
        await stop_tasks(self._tasks)
