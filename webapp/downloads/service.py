"""The download route: who may, which rendition, and the response streamed from the plan.

Answers are JSON errors in the API's shape (a download is fetched by curl and download
managers as often as by a browser): 400 for a rendition name that is malformed or not one
this video has, 404 for a video that does not exist, is deleted or is not visible to the
caller (the same answer for all three), 403 for a visible video whose channel keeps
downloads to its owner, 503 with Retry-After when ``downloads.max_concurrent`` are running,
429 with Retry-After when ``downloads.max_per_address`` of them are the caller's.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import OrderedDict
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web

from mediaserver.addresses import address_key
from storage.models import Channel, Stream, User
from transcode.remux import Mp4Plan, RemuxError, plan_mp4, rendition_groups, rendition_names

from ..admission import TOO_MANY_FROM_ADDRESS, Admission
from ..errors import json_error
from ..forwarded import client_host
from ..identity import can_manage, current_user
from ..keys import DB_KEY, SETTINGS_KEY
from ..stored import ensure_local, hold_local
from ..stream_links import find_video
from .metrics import DownloadMetrics

log = logging.getLogger(__name__)

RENDITION_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_RANGE_RE = re.compile(r"bytes=(\d{0,18})-(\d{0,18})")
_UNSAFE = re.compile(r"[^A-Za-z0-9]+")
_UNSAFE_UNICODE = re.compile(r"[\W_]+")
RETRY_SECONDS = 10


class Downloads:
    """The downloads running now (each one from plan to last byte), at most ``limit`` in all and
    ``per_address`` per client address (0: no such cap), and the plans made recently: a player
    or a download manager asks for many ranges of one file, and a recording never changes (a
    deleted video is refused before its plan is looked up)."""

    def __init__(
        self,
        limit: int,
        cache_bytes: int,
        cache_seconds: float,
        metrics: DownloadMetrics | None = None,
        per_address: int = 0,
    ) -> None:
        self.slots = Admission(limit, per_address)
        self.metrics = metrics if metrics is not None else DownloadMetrics(None)
        self.metrics.running.set_function(lambda: self.running)
        self.cache_bytes = cache_bytes
        self.cache_seconds = cache_seconds
        self._plans: OrderedDict[tuple[int, str], tuple[float, str, Mp4Plan]] = OrderedDict()
        self._held = 0

    @property
    def running(self) -> int:
        return self.slots.total

    def enter(self, client: str | None = None) -> str | None:
        """Take a slot for ``client`` (an address key) and return None, or say why not
        (``webapp.admission``'s reasons)."""
        return self.slots.admit(client)

    def leave(self, client: str | None = None) -> None:
        self.slots.release(client)

    def cached(self, key: tuple[int, str]) -> tuple[str, Mp4Plan] | None:
        hit = self._plans.get(key)
        if hit is None:
            return None
        if hit[0] <= time.monotonic():
            self._forget(key)
            return None
        self._plans.move_to_end(key)
        return hit[1], hit[2]

    def remember(self, key: tuple[int, str], rendition: str, plan: Mp4Plan) -> None:
        if plan.memory > self.cache_bytes // 4 or self.cache_seconds <= 0:
            return  # one huge plan must not push out every other
        self._forget(key)
        self._plans[key] = (time.monotonic() + self.cache_seconds, rendition, plan)
        self._held += plan.memory
        while self._held > self.cache_bytes:
            self._forget(next(iter(self._plans)))

    def _forget(self, key: tuple[int, str]) -> None:
        old = self._plans.pop(key, None)
        if old is not None:
            self._held -= old[2].memory


DOWNLOADS_KEY = web.AppKey("downloads", Downloads)


async def _find(request: web.Request, session: Any, ref: str) -> tuple[Stream, Channel] | None:
    """The video ``ref`` names if this caller may watch it (``stream_links.find_video``: the
    visibility rules), with a recording on disk to read."""
    found = await find_video(request, session, ref)
    return found if found is not None and found[0].vod_path else None


def filename(
    channel_slug: str,
    title: str | None,
    started: datetime | None,
    rendition: str,
    *,
    ascii_only: bool,
) -> str:
    """A file name with nothing a header or a file system could misread: letters and digits
    (any script unless ``ascii_only``) joined by '-'."""
    unsafe = _UNSAFE if ascii_only else _UNSAFE_UNICODE
    words = [channel_slug, started.strftime("%Y-%m-%d") if started else "", title or "", rendition]
    parts = [unsafe.sub("-", w).strip("-_")[:60] for w in words]
    return "-".join(p for p in parts if p) + ".mp4"


def content_disposition(*name_parts: Any) -> str:
    """``attachment`` with an ASCII ``filename`` for every client and, when the title has other
    letters, their UTF-8 spelling in ``filename*`` (RFC 6266), which browsers prefer."""
    plain = filename(*name_parts, ascii_only=True)
    full = filename(*name_parts, ascii_only=False)
    value = f'attachment; filename="{plain}"'
    return value if full == plain else f"{value}; filename*=UTF-8''{quote(full, safe='')}"


def plan_range(headers: Any, size: int, etag: str) -> tuple[int, int, int]:
    """(status, start, stop): 200 whole, 206 one range, 416 unsatisfiable. Several ranges, a
    stale If-Range or a Range we cannot read get the whole file (RFC 9110 14.2)."""
    value = headers.get("Range")
    if value is None:
        return 200, 0, size
    if_range = headers.get("If-Range")
    if if_range is not None and if_range.strip() != etag:
        return 200, 0, size
    m = _RANGE_RE.fullmatch(value.strip())
    if m is None or m.group(1) == m.group(2) == "":
        return 200, 0, size
    first, last = m.groups()
    if first == "":
        suffix = int(last)
        return (416, 0, 0) if suffix == 0 else (206, max(0, size - suffix), size)
    start = int(first)
    if last != "" and int(last) < start:
        return 200, 0, size
    if start >= size:
        return 416, 0, 0
    return 206, start, size if last == "" else min(int(last) + 1, size)


def _plan(directory: Path, wanted: str) -> tuple[str, Mp4Plan] | str:
    """(rendition, plan) in a worker thread; a string: the names, when ``wanted`` is not one."""
    names = rendition_names(directory)
    if not names:
        raise RemuxError("the recording lists no rendition")
    rendition = wanted or names[0]
    if rendition not in names:
        return ", ".join(names)
    return rendition, plan_mp4(rendition_groups(directory, rendition))


async def download(request: web.Request) -> web.StreamResponse:
    ref = request.match_info["id"]
    wanted = request.query.get("rendition", "")
    if wanted and not RENDITION_RE.fullmatch(wanted):
        return json_error(400, "invalid", "rendition: letters, digits, '-' and '_' (1-64)")
    async with request.app[DB_KEY].session() as session:
        found = await _find(request, session, ref)
        if found is None:
            return json_error(404, "not_found", f"no video {ref[:40]!r}")
        stream, channel = found
        user: User | None = await current_user(request)
        if not can_manage(user, channel) and not channel.allow_downloads:
            return json_error(403, "forbidden", "this channel does not allow downloads")
        vod_path, stream_id = stream.vod_path or "", stream.id
        name_parts = (channel.slug, stream.title, stream.started_at)
    downloads = request.app[DOWNLOADS_KEY]
    trusted = request.app[SETTINGS_KEY].http.trust_forwarded_for
    client = address_key(client_host(request.remote, request.headers, trusted))
    refused = downloads.enter(client)
    if refused is not None:
        downloads.metrics.downloads.labels("busy").inc()
        retry = {"Retry-After": str(RETRY_SECONDS)}
        if refused == TOO_MANY_FROM_ADDRESS:
            message = "you have as many downloads running as one client may; try again later"
            return json_error(429, "too_many_downloads", message, retry)
        return json_error(503, "busy", "too many downloads are running; try again shortly", retry)
    # S3 mode: a copy from the bucket stays while the remux reads it (webapp.stored).
    release = hold_local(request.app, Path(vod_path).parent.as_posix())
    try:
        return await _send(request, stream_id, vod_path, wanted, name_parts)
    finally:
        release()
        downloads.leave(client)


async def _send(
    request: web.Request,
    stream_id: int,
    vod_path: str,
    wanted: str,
    name_parts: tuple[str, str | None, datetime | None],
) -> web.StreamResponse:
    settings = request.app[SETTINGS_KEY]
    directory = settings.data_dir / Path(vod_path).parent
    downloads = request.app[DOWNLOADS_KEY]
    # S3 mode: the remux reads files; a recording made elsewhere is copied from the bucket
    # (again, if the copy a remembered plan read was evicted since).
    await ensure_local(request.app, Path(vod_path).parent.as_posix(), "master.m3u8")
    planned = downloads.cached((stream_id, wanted))
    if planned is None:
        began = time.perf_counter()
        try:
            made = await asyncio.to_thread(_plan, directory, wanted)
        except RemuxError as exc:
            log.warning("video %s cannot be downloaded: %s", stream_id, exc)
            downloads.metrics.downloads.labels("unreadable").inc()
            return json_error(404, "not_found", "this video's recording cannot be downloaded")
        downloads.metrics.plan_seconds.observe(time.perf_counter() - began)
        if isinstance(made, str):
            return json_error(400, "invalid", f"no rendition {wanted!r}; this video has {made}")
        planned = made
        downloads.remember((stream_id, wanted), *planned)
    rendition, plan = planned
    etag = f'"mp4-{stream_id}-{rendition}-{plan.size:x}"'
    status, start, stop = plan_range(request.headers, plan.size, etag)
    headers = {
        "Content-Type": "video/mp4",
        "Content-Disposition": content_disposition(*name_parts, rendition),
        "Accept-Ranges": "bytes",
        "ETag": etag,
        "Cache-Control": "private, no-store",
        "X-Content-Type-Options": "nosniff",
    }
    if status == 416:
        headers["Content-Range"] = f"bytes */{plan.size}"
        return web.Response(status=416, headers=headers)
    if status == 206:
        headers["Content-Range"] = f"bytes {start}-{stop - 1}/{plan.size}"
    response = web.StreamResponse(status=status, headers=headers)
    response.content_length = stop - start
    await response.prepare(request)
    if request.method == "HEAD":
        return response
    block = settings.downloads.read_kb << 10
    reader = plan.reader()

    def read_ahead(position: int) -> asyncio.Future[bytearray]:
        return asyncio.ensure_future(
            asyncio.to_thread(reader.read, position, min(block, stop - position))
        )

    counted = downloads.metrics.downloads
    sent = downloads.metrics.bytes
    # One block is read in a worker thread while the one before it is being sent.
    pending = read_ahead(start)
    try:
        position = start
        while True:
            data = await pending
            position += len(data)
            if position < stop:
                pending = read_ahead(position)
            await response.write(data)
            sent.inc(len(data))
            if position >= stop:
                break
    except ConnectionError:
        counted.labels("client_left").inc()
        return response  # the client went away: nothing is wrong on this side
    except RemuxError as exc:
        # The headers are gone: cutting the connection short (fewer bytes than its
        # Content-Length) is the only honest answer.
        log.warning("download of video %s stopped: %s", stream_id, exc)
        counted.labels("cut").inc()
        if request.transport is not None:
            request.transport.close()
        return response
    finally:
        # A read still running in its thread closes the reader when it is done with it.
        def close(done: asyncio.Future[bytearray]) -> None:
            if not done.cancelled():
                done.exception()  # retrieved: a read nobody waits for is not an error
            reader.close()

        pending.add_done_callback(close)
    counted.labels("completed").inc()
    await response.write_eof()
    return response
