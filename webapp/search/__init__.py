"""Search (issue 12): ``/search`` (``page``), ``GET /api/search`` and
``GET /api/search/suggest`` (``api``), and the header's search box (``base.html`` and
``static/js/search.js``, which asks the suggest route as the user types). The indexes and
the ranking are storage's (``storage.search``)."""

from __future__ import annotations

from aiohttp import web

from ..answers import AnswerCache
from ..keys import SEARCH_ANSWERS_KEY, SETTINGS_KEY
from . import api, page


def setup(app: web.Application) -> None:
    s = app[SETTINGS_KEY].search
    app[SEARCH_ANSWERS_KEY] = AnswerCache(s.cache_seconds, s.cache_entries)
    api.setup(app)
    page.setup(app)
