"""Following channels against a real server: the API (idempotent both ways, exact count, even
under concurrent clicks), its errors (anonymous, unknown channel, CSRF for cookie logins), the
followed-channels list, the effect on a followers-only chat on an open socket, and the Follow
button as the viewer page renders it."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from chat_support import auth, base_url, join, make_chat_channel, make_user
from conftest import running_server
from sqlalchemy import func, select, update
from test_chat_redis import second_process

from storage import queries
from storage.models import Channel, ChannelFollow
from tests.accounts import csrf_of, register
from tests.browser.browser_support import PageWatch, browser  # noqa: F401

pytestmark = pytest.mark.integration


async def _call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    headers: dict[str, str] | None = None,
    json: Any = None,
) -> tuple[int, Any]:
    async with http.request(method, url, headers=headers or {}, json=json) as r:
        return r.status, await r.json()


async def _stored(server: Any, channel_id: int) -> tuple[int, int]:
    """(Channel.follower_count, number of follow rows) straight from the database."""
    async with server.db.session() as db:
        count = await db.scalar(select(Channel.follower_count).where(Channel.id == channel_id))
        rows = await db.scalar(
            select(func.count())
            .select_from(ChannelFollow)
            .where(ChannelFollow.channel_id == channel_id)
        )
    return count, rows


@dataclass
class Show:
    """A channel "show" (owned by "host", who has a bearer token), a second user with only a
    bearer token, and "fan" logged in with a cookie (and their CSRF header)."""

    channel_id: int
    owner: str
    bearer: str
    base: str
    url: str
    anon: aiohttp.ClientSession
    fan: aiohttp.ClientSession
    csrf: dict[str, str]


@pytest.fixture
async def show(server) -> AsyncIterator[Show]:
    channel_id, _, owner = await make_chat_channel(server, "host", "show")
    _, bearer = await make_user(server, "scripted")
    base = base_url(server)
    async with aiohttp.ClientSession() as anon, await register(base, "fan") as fan:
        yield Show(
            channel_id,
            owner,
            bearer,
            base,
            f"{base}/api/channels/show/follow",
            anon,
            fan,
            {"X-CSRF-Token": await csrf_of(fan, base)},
        )


async def test_follow_and_unfollow_are_idempotent_and_the_count_exact(show: Show, server) -> None:
    channel_id, owner, bearer, base, url = (
        show.channel_id,
        show.owner,
        show.bearer,
        show.base,
        show.url,
    )
    anon, fan, csrf = show.anon, show.fan, show.csrf
    assert await _call(anon, "GET", url) == (200, {"following": False, "followers": 0})
    assert await _call(fan, "GET", url) == (200, {"following": False, "followers": 0})

    assert await _call(fan, "POST", url, csrf) == (200, {"following": True, "followers": 1})
    assert await _call(fan, "POST", url, csrf) == (200, {"following": True, "followers": 1})
    # A bearer token needs no CSRF header; owners may follow their own channel.
    assert await _call(anon, "POST", url, auth(bearer)) == (
        200,
        {"following": True, "followers": 2},
    )
    assert await _call(anon, "POST", url, auth(owner)) == (200, {"following": True, "followers": 3})
    assert await _call(fan, "GET", url) == (200, {"following": True, "followers": 3})
    assert await _call(anon, "GET", url) == (200, {"following": False, "followers": 3})
    status, channel = await _call(anon, "GET", f"{base}/api/channels/show")
    assert status == 200 and channel["follower_count"] == 3
    assert await _stored(server, channel_id) == (3, 3)

    assert await _call(fan, "DELETE", url, csrf) == (200, {"following": False, "followers": 2})
    assert await _call(fan, "DELETE", url, csrf) == (200, {"following": False, "followers": 2})
    assert await _call(fan, "GET", url) == (200, {"following": False, "followers": 2})
    assert await _stored(server, channel_id) == (2, 2)

    # Many clicks at once count once, both ways.
    results = await asyncio.gather(*(_call(fan, "POST", url, csrf) for _ in range(6)))
    assert all(r == (200, {"following": True, "followers": r[1]["followers"]}) for r in results), (
        results
    )
    assert await _stored(server, channel_id) == (3, 3)
    results = await asyncio.gather(*(_call(fan, "DELETE", url, csrf) for _ in range(6)))
    assert all(status == 200 and not body["following"] for status, body in results), results
    assert await _stored(server, channel_id) == (2, 2)
    for who in (auth(bearer), auth(owner)):
        await _call(anon, "DELETE", url, who)
    assert await _stored(server, channel_id) == (0, 0)
    # Never below zero, even with the stored count already off (say, edited by hand).
    await _call(anon, "POST", url, auth(owner))
    async with server.db.session() as db:
        await db.execute(update(Channel).where(Channel.id == channel_id).values(follower_count=0))
        await db.commit()
    assert await _call(anon, "DELETE", url, auth(owner)) == (
        200,
        {"following": False, "followers": 0},
    )


async def test_errors_anonymous_unknown_channel_and_csrf(show: Show, server) -> None:
    channel_id, bearer, base, url = show.channel_id, show.bearer, show.base, show.url
    anon, fan, csrf = show.anon, show.fan, show.csrf
    for method in ("POST", "DELETE"):
        status, body = await _call(anon, method, url)
        assert status == 401 and body["error"]["code"] == "unauthenticated", body
    status, body = await _call(anon, "GET", f"{base}/api/auth/following")
    assert status == 401 and body["error"]["code"] == "unauthenticated"
    for method in ("GET", "POST", "DELETE"):
        for who, headers in ((fan, csrf), (anon, auth(bearer))):
            for slug in ("no-such-channel", "Bad Slug!"):
                status, body = await _call(
                    who, method, f"{base}/api/channels/{slug}/follow", headers
                )
                assert status == 404 and body["error"]["code"] == "not_found", (method, body)
    # A cookie login without the CSRF header (or with a wrong one) is refused, unchanged.
    for headers in ({}, {"X-CSRF-Token": "0" * 64}):
        for method in ("POST", "DELETE"):
            status, body = await _call(fan, method, url, headers)
            assert status == 403 and body["error"]["code"] == "csrf_failed", body
    assert await _stored(server, channel_id) == (0, 0)
    assert await _call(fan, "GET", url) == (200, {"following": False, "followers": 0})


async def test_following_list(server) -> None:
    first_id, _, _ = await make_chat_channel(server, "ann", "ann-tv")
    await make_chat_channel(server, "ben", "ben-tv")
    live_id, _, _ = await make_chat_channel(server, "cat", "cat-tv")
    _, other = await make_user(server, "other")
    base = base_url(server)
    async with aiohttp.ClientSession() as anon, await register(base, "fan") as fan:
        csrf = {"X-CSRF-Token": await csrf_of(fan, base)}
        following = f"{base}/api/auth/following"
        assert await _call(fan, "GET", following) == (200, {"channels": []})
        for slug in ("ann-tv", "ben-tv", "cat-tv"):
            assert (await _call(fan, "POST", f"{base}/api/channels/{slug}/follow", csrf))[0] == 200
        assert (await _call(fan, "DELETE", f"{base}/api/channels/ben-tv/follow", csrf))[0] == 200
        # Someone else's follows are not in the fan's list.
        await _call(anon, "POST", f"{base}/api/channels/ben-tv/follow", auth(other))
        async with server.db.session() as db:
            await queries.start_stream(db, live_id, datetime.now(UTC), "On air")
            await db.commit()
        status, body = await _call(fan, "GET", following)
        assert status == 200
        channels = body["channels"]
        # Live first, then the most recently followed.
        assert [(c["slug"], c["live"]) for c in channels] == [("cat-tv", True), ("ann-tv", False)]
        assert channels[1]["id"] == first_id and channels[1]["name"] == "ann-tv"
        assert channels[1]["url"] == "/streams/ann-tv"
        assert datetime.fromisoformat(channels[1]["followed_at"]).tzinfo is not None
        status, body = await _call(anon, "GET", following, auth(other))
        assert [c["slug"] for c in body["channels"]] == ["ben-tv"]


async def test_followers_only_chat_sees_follow_changes_at_once(server) -> None:
    _, _, owner = await make_chat_channel(server, "host", "club")
    base = base_url(server)
    async with aiohttp.ClientSession() as anon, await register(base, "fan") as fan:
        csrf = {"X-CSRF-Token": await csrf_of(fan, base)}
        status, body = await _call(
            anon,
            "PATCH",
            f"{base}/api/channels/club/chat/settings",
            auth(owner),
            {"followers_only": True},
        )
        assert status == 200 and body["settings"]["followers_only"] is True, body
        chat = await join(fan, base, "club")  # the cookie login's socket
        try:
            await chat.say("let me in")
            assert (await chat.next("chat:error"))["code"] == "followers_only"

            url = f"{base}/api/channels/club/follow"
            assert (await _call(fan, "POST", url, csrf))[1]["following"] is True
            await chat.say("following now")
            message = await chat.next("chat:message", content="following now")
            assert message["user"]["username"] == "fan"

            assert (await _call(fan, "DELETE", url, csrf))[1]["following"] is False
            await chat.say("still here?")
            assert (await chat.next("chat:error"))["code"] == "followers_only"
            assert not [m for m in chat.messages() if m["content"] == "still here?"]
        finally:
            await chat.ws.close()


def _follow_control(html: str) -> str:
    match = re.search(r'<(button|a)\b[^>]*\bid="follow-button"[^>]*>[^<]*</\1>', html)
    assert match, "no Follow control on the page"
    return match.group(0)


async def test_stream_page_shows_the_follow_button_in_its_state(server) -> None:
    _, _, owner = await make_chat_channel(server, "host", "show")
    base = base_url(server)
    async with aiohttp.ClientSession() as anon, await register(base, "fan") as fan:
        async with anon.get(f"{base}/streams/show") as r:
            assert r.status == 200
            html = await r.text()
        control = _follow_control(html)
        assert control.startswith("<a") and 'href="/auth/login?next=/streams/show"' in control
        assert ">Follow</a>" in control
        assert '<span id="follower-count">0</span>' in html
        assert re.search(r'<script src="/static/js/follow\.js\?v=[0-9a-f]+" defer>', html)

        async with fan.get(f"{base}/streams/show") as r:
            html = await r.text()
        control = _follow_control(html)
        assert control.startswith("<button") and 'aria-pressed="false"' in control
        assert 'data-url="/api/channels/show/follow"' in control and ">Follow</button>" in control

        csrf = {"X-CSRF-Token": await csrf_of(fan, base)}
        assert (await _call(fan, "POST", f"{base}/api/channels/show/follow", csrf))[0] == 200
        async with fan.get(f"{base}/streams/show") as r:
            html = await r.text()
        control = _follow_control(html)
        assert 'aria-pressed="true"' in control and ">Following</button>" in control
        assert '<span id="follower-count">1</span>' in html
        assert '<span id="follower-noun">follower</span>' in html
        # The owner's dashboard shows the count too.
        async with anon.get(f"{base}/dashboard", headers=auth(owner)) as r:
            assert r.status == 200
            assert re.search(r'data-field="followers">1 follower<', await r.text())

        async with anon.get(f"{base}/static/js/follow.js") as r:
            assert r.status == 200 and "X-CSRF-Token" in await r.text()


@pytest.mark.browser
async def test_follow_button_in_chromium_by_mouse_and_keyboard(browser, server) -> None:  # noqa: F811
    """The real page: the button toggles with a click and with the keyboard (Tab focus, Space,
    Enter), keeps aria-pressed and the count in step with the server, under the page's CSP."""
    channel_id, _, _ = await make_chat_channel(server, "host", "show")
    base = base_url(server)
    context = await browser.new_context(base_url=base)
    try:
        r = await context.request.post(
            "/api/auth/register",
            data={
                "username": "fan",
                "password": "correct horse battery",
                "email": "fan@example.test",
            },
        )
        assert r.status == 201, await r.text()
        page = await context.new_page()
        watch = PageWatch(page, base)
        await page.goto("/streams/show")
        button = page.locator("#follow-button")
        assert await button.get_attribute("aria-pressed") == "false"

        await button.click()
        await page.wait_for_selector('#follow-button[aria-pressed="true"]')
        assert (await button.text_content()).strip() == "Following"
        assert await page.text_content("#follower-count-text") == "1 follower"
        assert await _stored(server, channel_id) == (1, 1)

        await button.focus()
        await page.keyboard.press("Space")
        await page.wait_for_selector('#follow-button[aria-pressed="false"]')
        assert await page.text_content("#follower-count-text") == "0 followers"
        assert await _stored(server, channel_id) == (0, 0)
        assert await page.evaluate("document.activeElement.id") == "follow-button"
        await page.keyboard.press("Enter")
        await page.wait_for_selector('#follow-button[aria-pressed="true"]')
        assert await _stored(server, channel_id) == (1, 1)
        assert await page.is_hidden("#follow-error")
        watch.check()
    finally:
        await context.close()


