"""The home page (``/``, issue 12): who is live, arranged for the visitor.

A logged-in user gets "Following — live now", "Recommended for you" (each card says why),
"Popular now" and "New creators live"; everybody else gets "Popular now", spread across
categories. The ranking is ``recommend`` (pure), the reads and their caches ``service``.
Live means a stream row in status LIVE of a listed channel, as the rest of the site's lists.
"""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web
from markupsafe import Markup

from storage.recommendations import LiveCard

from ..identity import current_user, upload_url
from ..keys import DB_KEY, FOLLOW_LISTENERS_KEY, SETTINGS_KEY, FollowChange
from ..page_cache import shared_for_anonymous
from ..render import render
from ..sharing import live_thumbnail_url
from .recommend import Card, LiveIndex, Sections
from .service import HomeData

HOME_KEY = web.AppKey("home_data", HomeData)

__all__ = ["HOME_KEY", "HomeData", "setup"]


REASON_MARK = Markup("<!--reason-->")
REASON_LINE = Markup('<span class="card-reason">%s</span>')


class CardHtml:
    """Each live channel's card rendered once per refresh of the live list (the newest list
    is the generation) and shared by every visitor; only the reason line is per visitor."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self._generation: LiveIndex | None = None
        self._html: dict[int, Markup] = {}
        self._macro: Any = None

    def _render(self, live: LiveCard) -> Markup:
        if self._macro is None:
            env = aiohttp_jinja2.get_env(self.app)
            self._macro = env.get_template("_home_card.html").module.card  # type: ignore[attr-defined]
        return Markup(
            self._macro(
                {
                    "slug": live.slug,
                    "title": live.title,
                    "creator": live.creator,
                    "category": live.category,
                    "viewers": live.viewers,
                    "thumbnail": live_thumbnail_url(self.app, live.slug),
                    "avatar": upload_url(live.avatar_path),
                }
            )
        )

    def cards(self, sections: Sections, cards: list[Card]) -> list[Markup]:
        generation = sections.generation
        current = self._generation
        if generation is not None and (current is None or generation.built_at > current.built_at):
            self._generation, self._html = generation, {}
        shared = generation is self._generation  # else made from an older list: not kept
        out = []
        for card in cards:
            html = self._html.get(card.live.channel_id) if shared else None
            if html is None:
                html = self._render(card.live)
                if shared:
                    self._html[card.live.channel_id] = html
            reason = REASON_LINE % card.reason if card.reason else Markup("")
            out.append(html.replace(REASON_MARK, reason))
        return out


CARDS_KEY = web.AppKey("home_card_html", CardHtml)


async def home(request: web.Request) -> web.Response:
    data = request.app[HOME_KEY]
    user = await current_user(request)
    sections: Sections = await (data.for_user(user.id) if user else data.anonymous())
    html = request.app[CARDS_KEY]
    response = render(
        request,
        "home.html",
        {
            "any_live": bool(sections),
            "following": html.cards(sections, sections.following),
            "recommended": html.cards(sections, sections.recommended),
            "popular": html.cards(sections, sections.popular),
            "new_creators": html.cards(sections, sections.new_creators),
        },
    )
    if user is not None:
        response.headers["Cache-Control"] = "private, no-store"
    return response


async def _close(app: web.Application) -> None:
    await app[HOME_KEY].close()


def setup(app: web.Application) -> None:
    app[HOME_KEY] = HomeData(app[DB_KEY], app[SETTINGS_KEY].recommendations)
    app[CARDS_KEY] = CardHtml(app)
    data = app[HOME_KEY]

    def follow_changed(change: FollowChange) -> None:
        data.follow_changed(change.user_id)

    app.setdefault(FOLLOW_LISTENERS_KEY, []).append(follow_changed)
    app.router.add_get("/", shared_for_anonymous(app, home), name="home")
    app.on_cleanup.append(_close)
