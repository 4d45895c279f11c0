"""The home page (``/``, issue 12): who is live, arranged for the visitor.

A logged-in user gets "Following — live now", "Recommended for you" (each card says why),
"Popular now" and "New creators live"; everybody else gets "Popular now", spread across
categories. The ranking is ``recommend`` (pure), the reads and their caches ``service``.
Live means a stream row in status LIVE of a listed channel, as the rest of the site's lists.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from ..identity import current_user, upload_url
from ..keys import DB_KEY, SETTINGS_KEY
from ..render import render
from .recommend import Card, Sections
from .service import HomeData

HOME_KEY = web.AppKey("home_data", HomeData)

__all__ = ["HOME_KEY", "HomeData", "setup"]


def _thumbnail(thumbs: Path, slug: str) -> str | None:
    try:
        return f"/thumbnails/{slug}.jpg?v={int((thumbs / f'{slug}.jpg').stat().st_mtime)}"
    except OSError:
        return None


def _cards(cards: list[Card], thumbs: Path) -> list[dict[str, Any]]:
    return [
        {
            "slug": c.live.slug,
            "title": c.live.title,
            "creator": c.live.creator,
            "category": c.live.category,
            "viewers": c.live.viewers,
            "thumbnail": _thumbnail(thumbs, c.live.slug),
            "avatar": upload_url(c.live.avatar_path),
            "reason": c.reason,
        }
        for c in cards
    ]


async def home(request: web.Request) -> web.Response:
    data = request.app[HOME_KEY]
    user = await current_user(request)
    sections: Sections = await (data.for_user(user.id) if user else data.anonymous())
    thumbs = request.app[SETTINGS_KEY].data_dir / "thumbnails"
    response = render(
        request,
        "home.html",
        {
            "logged_in": user is not None,
            "any_live": bool(sections),
            "following": _cards(sections.following, thumbs),
            "recommended": _cards(sections.recommended, thumbs),
            "popular": _cards(sections.popular, thumbs),
            "new_creators": _cards(sections.new_creators, thumbs),
        },
    )
    if user is not None:
        response.headers["Cache-Control"] = "private, no-store"
    return response


async def _close(app: web.Application) -> None:
    await app[HOME_KEY].close()


def setup(app: web.Application) -> None:
    app[HOME_KEY] = HomeData(app[DB_KEY], app[SETTINGS_KEY].recommendations)
    app.router.add_get("/", home, name="home")
    app.on_cleanup.append(_close)
