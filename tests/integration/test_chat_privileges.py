"""Privileges follow the account while a chat socket is open (one process, in-memory bus).

Each account or role change is made the way people make it (the admin API, logout, the token
API, the moderation API, the follow API) while the user's socket stays open, and the socket
must feel it without reconnecting: disable, logout and token revocation end the socket
(chat:error with the reason, then close 1008); demotion, moderator removal, ban and unfollow
make the next frame that needs the privilege fail. The two-process version over Redis is in
test_chat_redis.py.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from chat_support import (
    auth,
    base_url,
    join,
    make_chat_channel,
    make_user,
    probe,
    timeout_probe,
)

pytestmark = pytest.mark.integration

PASSWORD = "correct-horse-battery-9"


@pytest.fixture
def settings_env(settings_env: dict[str, str]) -> dict[str, str]:
    # The probes below send a frame every few milliseconds until a change shows: keep the
    # per-socket frame budget out of their way (test_chat_frames.py tests the budget).
    return {**settings_env, "AETHEX_CHAT__FRAME_BUDGET": "100000"}


async def _api(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    token: str | None = None,
    json: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    async with http.request(
        method, url, json=json, headers={**auth(token), **(headers or {})}
    ) as r:
        body = await r.json() if r.content_type == "application/json" else None
        return r.status, body


async def _password_user(server: Any, username: str) -> int:
    from storage import queries

    async with server.db.session() as db:
        user = await queries.create_user(db, username, f"{username}@example.test", PASSWORD)
        await db.commit()
        return user.id


async def test_disabled_account_is_ended_at_once(server) -> None:
    await make_chat_channel(server, "host1", "room1")
    _, admin = await make_user(server, "boss", admin=True)
    user_id, token = await make_user(server, "soon_gone")
    base = base_url(server)
    async with aiohttp.ClientSession() as http:
        watcher = await join(http, base, "room1")
        c = await join(http, base, "room1", token)
        await c.say("still here")
        await watcher.next("chat:message", content="still here")
        status, _ = await _api(
            http, "PATCH", f"{base}/api/admin/users/{user_id}", admin, {"is_disabled": True}
        )
        assert status == 200
        # Pushed to the socket without it sending anything, then closed as a policy matter.
        err = await c.next("chat:error", code="account_disabled")
        assert "disabled" in err["message"]
        assert await c.closed() == 1008
        left = await watcher.next("chat:user-left")
        assert [u["id"] for u in left["users"]] == [user_id]
        await watcher.ws.close()


async def test_demoted_admin_cannot_moderate_other_rooms(server) -> None:
    await make_chat_channel(server, "host2", "room2")
    _, first_admin = await make_user(server, "root", admin=True)
    admin_id, admin = await make_user(server, "exadmin", admin=True)
    troll_id, _ = await make_user(server, "troll2")
    base = base_url(server)
    async with aiohttp.ClientSession() as http:
        c = await join(http, base, "room2", admin)
        assert (await c.next("chat:history"))["me"]["can_moderate"] is True
        await c.send(timeout_probe(troll_id))
        assert (await c.next("chat:error"))["code"] == "invalid"  # an admin may moderate here
        status, _ = await _api(
            http, "PATCH", f"{base}/api/admin/users/{admin_id}", first_admin, {"is_admin": False}
        )
        assert status == 200
        await probe(c, timeout_probe(troll_id), until="forbidden")
        await c.send({"type": "chat:ban", "user_id": troll_id})
        assert (await c.next("chat:error"))["code"] == "forbidden"
        # Promotion reaches the open socket the same way.
        assert (
            await _api(
                http, "PATCH", f"{base}/api/admin/users/{admin_id}", first_admin, {"is_admin": True}
            )
        )[0] == 200
        await probe(c, timeout_probe(troll_id), until="invalid")
        await c.ws.close()


async def test_logout_ends_that_sessions_sockets(server) -> None:
    await make_chat_channel(server, "host3", "room3")
    user_id = await _password_user(server, "leaver")
    from storage import queries

    async with server.db.session() as db:
        token = await queries.create_api_token(db, "leaver", "script")
        await db.commit()
    base = base_url(server)
    async with (
        aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http,
        aiohttp.ClientSession() as other,
    ):
        status, body = await _api(
            http,
            "POST",
            f"{base}/api/auth/login",
            json={"username": "leaver", "password": PASSWORD},
        )
        assert status == 200, body
        csrf = body["csrf_token"]
        browser = await join(http, base, "room3")  # with the session cookie
        assert (await browser.next("chat:history"))["me"]["id"] == user_id
        script = await join(other, base, "room3", token)  # the same user, by API token
        status, _ = await _api(
            http, "POST", f"{base}/api/auth/logout", headers={"X-CSRF-Token": csrf}
        )
        assert status == 204
        err = await browser.next("chat:error", code="session_ended")
        assert "log in" in err["message"]
        assert await browser.closed() == 1008
        # The token was not logged out: that socket still chats.
        await script.say("token still works")
        assert await script.next("chat:message", content="token still works")
        await script.ws.close()


async def test_revoked_token_ends_its_sockets(server) -> None:
    await make_chat_channel(server, "host4", "room4")
    _, main_token = await make_user(server, "scripter")
    base = base_url(server)
    async with aiohttp.ClientSession() as http:
        status, body = await _api(
            http, "POST", f"{base}/api/auth/tokens", main_token, {"name": "bot"}
        )
        assert status == 201, body
        bot_token, bot_id = body["token"], body["api_token"]["id"]
        bot = await join(http, base, "room4", bot_token)
        kept = await join(http, base, "room4", main_token)
        await bot.say("bot online")
        await bot.next("chat:message", content="bot online")
        status, _ = await _api(http, "DELETE", f"{base}/api/auth/tokens/{bot_id}", main_token)
        assert status == 200
        assert await bot.next("chat:error", code="token_revoked")
        assert await bot.closed() == 1008
        await kept.say("other token fine")
        assert await kept.next("chat:message", content="other token fine")
        await kept.ws.close()


async def test_ban_moderator_removal_and_unfollow_reach_open_sockets(server) -> None:
    _, _, owner = await make_chat_channel(server, "host5", "room5")
    mod_id, mod = await make_user(server, "helper5")
    _, fan = await make_user(server, "fan5")
    troll_id, troll = await make_user(server, "troll5")
    base = base_url(server)
    room = f"{base}/api/channels/room5"
    async with aiohttp.ClientSession() as http:
        assert (await _api(http, "POST", f"{room}/moderators", owner, {"user_id": mod_id}))[
            0
        ] == 201
        m = await join(http, base, "room5", mod)
        t = await join(http, base, "room5", troll)
        f = await join(http, base, "room5", fan)
        # Ban: the open socket is told at once and can no longer send.
        await t.say("before the ban")
        await t.next("chat:message", content="before the ban")
        assert (await _api(http, "POST", f"{room}/bans", owner, {"user_id": troll_id}))[0] == 201
        assert await t.next("chat:error", code="banned")
        await t.say("after the ban")
        assert (await t.next("chat:error"))["code"] == "banned"
        # Moderator removal: the next moderation frame is refused.
        await m.send(timeout_probe(troll_id))
        assert (await m.next("chat:error"))["code"] == "invalid"
        assert (await _api(http, "DELETE", f"{room}/moderators/{mod_id}", owner))[0] == 200
        await m.send(timeout_probe(troll_id))
        assert (await m.next("chat:error"))["code"] == "forbidden"
        # Unfollow in a followers-only room: the next message is refused.
        assert (
            await _api(http, "PATCH", f"{room}/chat/settings", owner, {"followers_only": True})
        )[0] == 200
        assert (await _api(http, "POST", f"{room}/follow", fan))[0] == 200
        await f.say("a follower speaks")
        assert await f.next("chat:message", content="a follower speaks")
        assert (await _api(http, "DELETE", f"{room}/follow", fan))[0] == 200
        await f.say("not any more")
        assert (await f.next("chat:error"))["code"] == "followers_only"
        for c in (m, t, f):
            await c.ws.close()


@pytest.fixture
def recheck_env(settings_env: dict[str, str]) -> dict[str, str]:
    return {**settings_env, "AETHEX_CHAT__RECHECK_INTERVAL": "0.001"}


async def test_privileges_are_checked_when_used_without_any_event(recheck_env) -> None:
    """A change no event announces (here: written straight into the database, as a bus
    message lost in a Redis reconnect would leave it) still stops the socket when it next
    acts, once chat.recheck_interval has passed."""
    from conftest import running_server
    from sqlalchemy import update

    from storage.models import User

    async with running_server(recheck_env) as server:
        await make_chat_channel(server, "host6", "room6")
        user_id, token = await make_user(server, "quiet")
        base = base_url(server)
        async with aiohttp.ClientSession() as http:
            c = await join(http, base, "room6", token)
            await c.say("first")
            await c.next("chat:message", content="first")
            async with server.db.session() as db:
                await db.execute(update(User).where(User.id == user_id).values(is_disabled=True))
                await db.commit()
            await c.say("second")
            assert await c.next("chat:error", code="account_disabled")
            assert await c.closed() == 1008
            assert all(m["content"] != "second" for m in c.messages())
