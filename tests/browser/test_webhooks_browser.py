"""The webhooks page in a real headless Chromium: from the dashboard's link, add an endpoint
with the form (events, Discord format), see its secret, see a delivery arrive at a real
receiver and listed as succeeded, resend it with the button, and nothing the page's CSP
blocks. A screenshot is kept as a test artifact."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.browser.browser_support import ROOT, PageWatch, browser  # noqa: F401
from tests.conftest import make_channel, running_server
from tests.integration.test_webhooks import Receiver, follow, until, webhook_env

pytestmark = [pytest.mark.integration, pytest.mark.browser]


def artifact(name: str) -> Path:
    directory = Path(os.environ.get("AETHEX_TEST_ARTIFACTS") or ROOT / "test-artifacts")
    directory.mkdir(parents=True, exist_ok=True)
    return directory / name


async def test_add_an_endpoint_see_a_delivery_and_resend_it(
    browser,  # noqa: F811 - the fixture, imported by name
    settings_env,
) -> None:
    receiver = await Receiver().start()
    try:
        async with running_server(webhook_env(settings_env)) as server:
            await make_channel(server, "webbed", "weaver")
            base = f"http://127.0.0.1:{server.http_port}"
            context = await browser.new_context(viewport={"width": 1280, "height": 1100})
            page = await context.new_page()
            watch = PageWatch(page, base)
            await page.goto(f"{base}/auth/login")
            await page.fill("input[name=username]", "weaver")
            await page.fill("input[name=password]", "pw-123456789")
            await page.click("button[type=submit]")
            await page.wait_for_url(lambda url: "/auth/login" not in url)

            await page.goto(f"{base}/dashboard")
            await page.click("#channel-webbed a[href$='/webhooks']")
            await page.wait_for_url(f"{base}/dashboard/channels/webbed/webhooks")
            form = page.locator("form[action='/dashboard/channels/webbed/webhooks']")
            await form.locator("input[name=url]").fill(receiver.url)
            await form.locator("input[value='stream.offline']").uncheck()
            await form.locator("select[name=payload_format]").select_option("discord")
            await form.locator("button[type=submit]").click()
            await page.wait_for_selector("section.webhook")
            head = await page.locator("section.webhook header").inner_text()
            assert receiver.url in head and "discord" in head
            assert "stream.online, channel.follow" in head

            await page.click("section.webhook .webhook-secret summary")
            secret = await page.locator("[data-field=secret]").inner_text()
            assert secret.startswith("whsec_")

            await follow(server, "pagefan", "webbed")
            await until(lambda: receiver.requests, "the delivery")
            await page.reload()
            row = page.locator("tr[data-delivery-id]").first
            assert await row.get_attribute("data-status") == "succeeded"
            assert "200" in await row.inner_text()

            await row.locator("button", has_text="Resend").click()
            await page.wait_for_load_state()
            await until(lambda: len(receiver.requests) == 2, "the resent delivery")
            assert receiver.requests[1].json["content"].startswith("pagefan followed webbed")
            await page.reload()
            assert await page.locator("tr[data-delivery-id]").count() == 2
            await page.screenshot(path=str(artifact("webhooks-page.png")), full_page=True)
            watch.check()
            await context.close()
    finally:
        await receiver.close()
