"""VOD delivery (``/vod/{stream_id}/…``) and its caches.

The stream row must be ARCHIVED with a VOD, and ``{stream_id}`` must be a link that reaches it
(``webapp.stream_links``: the id of a listed channel's public video, or its public id, or for a
private video the grant its page handed to the owner or an admin); the
names a request may use are exactly those listed in the VOD's own playlists, read once and
cached. Recently served files stay in memory (``_ByteCache``).

Any node serves any VOD (issue 15): a recording that is not on this node's disk (another
origin made it, or the disk was wiped) is read from the object store, its segments fetched
from there or, when ``objects.public_url`` is set, redirected to the bucket's public URL.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mediaserver.settings import Settings
from storage import Database
from storage.channels import parse_stream_ref, stream_by_ref
from storage.models import StreamStatus
from storage.objects import ObjectStore, ObjectStoreError
from transcode.hls import parse_segment_name
from webapp.stream_links import check_vod_grant, is_vod_grant, reachable

from .held import Held, Pending
from .reply import (
    IMMUTABLE,
    PLAYLIST_TYPE,
    VOD_PLAYLIST_CACHE,
    HlsRequest,
    Reply,
    error_reply,
    object_response,
    plan_range,
)

log = logging.getLogger(__name__)

VOD_CACHE_SIZE = 256
VOD_CACHE_SECONDS = 300.0
VOD_MISS_SECONDS = 5.0

_RENDITION_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_MAP_URI_RE = re.compile(r'#EXT-X-MAP:.*?URI="([^"]*)"')


@dataclass(frozen=True, slots=True)
class _Vod:
    """A recorded stream's playlists and the only names its URLs may use."""

    directory: Path
    master: bytes
    playlists: dict[str, bytes]
    names: dict[str, frozenset[str]]
    # The object store's key of the directory ("streams/{id}"); remote: not on this disk.
    key: str = ""
    remote: bool = False


def _parse_vod(directory: Path, master: bytes, read: Callable[[str], bytes]) -> _Vod | None:
    """The VOD a master playlist describes, its media playlists read by ``read(rendition)``.
    Renditions and names come from the files the server wrote, each checked against the
    canonical patterns."""
    playlists: dict[str, bytes] = {}
    names: dict[str, frozenset[str]] = {}
    for line in master.decode().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        rendition, _, rest = line.partition("/")
        if rest != "index.m3u8" or not _RENDITION_RE.fullmatch(rendition):
            continue
        text = read(rendition)
        allowed = set()
        for entry in text.decode().splitlines():
            entry = entry.strip()
            m = _MAP_URI_RE.match(entry)
            uri = m.group(1) if m else entry if entry and not entry.startswith("#") else ""
            if uri and parse_segment_name(uri) is not None:
                allowed.add(uri)
        playlists[rendition] = text
        names[rendition] = frozenset(allowed)
    if not playlists:
        return None
    return _Vod(directory, master, playlists, names)


def _load_vod(directory: Path, key: str) -> _Vod | None:
    """Read the VOD's playlists from this node's disk (in a thread)."""
    try:
        master = (directory / "master.m3u8").read_bytes()
        vod = _parse_vod(directory, master, lambda r: (directory / r / "index.m3u8").read_bytes())
    except (OSError, UnicodeDecodeError):
        return None
    if vod is None:
        return None
    return _Vod(vod.directory, vod.master, vod.playlists, vod.names, key)


async def _load_stored_vod(store: ObjectStore, directory: Path, key: str) -> _Vod | None:
    """The VOD's playlists from the object store (a recording made elsewhere, or a disk that
    lost it). None when it is not there either; a store that fails is logged and counted."""
    try:
        master = await store.get(f"{key}/master.m3u8")
        playlists = {}
        for line in master.decode().splitlines():
            rendition, _, rest = line.strip().partition("/")
            if rest == "index.m3u8" and _RENDITION_RE.fullmatch(rendition):
                playlists[rendition] = await store.get(f"{key}/{rendition}/index.m3u8")
        vod = _parse_vod(directory, master, playlists.__getitem__)
    except ObjectStoreError as exc:
        if not exc.missing:
            log.warning("VOD %s: %s", key, exc)
        return None
    except (UnicodeDecodeError, KeyError):
        return None
    if vod is None:
        return None
    return _Vod(vod.directory, vod.master, vod.playlists, vod.names, key, True)


