"""The video library (issue 13): past broadcasts as videos their owner manages.

A video is the ``streams`` row of an ended broadcast. Who may watch one is a pure rule
(``can_view``) that every route applies the same way (page, VOD HLS, API, download, chat
replay, clips), through ``webapp.stream_links.find_video``:

* public: anyone, by its id (a listed channel's) or its public id;
* unlisted: by its public id only (the link is the secret), as an unlisted channel's streams;
* private: its channel's owner and admins only;
* deleted: nobody gets its media (the files are gone; the row stays for history).

Public listings (category pages, search, a channel's home, the streams API) show only public,
undeleted videos (``listed_clause``).
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, and_

from storage.creator_models import VISIBILITIES
from storage.models import Channel, Stream

PUBLIC, UNLISTED, PRIVATE = VISIBILITIES


def can_reach(
    stream: Stream,
    channel: Channel,
    viewer_id: int | None,
    is_admin: bool,
    *,
    by_public_id: bool = False,
) -> bool:
    """The visibility rule alone (deleted or not): whether this viewer may find the video
    named this way (``by_public_id``: the URL named it by its public id, not its id)."""
    if is_admin or (viewer_id is not None and viewer_id == channel.owner_id):
        return True
    if stream.visibility == PUBLIC and channel.is_public:
        return True
    if stream.visibility in (PUBLIC, UNLISTED):
        return by_public_id  # an unlisted video, or any video of an unlisted channel
    return False  # private, or a value this code does not know: the safe answer


def can_view(
    stream: Stream,
    channel: Channel,
    viewer_id: int | None,
    is_admin: bool,
    *,
    by_public_id: bool = False,
) -> bool:
    """Whether this viewer may watch the video (its media: playlists, segments, download)."""
    return stream.deleted_at is None and can_reach(
        stream, channel, viewer_id, is_admin, by_public_id=by_public_id
    )


def listed_clause() -> ColumnElement[bool]:
    """The videos a public listing may show (the channel's own listedness is the caller's)."""
    return and_(Stream.visibility == PUBLIC, Stream.deleted_at.is_(None))
