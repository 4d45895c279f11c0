"""Two server processes sharing rooms through a real redis-server: a message sent on one
reaches a viewer on the other; presence, deletes, moderation state and account changes
(disable, demote) cross over too."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import aiohttp
import pytest
from chat_support import auth, join, make_chat_channel, make_user, probe, timeout_probe
from conftest import running_server
from serve_process import serve_process

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def second_process(env: dict[str, str]) -> AsyncIterator[str]:
    """``aethex serve`` in a child process on the same database and bus as the in-process
    server started with ``env``, on its own ports; yields its base URL once it listens (a
    failure at once, with its log, if it exits first)."""
    async with serve_process({**env, "AETHEX_LOG__LEVEL": "warning"}) as proc:
        yield proc.base


async def test_two_processes_share_a_room(settings_env, redis_url) -> None:
    env = {**settings_env, "AETHEX_CHAT__BUS": redis_url}
    async with running_server(env) as one:
        await make_chat_channel(one, "hoster", "shared")
        _, sender = await make_user(one, "sender")
        mod_id, mod = await make_user(one, "moddy")
        # The second process: same database file, same Redis, its own HTTP port.
        async with second_process(env) as base2:
            base1 = f"http://127.0.0.1:{one.http_port}"
            async with aiohttp.ClientSession() as http:
                viewer2 = await join(http, base2, "shared")
                viewer1 = await join(http, base1, "shared")
                writer1 = await join(http, base1, "shared", sender)
                # Presence crosses processes.
                joined = await viewer2.next("chat:user-joined")
                assert [u["username"] for u in joined["users"]] == ["sender"]
                await writer1.say("across the bus")
                got2 = await viewer2.next("chat:message")
                got1 = await viewer1.next("chat:message")
                assert got2 == got1 and got2["content"] == "across the bus"
                # And the other way round, through the API of process two.
                async with http.post(
                    f"{base2}/api/messages",
                    headers=auth(sender),
                    json={"channel": "shared", "content": "from two"},
                ) as r:
                    assert r.status == 201, await r.text()
                assert (await viewer1.next("chat:message"))["content"] == "from two"
                # A delete on process one reaches the viewer on process two.
                async with http.delete(
                    f"{base1}/api/messages/{got1['id']}", headers=auth(await _token(one, "hoster"))
                ) as r:
                    assert r.status == 200
                assert (await viewer2.next("chat:deleted"))["id"] == got1["id"]
                # Moderation state: appoint on one, the new moderator acts on two.
                async with http.post(
                    f"{base1}/api/channels/shared/moderators",
                    headers=auth(await _token(one, "hoster")),
                    json={"user_id": mod_id},
                ) as r:
                    assert r.status == 201
                m2 = await join(http, base2, "shared", mod)
                assert (await m2.next("chat:history"))["me"]["can_moderate"] is True
                for c in (viewer1, viewer2, writer1, m2):
                    await c.ws.close()


async def test_disable_and_demote_reach_sockets_on_another_process(settings_env, redis_url) -> None:
    """An admin on process one disables a user and demotes another admin; their sockets on
    process two feel it without reconnecting (through the bus, not on their next join)."""
    env = {
        **settings_env,
        "AETHEX_CHAT__BUS": redis_url,
        # The probe sends a frame every few milliseconds until the demotion shows.
        "AETHEX_CHAT__FRAME_BUDGET": "100000",
    }
    async with running_server(env) as one:
        await make_chat_channel(one, "hoster", "shared")
        _, root = await make_user(one, "root", admin=True)
        admin_id, admin = await make_user(one, "exadmin", admin=True)
        victim_id, victim = await make_user(one, "victim")
        troll_id, _ = await make_user(one, "troll")
        async with second_process(env) as base2:
            base1 = f"http://127.0.0.1:{one.http_port}"
            async with aiohttp.ClientSession() as http:
                a = await join(http, base2, "shared", admin)
                v = await join(http, base2, "shared", victim)
                await a.send(timeout_probe(troll_id))
                assert (await a.next("chat:error"))["code"] == "invalid"  # may moderate
                async with http.patch(
                    f"{base1}/api/admin/users/{admin_id}",
                    headers=auth(root),
                    json={"is_admin": False},
                ) as r:
                    assert r.status == 200, await r.text()
                await probe(a, timeout_probe(troll_id), until="forbidden")
                async with http.patch(
                    f"{base1}/api/admin/users/{victim_id}",
                    headers=auth(root),
                    json={"is_disabled": True},
                ) as r:
                    assert r.status == 200, await r.text()
                assert await v.next("chat:error", timeout=10, code="account_disabled")
                assert await v.closed() == 1008
                await a.ws.close()


async def _token(server, username: str) -> str:
    from storage import queries

    async with server.db.session() as db:
        token = await queries.create_api_token(db, username, "redis-test")
        await db.commit()
    return token
