"""The clips JSON API.

``POST /api/channels/{slug}/clips`` captures the live stream's last seconds into a draft;
``POST /api/videos/{ref}/clips`` cuts a past broadcast (owner, or anyone who may watch it when
the channel allows VOD clips); ``GET/PATCH/DELETE /api/clips/{id}`` read, trim/retitle/publish
and delete one; ``GET /api/channels/{slug}/clips?period=7d|all`` lists a channel's top clips.
Creating is rate limited per user (``clips.rate_limit`` per ``clips.rate_window``).
"""

from __future__ import annotations

import asyncio
import functools
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from storage import channels as channel_queries
from storage import clips as clip_queries
from storage.clips import PERIODS, ClipInfo
from storage.creator_models import new_clip_id
from storage.models import User

from ..errors import ApiError
from ..identity import require_user
from ..keys import DB_KEY, EDGES_KEY, REGISTRY_KEY, SETTINGS_KEY
from ..parsing import field, query_int, read_json
from ..stored import ensure_local, hold_local
from ..stream_links import find_video
from . import media
from .documents import clip_json, parse_range, parse_title, viewer
from .openapi_spec import OPENAPI_PATHS, OPENAPI_SCHEMAS
from .service import ClipService

CLIPS_KEY = web.AppKey("clips", ClipService)
NO_STORE = {"Cache-Control": "no-store"}

__all__ = ["CLIPS_KEY", "OPENAPI_PATHS", "OPENAPI_SCHEMAS", "setup_routes"]


async def files_of(request: web.Request, info: ClipInfo) -> dict[str, str] | None:
    if info.clip.status != "ready":
        return None
    # S3 mode: a clip cut on another node (or lost by this disk) is copied from the bucket.
    prefix = f"{media.CLIPS_DIR}/{info.clip.public_id}/{media.OUT}"
    if not await ensure_local(request.app, prefix, media.CLIP_META):
        return None
    out = request.app[CLIPS_KEY].dir(info.clip.public_id) / media.OUT
    return await asyncio.to_thread(media.read_manifest, out)


async def document(request: web.Request, info: ClipInfo) -> dict[str, Any]:
    doc = clip_json(info, await files_of(request, info))
    if info.clip.status == "draft":
        draft = await asyncio.to_thread(
            media.read_draft, request.app[CLIPS_KEY].dir(info.clip.public_id)
        )
        if draft is not None:
            doc["range"] = {"start": draft.start, "end": draft.end}
    return doc


async def find_clip(request: web.Request) -> ClipInfo:
    """The clip of the URL if this caller may see it; 404 otherwise (the same answer)."""
    public_id = request.match_info["id"]
    async with request.app[DB_KEY].session() as session:
        info = await clip_queries.get(session, public_id)
    viewer_id, admin, _ = await viewer(request)
    if info is None or not clip_queries.can_view(info, viewer_id, admin):
        raise ApiError(404, "not_found", f"no clip {public_id[:40]!r}")
    return info


async def check_rate(request: web.Request, user: User) -> None:
    limits = request.app[SETTINGS_KEY].clips
    since = datetime.now(UTC) - timedelta(seconds=limits.rate_window)
    async with request.app[DB_KEY].session() as session:
        count = await clip_queries.created_since(session, user.id, since)
    if count >= limits.rate_limit:
        raise ApiError(
            429,
            "rate_limited",
            f"at most {limits.rate_limit} clips per {limits.rate_window:g} s",
            headers={"Retry-After": str(int(limits.rate_window))},
        )


# -- handlers -----------------------------------------------------------------------------


