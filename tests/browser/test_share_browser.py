"""The Share button in real headless Chromium, under the page's own CSP.

Three ways a browser can answer: no share sheet (desktop Linux Chromium has none) so the
canonical link goes to the clipboard, read back through the real clipboard; a clipboard that
refuses, so the link is shown in a read-only field, focused and wholly selected; and a share
sheet (headless Chromium cannot show one, so ``navigator.share`` is replaced by a recorder
before the page loads: the page's call is what is checked, and a sheet the person closes must
not fall back to copying). Each outcome is announced in the ``#share-status`` live region.
"""

from __future__ import annotations

import pytest

from tests.browser.browser_support import PageWatch, browser  # noqa: F401
from tests.conftest import make_channel

pytestmark = [pytest.mark.integration, pytest.mark.browser]

NO_SHARE_SHEET = "delete Navigator.prototype.share; delete navigator.share;"
REFUSING_CLIPBOARD = (
    NO_SHARE_SHEET
    + """
Object.defineProperty(Clipboard.prototype, "writeText", {
  value: () => Promise.reject(new DOMException("refused", "NotAllowedError")),
});
"""
)
RECORDING_SHARE_SHEET = (
    """
window.__shared = [];
window.__shareAnswer = "ok";
window.__copies = 0;
const realWriteText = Clipboard.prototype.writeText;
Object.defineProperty(Clipboard.prototype, "writeText", {
  value: function (text) { window.__copies += 1; return realWriteText.call(this, text); },
});
"""
    + """
Object.defineProperty(Navigator.prototype, "share", {
  configurable: true,
  value: function (data) {
    window.__shared.push(data);
    return window.__shareAnswer === "ok"
      ? Promise.resolve()
      : Promise.reject(new DOMException("closed", "AbortError"));
  },
});
"""
)


async def status_is(page, text: str) -> None:
    await page.wait_for_function(
        "(t) => document.getElementById('share-status').textContent === t",
        arg=text,
        timeout=10_000,
        polling=50,
    )


async def test_share_copies_the_canonical_link(browser, server) -> None:  # noqa: F811
    await make_channel(server, "share-me", "sam")
    base = f"http://127.0.0.1:{server.http_port}"
    link = f"{base}/streams/share-me"
    context = await browser.new_context(
        base_url=base, permissions=["clipboard-read", "clipboard-write"]
    )
    try:
        await context.add_init_script(NO_SHARE_SHEET)
        page = await context.new_page()
        watch = PageWatch(page, base)
        await page.goto("/streams/share-me")
        button = page.get_by_role("button", name="Share")
        assert await page.get_attribute("#share-status", "role") == "status"
        assert await page.evaluate("typeof navigator.share") == "undefined"
        await page.evaluate("navigator.clipboard.writeText('something else')")

        await button.click()
        await status_is(page, "Link copied")
        assert await page.evaluate("navigator.clipboard.readText()") == link
        assert await page.is_hidden("#share-fallback")

        # From the keyboard too; the same words again are announced again.
        await page.evaluate("navigator.clipboard.writeText('cleared')")
        await button.focus()
        await page.keyboard.press("Enter")
        await status_is(page, "Link copied")
        assert await page.evaluate("navigator.clipboard.readText()") == link

        # The creator's profile, one click away, shares its own link the same way.
        await page.get_by_role("link", name="sam", exact=True).click()
        await page.wait_for_url(f"{base}/u/sam")
        await page.get_by_role("button", name="Share").click()
        await status_is(page, "Link copied")
        assert await page.evaluate("navigator.clipboard.readText()") == f"{base}/u/sam"
        watch.check()
    finally:
        await context.close()


async def test_share_falls_back_to_a_selected_field(browser, server) -> None:  # noqa: F811
    await make_channel(server, "share-field", "sue")
    base = f"http://127.0.0.1:{server.http_port}"
    link = f"{base}/streams/share-field"
    context = await browser.new_context(
        base_url=base, permissions=["clipboard-read", "clipboard-write"]
    )
    try:
        await context.add_init_script(REFUSING_CLIPBOARD)
        page = await context.new_page()
        watch = PageWatch(page, base)
        await page.goto("/streams/share-field")
        await page.evaluate("navigator.clipboard.readText()")  # reading still works
        await page.get_by_role("button", name="Share").click()
        await page.wait_for_selector("#share-link", state="visible")
        await page.wait_for_function(
            "() => ['Link copied', 'Copy the selected link']"
            ".includes(document.getElementById('share-status').textContent)",
            timeout=10_000,
            polling=50,
        )
        field = await page.evaluate("""() => {
            const f = document.getElementById('share-link');
            return {value: f.value, focused: document.activeElement === f,
                    start: f.selectionStart, end: f.selectionEnd, readOnly: f.readOnly};
        }""")
        assert field == {
            "value": link,
            "focused": True,
            "start": 0,
            "end": len(link),
            "readOnly": True,
        }
        assert await page.get_attribute("label[for=share-link]", "for") == "share-link"
        if await page.text_content("#share-status") == "Link copied":
            # It said so: the selected text really is on the clipboard (execCommand copy).
            assert await page.evaluate("navigator.clipboard.readText()") == link
        watch.check()
    finally:
        await context.close()


async def test_share_uses_the_share_sheet_where_there_is_one(browser, server) -> None:  # noqa: F811
    await make_channel(server, "share-sheet", "sid")
    base = f"http://127.0.0.1:{server.http_port}"
    context = await browser.new_context(
        base_url=base, permissions=["clipboard-read", "clipboard-write"]
    )
    try:
        await context.add_init_script(RECORDING_SHARE_SHEET)
        page = await context.new_page()
        watch = PageWatch(page, base)
        await page.goto("/streams/share-sheet")
        await page.evaluate("navigator.clipboard.writeText('untouched')")
        await page.evaluate("window.__copies = 0")
        button = page.get_by_role("button", name="Share")
        await button.click()
        await status_is(page, "Link shared")
        assert await page.evaluate("window.__shared") == [
            {"title": "share-sheet", "url": f"{base}/streams/share-sheet"}
        ]
        # Closing the sheet is not a failure: nothing is copied instead. The page's answer to
        # the refusal runs as a microtask of the click, so it has run by the next evaluate.
        await page.evaluate("window.__shareAnswer = 'abort'")
        await button.click()
        await page.wait_for_function("() => window.__shared.length === 2")
        assert await page.evaluate("window.__copies") == 0
        assert await page.evaluate("navigator.clipboard.readText()") == "untouched"
        assert await page.is_hidden("#share-fallback")
        watch.check()
    finally:
        await context.close()
