"""Which video a replay route may serve: the one its page would show.

``stream_links.find_video`` is the video page's rule (issue 13's library); until it is part of
the tree this applies the same rule on top of ``find_stream``: an archived recording that is
not deleted, and a private one only for its owner and admins.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from storage.models import Channel, Stream, StreamStatus

from ..identity import can_manage, current_user
from ..stream_links import find_stream


async def find_video(request: web.Request, session: Any, raw: str) -> tuple[Stream, Channel] | None:
    found = await find_stream(request, session, raw)
    if found is None:
        return None
    stream, channel = found
    if stream.deleted_at is not None or stream.status is not StreamStatus.ARCHIVED:
        return None
    if not stream.vod_available:
        return None
    if stream.visibility == "private" and not can_manage(await current_user(request), channel):
        return None
    if stream.visibility == "unlisted" and raw != stream.public_id:
        if not can_manage(await current_user(request), channel):
            return None
    return found
