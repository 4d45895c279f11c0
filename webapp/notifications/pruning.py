"""Pruning: notifications older than ``notifications.retention_days`` are deleted every
``notifications.prune_interval``, a bounded batch per transaction so the database is never
held for long."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from mediaserver.settings import NotificationsSettings
from mediaserver.tasks import stop_task
from storage import Database
from storage import notifications as store

from .metrics import NotificationMetrics

log = logging.getLogger(__name__)

PRUNE_BATCH = 5000


class Pruner:
    def __init__(
        self, db: Database, settings: NotificationsSettings, metrics: NotificationMetrics
    ) -> None:
        self.db = db
        self.settings = settings
        self.metrics = metrics
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            await stop_task(self._task)
            self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:
                log.exception("notifications: pruning failed")
            await asyncio.sleep(self.settings.prune_interval)

    async def run_once(self) -> int:
        cutoff = datetime.now(UTC) - timedelta(days=self.settings.retention_days)
        total = 0
        while True:
            async with self.db.session() as session:
                deleted = await store.prune(session, cutoff, PRUNE_BATCH)
                await session.commit()
            total += deleted
            self.metrics.pruned.inc(deleted)
            if deleted < PRUNE_BATCH:
                break
            await asyncio.sleep(0)
        if total:
            log.info(
                "notifications: pruned %d older than %d days", total, self.settings.retention_days
            )
        return total
