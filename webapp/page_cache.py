"""Whole pages shared by anonymous visitors for a moment (``browse.page_cache_seconds``).

A visitor without a session cookie or credentials sees exactly what every other such visitor
sees at the same URL: the discovery pages (home, categories, a category, search) hold nothing
of the visitor's own (no user, no CSRF token: it is derived from the session cookie, absent
here). So one rendering of such a page serves every anonymous request for the same path and
query for the setting's seconds, and requests arriving while it is being made wait for it
(``AnswerCache``). Half a platform's page views are anonymous; on one event loop their
rendering (aiohttp's request handling, Jinja, the outer template) was most of what kept the
logged-in visitors' pages waiting.

Only a 200 without ``Set-Cookie`` and with a body under ``MAX_BODY`` is kept; anything else
(an error page, a cookie for one browser) goes to its own visitor only, and the waiters make
their own. The data under these pages is already shared for as long
(``browse.cache_seconds``, ``search.cache_seconds``), so a page is at most twice that old.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import hdrs, web

from .answers import AnswerCache
from .identity import SESSION_COOKIE
from .keys import PAGE_CACHE_KEY, SETTINGS_KEY

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Largest page kept (bytes): a bound on the cache's memory with ``page_cache_entries``.
MAX_BODY = 1 << 20
# Response headers a kept page is served with (aiohttp writes its own length and date).
_SKIPPED = frozenset({hdrs.CONTENT_LENGTH, hdrs.DATE, hdrs.SERVER, hdrs.TRANSFER_ENCODING})


@dataclass(frozen=True, slots=True)
class _Page:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def response(self) -> web.Response:
        return web.Response(status=self.status, headers=self.headers, body=self.body)


class _NotShared(Exception):
    """The made response is for its own visitor only (raised so that waiters make theirs)."""

    def __init__(self, response: web.StreamResponse) -> None:
        super().__init__()
        self.response = response


def anonymous(request: web.Request) -> bool:
    """No session cookie and no credentials: the request is answered as for anyone."""
    return (
        request.method == hdrs.METH_GET
        and SESSION_COOKIE not in request.cookies
        and hdrs.AUTHORIZATION not in request.headers
    )


class PageCache:
    """Keeps anonymous visitors' pages (see the module's docstring)."""

    def __init__(self, seconds: float, entries: int) -> None:
        self._answers = AnswerCache(seconds, entries)
        self.enabled = seconds > 0

    def wrap(self, handler: Handler) -> Handler:
        """``handler`` with anonymous GETs answered from the cache."""
        if not self.enabled:
            return handler

        async def make(request: web.Request) -> _Page:
            response = await handler(request)
            body = response.body if isinstance(response, web.Response) else None
            if (
                response.status != 200
                or not isinstance(body, bytes)
                or len(body) > MAX_BODY
                or hdrs.SET_COOKIE in response.headers
                or response.prepared
            ):
                raise _NotShared(response)
            headers = tuple((k, v) for k, v in response.headers.items() if k not in _SKIPPED)
            return _Page(response.status, headers, body)

        async def cached(request: web.Request) -> web.StreamResponse:
            if not anonymous(request):
                return await handler(request)
            try:
                page = await self._answers.get(request.path_qs, lambda: make(request))
            except _NotShared as exc:
                return exc.response
            return page.response()

        return cached


def shared_for_anonymous(app: web.Application, handler: Handler) -> Handler:
    """``handler`` answering anonymous visitors from the app's page cache."""
    cache = app.get(PAGE_CACHE_KEY)
    if cache is None:
        browse = app[SETTINGS_KEY].browse
        cache = app[PAGE_CACHE_KEY] = PageCache(
            browse.page_cache_seconds, browse.page_cache_entries
        )
    return cache.wrap(handler)