async def clip_live(request: web.Request) -> web.Response:
    user = await require_user(request)
    body = await read_json(request)
    limits = request.app[SETTINGS_KEY].clips
    slug = request.match_info["slug"]
    seconds = float(
        field(body, "seconds", (int, float), required=False, default=limits.live_seconds)
    )
    if not limits.min_seconds <= seconds <= limits.live_seconds:
        raise ApiError(
            400, "invalid", f"seconds must be {limits.min_seconds:g} to {limits.live_seconds:g}"
        )
    async with request.app[DB_KEY].session() as session:
        channel = await channel_queries.channel_with_owner(session, slug)
    if channel is None:
        raise ApiError(404, "not_found", f"no channel {slug[:64]!r}")
    live = request.app[REGISTRY_KEY].get(slug)
    edge = request.app[EDGES_KEY].get(slug)
    if live is None or live.ended or edge is None or edge.stream_id != live.stream_id:
        raise ApiError(409, "not_live", f"channel {slug[:64]!r} is not live")
    async with request.app[DB_KEY].session() as session:
        stream = await channel_queries.get_stream(session, live.stream_id)
    default_title = stream.title if stream is not None else channel.channel.name
    title = parse_title(body, default=default_title)
    await check_rate(request, user)
    public_id = new_clip_id()
    try:
        draft = await request.app[CLIPS_KEY].capture(edge, public_id, seconds)
    except media.NothingToCapture as exc:
        await request.app[CLIPS_KEY].remove_files(public_id)
        raise ApiError(409, "nothing_to_clip", f"no media to clip yet ({exc})") from None
    async with request.app[DB_KEY].session() as session:
        await clip_queries.create(
            session,
            public_id=public_id,
            channel_id=channel.channel.id,
            stream_id=live.stream_id,
            clipper_id=user.id,
            title=title,
            source="live",
            start=draft.start,
            end=draft.end,
            status="draft",
        )
        await session.commit()
        info = await clip_queries.get(session, public_id)
    assert info is not None
    return web.json_response(await document(request, info), status=201, headers=NO_STORE)


async def clip_video(request: web.Request) -> web.Response:
    user = await require_user(request)
    body = await read_json(request)
    limits = request.app[SETTINGS_KEY].clips
    ref = request.match_info["ref"]
    async with request.app[DB_KEY].session() as session:
        found = await find_video(request, session, ref)
    if found is None:
        raise ApiError(404, "not_found", f"no video {ref[:40]!r}")
    stream, channel = found
    owner = user.is_admin or user.id == channel.owner_id
    if not owner and not channel.allow_vod_clips:
        raise ApiError(403, "forbidden", "this channel does not allow viewers to clip its videos")
    duration = stream.vod_duration_seconds or 0.0
    start, end = parse_range(body, limits, 0.0, duration)
    title = parse_title(body, default=stream.title)
    await check_rate(request, user)
    vod_dir = request.app[SETTINGS_KEY].data_dir / "streams" / str(stream.id)
    # S3 mode: the cut reads files; a recording made elsewhere is copied from the bucket, and
    # the copy stays until the cut is done (webapp.stored).
    release = hold_local(request.app, f"streams/{stream.id}")
    try:
        await ensure_local(request.app, f"streams/{stream.id}", "master.m3u8")
        async with request.app[DB_KEY].session() as session:
            clip = await clip_queries.create(
                session,
                channel_id=channel.id,
                stream_id=stream.id,
                clipper_id=user.id,
                title=title,
                source="vod",
                start=start,
                end=end,
                status="processing",
            )
            await session.commit()
            info = await clip_queries.get(session, clip.public_id)
        assert info is not None
        cut = request.app[CLIPS_KEY].start_cut(
            clip.id,
            clip.public_id,
            functools.partial(media.source_renditions, vod_dir),
            start,
            end,
            drop_draft=False,
        )
    except BaseException:
        release()
        raise
    cut.add_done_callback(lambda _: release())
    return web.json_response(await document(request, info), status=202, headers=NO_STORE)


async def clip_get(request: web.Request) -> web.Response:
    info = await find_clip(request)
    return web.json_response(await document(request, info), headers=NO_STORE)


