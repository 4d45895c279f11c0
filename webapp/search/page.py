"""``/search?q=&type=``: a tab per type, the active one's results as cards, and a link to the
next page (the API's cursor). A query too long is cut rather than refused, an unknown tab is
the channels tab; a cursor that is not this search's is a 400 like in the API."""

from __future__ import annotations

from urllib.parse import urlencode

from aiohttp import web

from storage import search as search_store
from storage.search import SEARCH_TYPES, InvalidCursor

from ..keys import DB_KEY
from ..render import render
from .common import bad_cursor, hit_json, limits_of, read_params, settings_of

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
        limits = limits_of(settings_of(request))
        async with request.app[DB_KEY].session() as session:
            try:
                page = await search_store.search(
                    session, params.q, params.kind, params.limit, params.cursor, limits
                )
            except InvalidCursor:
                raise bad_cursor() from None
        items = [hit_json(request.app, hit) for hit in page.items]
        if page.next_cursor:
            next_url = _link(params.q, params.kind, page.next_cursor)
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
    app.router.add_get("/search", search_page, name="search")
