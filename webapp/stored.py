"""Serving a file the server made (a thumbnail, a scrub sprite, an upload) from this node's
disk, or, in S3 mode (issue 15), from the object store when this node does not have it (it
was made on another node, or this disk lost it). Shared by several areas, so it sits on the
floor with ``images`` and ``stream_links``.

The caller has checked the name against its own pattern and who may see it; ``key`` is the
object's key, which is also its path under data_dir.

Work that reads files (an MP4 download's remux, a clip cut, a clip's media) first copies a
recording or clip this node lacks from the store (``ensure_local``). Those copies are a cache
(``LocalCopies``): each copied directory holds ``COPY_MARK``, and a sweep removes the least
recently used ones past ``objects.copies_max_mb`` and those unused for
``objects.copies_max_age``. A copy pinned by its reader (``hold_local``) or used since the last
sweep stays; the node's own media has no mark and is never touched.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from mediaserver.tasks import stop_task
from storage.objects import ObjectStore, ObjectStoreError

from .errors import ApiError
from .keys import OBJECTS_KEY, SETTINGS_KEY

log = logging.getLogger(__name__)

# In a directory ensure_local copied from the store: JSON {"marker": name, "bytes": size} (the
# size once the copy is whole); its mtime is the copy's last use, kept across restarts.
COPY_MARK = ".aethex-copy"
# Where the copies land under data_dir: streams/{id} (recordings), clips/{id}/out (clips).
COPY_GLOBS = (f"streams/*/{COPY_MARK}", f"clips/*/out/{COPY_MARK}")
# An evicted copy is renamed to this prefix + its name (at once, so no reader finds half of
# it), then deleted in a thread; leftovers of a crash are deleted by the next sweep.
EVICTING = ".evicting-"


async def stored_file(
    request: web.Request,
    key: str,
    headers: dict[str, str],
    *,
    public: bool = False,
    store_first: bool = False,
) -> web.StreamResponse | None:
    """The file's response, or None if neither the disk nor the store has it. ``public``:
    the object may be fetched by anyone, so a bucket with ``objects.public_url`` is sent to
    with a redirect instead of passing through this server. ``store_first``: a file that
    another node may have rewritten since this node wrote its copy (a channel's live
    thumbnail): in S3 mode the store's is served, this node's only when the store lacks it."""
    path = request.app[SETTINGS_KEY].data_dir / key
    store = request.app[OBJECTS_KEY]
    here = await asyncio.to_thread(path.is_file)
    if here and (store.is_local or not store_first):
        return web.FileResponse(path, headers=headers)
    if store.is_local:
        return None
    url = store.public_url(key) if public else None
    if url is not None:
        raise web.HTTPFound(url)
    try:
        data = await store.get(key)
    except ObjectStoreError as exc:
        if here:
            if not exc.missing:
                log.warning("stored file: %s; serving this node's copy", exc)
            return web.FileResponse(path, headers=headers)
        if exc.missing:
            return None
        log.warning("stored file: %s", exc)
        raise ApiError(
            503, "storage_unavailable", "this file cannot be read right now", {"Retry-After": "5"}
        ) from None
    return web.Response(body=data, headers=headers)


# Copies from the store in progress, by directory key: concurrent requests share one.
_FETCHES: dict[tuple[int, str], asyncio.Future[bool]] = {}


async def ensure_local(app: web.Application, prefix: str, marker: str) -> bool:
    """Make ``data_dir/prefix`` hold the objects under ``prefix/`` (S3 mode: a recording or
    clip made elsewhere, or lost by this disk), for work that reads files (an MP4 download's
    remux, a clip cut from a VOD, a clip's media). ``marker``: a file whose presence means the
    directory is already here. False when neither the disk nor the store has it; a store that
    fails is ApiError 503. Work that reads the files for longer than a moment pins them first
    (``hold_local``), so the copy is not evicted under it."""
    root = app[SETTINGS_KEY].data_dir
    copies = app.get(COPIES_KEY)
    if await asyncio.to_thread((root / prefix / marker).is_file):
        if copies is not None:
            copies.touch(prefix)  # on the loop, before the caller reads: a sweep sees the use
        return True
    store = app[OBJECTS_KEY]
    if store.is_local:
        return False
    key = (id(store), prefix)
    fetching = _FETCHES.get(key)
    if fetching is None:
        fetching = _FETCHES[key] = asyncio.ensure_future(
            _fetch(store, root, prefix, marker, copies)
        )
        fetching.add_done_callback(lambda _: _FETCHES.pop(key, None))
    try:
        return await asyncio.shield(fetching)
    except ObjectStoreError as exc:
        log.warning("could not copy %s from the object store: %s", prefix, exc)
        raise ApiError(
            503, "storage_unavailable", "this media cannot be read right now", {"Retry-After": "5"}
        ) from None


async def _fetch(
    store: ObjectStore, root: Path, prefix: str, marker: str, copies: LocalCopies | None
) -> bool:
    objects = await store.list_prefix(prefix.rstrip("/") + "/")
    if not any(o.key == f"{prefix}/{marker}" for o in objects):
        return False
    # A directory that already has files is this node's own (a recording it made): never
    # marked as a copy, so never evicted. A new one is marked before its first file lands.
    mark = root / prefix / COPY_MARK
    cached = copies is not None and await asyncio.to_thread(_start_copy, root / prefix, marker)
    # The marker last: while it is missing, the copy is not whole.
    objects.sort(key=lambda o: o.key == f"{prefix}/{marker}")
    for info in objects:
        data = await store.get(info.key)
        await asyncio.to_thread(_write_atomic, root / info.key, data)
    if cached and copies is not None:
        size = sum(o.size for o in objects)
        await asyncio.to_thread(_write_mark, mark, marker, size)
        copies.touch(prefix)
        copies.sweep_soon()
    log.info("copied %s from the object store (%d files)", prefix, len(objects))
    return True


def _start_copy(directory: Path, marker: str) -> bool:
    """Mark ``directory`` as a copy unless it holds files already (True if marked)."""
    if directory.is_dir() and any(p.name != COPY_MARK for p in directory.iterdir()):
        return (directory / COPY_MARK).is_file()  # a copy left half-made by a crash: still one
    _write_mark(directory / COPY_MARK, marker, None)
    return True


def _write_mark(path: Path, marker: str, size: int | None) -> None:
    body = {"marker": marker} if size is None else {"marker": marker, "bytes": size}
    _write_atomic(path, json.dumps(body).encode())


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.fetch.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


async def publish_dir(
    store: ObjectStore, root: Path, directory: Path, last: tuple[str, ...]
) -> bool:
    """S3 mode: every file under ``directory`` (under data_dir) to the store, the names in
    ``last`` (the playlists and manifests that name the rest) after all others. Logged and
    False on failure (the files stay on this disk); True at once with LocalStore. ``root``:
    data_dir, which keys are relative to."""
    if store.is_local:
        return True
    files = await asyncio.to_thread(
        lambda: sorted(p for p in directory.rglob("*") if p.is_file() and ".tmp" not in p.name)
    )
    files.sort(key=lambda p: last.index(p.name) + 1 if p.name in last else 0)
    try:
        for path in files:
            await store.put_file(path.relative_to(root).as_posix(), path)
    except ObjectStoreError as exc:
        log.error("%s not (wholly) in the object store: %s", directory, exc)
        return False
    return True


async def forget_prefix(store: ObjectStore, prefix: str) -> None:
    """S3 mode: delete the objects under ``prefix/`` (a deleted clip's); a failure only
    orphans them (logged, counted by the store)."""
    if store.is_local:
        return
    try:
        await store.delete_prefix(prefix.rstrip("/") + "/")
    except ObjectStoreError as exc:
        log.warning("objects under %s not deleted: %s", prefix, exc)


# -- copies from the store, bounded ---------------------------------------------------------


@dataclass(slots=True)
class Copy:
    """A directory ensure_local copied from the store, as a sweep found it."""

    prefix: str  # under data_dir, e.g. streams/12
    marker: str  # the file whose presence says it is whole (removed first on eviction)
    size: int  # bytes
    used: float  # last use (wall clock)


class LocalCopies:
    """The copies from the store on this disk, bounded in size and age (S3 mode only)."""

    def __init__(self, root: Path, max_bytes: int, max_age: float, interval: float) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.interval = interval
        self.evicted = 0
        self._pins: collections.Counter[str] = collections.Counter()
        self._used: dict[str, float] = {}  # uses this run, newer than the marks' mtimes
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def touch(self, prefix: str) -> None:
        self._used[prefix] = time.time()

    def pin(self, prefix: str) -> Callable[[], None]:
        """Keep ``prefix`` while it is read; call the returned function (once) when done."""
        self._pins[prefix] += 1
        self.touch(prefix)
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            self._pins[prefix] -= 1
            if self._pins[prefix] <= 0:
                del self._pins[prefix]
            self.touch(prefix)

        return release

    def _busy(self, prefix: str, now: float) -> bool:
        return (
            prefix in self._pins
            or any(key[1] == prefix for key in _FETCHES)
            or now - self._used.get(prefix, float("-inf")) < self.interval
        )

    def scan(self, used: dict[str, float]) -> list[Copy]:
        """Blocking: every copy on disk; uses this run (``used``) are written to the marks'
        mtimes so they outlive a restart."""
        found = []
        for pattern in COPY_GLOBS:
            for mark in self.root.glob(pattern):
                directory = mark.parent
                if directory.name.startswith(EVICTING):
                    continue
                prefix = directory.relative_to(self.root).as_posix()
                try:
                    info = json.loads(mark.read_bytes())
                    mtime = mark.stat().st_mtime
                    if used.get(prefix, 0.0) > mtime:
                        os.utime(mark, (used[prefix], used[prefix]))
                        mtime = used[prefix]
                except (OSError, ValueError):
                    continue  # being evicted or made right now
                size = info.get("bytes") if isinstance(info, dict) else None
                if not isinstance(size, int):  # half-made (a crash): measure it
                    size = sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())
                marker = info.get("marker") if isinstance(info, dict) else None
                found.append(Copy(prefix, str(marker or ""), size, mtime))
        return found

    def choose(self, copies: list[Copy], now: float) -> list[Copy]:
        """The copies to evict: those unused past max_age, then the least recently used
        until the rest fit in max_bytes; never a busy one (which still counts)."""
        victims, kept, total = [], [], 0
        for copy in sorted(copies, key=lambda c: c.used):
            busy = self._busy(copy.prefix, now)
            if not busy and self.max_age and now - copy.used > self.max_age:
                victims.append(copy)
                continue
            total += copy.size
            if not busy:
                kept.append(copy)
        for copy in kept:
            if total <= self.max_bytes:
                break
            victims.append(copy)
            total -= copy.size
        return victims

    def _evict(self, copy: Copy, now: float) -> Path | None:
        """On the loop, right after checking it is not busy: rename it out of the way."""
        if self._busy(copy.prefix, now):
            return None
        directory = self.root / copy.prefix
        trash = directory.with_name(EVICTING + directory.name)
        try:
            os.rename(directory, trash)
        except OSError as exc:
            log.warning("copy %s not evicted: %s", copy.prefix, exc)
            return None
        self._used.pop(copy.prefix, None)
        return trash

    async def sweep(self) -> list[str]:
        """One pass; the prefixes evicted."""
        copies = await asyncio.to_thread(self.scan, dict(self._used))
        now = time.time()
        evicted = []
        for copy in self.choose(copies, now):
            if self._evict(copy, now) is not None:
                evicted.append(copy.prefix)
        if evicted:
            self.evicted += len(evicted)
            log.info("evicted %d copies from the object store: %s", len(evicted), evicted)
        await asyncio.to_thread(_remove_evicted, self.root)
        return evicted

    def sweep_soon(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.sweep()
            except Exception:
                log.exception("sweep of the copies from the object store failed")

    async def start(self, _app: web.Application) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self, _app: web.Application) -> None:
        if self._task is not None:
            with contextlib.suppress(Exception):
                await stop_task(self._task)
            self._task = None


def _remove_evicted(root: Path) -> None:
    for pattern in (f"streams/{EVICTING}*", f"clips/*/{EVICTING}*"):
        for trash in root.glob(pattern):
            shutil.rmtree(trash, ignore_errors=True)
            if trash.parent.parent.name == "clips":  # clips/{id}: gone with its only copy
                try:
                    trash.parent.rmdir()
                except OSError:
                    pass  # it holds more (a draft): kept


COPIES_KEY = web.AppKey("stored_copies", LocalCopies)


def hold_local(app: web.Application, prefix: str) -> Callable[[], None]:
    """Pin ``data_dir/prefix`` (a copy ``ensure_local`` made, or may make) while it is read:
    call the returned function once done. Take it before ``ensure_local``."""
    copies = app.get(COPIES_KEY)
    return copies.pin(prefix) if copies is not None else _nothing


def _nothing() -> None:
    pass


def setup(app: web.Application) -> None:
    """S3 mode: bound the copies of recordings and clips ensure_local makes (after
    ``OBJECTS_KEY`` is set)."""
    if app[OBJECTS_KEY].is_local:
        return
    o = app[SETTINGS_KEY].objects
    copies = LocalCopies(
        app[SETTINGS_KEY].data_dir,
        int(o.copies_max_mb * (1 << 20)),
        o.copies_max_age,
        o.copies_sweep,
    )
    app[COPIES_KEY] = copies
    app.on_startup.append(copies.start)
    app.on_cleanup.append(copies.stop)
