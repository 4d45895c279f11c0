"""The header's search box in real headless Chromium, under the page's own CSP: suggestions
as you type (debounced: fewer requests than keystrokes), typo tolerance, keyboard navigation
of the ARIA combobox (Down, Enter, Escape), and Enter without a choice opening /search with
its tabs."""

from __future__ import annotations

from typing import Any

import pytest

from storage import queries
from tests.browser.browser_support import PageWatch, browser, screenshot_path  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.browser]


async def _seed(server: Any) -> None:
    async with server.db.session() as s:
        await queries.create_user(s, "factoryfan", "factoryfan@example.test", None)
        await queries.create_channel(s, "factoryfan", "factorio-hub", "Factorio")
        await queries.create_channel(s, "factoryfan", "ftrains", "Factorio Trains")
        await queries.create_channel(s, "factoryfan", "gears", "Gears Daily")
        await s.commit()


async def _options(page: Any) -> list[str]:
    return await page.eval_on_selector_all(
        "#site-search-list [role=option]", "els => els.map(e => e.textContent)"
    )


async def test_search_box_suggests_and_is_keyboard_navigable(browser, server) -> None:  # noqa: F811
    await _seed(server)
    base = f"http://127.0.0.1:{server.http_port}"
    context = await browser.new_context(base_url=base)
    try:
        page = await context.new_page()
        watch = PageWatch(page, base)
        suggests: list[str] = []
        page.on(
            "request",
            lambda r: suggests.append(r.url) if "/api/search/suggest" in r.url else None,
        )
        await page.goto("/")
        box = page.locator("#site-search-q")
        assert await box.get_attribute("role") == "combobox"
        assert await box.get_attribute("aria-expanded") == "false"

        await box.click()
        await page.keyboard.type("factorio")
        await page.wait_for_selector("#site-search-list:not([hidden]) [role=option]")
        assert await box.get_attribute("aria-expanded") == "true"
        texts = await _options(page)
        assert texts[0] == "Factorio" and "Factorio Trains" in texts
        assert texts[-1] == 'Search for "factorio"'
        assert len(suggests) < len("factorio")  # debounced
        await page.screenshot(path=str(screenshot_path("search-suggestions.png")))

        await page.keyboard.press("ArrowDown")
        first = page.locator("#site-search-list [role=option]").first
        assert await first.get_attribute("aria-selected") == "true"
        assert await box.get_attribute("aria-activedescendant") == await first.get_attribute("id")
        await page.keyboard.press("Escape")
        assert await page.locator("#site-search-list").is_hidden()
        assert await box.get_attribute("aria-expanded") == "false"

        # A typo still finds it; Down then Enter opens the first suggestion.
        await box.fill("")
        await page.keyboard.type("factroio")
        await page.wait_for_selector(
            "#site-search-list:not([hidden]) [role=option]:text-is('Search for \"factroio\"')"
        )
        assert "Factorio" in await _options(page)
        await page.keyboard.press("ArrowDown")
        await page.keyboard.press("Enter")
        await page.wait_for_url(f"{base}/streams/factorio-hub")

        # Enter with nothing chosen searches: /search with its tabs and cards.
        await page.locator("#site-search-q").click()
        await page.keyboard.type("factorio")
        await page.keyboard.press("Enter")
        await page.wait_for_url(f"{base}/search?q=factorio")
        cards = page.locator("#search-results [data-type=channel]")
        assert await cards.count() == 2
        await page.screenshot(path=str(screenshot_path("search-channels.png")), full_page=True)
        await page.get_by_role("link", name="People").click()
        await page.wait_for_url("**type=users**")
        assert await page.locator("#search-results [data-type=user]").count() == 1
        await page.screenshot(path=str(screenshot_path("search-page.png")), full_page=True)
        watch.check()
    finally:
        await context.close()
