"""The browse pages: ``/categories`` (the catalogue by live viewers now, each entry with its
live channel count), ``/categories/{slug}`` (its live channels by viewers, filterable by
``?tag=`` and ``?language=``, then its recent past broadcasts) and ``/following`` (a logged-in
user's followed channels, live ones first, then when each was last live).

Live figures are the database's, as on the home page (a stream row in status LIVE and the
viewer count the server keeps on it), so every process of a cluster shows the same. Unlisted
channels never appear on the category pages. Each page is a few indexed, bounded queries
(``storage.browse``; sizes from the ``browse`` settings). A category's live channels and
past broadcasts are read once for all its filters, which are applied here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from markupsafe import Markup

from storage import browse, categories
from storage import channels as channel_queries
from storage.browse import LiveCard, PastBroadcast
from storage.discovery_models import Category

from ..identity import require_page_user, upload_url
from ..keys import BROWSE_ANSWERS_KEY, DB_KEY, SETTINGS_KEY
from ..page_cache import shared_for_anonymous
from ..render import not_found_page, render
from ..sharing import live_thumbnail_url
from .common import category_json

# Most languages offered by a category page's language filter.
LANGUAGES_SHOWN = 50


def live_card(app: web.Application, card: LiveCard) -> dict[str, Any]:
    return {
        "slug": card.slug,
        "title": card.title,
        "creator": card.creator,
        "category": card.category,
        "language": card.language,
        "tags": card.tags,
        "viewers": card.viewers,
        "thumbnail": live_thumbnail_url(app, card.slug),
        "avatar": upload_url(card.avatar_path),
    }


def _followed_live(card: browse.FollowedCard) -> LiveCard:
    stream, channel = card.live, card.channel
    assert stream is not None
    return LiveCard(
        stream.id,
        channel.slug,
        stream.title,
        card.creator,
        stream.category or channel.category,
        channel.language,
        list(channel.tags or []),
        stream.viewer_count,
        channel.avatar_path,
    )


def past_row(past: PastBroadcast) -> dict[str, Any]:
    """A listed channel's broadcast: its links name it by id (see webapp.stream_links)."""
    return {
        "id": past.stream_id,
        "title": past.title,
        "channel": past.channel_slug,
        "channel_name": past.channel_name,
        "creator": past.creator,
        "started_at": past.started_at.isoformat() if past.started_at else None,
        "duration_seconds": past.duration_seconds,
        "vod_available": past.vod_available,
        "watch_url": f"/videos/{past.stream_id}",
    }


def _ago(when: datetime | None, now: datetime) -> str:
    """ "3 hours ago": how long ago ``when`` was, in its largest whole unit."""
    if when is None:
        return "never"
    seconds = max(0, int((now - when).total_seconds()))
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'' if n == 1 else 's'} ago"
    return "just now"


def _filters(request: web.Request) -> tuple[str | None, str | None]:
    """``?tag=`` and ``?language=``, checked like the fields they filter (a 400 otherwise)."""
    raw_tag = request.query.get("tag", "").strip()
    tag = channel_queries.clean_tags([raw_tag])[0] if raw_tag else None
    raw_language = request.query.get("language", "")
    language = channel_queries.clean_language(raw_language) if raw_language.strip() else None
    return tag, language


async def categories_page(request: web.Request) -> web.Response:
    limit = request.app[SETTINGS_KEY].browse.categories_max
    async with request.app[DB_KEY].session() as session:
        cards = await browse.categories_by_viewers(session, limit)
    entries = [
        {**category_json(c.category), "viewers": c.viewers, "live_channels": c.live_channels}
        for c in cards
    ]
    return render(request, "categories/index.html", {"categories": entries})


async def category_page(request: web.Request) -> web.Response:
    tag, language = _filters(request)  # a bad one: ValidationError, a 400 page
    slug = request.match_info["slug"]
    answers = request.app[BROWSE_ANSWERS_KEY]
    listing = await answers.get(
        (slug, tag, language), lambda: _listing(request, slug, tag, language)
    )
    if listing is None:
        return not_found_page(request, "category")
    name, body = listing
    return render(request, "categories/category.html", {"category": {"name": name}, "body": body})


