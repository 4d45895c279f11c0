"""Which link reaches a stream, and who may look one up by which reference.

Stream ids are sequential, so an id is no secret: walking ``/vod/1``, ``/vod/2``… would find
every recording. An unlisted channel is reachable only by its link: its slug for the channel
(``/streams/{slug}``, ``/hls/{slug}/…``) and, for one of its streams, the stream's public id
(``Stream.public_id``, 128 random bits). So a stream is reachable:

* by its public id, always (it is the link; listed channels' streams have one too);
* by its sequential id when its channel is listed;
* by its sequential id when the caller owns the channel or is an admin (the dashboard).

A video's own visibility (issue 13, ``storage.videos``) narrows this: an unlisted video is
reachable by its public id only, a private one by its owner and admins only, and a deleted one
keeps its row for its owner and admins (``find_stream``) but no media for anyone
(``find_video``).

Anything else gets exactly the answer a stream that does not exist gets, so the two cannot be
told apart. The HLS VOD routes apply the same rule without the last case: they never look at
cookies, and their answers are cacheable by a CDN that must not keep an owner's answer for
anyone else.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any

from aiohttp import web

from storage import channels as channel_queries
from storage import videos
from storage.models import Channel, Stream, StreamStatus, User

from .errors import ApiError
from .identity import current_user

# The OpenAPI schema of a path parameter naming a stream (``parse_stream_ref``).
STREAM_REF_SCHEMA = {"type": "string", "pattern": "^([1-9][0-9]{0,17}|[A-Za-z0-9_-]{22})$"}
STREAM_REF_DESCRIPTION = (
    "The stream's id, or its public id (the link to a stream of an "
    "unlisted channel, whose id answers 404 to all but its owner and "
    "admins)."
)


# A private video's recording, for its owner and admins: the HLS routes never look at cookies
# (their answers are cacheable), so the video page hands them a grant instead of a bare
# reference: the public id, when the grant ends (Unix seconds, hex) and an HMAC of both under
# the server's secret. Every playlist and segment URL is relative, so it carries the grant.
_GRANT_RE = re.compile(r"([A-Za-z0-9_-]{22})~([0-9a-f]{1,12})~([0-9a-f]{32})")
_GRANT_CONTEXT = b"aethex vod grant"


def _grant_mac(secret: bytes, public_id: str, until: int) -> str:
    message = _GRANT_CONTEXT + b"\0" + public_id.encode("ascii") + b"\0" + str(until).encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()[:32]


def vod_grant(secret: bytes, stream: Stream, until: int) -> str:
    """The ``{stream_id}`` part of VOD URLs that reaches ``stream`` whatever its visibility
    (not once it is deleted) until ``until`` (Unix seconds): hand it only to who may watch."""
    return f"{stream.public_id}~{until:x}~{_grant_mac(secret, stream.public_id, until)}"


def is_vod_grant(raw: str) -> bool:
    return _GRANT_RE.fullmatch(raw) is not None


def check_vod_grant(secret: bytes, raw: str, now: float) -> tuple[str, int] | None:
    """The public id a grant from ``vod_grant`` names and when it ends, if it is genuine and
    not over; None otherwise."""
    m = _GRANT_RE.fullmatch(raw)
    if m is None:
        return None
    public_id, until = m.group(1), int(m.group(2), 16)
    if until <= now or not hmac.compare_digest(m.group(3), _grant_mac(secret, public_id, until)):
        return None
    return public_id, until


def stream_ref(stream: Stream, channel: Channel) -> str:
    """How the site's own URLs name this stream: the id of a listed channel's public stream
    (the documented ``/vod/{stream_id}/…`` form), else the public id."""
    public = channel.is_public and stream.visibility == videos.PUBLIC
    return str(stream.id) if public else stream.public_id


def reachable(ref: int | str, stream: Stream, channel: Channel, user: User | None) -> bool:
    """The rule above, for ``stream`` of ``channel`` named by ``ref``. A deleted video's row
    is its owner's and the admins' only (as ``GET /api/videos/{id}`` answers): for anyone
    else its stream and chat routes answer as for a stream that never existed."""
    manager = user is not None and (user.is_admin or user.id == channel.owner_id)
    if stream.deleted_at is not None and not manager:
        return False
    return videos.can_reach(
        stream,
        channel,
        user.id if user is not None else None,
        user is not None and user.is_admin,
        by_public_id=isinstance(ref, str),
    )


async def find_stream(
    request: web.Request, session: Any, raw: str
) -> tuple[Stream, Channel] | None:
    """The stream ``raw`` (an id or a public id from the URL) names, if this caller may
    reach it that way; None otherwise, whether or not it exists."""
    ref = channel_queries.parse_stream_ref(raw)
    if ref is None:
        return None
    found = await channel_queries.stream_by_ref(session, ref)
    if found is None:
        return None
    if reachable(ref, found[0], found[1], None):
        return found  # reachable by anyone: no need to know who is asking
    user = await current_user(request)
    return found if user is not None and reachable(ref, found[0], found[1], user) else None


async def find_video(request: web.Request, session: Any, ref: str) -> tuple[Stream, Channel] | None:
    """The past broadcast ``ref`` (an id or a public id from the URL) names, if this caller may
    watch it (``storage.videos.can_view``): archived with a recording, not deleted. None
    otherwise, whether or not it exists. Every route serving a video's media or what hangs
    off it (page, download, chat replay, clips) asks this."""
    found = await find_stream(request, session, ref)
    if found is None:
        return None
    stream = found[0]
    if stream.deleted_at is not None or stream.status is not StreamStatus.ARCHIVED:
        return None
    return found if stream.vod_available else None


async def load_stream(request: web.Request, session: Any, raw: str) -> tuple[Stream, Channel]:
    """``find_stream``, or the API's 404 (the same text for unreachable and nonexistent)."""
    found = await find_stream(request, session, raw)
    if found is None:
        raise ApiError(404, "not_found", f"no stream {raw[:40]!r}")
    return found