async def _answer(chat: Any, content: str) -> dict[str, Any]:
    """Send ``content``; the sender's own chat:message for it, or the chat:error instead."""
    await chat.say(content)
    for _ in range(50):
        for event in await chat.quiet(0.1):
            kind = event.get("type")
            if kind == "chat:error" or (kind == "chat:message" and event["content"] == content):
                return event
    raise AssertionError(f"no answer to {content!r}: {chat.events[-5:]}")


async def test_unfollow_reaches_another_process_over_redis(settings_env, redis_url) -> None:
    """Two server processes on one database and one Redis: a fan chatting on process two,
    cached there as a follower, is refused as soon as they unfollow through process one."""
    env = {
        **settings_env,
        "AETHEX_CHAT__BUS": redis_url,
        # Probing "refused yet?" sends several messages: keep the rate limit out of the way.
        "AETHEX_CHAT__RATE_LIMIT_MESSAGES": "100",
    }
    async with running_server(env) as one:
        _, _, owner = await make_chat_channel(one, "host", "club")
        _, fan = await make_user(one, "fan")
        async with second_process(env) as base2:
            base1 = base_url(one)
            url = f"{base1}/api/channels/club/follow"
            async with aiohttp.ClientSession() as http:
                status, _ = await _call(
                    http,
                    "PATCH",
                    f"{base1}/api/channels/club/chat/settings",
                    auth(owner),
                    {"followers_only": True},
                )
                assert status == 200
                assert (await _call(http, "POST", url, auth(fan)))[0] == 200
                chat = await join(http, base2, "club", fan)
                try:
                    # Process two now holds the fan in its followers cache.
                    assert (await _answer(chat, "hello from two"))["type"] == "chat:message"
                    assert (await _call(http, "DELETE", url, auth(fan)))[0] == 200
                    for probe in range(50):
                        answer = await _answer(chat, f"probe {probe}")
                        if answer["type"] == "chat:error":
                            assert answer["code"] == "followers_only", answer
                            break
                    else:
                        raise AssertionError("process two still lets the unfollowed fan chat")
                finally:
                    await chat.ws.close()
