"""A channel's page: the player while it is live, the channel's home while it is not.

Routes: ``/streams/{slug}`` (Jinja2, autoescaped), ``/api/channels/{slug}/live`` (the small
JSON document the page polls to go from offline to playing and back by itself) and
``/thumbnails/streams/{ref}.jpg`` (a past broadcast's last frame, kept by the broadcast when
it ends).

The page is one document in both states, so it can switch by itself: the offline stage
carries the channel's banner, avatar and "last live", and below the player sit the channel's
about box (description, the owner's links, category and language) and its past broadcasts,
a page at a time (``?before=`` cursor, ``channel_page.past_broadcasts_per_page`` each; one
indexed query, see ``storage.channel_pages``). An unlisted channel stays reachable by its link;
its broadcasts link only by public id (``webapp.stream_links``), and its page asks search
engines not to index it.

Whether a channel is live comes from the live registry (the publisher is connected right
now); titles, creators and viewer counts come from the database. "Playable" additionally
needs the live edge to hold at least one whole segment of every rendition, so a player that
starts then sees the full ladder in the master playlist and its first request succeeds.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from storage import channel_pages, follows
from storage import channels as channel_queries
from storage.channels import ChannelWithOwner
from storage.errors import ValidationError
from storage.models import Channel, Stream, StreamStatus
from transcode.edge import LiveEdge

from .documents import stream_json
from .errors import ApiError, json_error
from .identity import current_user, upload_url
from .keys import DB_KEY, EDGES_KEY, REGISTRY_KEY, SETTINGS_KEY
from .render import not_found_page, render
from .sharing import (
    absolute,
    duration_text,
    live_thumbnail_url,
    profile_links,
    relative_time,
    social_meta,
)
from .stored import stored_file
from .stream_links import find_stream, stream_ref

# A past broadcast's thumbnail never changes once written.
STREAM_THUMBNAIL_CACHE = "public, max-age=86400"
# Where the broadcast keeps its copy (``mediaserver.broadcast``), relative to data_dir.
STREAM_THUMBNAILS = "thumbnails/streams/"
# Names of the languages a channel most often sets; any other tag shows as itself.
LANGUAGES = {
    "ar": "Arabic",
    "de": "German",
    "en": "English",
    "es": "Spanish",
    "fr": "French",
    "hi": "Hindi",
    "it": "Italian",
    "ja": "Japanese",
    "ko": "Korean",
    "nl": "Dutch",
    "pl": "Polish",
    "pt": "Portuguese",
    "ru": "Russian",
    "sv": "Swedish",
    "tr": "Turkish",
    "uk": "Ukrainian",
    "zh": "Chinese",
}


def edge_playable(edge: LiveEdge | None, stream_id: int) -> bool:
    """The edge of this stream has every rendition announced so far with a whole segment."""
    if edge is None or edge.ended or edge.stream_id != stream_id:
        return False
    renditions = list(edge)
    return bool(renditions) and edge.announced() and all(r.segments for r in renditions)


async def live_status(
    app: web.Application, session: AsyncSession, info: ChannelWithOwner
) -> dict[str, Any]:
    """What the player page shows and polls: ``{"live", "stream_id", "title", ...}``."""
    channel = info.channel
    status: dict[str, Any] = {
        "live": False,
        "playable": False,
        "stream_id": None,
        "title": channel.name,
        "category": channel.category,
        "tags": list(channel.tags or []),
        "viewers": 0,
        "started_at": None,
        "creator": info.creator,
        "hls_url": f"/hls/{channel.slug}/master.m3u8",
    }
    live = app[REGISTRY_KEY].get(channel.slug)
    if live is None or live.ended or live.channel_id != channel.id:
        return status
    status.update(
        live=True,
        stream_id=live.stream_id,
        started_at=live.started_at.isoformat(),
        # A stream an origin of the cluster ingests is played through it (issue 15): its
        # master playlist is held there until every rendition has media.
        playable=live.remote or edge_playable(app[EDGES_KEY].get(channel.slug), live.stream_id),
    )
    row = await channel_queries.get_stream(session, live.stream_id)
    if row is not None:
        status.update(
            title=row.title, category=row.category or channel.category, viewers=row.viewer_count
        )
    return status


def language_name(tag: str | None) -> str | None:
    if not tag:
        return None
    return LANGUAGES.get(tag.split("-", 1)[0].lower(), tag)


def broadcast_card(stream: Stream, channel: Channel, now: datetime) -> dict[str, Any]:
    """A past broadcast as the channel home lists it, named the way its channel allows."""
    ref = stream_ref(stream, channel)
    document = stream_json(stream, channel)  # where the site links a recording, as elsewhere
    vod = bool(document["vod_available"])
    seconds: float | None = stream.duration_seconds
    if seconds is None and vod:
        seconds = stream.vod_duration_seconds
    own_thumbnail = (stream.thumbnail_path or "").startswith(STREAM_THUMBNAILS)
    started = stream.started_at or now
    return {
        "title": stream.title,
        "duration": duration_text(seconds),
        "duration_iso": None if seconds is None else f"PT{int(seconds)}S",
        "started_iso": started.isoformat(),
        "date": f"{started:%b} {started.day}, {started.year}",
        "ago": relative_time(started, now),
        "url": document["watch_url"] if vod else None,
        "thumbnail": f"/thumbnails/streams/{ref}.jpg" if own_thumbnail else None,
    }


def _cursor(request: web.Request) -> channel_pages.Cursor | None:
    raw = request.query.get("before")
    if raw is None:
        return None
    try:
        return channel_pages.parse_cursor(raw)
    except ValidationError as exc:
        raise ApiError(400, "invalid", str(exc)) from None


# -- handlers -----------------------------------------------------------------------------


async def stream_page(request: web.Request) -> web.Response:
    slug = request.match_info["slug"]
    before = _cursor(request)
    settings = request.app[SETTINGS_KEY]
    now = datetime.now(UTC)
    async with request.app[DB_KEY].session() as session:
        info = await channel_queries.channel_with_owner(session, slug)
        if info is None:
            return not_found_page(request, "channel")
        channel = info.channel
        status = await live_status(request.app, session, info)
        # The identity middleware already resolved who is viewing (pages with a session cookie).
        viewer = await current_user(request)
        following = viewer is not None and await follows.is_following(
            session, viewer.id, channel.id
        )
        page = await channel_pages.past_broadcasts(
            session,
            channel.id,
            limit=settings.channel_page.past_broadcasts_per_page,
            before=before,
        )
        if before is None:
            latest = page.broadcasts[0] if page.broadcasts else None
            last_live = latest and (latest.ended_at or latest.started_at)
        else:
            last_live = await channel_pages.last_live_at(session, channel.id)
        category = await channel_pages.channel_category(session, channel)
    avatar_url = upload_url(channel.avatar_path)
    banner_url = upload_url(channel.banner_path)
    path = f"/streams/{channel.slug}"
    live_thumb = live_thumbnail_url(request.app, channel.slug) if status["live"] else None
    owner_links = profile_links(info.profile.social_links) if info.profile else []
    return render(
        request,
        "stream.html",
        {
            "following": following,
            "follower_count": channel.follower_count,
            "slug": channel.slug,
            "channel_name": channel.name,
            "description": channel.description,
            "creator": info.creator,
            "creator_username": None if info.owner.is_disabled else info.owner.username,
            "owner_links": owner_links,
            "status": status,
            "channel_category": category,
            "language": language_name(channel.language),
            "last_live": last_live and relative_time(last_live, now),
            "last_live_iso": last_live and last_live.isoformat(),
            "broadcasts": [broadcast_card(s, channel, now) for s in page.broadcasts],
            "older_url": page.next_cursor and f"{path}?before={page.next_cursor.encode()}",
            "newer_url": path if before is not None else None,
            "listed": channel.is_public,
            "avatar_url": avatar_url,
            "banner_url": banner_url,
            "share_url": absolute(request, path),
            "social": social_meta(
                request,
                title=f"{status['title']} · {info.creator}" if status["live"] else channel.name,
                description=channel.description or f"{info.creator} on AeThex Live",
                path=path,
                image=live_thumb or banner_url or avatar_url,
                kind="video.other" if status["live"] else "profile",
            ),
            # Seconds the server keeps the playlists open for a publisher to come back.
            "reconnect_grace": settings.hls.reconnect_grace,
            # At least three beacons per viewer timeout, so one lost beacon drops nobody.
            "beacon_interval": min(
                settings.hls.viewer_beacon_interval, settings.hls.viewer_timeout / 3
            ),
        },
    )


async def live_api(request: web.Request) -> web.Response:
    slug = request.match_info["slug"]
    async with request.app[DB_KEY].session() as session:
        info = await channel_queries.channel_with_owner(session, slug)
        if info is None:
            return json_error(404, "not_found", f"no channel {slug!r}")
        status = await live_status(request.app, session, info)
    return web.json_response(status, headers={"Cache-Control": "no-store"})


async def stream_thumbnail(request: web.Request) -> web.StreamResponse:
    """A past broadcast's thumbnail, reachable by the same references as its recording."""
    async with request.app[DB_KEY].session() as session:
        found = await find_stream(request, session, request.match_info["ref"])
    if found is None:
        raise web.HTTPNotFound()
    stream = found[0]
    name = stream.thumbnail_path or ""
    live_or_gone = stream.status is StreamStatus.LIVE or stream.deleted_at is not None
    if live_or_gone or not name.startswith(STREAM_THUMBNAILS):
        raise web.HTTPNotFound()
    # The broadcast writes exactly thumbnails/streams/<id>.jpg; nothing else is served.
    # An unlisted channel's, or a video that is not public: never kept by a shared cache (its
    # owner may have asked by id, or may be the only one allowed to see it).
    public = found[1].is_public and stream.visibility == "public"
    cache = STREAM_THUMBNAIL_CACHE if public else "private, max-age=86400"
    headers = {
        "Cache-Control": cache,
        "Content-Type": "image/jpeg",
        "X-Content-Type-Options": "nosniff",
    }
    # This node's disk, or the object store (S3 mode: made elsewhere, or the disk lost it).
    response = await stored_file(request, f"{STREAM_THUMBNAILS}{stream.id}.jpg", headers)
    if response is None:
        raise web.HTTPNotFound()
    return response


def setup(app: web.Application) -> None:
    """Register the channel page, what it polls and its past broadcasts' thumbnails."""
    app.router.add_get("/streams/{slug}", stream_page, name="stream")
    app.router.add_get("/api/channels/{slug}/live", live_api, name="channel-live")
    app.router.add_get("/thumbnails/streams/{ref}.jpg", stream_thumbnail, name="stream-thumbnail")
