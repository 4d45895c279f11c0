"""Which link reaches a stream, and who may look one up by which reference.

Stream ids are sequential, so an id is no secret: walking ``/vod/1``, ``/vod/2``… would find
every recording. An unlisted channel is reachable only by its link: its slug for the channel
(``/streams/{slug}``, ``/hls/{slug}/…``) and, for one of its streams, the stream's public id
(``Stream.public_id``, 128 random bits). So a stream is reachable:

* by its public id, always (it is the link; listed channels' streams have one too);
* by its sequential id when its channel is listed;
* by its sequential id when the caller owns the channel or is an admin (the dashboard).

Anything else gets exactly the answer a stream that does not exist gets, so the two cannot be
told apart. The HLS VOD routes apply the same rule without the last case: they never look at
cookies, and their answers are cacheable by a CDN that must not keep an owner's answer for
anyone else.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from storage import channels as channel_queries
from storage.models import Channel, Stream, User

from .errors import ApiError
from .identity import can_manage, current_user

# The OpenAPI schema of a path parameter naming a stream (``parse_stream_ref``).
STREAM_REF_SCHEMA = {"type": "string", "pattern": "^([1-9][0-9]{0,17}|[A-Za-z0-9_-]{22})$"}
STREAM_REF_DESCRIPTION = (
    "The stream's id, or its public id (the link to a stream of an "
    "unlisted channel, whose id answers 404 to all but its owner and "
    "admins)."
)


def stream_ref(stream: Stream, channel: Channel) -> str:
    """How the site's own URLs name this stream: the id of a listed channel's stream (the
    documented ``/vod/{stream_id}/…`` form), else the public id."""
    return str(stream.id) if channel.is_public else stream.public_id


def reachable(ref: int | str, channel: Channel, user: User | None) -> bool:
    """The rule above, for a stream of ``channel`` named by ``ref``."""
    return isinstance(ref, str) or channel.is_public or can_manage(user, channel)


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
    # Only an id of an unlisted channel's stream needs to know who is asking.
    user = None if isinstance(ref, str) or found[1].is_public else await current_user(request)
    return found if reachable(ref, found[1], user) else None


async def load_stream(request: web.Request, session: Any, raw: str) -> tuple[Stream, Channel]:
    """``find_stream``, or the API's 404 (the same text for unreachable and nonexistent)."""
    found = await find_stream(request, session, raw)
    if found is None:
        raise ApiError(404, "not_found", f"no stream {raw[:40]!r}")
    return found
