"""Helpers for tests that need logged-in users: register through the real JSON API.

Not a test module. ``register`` returns an ``aiohttp.ClientSession`` whose cookie jar holds the
session cookie (``unsafe=True``: the default jar ignores cookies from IP addresses such as
127.0.0.1). Close it when done (``async with await register(...) as http:``). Cookie-auth calls
that change state need the CSRF token: ``headers={"X-CSRF-Token": await csrf_of(http, base)}``.
"""

from __future__ import annotations

import aiohttp

DEFAULT_PASSWORD = "correct horse battery"


async def _logged_in(
    base_url: str, path: str, body: dict[str, str], expect: int
) -> aiohttp.ClientSession:
    session = aiohttp.ClientSession(base_url, cookie_jar=aiohttp.CookieJar(unsafe=True))
    try:
        async with session.post(f"{base_url}{path}", json=body) as response:
            if response.status != expect:
                raise AssertionError(
                    f"POST {path} as {body['username']!r} failed: "
                    f"{response.status} {await response.text()}"
                )
    except BaseException:
        await session.close()
        raise
    return session


async def register(
    base_url: str, username: str, password: str = DEFAULT_PASSWORD, email: str | None = None
) -> aiohttp.ClientSession:
    """A new account, logged in. The first account registered on a server is its admin."""
    return await _logged_in(
        base_url,
        "/api/auth/register",
        {"username": username, "password": password, "email": email or f"{username}@example.test"},
        201,
    )


async def login(
    base_url: str, username: str, password: str = DEFAULT_PASSWORD
) -> aiohttp.ClientSession:
    """A new client session logged in as an existing account (username or email)."""
    return await _logged_in(
        base_url, "/api/auth/login", {"username": username, "password": password}, 200
    )


async def csrf_of(session: aiohttp.ClientSession, base_url: str) -> str:
    """The CSRF token of ``session``'s login, for the X-CSRF-Token header."""
    async with session.get(f"{base_url}/api/auth/user") as response:
        if response.status != 200:
            raise AssertionError(f"GET /api/auth/user: {response.status} {await response.text()}")
        token = (await response.json())["csrf_token"]
    assert token, "the session has no CSRF token (not logged in with a cookie?)"
    return token


async def user_of(session: aiohttp.ClientSession, base_url: str) -> dict:
    """The logged-in user as GET /api/auth/user shows it (id, username, is_admin, ...)."""
    async with session.get(f"{base_url}/api/auth/user") as response:
        assert response.status == 200, await response.text()
        return (await response.json())["user"]
