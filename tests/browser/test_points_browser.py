"""Channel points in two real Chromium pages (issue 16): the owner reaches the points page
from the dashboard, adds a reward that asks for a text and edits its cost; a viewer opens the
points button under the chat input, redeems it with a text; the redemption appears in the
owner's queue without a reload; the owner refunds it and the viewer's balance comes back. Then
a prediction: the owner starts it, the viewer stakes from the chat column and sees the live
totals, the owner locks and resolves it, and the viewer gets the pool. No script error,
nothing loaded from elsewhere, nothing the CSP blocks; the ledger balances. Screenshots in
test-artifacts/."""

from __future__ import annotations

import pytest

from storage import points as store
from storage import queries
from tests.browser.browser_support import PageWatch, browser, screenshot_path  # noqa: F401
from tests.conftest import running_server

pytestmark = [pytest.mark.integration, pytest.mark.browser]

PASSWORD = "correct horse battery"
SLUG = "pts-page"


async def _logged_in(browser, base: str, username: str):  # noqa: F811
    context = await browser.new_context(base_url=base)
    r = await context.request.post(
        "/api/auth/register",
        data={"username": username, "password": PASSWORD, "email": f"{username}@example.test"},
    )
    assert r.status == 201, await r.text()
    return context, await context.new_page()


async def test_redeem_queue_refund_and_a_prediction(browser, settings_env) -> None:  # noqa: F811
    async with running_server(settings_env) as server:
        base = f"http://127.0.0.1:{server.http_port}"
        async with server.db.session() as db:  # the first account is an admin: not ours
            await queries.create_user(db, "siteadmin", "siteadmin@example.test", None)
            await db.commit()
        _, owner = await _logged_in(browser, base, "streamer")
        _, fan = await _logged_in(browser, base, "fan")
        async with server.db.session() as db:
            channel = await queries.create_channel(db, "streamer", SLUG)
            fan_id = (await queries.get_user_by_username(db, "fan")).id
            await store.credit(db, [store.Credit(fan_id, channel.id, 500, "earned_watch")])
            await db.commit()
        watch_owner, watch_fan = PageWatch(owner, base), PageWatch(fan, base)

        await owner.goto("/dashboard")
        await owner.click(f'a[href="/dashboard/channels/{SLUG}/points"]')
        await owner.wait_for_selector('#points-dashboard[data-live="true"]')
        form = owner.locator('[data-role="reward-form"]')
        await form.locator('input[name="title"]').fill("Shout-out")
        await form.locator('input[name="cost"]').fill("100")
        await form.locator('input[name="prompt"]').fill("Who to greet?")
        await form.locator('button[type="submit"]').click()
        row = owner.locator(".points-reward-row", has_text="Shout-out")
        await row.wait_for()
        await row.locator('button[data-action="edit"]').click()  # the form edits it now
        await form.locator('input[name="cost"]').fill("120")
        await form.locator('button[type="submit"]').click()
        await owner.locator(".points-reward-row", has_text="120 points").wait_for()

        await fan.goto(f"/streams/{SLUG}")
        await fan.wait_for_function(
            "() => document.getElementById('points-balance')?.textContent === '500'"
        )
        await fan.click("#points-toggle")
        reward = fan.locator(".points-reward", has_text="Shout-out")
        await reward.locator("input").fill("<b>grandma</b>")
        await reward.locator("button").click()
        await fan.wait_for_function(
            "() => document.getElementById('points-balance').textContent === '380'"
        )

        line = fan.locator(".points-line", has_text="@fan redeemed Shout-out: <b>grandma</b>")
        await line.wait_for()  # in the chat, as text
        item = owner.locator(".points-queue-item", has_text="Shout-out")
        await item.wait_for()  # pushed over the chat socket: no reload
        assert await item.locator(".points-queue-text").text_content() == "<b>grandma</b>"
        await owner.screenshot(path=str(screenshot_path("points-queue.png")), full_page=True)
        await item.locator('button[data-action="refund"]').click()
        await item.wait_for(state="detached")
        await fan.wait_for_function(
            "() => document.getElementById('points-balance').textContent === '500'"
        )

        pform = owner.locator('[data-role="prediction-form"]')
        await pform.locator('input[name="question"]').fill("Boss down first try?")
        await pform.locator('button[type="submit"]').click()
        await fan.locator("#prediction", has_text="Boss down first try?").wait_for()
        yes = fan.locator(".prediction-outcome", has_text="Yes")
        await yes.locator("input").fill("50")
        await yes.locator("button").click()
        await fan.wait_for_function(
            "() => document.getElementById('points-balance').textContent === '450'"
        )
        await owner.locator('[data-role="prediction"]', has_text="pool 50 points").wait_for()
        await owner.click('[data-role="prediction"] button[data-action="lock"]')
        await owner.locator('[data-role="prediction"]', has_text="Status: locked").wait_for()
        await owner.locator('[data-role="prediction"] button', has_text="Resolve: Yes").click()
        await fan.locator("#prediction", has_text="Resolved").wait_for()
        await fan.wait_for_function(  # the whole pool came back, shown without a reload
            "() => document.getElementById('points-balance').textContent === '500'"
        )
        await fan.screenshot(path=str(screenshot_path("points-viewer.png")))
        async with server.db.session() as db:
            assert await store.balance(db, fan_id, channel.id) == 500  # the whole pool back
            assert await store.ledger_mismatches(db) == []
        watch_owner.check()
        watch_fan.check()
