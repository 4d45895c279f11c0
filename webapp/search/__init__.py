"""Search (issue 12): ``/search`` (``page``), ``GET /api/search`` and
``GET /api/search/suggest`` (``api``), and the header's search box (``base.html`` and
``static/js/search.js``, which asks the suggest route as the user types). The indexes and
the ranking are storage's (``storage.search``)."""

from __future__ import annotations

from aiohttp import web

from . import api, page


def setup(app: web.Application) -> None:
    api.setup(app)
    page.setup(app)
