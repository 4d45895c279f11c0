"""Discovery pages shared by anonymous visitors (webapp/page_cache.py) against a real server:
an anonymous visitor gets the page made for the first one while it is kept; a logged-in
visitor, or anyone sending a session cookie, always gets their own; an error page and a page
that sets a cookie are never kept; and the setting turns it off.

The kept time is a minute here, so "still the earlier page" cannot depend on the machine's
speed; the listing's own data cache (``browse.cache_seconds``) is off, so what is seen is the
page cache alone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.accounts import csrf_of, register
from tests.conftest import running_server

pytestmark = pytest.mark.integration


@pytest.fixture
def env(settings_env: dict[str, str]) -> dict[str, str]:
    return {
        **settings_env,
        "AETHEX_BROWSE__CACHE_SECONDS": "0",
        "AETHEX_SEARCH__CACHE_SECONDS": "0",
        "AETHEX_BROWSE__PAGE_CACHE_SECONDS": "60",
    }


@pytest.fixture
async def site(env: dict[str, str]) -> AsyncIterator[tuple[str, aiohttp.ClientSession, str]]:
    """(base URL, the admin's logged-in session, its CSRF token)."""
    async with running_server(env) as server:
        base = f"http://127.0.0.1:{server.http_port}"
        admin = await register(base, "root")  # the first account is the admin
        try:
            yield base, admin, await csrf_of(admin, base)
        finally:
            await admin.close()


async def page(http: aiohttp.ClientSession, url: str, **kw: Any) -> tuple[int, str, Any]:
    async with http.get(url, **kw) as r:
        return r.status, await r.text(), r.headers


async def rename(admin: aiohttp.ClientSession, base: str, csrf: str, slug: str, name: str) -> None:
    async with admin.patch(
        f"{base}/api/categories/{slug}", json={"name": name}, headers={"X-CSRF-Token": csrf}
    ) as r:
        assert r.status == 200, await r.text()


async def test_anonymous_visitors_share_a_page_and_logged_in_ones_get_their_own(
    site: tuple[str, aiohttp.ClientSession, str],
) -> None:
    base, admin, csrf = site
    async with aiohttp.ClientSession() as anon:
        status, first, headers = await page(anon, f"{base}/categories")
        assert status == 200 and "Music" in first and "Set-Cookie" not in headers
        await rename(admin, base, csrf, "music", "Tunes")
        # Anonymous: the page made before the rename, byte for byte, with its headers.
        status, again, again_headers = await page(anon, f"{base}/categories")
        assert status == 200 and again == first
        assert again_headers["Content-Type"] == headers["Content-Type"]
        assert again_headers.get("Cache-Control") == headers.get("Cache-Control")
        assert "Server-Timing" in again_headers
        # Another URL (a query) is another page, made now.
        _, other, _ = await page(anon, f"{base}/categories?x=1")
        assert "Tunes" in other and "Music" not in other
        # Logged in: their own page, made now, with their name in the header.
        _, own, _ = await page(admin, f"{base}/categories")
        assert "Tunes" in own and "root" in own
        # A stale or foreign session cookie is not anonymous either: never the shared page.
        _, stale, _ = await page(anon, f"{base}/categories", headers={"Cookie": "aethex_session=x"})
        assert "Tunes" in stale
        # Nor is a request with credentials.
        _, bearer, _ = await page(anon, f"{base}/categories", headers={"Authorization": "Bearer x"})
        assert "Tunes" in bearer


async def test_error_pages_are_never_kept(site: tuple[str, aiohttp.ClientSession, str]) -> None:
    base, admin, csrf = site
    async with aiohttp.ClientSession() as anon:
        status, _, _ = await page(anon, f"{base}/categories/chess")
        assert status == 404
        async with admin.post(
            f"{base}/api/categories", json={"name": "Chess"}, headers={"X-CSRF-Token": csrf}
        ) as r:
            assert r.status == 201, await r.text()
        status, body, _ = await page(anon, f"{base}/categories/chess")
        assert status == 200 and "Chess" in body
        # A bad filter is a 400 page each time, not a kept one.
        for _ in range(2):
            status, _, _ = await page(anon, f"{base}/categories/chess?language=" + "x" * 300)
            assert status == 400


async def test_the_setting_turns_it_off(env: dict[str, str]) -> None:
    async with running_server({**env, "AETHEX_BROWSE__PAGE_CACHE_SECONDS": "0"}) as server:
        base = f"http://127.0.0.1:{server.http_port}"
        admin = await register(base, "root")
        try:
            csrf = await csrf_of(admin, base)
            async with aiohttp.ClientSession() as anon:
                _, first, _ = await page(anon, f"{base}/categories")
                assert "Music" in first
                await rename(admin, base, csrf, "music", "Tunes")
                _, again, _ = await page(anon, f"{base}/categories")
                assert "Tunes" in again and "Music" not in again
        finally:
            await admin.close()
