"""The public video page (``/videos/{id}``) and the old ``/vods/{id}`` address.

The page is found through ``stream_links.find_video`` (the visibility rule of
``storage.videos``); what other parts of issue 13 add to it (chat replay, chapters, download,
clip button) are optional includes fed by the context built here: ``video``, ``is_owner``,
``is_admin``, ``viewer``, ``can_download``, ``can_clip``.

A view is counted when the page is opened, once per viewer session (``viewer_keys``: the
user, or an anonymous cookie): that is the request that proves someone reached the video, it
needs no script (nor a second, forgeable request that the page's player would send), and the
count it shows already includes the visit. A reload, a seek or the player's hundreds of
segment requests count nothing more.
"""

from __future__ import annotations

import time

from aiohttp import web

from storage import videos

from ..identity import current_user
from ..keys import DB_KEY, SECRET_KEY, SETTINGS_KEY
from ..render import not_found_page, render
from ..sharing import social_meta
from ..stream_links import find_video, vod_grant
from ..viewer_keys import set_viewer_cookie, viewer_key
from .common import video_json


async def video_page(request: web.Request) -> web.Response:
    async with request.app[DB_KEY].session() as session:
        found = await find_video(request, session, request.match_info["id"])
        if found is None:
            return not_found_page(request, "video")
        stream, channel = found
        views, new_cookie = stream.views, None
        if request.method == "GET":  # a HEAD (a link checker) is nobody watching
            key, new_cookie = await viewer_key(request)
            if await videos.record_view(session, stream.id, key):
                views += 1
            await session.commit()
    viewer = await current_user(request)
    is_admin = viewer is not None and viewer.is_admin
    is_owner = viewer is not None and viewer.id == channel.owner_id
    manager = is_owner or is_admin
    video = video_json(stream, channel, private=manager)
    video["views"] = views
    if stream.visibility == videos.PRIVATE:
        # Its HLS answers never look at cookies: this viewer (the owner or an admin, or
        # find_video would have said no) gets a grant that ends.
        until = int(time.time() + request.app[SETTINGS_KEY].videos.private_link_seconds)
        grant = vod_grant(request.app[SECRET_KEY], stream, until)
        video["vod_url"] = f"/vod/{grant}/master.m3u8"
    response = render(
        request,
        "videos/video.html",
        {
            "video": video,
            # Link previews in chat apps: a private video's page is its owner's, not shared.
            "social": []
            if stream.visibility == videos.PRIVATE
            else social_meta(
                request,
                title=f"{stream.title} · {channel.name}",
                description=stream.description or f"A past broadcast of {channel.name}",
                path=video["url"],
                image=video["thumbnail_url"],
                kind="video.other",
            ),
            "is_owner": is_owner,
            "is_admin": is_admin,
            "viewer": viewer,
            "can_download": manager or channel.allow_downloads,
            "can_clip": viewer is not None and (is_owner or channel.allow_vod_clips),
        },
    )
    # Who may see it can change (made private, deleted): never kept by a shared cache.
    response.headers["Cache-Control"] = "private, no-cache"
    if new_cookie is not None:
        set_viewer_cookie(request, response, new_cookie)
    return response


async def old_address(request: web.Request) -> web.Response:
    """``/vods/{id}`` (before issue 13): the same video at its new address, for good."""
    raise web.HTTPPermanentRedirect(f"/videos/{request.match_info['id']}")


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/videos/{id}", video_page, name="video")
    app.router.add_get("/vods/{id}", old_address, name="vod")
