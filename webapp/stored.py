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

from aiohttp import web

from storage.objects import ObjectStoreError

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