async def clip_patch(request: web.Request) -> web.Response:
    user = await require_user(request)
    info = await find_clip(request)
    body = await read_json(request)
    clip = info.clip
    if not (user.is_admin or user.id in (info.channel.owner_id, clip.clipper_id)):
        raise ApiError(403, "forbidden", "only the clipper or the channel's owner may edit a clip")
    changes: dict[str, Any] = {}
    if "title" in body:
        changes["title"] = parse_title(body)
    publish = bool(field(body, "publish", bool, required=False, default=False))
    service = request.app[CLIPS_KEY]
    if "start" in body or "end" in body:
        if clip.status != "draft":
            raise ApiError(400, "not_a_draft", "a published clip's range cannot change")
        body.setdefault("start", clip.start_seconds)
        body.setdefault("end", clip.end_seconds)
        draft = await asyncio.to_thread(media.read_draft, service.dir(clip.public_id))
        if draft is None:
            raise ApiError(409, "draft_gone", "the draft's media is gone")
        limits = request.app[SETTINGS_KEY].clips
        changes["start_seconds"], changes["end_seconds"] = parse_range(
            body, limits, draft.start, draft.end
        )
    if publish and clip.status != "draft":
        raise ApiError(409, "not_a_draft", "only a draft can be published")
    if publish:
        start = changes.get("start_seconds", clip.start_seconds)
        end = changes.get("end_seconds", clip.end_seconds)
        length = end - start
        limits = request.app[SETTINGS_KEY].clips
        if length > limits.max_seconds + 1e-6 or length < limits.min_seconds - 1e-6:
            raise ApiError(
                400,
                "invalid_range",
                f"a clip is {limits.min_seconds:g} to {limits.max_seconds:g} seconds",
            )
        changes["status"] = "processing"
    if changes:
        async with request.app[DB_KEY].session() as session:
            done = await clip_queries.update_fields(
                session, clip.id, when_status=clip.status, **changes
            )
            await session.commit()
            if not done:
                raise ApiError(409, "changed", "the clip changed meanwhile; reload it")
    if publish:
        draft = await asyncio.to_thread(media.read_draft, service.dir(clip.public_id))
        offset = draft.start if draft is not None else 0.0
        service.start_cut(
            clip.id,
            clip.public_id,
            functools.partial(media.source_renditions, service.dir(clip.public_id) / media.DRAFT),
            changes.get("start_seconds", clip.start_seconds) - offset,
            changes.get("end_seconds", clip.end_seconds) - offset,
            drop_draft=True,
        )
    async with request.app[DB_KEY].session() as session:
        fresh = await clip_queries.get(session, clip.public_id)
    assert fresh is not None
    return web.json_response(await document(request, fresh), headers=NO_STORE)


async def clip_delete(request: web.Request) -> web.Response:
    user = await require_user(request)
    info = await find_clip(request)
    async with request.app[DB_KEY].session() as session:
        if not await clip_queries.can_delete(session, info, user):
            raise ApiError(
                403, "forbidden", "only the clipper, the channel's owner or moderators may"
            )
        await clip_queries.mark_deleted(session, info.clip.id)
        await session.commit()
    await request.app[CLIPS_KEY].remove_files(info.clip.public_id)
    return web.json_response({"deleted": True}, headers=NO_STORE)


async def channel_clips(request: web.Request) -> web.Response:
    slug = request.match_info["slug"]
    period = request.query.get("period", "7d")
    if period not in PERIODS:
        raise ApiError(400, "invalid", "period must be 7d or all")
    limits = request.app[SETTINGS_KEY].clips
    limit = query_int(request, "limit", limits.top_clips, minimum=1, maximum=100)
    async with request.app[DB_KEY].session() as session:
        channel = await channel_queries.channel_with_owner(session, slug)
        if channel is None:
            raise ApiError(404, "not_found", f"no channel {slug[:64]!r}")
        found = await clip_queries.top(session, channel.channel.id, period=period, limit=limit)
    clips = [await document(request, info) for info in found]
    return web.json_response(
        {"period": period, "clips": clips}, headers={"Cache-Control": "no-cache"}
    )


def setup_routes(app: web.Application) -> None:
    app.router.add_post("/api/channels/{slug}/clips", clip_live)
    app.router.add_get("/api/channels/{slug}/clips", channel_clips)
    app.router.add_post("/api/videos/{ref}/clips", clip_video)
    app.router.add_get("/api/clips/{id}", clip_get)
    app.router.add_patch("/api/clips/{id}", clip_patch)
    app.router.add_delete("/api/clips/{id}", clip_delete)
