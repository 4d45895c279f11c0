"""``/search?q=&type=``: a tab per type, the active one's results as cards, and a link to the
next page (the API's cursor). A query too long is cut rather than refused, an unknown tab is
the channels tab; a cursor that is not this search's is a 400 like in the API."""

from __future__ import annotations

from urllib.parse import urlencode

from aiohttp import web

from storage.search import SEARCH_TYPES

from ..page_cache import shared_for_anonymous
from ..render import render
from .api import search_page_json
from .common import read_params

TAB_LABELS = {
    "channels": "Channels",
    "users": "People",
    "categories": "Categories",
    "videos": "Past broadcasts",
}


def _link(q: str, kind: str, cursor: str | None = None) -> str:
    query = {"q": q, "type": kind}
    if cursor:
        query["cursor"] = cursor
    return "/search?" + urlencode(query)


async def search_page(request: web.Request) -> web.Response:
    params = read_params(request, page=True)
    items = []
    next_url = None
    if params.q.strip():
        found = await search_page_json(request, params)
        items = found["items"]
        if found["next_cursor"]:
            next_url = _link(params.q, params.kind, found["next_cursor"])
    tabs = [
        {"kind": kind, "label": TAB_LABELS[kind], "url": _link(params.q, kind)}
        for kind in SEARCH_TYPES
    ]
    return render(
        request,
        "search/results.html",
        {
            "q": params.q,
            "kind": params.kind,
            "tabs": tabs,
            "items": items,
            "next_url": next_url,
            "more_page": params.cursor is not None,
        },
    )


def setup(app: web.Application) -> None:
    app.router.add_get("/search", shared_for_anonymous(app, search_page), name="search")
