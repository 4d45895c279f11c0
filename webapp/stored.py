"""Serving a file the server made (a thumbnail, a scrub sprite, an upload) from this node's
disk, or, in S3 mode (issue 15), from the object store when this node does not have it (it
was made on another node, or this disk lost it). Shared by several areas, so it sits on the
floor with ``images`` and ``stream_links``.

The caller has checked the name against its own pattern and who may see it; ``key`` is the
object's key, which is also its path under data_dir.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from aiohttp import web

from storage.objects import ObjectStore, ObjectStoreError

from .errors import ApiError
from .keys import OBJECTS_KEY, SETTINGS_KEY

log = logging.getLogger(__name__)


async def stored_file(
    request: web.Request, key: str, headers: dict[str, str], *, public: bool = False
) -> web.StreamResponse | None:
    """The file's response, or None if neither the disk nor the store has it. ``public``:
    the object may be fetched by anyone, so a bucket with ``objects.public_url`` is sent to
    with a redirect instead of passing through this server."""
    path = request.app[SETTINGS_KEY].data_dir / key
    if await asyncio.to_thread(path.is_file):
        return web.FileResponse(path, headers=headers)
    store = request.app[OBJECTS_KEY]
    if store.is_local:
        return None
    url = store.public_url(key) if public else None
    if url is not None:
        raise web.HTTPFound(url)
    try:
        data = await store.get(key)
    except ObjectStoreError as exc:
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
    fails is ApiError 503."""
    root = app[SETTINGS_KEY].data_dir
    if await asyncio.to_thread((root / prefix / marker).is_file):
        return True
    store = app[OBJECTS_KEY]
    if store.is_local:
        return False
    key = (id(store), prefix)
    fetching = _FETCHES.get(key)
    if fetching is None:
        fetching = _FETCHES[key] = asyncio.ensure_future(_fetch(store, root, prefix, marker))
        fetching.add_done_callback(lambda _: _FETCHES.pop(key, None))
    try:
        return await asyncio.shield(fetching)
    except ObjectStoreError as exc:
        log.warning("could not copy %s from the object store: %s", prefix, exc)
        raise ApiError(
            503, "storage_unavailable", "this media cannot be read right now", {"Retry-After": "5"}
        ) from None


async def _fetch(store: ObjectStore, root: Path, prefix: str, marker: str) -> bool:
    objects = await store.list_prefix(prefix.rstrip("/") + "/")
    if not any(o.key == f"{prefix}/{marker}" for o in objects):
        return False
    # The marker last: while it is missing, the copy is not whole.
    objects.sort(key=lambda o: o.key == f"{prefix}/{marker}")
    for info in objects:
        data = await store.get(info.key)
        await asyncio.to_thread(_write_atomic, root / info.key, data)
    log.info("copied %s from the object store (%d files)", prefix, len(objects))
    return True


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