def _vod_kind(name: str) -> str:
    """The request metric's kind for a name under a VOD rendition ("other": not servable)."""
    if name == "index.m3u8":
        return "vod_playlist"
    resource = parse_segment_name(name)
    return f"vod_{resource.kind}" if resource is not None else "other"


def _remember(cache: OrderedDict[Any, Any], key: Any, value: Any) -> None:
    """Store as the most recently used entry; the least recently used go past the size."""
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > VOD_CACHE_SIZE:
        cache.popitem(last=False)


def _read_file(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


class _ByteCache:
    """Recently served VOD objects in memory, least recently used out first, within a byte
    budget: a thread hop and a file read per request held VOD GETs to a fifth of nginx's rate.
    Recorded files never change, so entries need no revalidation."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.total = 0
        self._items: OrderedDict[tuple[Path, str, str], bytes] = OrderedDict()

    def get(self, key: tuple[Path, str, str]) -> bytes | None:
        data = self._items.get(key)
        if data is not None:
            self._items.move_to_end(key)
        return data

    def put(self, key: tuple[Path, str, str], data: bytes) -> None:
        if len(data) > self.budget // 8 or key in self._items:
            return  # a few huge objects must not flush everything else
        self._items[key] = data
        self.total += len(data)
        while self.total > self.budget:
            _, old = self._items.popitem(last=False)
            self.total -= len(old)


class VodDelivery:
    """The VOD routes. ``link_seconds`` says (at each use) how long the answer to "which
    stream does this URL reach, and may it" is kept: a channel made unlisted stops answering
    to its streams' ids within that time, on every process."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        link_seconds: Callable[[], float],
        grant_key: Callable[[], bytes] | None = None,
        objects: ObjectStore | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        # S3 mode: recordings not on this disk are read from the bucket (issue 15).
        self.objects = objects if objects is not None and not objects.is_local else None
        self.link_seconds = link_seconds
        self.grant_key = grant_key
        # VOD URL reference -> (until, the stream id it reaches or None); stream id ->
        # (until, its playlists or None).
        self._links: OrderedDict[str, tuple[float, int | None]] = OrderedDict()
        self._vods: OrderedDict[int, tuple[float, _Vod | None]] = OrderedDict()
        self._loads: dict[str, asyncio.Future[_Vod | None]] = {}
        self._bytes = _ByteCache(settings.hls.vod_cache_mb << 20)

    def _cached(self, raw: str) -> _Vod | None | str:
        """The VOD the URL's ``{stream_id}`` reaches if known (None: known to reach none);
        else the reference to look up."""
        now = time.monotonic()
        link = self._links.get(raw)
        if link is None or link[0] <= now:
            known = parse_stream_ref(raw) is not None or is_vod_grant(raw)
            return raw if known else None
        self._links.move_to_end(raw)
        if link[1] is None:
            return None
        hit = self._vods.get(link[1])
        if hit is None or hit[0] <= now:
            return raw
        self._vods.move_to_end(link[1])
        return hit[1]

    async def _vod(self, raw: str) -> _Vod | None:
        loading = self._loads.get(raw)
        if loading is None:
            loading = self._loads[raw] = asyncio.ensure_future(self._load(raw))
            loading.add_done_callback(lambda _: self._loads.pop(raw, None))
        return await asyncio.shield(loading)

    async def _load(self, raw: str) -> _Vod | None:
        """Which stream the reference reaches (the rule of ``stream_links``, for a caller with
        no identity: VOD answers are cacheable by anyone), then its playlists."""
        ref: int | str | None = parse_stream_ref(raw)
        stream_id = vod = None
        link_seconds = self.link_seconds()
        granted = False
        if ref is None and self.grant_key is not None:
            grant = check_vod_grant(self.grant_key(), raw, time.time())
            if grant is not None:
                ref, granted = grant[0], True
                link_seconds = min(link_seconds, grant[1] - time.time())
        try:
            found = None
            if ref is not None:
                async with self.db.session() as session:
                    found = await stream_by_ref(session, ref)
            if ref is not None and found is not None:
                stream, channel = found
                if (
                    stream.status is StreamStatus.ARCHIVED
                    and stream.vod_available
                    and stream.deleted_at is None
                    and (granted or reachable(ref, stream, channel, None))
                ):
                    stream_id = stream.id
            if stream_id is not None:
                hit = self._vods.get(stream_id)
                if hit is not None and hit[0] > time.monotonic():
                    vod = hit[1]
                else:
                    directory = self.settings.data_dir / "streams" / str(stream_id)
                    key = f"streams/{stream_id}"
                    vod = await asyncio.to_thread(_load_vod, directory, key)
                    if vod is None and self.objects is not None:
                        vod = await _load_stored_vod(self.objects, directory, key)
                    ttl = VOD_CACHE_SECONDS if vod is not None else VOD_MISS_SECONDS
                    _remember(self._vods, stream_id, (time.monotonic() + ttl, vod))
        except Exception:
            log.exception("could not load VOD %r", raw)
            stream_id = vod = None
        _remember(self._links, raw, (time.monotonic() + link_seconds, stream_id))
        return vod

    async def _loaded(
        self,
        request: HlsRequest,
        raw: str,
        then: Callable[[HlsRequest, _Vod | None], Reply | Pending],
    ) -> Reply:
        reply = then(request, await self._vod(raw))
        assert not isinstance(reply, Held)  # VOD requests are never held
        return reply if isinstance(reply, Reply) else await reply

    def master(self, request: HlsRequest) -> Reply | Pending:
        vod = self._cached(request.params["stream_id"])
        if isinstance(vod, str):
            return self._loaded(request, vod, self._master)
        return self._master(request, vod)

    @staticmethod
    def _master(request: HlsRequest, vod: _Vod | None) -> Reply:
        if vod is None:
            return error_reply("vod_master", 404)
        return Reply(
            "vod_master",
            200,
            {"Content-Type": PLAYLIST_TYPE, "Cache-Control": VOD_PLAYLIST_CACHE},
            vod.master,
        )

    def resource(self, request: HlsRequest) -> Reply | Pending:
        kind = _vod_kind(request.params["name"])
        if kind == "other":
            return error_reply(kind, 404)
        vod = self._cached(request.params["stream_id"])
        if isinstance(vod, str):
            return self._loaded(request, vod, self._resource)
        return self._resource(request, vod)

    def _resource(self, request: HlsRequest, vod: _Vod | None) -> Reply | Pending:
        params = request.params
        name, rendition = params["name"], params["rendition"]
        kind = _vod_kind(name)
        if vod is None or rendition not in vod.names:
            return error_reply(kind, 404)
        if kind == "vod_playlist":
            return Reply(
                kind,
                200,
                {"Content-Type": PLAYLIST_TYPE, "Cache-Control": VOD_PLAYLIST_CACHE},
                vod.playlists[rendition],
            )
        if name not in vod.names[rendition]:
            return error_reply(kind, 404)
        # Both parts of the path are names the VOD's own playlists list, checked against the
        # canonical patterns: nothing from the URL reaches the filesystem unvetted.
        if vod.remote and self.objects is not None:
            public = self.objects.public_url(f"{vod.key}/{rendition}/{name}")
            if public is not None:  # the bucket (or a CDN in front of it) serves the bytes
                return Reply(kind, 302, {"Location": public, "Cache-Control": VOD_PLAYLIST_CACHE})
        key = (vod.directory, rendition, name)
        data = self._bytes.get(key)
        if data is None:
            return self._read(request, kind, vod, key)
        return self._object(request, kind, data)

    async def _read(
        self, request: HlsRequest, kind: str, vod: _Vod, key: tuple[Path, str, str]
    ) -> Reply:
        data = None
        if not vod.remote:
            data = await asyncio.to_thread(_read_file, vod.directory / key[1] / key[2])
        if data is None and self.objects is not None:
            try:  # made elsewhere, or this disk lost it: the bucket has it
                data = await self.objects.get(f"{vod.key}/{key[1]}/{key[2]}")
            except ObjectStoreError as exc:
                if not exc.missing:
                    log.warning("VOD object: %s", exc)
                    return error_reply(kind, 503)
        if data is None:
            return error_reply(kind, 404)
        self._bytes.put(key, data)
        return self._object(request, kind, data)

    @staticmethod
    def _object(request: HlsRequest, kind: str, data: bytes) -> Reply:
        params = request.params
        size = len(data)
        etag = f'"{params["stream_id"]}-{params["rendition"]}-{params["name"]}-{size:x}"'
        plan = plan_range(request.headers, size, etag)
        status, start, stop = plan
        body = data[start:stop] if status in (200, 206) else b""
        return object_response(kind, plan, size, body, etag, IMMUTABLE)
