"""``/dashboard/analytics``: a channel's last 7/30/90 days and one of its broadcasts, drawn as
charts (uPlot, vendored from npm, in ``static/js/analytics.js``) from the same documents the
API serves, embedded in the page; totals and top lists are plain HTML, so the page reads
without JavaScript. ``/dashboard/analytics/export.csv`` writes the same figures as CSV.

Owner or admin only: ``?channel=`` names the channel (the first of the user's own by default);
another user's channel answers 403, an unknown one 404; ``?stream=`` picks a broadcast of that
channel (its latest sampled one by default).
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from storage import analytics as queries
from storage import channels as channel_queries
from storage.models import Channel

from ..errors import ApiError
from ..identity import require_manager, require_page_user
from ..keys import DB_KEY
from ..parsing import parse_id
from ..render import render
from .api import RANGES, channel_figures, parse_range, stream_figures

PAGE = "/dashboard/analytics"
# Broadcasts offered in the page's stream picker.
PICKER_STREAMS = 20


async def _channel(request: web.Request, session: Any, slug: str) -> Channel:
    found = await channel_queries.channel_with_owner(session, slug)
    if found is None:
        raise ApiError(404, "not_found", f"no channel {slug[:48]!r}")
    return found.channel


def _stream_param(request: web.Request) -> int | None:
    raw = request.query.get("stream")
    if raw is None or raw == "":
        return None
    stream_id = parse_id(raw)
    if stream_id is None:
        raise ApiError(400, "invalid", "stream must be a stream id")
    return stream_id


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


async def analytics_page(request: web.Request) -> web.Response:
    user = await require_page_user(request)
    range_name = parse_range(request.query.get("range"))
    stream_id = _stream_param(request)
    async with request.app[DB_KEY].session() as session:
        own = await channel_queries.user_channels(session, user.id)
        slug = request.query.get("channel") or (own[0].slug if own else None)
        context: dict[str, Any] = {
            "channels": [{"slug": c.slug, "name": c.name} for c in own],
            "ranges": list(RANGES),
            "range": range_name,
            "channel": None,
        }
        if slug is not None:
            channel = await _channel(request, session, slug)
            require_manager(user, channel)
            if channel.id not in {c.id for c in own}:  # an admin looking at someone's channel
                context["channels"].append({"slug": channel.slug, "name": channel.name})
            picker = await queries.sampled_streams(session, channel.id, PICKER_STREAMS)
            if stream_id is None and picker:
                stream_id = picker[0][0]
            stream_doc = (
                await stream_figures(request, session, stream_id, channel.id)
                if stream_id is not None
                else None
            )
            context.update(
                channel={"slug": channel.slug, "name": channel.name},
                report=await channel_figures(request, session, channel, range_name),
                stream=stream_doc,
                stream_id=stream_id,
                picker=[
                    {
                        "id": sid,
                        "title": title,
                        "when": queries.from_epoch(started).strftime("%Y-%m-%d %H:%M"),
                    }
                    for sid, title, started in picker
                ],
            )
    context["duration"] = _duration
    response = render(request, "analytics/dashboard.html", context)
    response.headers["Cache-Control"] = "no-store"
    return response


def _csv(rows: list[list[Any]], filename: str) -> web.Response:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return web.Response(
        body=out.getvalue().encode(),
        content_type="text/csv",
        charset="utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def export_csv(request: web.Request) -> web.Response:
    """The channel's buckets over ``range``, or (``?stream=``) one broadcast's curve."""
    user = await require_page_user(request)
    range_name = parse_range(request.query.get("range"))
    stream_id = _stream_param(request)
    slug = request.query.get("channel") or ""
    async with request.app[DB_KEY].session() as session:
        channel = await _channel(request, session, slug)
        require_manager(user, channel)
        if stream_id is not None:
            doc = await stream_figures(request, session, stream_id, channel.id)
        else:
            doc = await channel_figures(request, session, channel, range_name)
    series = doc["series"]
    if stream_id is not None:
        start = doc["stream"]["started_at"]
        base = datetime.fromisoformat(start).timestamp() if start else 0.0
        names = ["average_viewers", "peak_viewers", "chat_messages", "follows"]
        rows: list[list[Any]] = [["offset_seconds", "time", *names]]
        for i, offset in enumerate(series["offset"]):
            rows.append([offset, _when(base + offset), *(series[n][i] for n in names)])
        return _csv(rows, f"{channel.slug}-stream-{stream_id}.csv")
    names = [
        "hours_streamed",
        "average_viewers",
        "peak_viewers",
        "watch_hours",
        "chat_messages",
        "follows",
    ]
    rows = [["time", *names]]
    for i, t in enumerate(series["t"]):
        rows.append([_when(t), *(series[n][i] for n in names)])
    return _csv(rows, f"{channel.slug}-{range_name}.csv")


def setup_routes(app: web.Application) -> None:
    app.router.add_get(PAGE, analytics_page)
    app.router.add_get(f"{PAGE}/export.csv", export_csv)