@dataclass(frozen=True, slots=True)
class _CategoryData:
    """What every listing of one category is made from, read once for all its filters."""

    entry: Category
    live: list[LiveCard]  # its live listed channels, the most watched first (up to the scan)
    past: list[PastBroadcast]


def _in_language(card: LiveCard, language: str) -> bool:
    """``language`` exactly (a regional tag such as "pt-BR"), or for a bare language ("pt")
    any regional form of it too; without regard to case. As ``storage.browse`` filters it."""
    mine = (card.language or "").lower()
    wanted = language.lower()
    return mine == wanted or ("-" not in wanted and mine.startswith(wanted + "-"))


async def _category_data(request: web.Request, slug: str) -> _CategoryData | None:
    """The category's live channels (up to ``browse.live_scan_max``) and recent past
    broadcasts, None for an unknown category: three indexed reads, shared by every tag and
    language filter of the category (each filter is a pass over these rows here, where tags,
    a JSON list, are matched anyway)."""
    settings = request.app[SETTINGS_KEY].browse
    async with request.app[DB_KEY].session() as session:
        entry = await categories.get_by_slug(session, slug)
        if entry is None:
            return None
        live = await browse.live_in_category(
            session, entry.id, limit=settings.live_scan_max, scan=settings.live_scan_max
        )
        past = await browse.past_in_category(session, entry.id, settings.past_per_page)
    return _CategoryData(entry, live, past)


async def _listing(
    request: web.Request, slug: str, tag: str | None, language: str | None
) -> tuple[str, Markup] | None:
    """A category page's listing, rendered: the same for every visitor (only listed channels,
    nothing of the viewer's own), so ``browse.cache_seconds`` of visitors share one making;
    None for an unknown category."""
    answers = request.app[BROWSE_ANSWERS_KEY]
    data = await answers.get(("data", slug), lambda: _category_data(request, slug))
    if data is None:
        return None
    settings = request.app[SETTINGS_KEY].browse
    live = data.live
    languages = sorted({c.language for c in live if c.language})[:LANGUAGES_SHOWN]
    if language:
        live = [c for c in live if _in_language(c, language)]
    if tag:
        wanted = tag.strip().lower()
        live = [c for c in live if any(t.lower() == wanted for t in c.tags)]
    live = live[: settings.live_per_page]
    entry = data.entry
    body = aiohttp_jinja2.get_env(request.app).get_template("categories/_category_body.html")
    html = body.render(
        category=category_json(entry),
        channels=[live_card(request.app, c) for c in live],
        tags=sorted({t for c in live for t in c.tags}, key=str.lower),
        languages=sorted(set(languages) | ({language} if language else set())),
        tag=tag or "",
        language=language or "",
        filtered=bool(tag or language),
        past=[past_row(p) for p in data.past],
    )
    return entry.name, Markup(html)


async def following_page(request: web.Request) -> web.Response:
    user = await require_page_user(request)
    limit = request.app[SETTINGS_KEY].browse.following_max
    async with request.app[DB_KEY].session() as session:
        rows = await browse.followed(session, user.id, limit)
    now = datetime.now(UTC)
    live, offline = [], []
    for row in rows:
        if row.live is not None:
            live.append(live_card(request.app, _followed_live(row)))
            continue
        offline.append(
            {
                "slug": row.channel.slug,
                "name": row.channel.name,
                "creator": row.creator,
                "category": row.channel.category,
                "language": row.channel.language,
                "avatar": upload_url(row.channel.avatar_path),
                "last_live": row.last_live.isoformat() if row.last_live else None,
                "last_live_ago": _ago(row.last_live, now),
            }
        )
    response = render(request, "categories/following.html", {"live": live, "offline": offline})
    response.headers["Cache-Control"] = "no-store"
    return response


def setup(app: web.Application) -> None:
    app.router.add_get("/categories", shared_for_anonymous(app, categories_page), name="categories")
    app.router.add_get(
        "/categories/{slug}", shared_for_anonymous(app, category_page), name="category"
    )
    app.router.add_get("/following", following_page, name="following")
