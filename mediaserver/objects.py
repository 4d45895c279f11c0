"""The process's object store and the uploader that copies finished files into it (issue 15).

``make_store`` builds the backend ``[objects]`` names (LocalStore under data_dir by default,
S3Store for ``backend = "s3"``), its failures counted in ``aethex_object_store_errors_total``.

``Uploader``: in S3 mode the media path still writes files first (transcode produces files;
live HLS is served from memory and this node's disk), and hands each finished file to the
uploader, which copies it to the bucket off the publisher's path: a bounded queue
(``objects.upload_queue``), ``objects.upload_concurrency`` workers, and retries with a backoff
doubling from ``objects.retry_initial`` to ``objects.retry_max`` for ``objects.retry_for``
seconds, so a store that is down for a while loses nothing and never stops a stream. Each
upload gives a future that says whether the file got there, which is how a playlist is sent
only after the segments it names. With LocalStore the files already are the objects: nothing
is queued.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from mediaserver.metrics import Metrics
from mediaserver.settings import Settings
from mediaserver.tasks import stop_tasks
from storage.objects import LocalStore, ObjectStore, ObjectStoreError, S3Config, S3Store
from transcode.hls import write_file_atomic
from transcode.hls.recording import JOURNAL

log = logging.getLogger(__name__)


def make_store(settings: Settings, metrics: Metrics | None = None) -> ObjectStore:
    o = settings.objects

    def count(op: str) -> None:
        if metrics is not None:
            metrics.object_store_errors.labels(op).inc()

    if o.backend == "s3":
        config = S3Config(
            bucket=o.bucket,
            endpoint_url=o.endpoint_url,
            region=o.region,
            prefix=o.prefix,
            access_key=o.access_key,
            secret_key=o.secret_key,
            timeout=o.timeout,
            part_size=o.part_size,
        )
        return S3Store(config, public_url=o.public_url, on_error=count)
    return LocalStore(settings.data_dir, public_url=o.public_url, on_error=count)


@dataclass(slots=True)
class _Job:
    key: str
    path: Path
    done: asyncio.Future[bool]
    first_try: float = field(default_factory=time.monotonic)


class Uploader:
    """Copies files under data_dir to the store under the same relative key."""

    def __init__(self, settings: Settings, store: ObjectStore, metrics: Metrics) -> None:
        self.settings = settings
        self.limits = settings.objects
        self.store = store
        self.metrics = metrics
        self.root = settings.data_dir
        self._queue: asyncio.Queue[_Job] = asyncio.Queue(self.limits.upload_queue)
        self._workers: list[asyncio.Task[None]] = []
        self._pending = 0
        self._stopped = False  # shutting down: nothing more is queued
        self._full = False  # the queue refused a file and has not taken one since
        metrics.object_uploads_pending.set_function(lambda: self._pending)

    @property
    def active(self) -> bool:
        """False when the store is the data dir itself (nothing to copy)."""
        return not self.store.is_local

    def key_for(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def start(self) -> None:
        if not self.active or self._workers:
            return
        loop = asyncio.get_running_loop()
        self._workers = [
            loop.create_task(self._work()) for _ in range(self.limits.upload_concurrency)
        ]

    async def stop(self) -> None:
        self._stopped = True
        if self._pending:
            log.warning(
                "shutting down with %d object upload(s) not done; the files stay on this disk",
                self._pending,
            )
        await stop_tasks(self._workers)
        self._workers = []
        while not self._queue.empty():  # what is left stays on disk only
            job = self._queue.get_nowait()
            self._settle(job, False)
        await self.store.close()

    def upload(self, path: Path) -> asyncio.Future[bool]:
        """Queue ``path`` (under data_dir) for upload; the future says if it got there.
        Never blocks: a full queue is a counted, logged refusal (the file stays on disk)."""
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        if not self.active or self._stopped:
            done.set_result(not self._stopped)
            return done
        job = _Job(self.key_for(path), path, done)
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            self.metrics.object_uploads_dropped.labels("queue_full").inc()
            if not self._full:  # one line per run of refusals, not one per file
                log.error(
                    "object upload queue full (%d files waiting): new files stay on this "
                    "disk only (counted in aethex_object_uploads_dropped_total) until it has room",
                    self._queue.maxsize,
                )
            self._full = True
            done.set_result(False)
            return done
        if self._full:
            log.warning("object upload queue has room again")
            self._full = False
        self._pending += 1
        return done

    def upload_all(self, paths: list[Path]) -> asyncio.Future[list[bool]]:
        return asyncio.gather(*(self.upload(p) for p in paths))

    def _settle(self, job: _Job, ok: bool) -> None:
        self._pending -= 1
        if not job.done.done():
            job.done.set_result(ok)

    async def _work(self) -> None:
        while True:
            job = await self._queue.get()
            try:
                await self._run(job)
            except asyncio.CancelledError:
                self._settle(job, False)
                raise
            except Exception:  # a bug must not take a worker down
                log.exception("object upload of %s failed", job.key)
                self._settle(job, False)

    async def _run(self, job: _Job) -> None:
        wait = self.limits.retry_initial
        attempt = 0
        while True:
            attempt += 1
            try:
                await self.store.put_file(job.key, job.path)
            except ObjectStoreError as exc:
                if not job.path.exists():
                    self.metrics.object_uploads_dropped.labels("no_file").inc()
                    log.warning("object upload of %s: the file is gone (%s)", job.key, exc)
                    self._settle(job, False)
                    return
                spent = time.monotonic() - job.first_try
                if spent + wait > self.limits.retry_for:
                    self.metrics.object_uploads_dropped.labels("gave_up").inc()
                    log.error(
                        "object upload of %s given up after %d attempt(s) in %.0f s: %s; "
                        "it stays on this node's disk only",
                        job.key,
                        attempt,
                        spent,
                        exc,
                    )
                    self._settle(job, False)
                    return
                log.warning(
                    "object upload of %s failed (attempt %d), retrying in %.1f s: %s",
                    job.key,
                    attempt,
                    wait,
                    exc,
                )
                await asyncio.sleep(wait)
                wait = min(wait * 2, self.limits.retry_max)
                continue
            if attempt > 1:
                log.info("object upload of %s succeeded after %d attempts", job.key, attempt)
            self._settle(job, True)
            return


# Names in a recording's directory that say what the rest is: sent after everything they name.
_PLAYLISTS = ("index.m3u8", "previews.vtt", "master.m3u8")


class RecordingUploads:
    """One recording's way into the store: each media file as it is written, and at the end
    (``publish``) whatever is still missing, then the media playlists, then the master, so a
    playlist in the bucket never names a segment that is not there."""

    def __init__(
        self, uploader: Uploader, directory: Path, present: frozenset[Path] = frozenset()
    ) -> None:
        self.uploader = uploader
        self.directory = directory
        self.loop = asyncio.get_running_loop()
        self._sent: dict[Path, asyncio.Future[bool]] = {}
        self._present = present  # files known to be in the bucket already (copied from it)

    def file(self, path: Path) -> None:
        """On the loop: queue a file that was just written (a segment, an init section)."""
        self._sent[path] = self.uploader.upload(path)

    def file_threadsafe(self, path: Path) -> None:
        """From the stream's writer thread, right after the file is in place."""
        self.loop.call_soon_threadsafe(self.file, path)

    async def publish(self, label: str) -> bool:
        """Everything under the directory is in the store, playlists last; False (logged) if
        some file could not be sent."""
        if not self.uploader.active:
            return True
        ok = all(await asyncio.gather(*self._sent.values()))
        files = await asyncio.to_thread(_files_under, self.directory)
        media = [p for p in files if p.name not in _PLAYLISTS]
        again = [
            p
            for p in media
            if p.name == JOURNAL  # it grew since it was last sent
            or (p not in self._present and (p not in self._sent or not self._sent[p].result()))
        ]
        ok = all(await self.uploader.upload_all(again)) and ok
        indexes = [p for p in files if p.name in _PLAYLISTS[:2]]
        masters = [p for p in files if p.name == "master.m3u8"]
        if ok:  # a playlist goes up only once every file it names is there
            ok = all(await self.uploader.upload_all(indexes))
        if ok:
            ok = all(await self.uploader.upload_all(masters))
        if ok:
            log.info("%s: recording in the object store (%d files)", label, len(files))
        else:
            log.error(
                "%s: the recording is not whole in the object store; it stays on this node's "
                "disk (see the upload errors above)",
                label,
            )
        return ok


