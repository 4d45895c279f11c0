"""What the video page, the dashboard and the API say about a video."""

from __future__ import annotations

from typing import Any

from storage.models import Channel, Stream, StreamStatus

from ..documents import category_slug
from ..stream_links import stream_ref


def video_json(stream: Stream, channel: Channel, *, private: bool = False) -> dict[str, Any]:
    """A past broadcast as the video page and the API show it (``private``: for its owner and
    admins, with its size on disk and whether it is pinned)."""
    ref = stream_ref(stream, channel)
    playable = (
        stream.vod_available and stream.status is StreamStatus.ARCHIVED and not stream.deleted_at
    )
    data: dict[str, Any] = {
        "id": stream.id,
        "public_id": stream.public_id,
        "ref": ref,
        "title": stream.title,
        "description": stream.description or "",
        "duration": stream.vod_duration_seconds or stream.duration_seconds,
        "vod_duration_seconds": stream.vod_duration_seconds if playable else None,
        "started_at": stream.started_at.isoformat() if stream.started_at else None,
        "ended_at": stream.ended_at.isoformat() if stream.ended_at else None,
        "views": stream.views,
        "peak_viewers": stream.peak_viewers,
        "category": stream.category,
        "category_slug": category_slug(stream),
        "channel": channel.slug,
        "channel_name": channel.name,
        "visibility": stream.visibility,
        "status": stream.status.value,
        "deleted": stream.deleted_at is not None,
        "url": f"/videos/{ref}",
        "vod_url": f"/vod/{ref}/master.m3u8" if playable else None,
        "thumbnail_url": f"/thumbnails/streams/{ref}.jpg" if stream.thumbnail_path else None,
    }
    if private:
        data["pinned"] = stream.pinned
        data["size_bytes"] = stream.size_bytes
        data["deleted_at"] = stream.deleted_at.isoformat() if stream.deleted_at else None
    return data
