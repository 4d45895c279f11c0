"""Categories and browsing (issue 12): the catalogue admins keep (``admin``: the page;
``api``: the JSON API), and the pages viewers browse by (``pages``: ``/categories``,
``/categories/{slug}``, ``/following``). Which category a channel or stream has is storage's
(``storage.categories``), called by the channels and streams APIs like any other field."""

from __future__ import annotations

from aiohttp import web

from ..answers import AnswerCache
from ..keys import BROWSE_ANSWERS_KEY, SETTINGS_KEY
from . import admin, api, pages


def setup(app: web.Application) -> None:
    browse = app[SETTINGS_KEY].browse
    app[BROWSE_ANSWERS_KEY] = AnswerCache(browse.cache_seconds, browse.cache_entries)
    api.setup(app)
    admin.setup(app)
    pages.setup(app)
