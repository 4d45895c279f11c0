"""Real headless Chromium (Debian's package) driven by Playwright's async API.

Playwright's own browser download does not work here, and a test should see the browser users
run: ``make test`` installs Debian's chromium and these tests launch it by path. The sync API
cannot run inside the asyncio loop the server tests use, hence ``playwright.async_api``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = os.environ.get("AETHEX_CHROMIUM", "/usr/bin/chromium")
HLS_JS = ROOT / "webapp" / "static" / "vendor" / "hls.min.js"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def missing(what: str) -> None:
    """Fail under CI (a browser test that does not run must not look green); skip by hand."""
    message = f"{what}: run `make test`, which installs it"
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def require_browser_stack() -> None:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        missing(f"{CHROMIUM} (Debian's chromium package) is missing")
    if shutil.which("ffmpeg") is None:
        missing("the ffmpeg CLI is missing")
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        missing("the playwright Python package is missing")
    if not HLS_JS.is_file():
        missing(f"{HLS_JS.relative_to(ROOT)} is missing (npm ci copies it from hls.js)")


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    require_browser_stack()
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            await browser.close()


class PageWatch:
    """What a page did that it should not have: script errors, dialogs, requests off-site."""

    def __init__(self, page: Any, base_url: str) -> None:
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.foreign: list[str] = []
        self.console: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("console", lambda msg: self.console.append(f"{msg.type}: {msg.text}"))

        async def on_dialog(dialog: Any) -> None:
            self.dialogs.append(dialog.message)
            await dialog.dismiss()

        page.on("dialog", on_dialog)

        def on_request(request: Any) -> None:
            url = request.url
            if not (url.startswith((base_url, "blob:", "data:"))):
                self.foreign.append(url)

        page.on("request", on_request)

    def check(self) -> None:
        assert not self.errors, f"script errors on the page: {self.errors}"
        assert not self.dialogs, f"the page opened dialogs (script injection?): {self.dialogs}"
        assert not self.foreign, f"the page loaded from elsewhere than our server: {self.foreign}"
        blocked = [m for m in self.console if "Content Security Policy" in m]
        assert not blocked, f"the page's own CSP blocked something it needs: {blocked}"


def screenshot_path(name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / name