async def fetch_recording(uploader: Uploader, directory: Path) -> frozenset[Path]:
    """Copy a recording's objects that this disk lacks from the bucket into ``directory``
    (crash recovery on a node that did not make it, or whose disk was wiped); the local paths
    of everything the bucket holds. Nothing (and no error) when the store is the disk."""
    if not uploader.active:
        return frozenset()
    store, prefix = uploader.store, uploader.key_for(directory)
    present = set()
    for info in await store.list_prefix(f"{prefix}/"):
        path = uploader.root / info.key
        present.add(path)
        if await asyncio.to_thread(path.is_file):
            continue
        data = await store.get(info.key)
        await asyncio.to_thread(write_file_atomic, path, data)
    return frozenset(present)


def _files_under(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.rglob("*") if p.is_file() and not p.name.endswith(".tmp"))


async def publish_unsent(uploader: Uploader) -> int:
    """At start (S3 mode): recordings this node archived whose master playlist never reached
    the bucket (the store was down for longer than ``objects.retry_for``, or the server stopped
    before the uploads were done) are sent again, playlists last. One HEAD per recording on
    this disk; returns how many were sent."""
    if not uploader.active:
        return 0
    streams = uploader.root / "streams"
    found = await asyncio.to_thread(
        lambda: sorted(p.parent for p in streams.glob("*/master.m3u8")) if streams.is_dir() else []
    )
    sent = 0
    for directory in found:
        key = f"{uploader.key_for(directory)}/master.m3u8"
        try:
            if await uploader.store.exists(key):
                continue
        except ObjectStoreError as exc:
            log.warning("not checking the recordings in the object store now: %s", exc)
            return sent
        if await RecordingUploads(uploader, directory).publish(f"{directory.name} (again)"):
            sent += 1
    if sent:
        log.warning("%d recording(s) sent to the object store again at start", sent)
    return sent
