"""Clip pages: ``/clips/{id}`` (player, title, channel, clipper, views, share and embed code,
Open Graph / Twitter card tags), ``/clips/{id}/edit`` (the draft's trim editor),
``/embed/clips/{id}`` (only the player, framable by other sites) and the clip's media
(``/clips/{id}/media/...``), each served with the clip's visibility (its source's).

A view is counted once per viewer session (the user, or an anonymous viewer cookie) when the
clip page or its embed is shown.
"""

from __future__ import annotations

import asyncio
import mimetypes
from typing import Any

from aiohttp import web

from storage import clips as clip_queries
from storage.clips import ClipInfo

from ..keys import DB_KEY, SETTINGS_KEY
from ..render import CSP, not_found_page, redirect, render
from ..sharing import absolute, card_text, duration_text, social_meta
from ..stored import ensure_local
from ..viewer_keys import set_viewer_cookie, viewer_key
from . import media
from .api import CLIPS_KEY, document
from .documents import viewer

# Only the embed may be framed, by any site; every other page keeps frame-ancestors 'none'.
EMBED_CSP = CSP.replace("frame-ancestors 'none'", "frame-ancestors *")
MEDIA_TYPES = {".m3u8": "application/vnd.apple.mpegurl", ".m4s": "video/iso.segment"}


async def _visible(request: web.Request) -> ClipInfo | None:
    public_id = request.match_info["id"]
    async with request.app[DB_KEY].session() as session:
        info = await clip_queries.get(session, public_id)
    if info is None:
        return None
    if clip_queries.can_view(info, None, False):
        return info  # visible to anyone: no need to know who is asking (media requests)
    viewer_id, admin, _ = await viewer(request)
    return info if clip_queries.can_view(info, viewer_id, admin) else None


async def _count_view(request: web.Request, info: ClipInfo) -> str | None:
    """Count this viewer's view (once per session); the anonymous cookie to set, if new."""
    if info.clip.status != "ready":
        return None
    key, new_cookie = await viewer_key(request)
    async with request.app[DB_KEY].session() as session:
        if await clip_queries.record_view(session, info.clip.id, key):
            info.clip.views += 1
        await session.commit()
    return new_cookie


def _set_viewer_cookie(
    request: web.Request, response: web.Response, new_cookie: str | None
) -> None:
    if new_cookie is not None:
        set_viewer_cookie(request, response, new_cookie)


def _social(
    request: web.Request, info: ClipInfo, doc: dict[str, Any]
) -> list[tuple[str, str, str]]:
    clip = info.clip
    path = f"/clips/{clip.public_id}"
    tags = social_meta(
        request,
        title=f"{clip.title} · {info.channel.name}",
        description=f"A clip of {info.channel.name}"
        + (f" by {info.clipper}" if info.clipper else "")
        + " on AeThex Live",
        path=path,
        image=doc["thumbnail_url"],
        kind="video.other",
    )
    if doc["mp4_url"]:
        video = absolute(request, doc["mp4_url"])
        embed = absolute(request, doc["embed_url"])
        tags += [
            ("property", "og:video", video),
            ("property", "og:video:secure_url", video),
            ("property", "og:video:type", "video/mp4"),
            ("name", "twitter:player", embed),
            ("name", "twitter:player:width", "640"),
            ("name", "twitter:player:height", "360"),
        ]
        if clip.duration_seconds:
            tags.append(("property", "video:duration", str(round(clip.duration_seconds))))
    return tags


async def clip_page(request: web.Request) -> web.Response:
    info = await _visible(request)
    if info is None:
        return not_found_page(request, "clip")
    if info.clip.status == "draft":
        return redirect(f"/clips/{info.clip.public_id}/edit")
    doc = await document(request, info)
    _, _, user = await viewer(request)
    can_delete = False
    if user is not None:
        async with request.app[DB_KEY].session() as session:
            can_delete = await clip_queries.can_delete(session, info, user)
    listed = doc["visibility"] == "public"
    new_cookie = await _count_view(request, info)
    doc["views"] = info.clip.views
    response = render(
        request,
        "clips/clip.html",
        {
            "clip": doc,
            "info": info,
            "listed": listed,
            "duration": duration_text(info.clip.duration_seconds),
            "share_url": absolute(request, doc["url"]),
            "embed_url": absolute(request, doc["embed_url"]),
            # A private source's clip is its owner's: no link preview.
            "social": _social(request, info, doc)
            if info.clip.status == "ready" and doc["visibility"] != "private"
            else [],
            "description": card_text(f"A clip of {info.channel.name}"),
            "can_delete": can_delete,
        },
    )
    _set_viewer_cookie(request, response, new_cookie)
    return response


async def embed_page(request: web.Request) -> web.Response:
    info = await _visible(request)
    if info is None or info.clip.status == "draft":
        return not_found_page(request, "clip")
    doc = await document(request, info)
    new_cookie = await _count_view(request, info)
    response = render(
        request,
        "clips/embed.html",
        {"clip": doc, "page_url": absolute(request, doc["url"])},
    )
    response.headers["Content-Security-Policy"] = EMBED_CSP
    _set_viewer_cookie(request, response, new_cookie)
    return response


async def edit_page(request: web.Request) -> web.Response:
    info = await _visible(request)
    if info is None:
        return not_found_page(request, "clip")
    _, _, user = await viewer(request)
    clip = info.clip
    allowed = user is not None and (
        user.is_admin or user.id in (info.channel.owner_id, clip.clipper_id)
    )
    if not allowed:
        return not_found_page(request, "clip")
    if clip.status != "draft":
        return redirect(f"/clips/{clip.public_id}")
    doc = await document(request, info)
    limits = request.app[SETTINGS_KEY].clips
    return render(
        request,
        "clips/edit.html",
        {"clip": doc, "range": doc.get("range"), "limits": limits},
    )


async def clip_media(request: web.Request) -> web.StreamResponse:
    info = await _visible(request)
    if info is None:
        raise web.HTTPNotFound()
    name = request.match_info["name"]
    wanted = media.DRAFT if info.clip.status == "draft" else media.OUT
    if name.split("/", 1)[0] != wanted:
        raise web.HTTPNotFound()
    root = request.app[CLIPS_KEY].dir(info.clip.public_id)
    if wanted == media.OUT:  # S3 mode: made on another node, or lost by this disk
        prefix = f"{media.CLIPS_DIR}/{info.clip.public_id}/{media.OUT}"
        await ensure_local(request.app, prefix, media.CLIP_META)
    path = await asyncio.to_thread(media.safe_file, root, name)
    if path is None:
        raise web.HTTPNotFound()
    listed = clip_queries.visibility(info.channel, info.stream) == "public"
    kind = MEDIA_TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0]
    headers = {
        "Cache-Control": ("public" if listed and wanted == media.OUT else "private")
        + ", max-age=60",
        "X-Content-Type-Options": "nosniff",
    }
    if kind:
        headers["Content-Type"] = kind
    return web.FileResponse(path, headers=headers)


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/clips/{id}", clip_page)
    app.router.add_get("/clips/{id}/edit", edit_page)
    app.router.add_get("/clips/{id}/media/{name:.+}", clip_media)
    app.router.add_get("/embed/clips/{id}", embed_page)
