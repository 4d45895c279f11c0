"""The analytics JSON API: ``GET /api/channels/{slug}/analytics?range=7d|30d|90d`` and
``GET /api/streams/{id}/analytics``, for the channel's owner and admins only (others: 403; a
stream the caller cannot even reach answers 404 like a missing one). The dashboard's charts
draw these documents; the CSV export writes the same figures (``pages``).

Series are columns (``t`` and one array per figure) because that is what a chart library
takes; a channel's buckets are filled with zeros where nothing was rolled up, so the time axis
has no holes.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from storage import analytics as queries
from storage.models import Channel
from storage.polls import PollRow

from ..documents import load_channel
from ..errors import ApiError
from ..identity import require_manager, require_user
from ..keys import DB_KEY, SETTINGS_KEY
from ..openapi import json_response
from ..stream_links import STREAM_REF_DESCRIPTION, STREAM_REF_SCHEMA, load_stream

RANGES = {"7d": 7, "30d": 30, "90d": 90}
NO_STORE = {"Cache-Control": "no-store"}


def parse_range(raw: str | None) -> str:
    if raw is None or raw == "":
        return "7d"
    if raw not in RANGES:
        raise ApiError(400, "invalid", "range must be one of 7d, 30d, 90d")
    return raw


def _iso(epoch: int) -> str:
    return queries.from_epoch(epoch).isoformat()


def channel_document(channel: Channel, report: queries.ChannelReport, name: str) -> dict[str, Any]:
    size = report.bucket_seconds
    by_time = {p.at: p for p in report.points}
    times = list(range(report.start, report.end // size * size + 1, size))
    points = [by_time.get(t) for t in times]

    def column(fn: Any) -> list[float]:
        return [fn(p) if p is not None else 0 for p in points]

    return {
        "channel": {"slug": channel.slug, "name": channel.name},
        "range": name,
        "days": report.days,
        "from": _iso(report.start),
        "to": _iso(report.end),
        "bucket_seconds": size,
        "totals": {
            "streams": report.streams,
            "hours_streamed": round(report.live_seconds / 3600, 2),
            "average_viewers": round(report.average_viewers, 2),
            "peak_viewers": report.peak_viewers,
            "watch_hours": round(report.viewer_seconds / 3600, 2),
            "chat_messages": report.messages,
            "follows_gained": report.follows,
            "followers": channel.follower_count,
        },
        "series": {
            "t": times,
            "hours_streamed": column(lambda p: round(p.live_seconds / 3600, 3)),
            "average_viewers": column(
                lambda p: round(p.viewer_seconds / p.live_seconds, 2) if p.live_seconds else 0
            ),
            "peak_viewers": column(lambda p: p.peak_viewers),
            "watch_hours": column(lambda p: round(p.viewer_seconds / 3600, 3)),
            "chat_messages": column(lambda p: p.messages),
            "follows": column(lambda p: p.follows),
        },
        "top_streams": [
            {
                "id": s.stream_id,
                "title": s.title,
                "started_at": _iso(s.started_at),
                "hours_streamed": round(s.live_seconds / 3600, 2),
                "peak_viewers": s.peak_viewers,
                "average_viewers": round(s.viewer_seconds / s.live_seconds, 2)
                if s.live_seconds
                else 0,
                "watch_hours": round(s.viewer_seconds / 3600, 2),
                "unique_viewers": s.unique_viewers,
                "analytics_url": f"/api/streams/{s.stream_id}/analytics",
            }
            for s in report.top_streams
        ],
        "top_clips": [
            {
                "id": c.public_id,
                "title": c.title,
                "views": c.views,
                "created_at": c.created_at.isoformat(),
                "duration_seconds": c.duration_seconds,
                "url": f"/clips/{c.public_id}",
            }
            for c in report.top_clips
        ],
    }


def stream_document(report: queries.StreamReport, step: int, max_points: int) -> dict[str, Any]:
    f = report.figures
    width = queries.series_step(f.last_at - f.started_at, step, max_points)
    total = sum(r["seconds"] for r in f.renditions.values()) or 1
    return {
        "stream": {
            "id": report.stream_id,
            "title": report.title,
            "live": report.live,
            "started_at": report.started_at.isoformat() if report.started_at else None,
            "ended_at": report.ended_at.isoformat() if report.ended_at else None,
        },
        "summary": {
            "duration_seconds": f.live_seconds,
            "peak_viewers": f.peak_viewers,
            "average_viewers": round(report.average_viewers, 2),
            "unique_viewers": f.unique_viewers,
            "watch_seconds": f.watch_seconds,
            "average_watch_seconds": round(report.average_watch_seconds, 1),
            "chat_messages": f.messages,
            "chatters": f.chatters,
            "follows_gained": f.follows,
        },
        "step_seconds": width,
        "series": {
            "offset": [p[0] for p in f.series],
            "average_viewers": [p[1] for p in f.series],
            "peak_viewers": [p[2] for p in f.series],
            "chat_messages": [p[3] for p in f.series],
            "follows": [p[4] for p in f.series],
        },
        "renditions": [
            {
                "name": name,
                "viewers": r["viewers"],
                "watch_seconds": r["seconds"],
                "share": round(r["seconds"] / total, 4),
            }
            for name, r in sorted(f.renditions.items(), key=lambda kv: -kv[1]["seconds"])
        ],
        "markers": [
            {"offset_seconds": m.offset_seconds, "title": m.title, "category": m.category}
            for m in report.markers
        ],
        "polls": [_poll(p) for p in report.polls],
    }


def _poll(p: PollRow) -> dict[str, Any]:
    counts = p.result or [0] * len(p.options)
    return {
        "id": p.id,
        "question": p.question,
        "options": [{"text": t, "votes": n} for t, n in zip(p.options, counts, strict=True)],
        "total": sum(counts),
        "started_at": _iso(p.started_ms // 1000),
        "running": p.ended_ms is None,
    }


async def channel_figures(
    request: web.Request, session: Any, channel: Channel, range_name: str
) -> dict[str, Any]:
    """The channel document (the caller has checked who may read it)."""
    limits = request.app[SETTINGS_KEY].analytics
    report = await queries.channel_report(
        session,
        channel.id,
        days=RANGES[range_name],
        now=int(time.time()),
        top_streams=limits.top_streams,
        top_clips=limits.top_clips,
    )
    return channel_document(channel, report, range_name)


async def stream_figures(
    request: web.Request, session: Any, stream_id: int, channel_id: int | None = None
) -> dict[str, Any]:
    """The stream document (the caller has checked who may read it); 404 when it is not a
    stream of ``channel_id`` (if given)."""
    limits = request.app[SETTINGS_KEY].analytics
    report = await queries.stream_report(
        session, stream_id, step=limits.series_step, max_points=limits.series_max_points
    )
    if report is None or channel_id not in (None, report.channel_id):
        raise ApiError(404, "not_found", f"no stream {stream_id}")
    return stream_document(report, limits.series_step, limits.series_max_points)


async def get_channel_analytics(request: web.Request) -> web.Response:
    range_name = parse_range(request.query.get("range"))
    user = await require_user(request)
    async with request.app[DB_KEY].session() as session:
        channel, _ = await load_channel(request, session)
        require_manager(user, channel)
        document = await channel_figures(request, session, channel, range_name)
    return web.json_response(document, headers=NO_STORE)


async def get_stream_analytics(request: web.Request) -> web.Response:
    user = await require_user(request)
    async with request.app[DB_KEY].session() as session:
        stream, channel = await load_stream(request, session, request.match_info["id"])
        require_manager(user, channel)
        document = await stream_figures(request, session, stream.id)
    return web.json_response(document, headers=NO_STORE)


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/api/channels/{slug}/analytics", get_channel_analytics)
    app.router.add_get("/api/streams/{id}/analytics", get_stream_analytics)


# -- OpenAPI -------------------------------------------------------------------------------

_ERRORS = {
    str(code): {"$ref": f"#/components/responses/{name}"}
    for code, name in (
        (400, "BadRequest"),
        (401, "Unauthenticated"),
        (403, "Forbidden"),
        (404, "NotFound"),
    )
}


def _numbers() -> dict[str, Any]:
    return {"type": "array", "items": {"type": "number"}}


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": sorted(properties), "properties": properties}


_INT = {"type": "integer", "minimum": 0}
_NUM = {"type": "number", "minimum": 0}
_TIME = {"type": "string", "format": "date-time"}

OPENAPI_SCHEMAS: dict[str, Any] = {
    "ChannelAnalytics": _object(
        {
            "channel": _object({"slug": {"type": "string"}, "name": {"type": "string"}}),
            "range": {"type": "string", "enum": list(RANGES)},
            "days": {"type": "integer"},
            "from": _TIME,
            "to": _TIME,
            "bucket_seconds": {"type": "integer", "enum": [3600, 86400]},
            "totals": _object(
                {
                    "streams": _INT,
                    "hours_streamed": _NUM,
                    "average_viewers": _NUM,
                    "peak_viewers": _INT,
                    "watch_hours": _NUM,
                    "chat_messages": _INT,
                    "follows_gained": _INT,
                    "followers": _INT,
                }
            ),
            "series": {
                "description": "Columns: t (each bucket's first second, epoch) and one value "
                "per bucket for each figure; hourly buckets for 7 days, daily ones for more.",
                **_object(
                    {
                        name: _numbers()
                        for name in (
                            "t",
                            "hours_streamed",
                            "average_viewers",
                            "peak_viewers",
                            "watch_hours",
                            "chat_messages",
                            "follows",
                        )
                    }
                ),
            },
            "top_streams": {
                "type": "array",
                "items": _object(
                    {
                        "id": {"type": "integer"},
                        "title": {"type": "string"},
                        "started_at": _TIME,
                        "hours_streamed": _NUM,
                        "peak_viewers": _INT,
                        "average_viewers": _NUM,
                        "watch_hours": _NUM,
                        "unique_viewers": _INT,
                        "analytics_url": {"type": "string"},
                    }
                ),
            },
            "top_clips": {
                "type": "array",
                "items": _object(
                    {
                        "id": {"type": "string"},
                        "title": {"type": "string"},
                        "views": _INT,
                        "created_at": _TIME,
                        "duration_seconds": {"type": ["number", "null"]},
                        "url": {"type": "string"},
                    }
                ),
            },
        }
    ),
    "StreamAnalytics": _object(
        {
            "stream": _object(
                {
                    "id": {"type": "integer"},
                    "title": {"type": "string"},
                    "live": {"type": "boolean"},
                    "started_at": {"type": ["string", "null"], "format": "date-time"},
                    "ended_at": {"type": ["string", "null"], "format": "date-time"},
                }
            ),
            "summary": _object(
                {
                    "duration_seconds": _INT,
                    "peak_viewers": _INT,
                    "average_viewers": _NUM,
                    "unique_viewers": _INT,
                    "watch_seconds": _INT,
                    "average_watch_seconds": _NUM,
                    "chat_messages": _INT,
                    "chatters": _INT,
                    "follows_gained": _INT,
                }
            ),
            "step_seconds": {"type": "integer", "minimum": 1},
            "series": {
                "description": "Columns: offset (seconds from the start of the stream) and "
                "one value per point for each figure.",
                **_object(
                    {
                        name: _numbers()
                        for name in (
                            "offset",
                            "average_viewers",
                            "peak_viewers",
                            "chat_messages",
                            "follows",
                        )
                    }
                ),
            },
            "renditions": {
                "type": "array",
                "description": "The rendition mix: viewer sessions that watched each quality "
                "and their watch time (share: of all watch time).",
                "items": _object(
                    {
                        "name": {"type": "string"},
                        "viewers": _INT,
                        "watch_seconds": _INT,
                        "share": {"type": "number", "minimum": 0, "maximum": 1},
                    }
                ),
            },
            "markers": {
                "type": "array",
                "description": "Where the title or category changed (the stream's chapters).",
                "items": _object(
                    {
                        "offset_seconds": _NUM,
                        "title": {"type": "string"},
                        "category": {"type": ["string", "null"]},
                    }
                ),
            },
            "polls": {
                "type": "array",
                "description": "The polls run during the broadcast, in order, with their "
                "results (a running one's counts so far).",
                "items": _object(
                    {
                        "id": {"type": "integer"},
                        "question": {"type": "string"},
                        "options": {
                            "type": "array",
                            "items": _object({"text": {"type": "string"}, "votes": _INT}),
                        },
                        "total": _INT,
                        "started_at": _TIME,
                        "running": {"type": "boolean"},
                    }
                ),
            },
        }
    ),
}

OPENAPI_PATHS: dict[str, Any] = {
    "/api/channels/{slug}/analytics": {
        "parameters": [
            {"name": "slug", "in": "path", "required": True, "schema": {"type": "string"}}
        ],
        "get": {
            "summary": "A channel's analytics over the last 7, 30 or 90 days (owner or admin)",
            "tags": ["analytics"],
            "parameters": [
                {
                    "name": "range",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string", "enum": list(RANGES), "default": "7d"},
                }
            ],
            "responses": {
                "200": json_response(
                    "Totals, the curve and the top streams and clips",
                    {"$ref": "#/components/schemas/ChannelAnalytics"},
                ),
                **_ERRORS,
            },
        },
    },
    "/api/streams/{id}/analytics": {
        "parameters": [
            {
                "name": "id",
                "in": "path",
                "required": True,
                "description": STREAM_REF_DESCRIPTION,
                "schema": STREAM_REF_SCHEMA,
            }
        ],
        "get": {
            "summary": "One broadcast's analytics (owner or admin); live ones as of now",
            "tags": ["analytics"],
            "responses": {
                "200": json_response(
                    "Viewers over time, totals, the rendition mix and chapter markers",
                    {"$ref": "#/components/schemas/StreamAnalytics"},
                ),
                **_ERRORS,
            },
        },
    },
}
