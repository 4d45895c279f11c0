"""How a clip is made: the capture from the live DVR buffer, and the cut, run in worker threads
(``concurrent_cuts`` at once; more wait their turn) and tracked so shutdown waits for them.

The flow: a live capture makes a ``draft`` (its own copy of the segments, so the live window
may move on); publishing a draft, or clipping a VOD, marks the clip ``processing`` and starts
the cut in the background; the cut's end makes it ``ready`` (or ``failed`` with the error). A
clip deleted while it is being cut stays deleted: the finished cut's files are removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from mediaserver.settings import ClipSettings
from mediaserver.tasks import stop_task
from storage import Database
from storage import clips as clip_queries
from storage.objects import LocalStore, ObjectStore
from transcode.edge import LiveEdge
from transcode.hls import RenditionInfo
from transcode.smart_cut import CutOptions, CutResult, SourceRendition, cut_clip

from ..stored import forget_prefix, publish_dir
from . import media
from .media import LiveRendition

log = logging.getLogger(__name__)

# A clip's files that name the others: sent to the bucket after them, in this order.
CLIP_LAST = ("index.m3u8", "master.m3u8", media.CLIP_META)


class ClipService:
    def __init__(
        self,
        db: Database,
        data_dir: Path,
        limits: ClipSettings,
        objects: ObjectStore | None = None,
    ) -> None:
        self.db = db
        self.data_dir = data_dir
        # S3 mode (issue 15): a ready clip's files go to the bucket, so any node serves it.
        self.objects = objects if objects is not None else LocalStore(data_dir)
        self.limits = limits
        self._cuts = asyncio.Semaphore(limits.concurrent_cuts)
        self._tasks: set[asyncio.Task[None]] = set()

    def dir(self, public_id: str) -> Path:
        return media.clip_dir(self.data_dir, public_id)

    # -- live -------------------------------------------------------------------------------

    async def capture(self, edge: LiveEdge, public_id: str, seconds: float) -> media.Draft:
        """The newest ``seconds`` of ``edge`` into the clip's draft (files copied or linked)."""
        renditions = [
            LiveRendition(
                r.name,
                tuple(r.dvr),
                RenditionInfo(
                    uri=f"{r.name}/index.m3u8",
                    bandwidth=max(r.bandwidth, 1),
                    average_bandwidth=max(r.average_bandwidth, 1),
                    width=r.width,
                    height=r.height,
                    frame_rate=r.frame_rate,
                    codecs=r.codecs,
                ),
            )
            for r in sorted(edge, key=lambda r: r.width * r.height, reverse=True)
        ]
        stream_dir = self.data_dir / "streams" / str(edge.stream_id)
        return await asyncio.to_thread(
            media.capture_live, renditions, stream_dir, self.dir(public_id), seconds
        )

    # -- cutting ----------------------------------------------------------------------------

    def start_cut(
        self,
        clip_id: int,
        public_id: str,
        sources: Callable[[], list[SourceRendition]],
        start: float,
        end: float,
        *,
        drop_draft: bool,
    ) -> asyncio.Task[None]:
        """Cut in the background; the clip's row follows (ready or failed)."""
        task = asyncio.get_running_loop().create_task(
            self._cut(clip_id, public_id, sources, start, end, drop_draft)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def wait_idle(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _run_cut(
        self, sources: Callable[[], list[SourceRendition]], start: float, end: float, out: Path
    ) -> tuple[CutResult, dict[str, Any], int]:
        renditions = sources()
        if not renditions:
            raise ValueError("the source has no rendition on disk")
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True, exist_ok=True)
        options = CutOptions(max_duration=self.limits.max_seconds + 1.0)
        result = cut_clip(renditions, start, end, out, options)
        manifest = media.write_manifest(out, result)
        return result, manifest, media.tree_size(out)

    async def _cut(
        self,
        clip_id: int,
        public_id: str,
        sources: Callable[[], list[SourceRendition]],
        start: float,
        end: float,
        drop_draft: bool,
    ) -> None:
        root = self.dir(public_id)
        out = root / media.OUT
        try:
            async with self._cuts:
                result, manifest, size = await asyncio.to_thread(
                    self._run_cut, sources, start, end, out
                )
        except Exception as exc:
            log.exception("clip %s: cut failed", public_id)
            async with self.db.session() as session:
                await clip_queries.update_fields(
                    session,
                    clip_id,
                    when_status="processing",
                    status="failed",
                    error=str(exc)[:500],
                )
                await session.commit()
            return
        relative = out.relative_to(self.data_dir)
        # In the bucket before it is ready (the manifest and playlists after what they name).
        await publish_dir(self.objects, self.data_dir, out, CLIP_LAST)
        async with self.db.session() as session:
            done = await clip_queries.update_fields(
                session,
                clip_id,
                when_status="processing",
                status="ready",
                path=str(relative),
                thumbnail_path=str(relative / manifest["thumbnail"]),
                duration_seconds=round(result.duration, 6),
                size_bytes=size,
                published_at=datetime.now(UTC),
                error=None,
            )
            await session.commit()
        if not done:  # deleted while it was being cut
            await asyncio.to_thread(shutil.rmtree, root, True)
            await forget_prefix(self.objects, f"{media.CLIPS_DIR}/{public_id}")
        elif drop_draft:
            await asyncio.to_thread(shutil.rmtree, root / media.DRAFT, True)
            await asyncio.to_thread((root / media.DRAFT_META).unlink, True)
        log.info(
            "clip %s ready: %.3f s, %d frames copied, %d re-encoded",
            public_id,
            result.duration,
            result.copied_video_frames,
            result.reencoded_video_frames,
        )

    async def remove_files(self, public_id: str) -> None:
        await asyncio.to_thread(shutil.rmtree, self.dir(public_id), True)
        await forget_prefix(self.objects, f"{media.CLIPS_DIR}/{public_id}")


async def prune_drafts(service: ClipService) -> int:
    """Remove drafts older than ``clips.draft_hours`` (rows marked deleted, files gone)."""
    before = datetime.now(UTC) - timedelta(hours=service.limits.draft_hours)
    async with service.db.session() as session:
        stale = await clip_queries.stale_drafts(session, before)
        await clip_queries.mark_deleted_by_public_id(session, stale)
        await session.commit()
    for public_id in stale:
        await service.remove_files(public_id)
    if stale:
        log.info("removed %d unpublished clip draft(s)", len(stale))
    return len(stale)


async def _prune_forever(service: ClipService) -> None:
    while True:
        try:
            await prune_drafts(service)
        except Exception:
            log.exception("pruning clip drafts failed")
        await asyncio.sleep(service.limits.prune_interval)


@contextlib.asynccontextmanager
async def lifetime(service: ClipService) -> AsyncIterator[None]:
    async with service.db.session() as session:
        failed = await clip_queries.fail_interrupted(session)
        await session.commit()
    if failed:
        log.warning("%d clip(s) were being cut when the server stopped: marked failed", failed)
    pruner = asyncio.get_running_loop().create_task(_prune_forever(service))
    yield
    await stop_task(pruner)
    with contextlib.suppress(Exception):
        async with asyncio.timeout(60):
            await service.wait_idle()
