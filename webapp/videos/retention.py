"""Retention of past broadcasts (issue 13): a background pass every
``videos.retention_interval`` seconds removes, channel by channel, the videos beyond its
limits (its own, else the server's ``videos.retention_days`` / ``retention_max_gb``), the
oldest unpinned first: files deleted, the row kept and marked deleted, each removal logged.

The same pass measures the size of recordings archived before sizes were kept, so the size
limit and the dashboard's storage used count them too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web

from mediaserver.settings import Settings
from mediaserver.tasks import stop_task
from storage import Database
from storage import videos as video_queries
from storage.models import Stream
from storage.objects import ObjectStore

from ..keys import DB_KEY, OBJECTS_KEY, SETTINGS_KEY

log = logging.getLogger(__name__)

# Unmeasured recordings measured per pass (each walks a directory in a thread).
MEASURE_PER_PASS = 200


@dataclass(frozen=True)
class Removed:
    stream_id: int
    channel: str
    reason: str
    size_bytes: int


async def measure_unmeasured(settings: Settings, db: Database) -> int:
    async with db.session() as session:
        ids = await video_queries.unmeasured(session, MEASURE_PER_PASS)
    for stream_id in ids:
        directory = video_queries.recording_dir(settings.data_dir, stream_id)
        size = await asyncio.to_thread(video_queries.measure_recording, directory)
        async with db.session() as session:
            await video_queries.set_size(session, stream_id, size)
            await session.commit()
    return len(ids)


async def apply_retention(
    settings: Settings,
    db: Database,
    now: datetime | None = None,
    objects: ObjectStore | None = None,
) -> list[Removed]:
    """One pass: what it removed, in the order it did."""
    now = now or datetime.now(UTC)
    await measure_unmeasured(settings, db)
    default = video_queries.Limits(settings.videos.retention_days, settings.videos.retention_max_gb)
    async with db.session() as session:
        plan = await video_queries.retention_candidates(session, default, now)
    removed: list[Removed] = []
    for video, slug, reason in plan:
        async with db.session() as session:
            stream = await session.get(Stream, video.stream_id)
            if stream is None or stream.deleted_at is not None or stream.pinned:
                continue  # changed since the plan was made
            thumbnail = stream.thumbnail_path
            await video_queries.mark_deleted(session, stream, now)
            await session.commit()
        await asyncio.to_thread(
            video_queries.remove_recording, settings.data_dir, video.stream_id, thumbnail
        )
        if objects is not None:  # S3 mode: the bucket's copy too
            await video_queries.remove_stored_recording(objects, video.stream_id, thumbnail)
        log.info(
            "retention: removed video %d of %s (%s, %d bytes)",
            video.stream_id,
            slug,
            reason,
            video.size_bytes,
        )
        removed.append(Removed(video.stream_id, slug, reason, video.size_bytes))
    return removed


async def run(settings: Settings, db: Database, objects: ObjectStore | None = None) -> None:
    while True:
        try:
            await apply_retention(settings, db, objects=objects)
        except Exception:
            log.exception("retention pass failed")
        await asyncio.sleep(settings.videos.retention_interval)


async def lifetime(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.get_running_loop().create_task(
        run(app[SETTINGS_KEY], app[DB_KEY], app.get(OBJECTS_KEY))
    )
    yield
    await stop_task(task)
