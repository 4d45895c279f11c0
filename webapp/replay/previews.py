"""Scrubbing previews under the video's address: ``/videos/{id}/previews/previews.vtt`` and
the sprites its cues name (``sprite-N.jpg``, relative, so they resolve beside it).

Made beside the recording when it was archived (``transcode.sprites``). Reached exactly as the
video page is (``stream_links.find_video``), so a private video's previews are its owner's and
the admins', and nothing but the names ``transcode.sprites`` writes reaches the filesystem. A
video whose previews are not made (yet) answers 404, and the player shows no previews.
"""

from __future__ import annotations

from aiohttp import web

from transcode.sprites import INDEX_NAME, PREVIEW_DIR, is_preview_name

from ..keys import DB_KEY
from ..render import not_found_page
from ..stored import stored_file
from ..stream_links import find_video

# Files never change once written, but who may see them can (a video made private): a browser
# keeps them a while, a shared cache never.
CACHE = "private, max-age=300"


async def preview_file(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if not is_preview_name(name):
        return not_found_page(request, "preview")
    async with request.app[DB_KEY].session() as session:
        found = await find_video(request, session, request.match_info["id"])
    if found is None:
        return not_found_page(request, "video")
    stream = found[0]
    kind = "text/vtt; charset=utf-8" if name == INDEX_NAME else "image/jpeg"
    headers = {"Content-Type": kind, "Cache-Control": CACHE, "X-Content-Type-Options": "nosniff"}
    # This node's disk, or the object store (S3 mode: made elsewhere, or the disk lost it).
    key = f"streams/{stream.id}/{PREVIEW_DIR}/{name}"
    response = await stored_file(request, key, headers)
    if response is None:
        return not_found_page(request, "preview")
    return response


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/videos/{id}/previews/{name}", preview_file)
