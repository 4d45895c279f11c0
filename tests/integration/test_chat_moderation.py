"""Moderation and its permission checks, rate limit, slow mode, modes, filter, blocks, reports,
and a slow reader being dropped without slowing the room."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from chat_support import ChatClient, auth, base_url, join, make_chat_channel, make_user

pytestmark = pytest.mark.integration


@pytest.fixture
def settings_env(settings_env):
    # Short mute so the rate-limit test does not wait long; the rest keep the defaults.
    return {**settings_env, "AETHEX_CHAT__MUTE_SECONDS": "1"}


async def _api(http, method, url, token, json=None):
    async with http.request(method, url, headers=auth(token), json=json) as r:
        body = await r.json()
        return r.status, body


async def test_delete_timeout_ban_and_permissions(server) -> None:
    _, owner_id, owner = await make_chat_channel(server, "own", "mod-room")
    await make_chat_channel(server, "other", "other-room")
    mod_id, mod = await make_user(server, "modi")
    foreign_id, foreign = await make_user(server, "foreignmod")
    viewer_id, viewer = await make_user(server, "viewer")
    troll_id, troll = await make_user(server, "troll")
    base = base_url(server)
    room = f"{base}/api/channels/mod-room"
    async with aiohttp.ClientSession() as http:
        # Only the owner appoints moderators.
        assert (await _api(http, "POST", f"{room}/moderators", viewer, {"user_id": viewer_id}))[
            0
        ] == 403
        assert (await _api(http, "POST", f"{room}/moderators", owner, {"username": "modi"}))[
            0
        ] == 201
        assert (
            await _api(
                http,
                "POST",
                f"{base}/api/channels/other-room/moderators",
                (await _owner_token(server, "other")),
                {"user_id": foreign_id},
            )
        )[0] == 201
        status, mods = await _api(http, "GET", f"{room}/moderators", owner)
        assert [m["username"] for m in mods["moderators"]] == ["modi"]

        watcher = await join(http, base, "mod-room")
        t = await join(http, base, "mod-room", troll)
        v = await join(http, base, "mod-room", viewer)
        m = await join(http, base, "mod-room", mod)
        f = await join(http, base, "mod-room", foreign)
        assert (await m.next("chat:history"))["me"]["can_moderate"] is True
        assert (await v.next("chat:history"))["me"]["can_moderate"] is False

        await t.say("bad words")
        bad = await watcher.next("chat:message")
        # A viewer cannot delete (socket or API), nor can a moderator of another channel.
        await v.send({"type": "chat:delete", "id": bad["id"]})
        assert (await v.next("chat:error"))["code"] == "forbidden"
        assert (await _api(http, "DELETE", f"{base}/api/messages/{bad['id']}", foreign))[0] == 403
        await f.send({"type": "chat:ban", "user_id": troll_id})
        assert (await f.next("chat:error"))["code"] == "forbidden"
        assert (await _api(http, "POST", f"{room}/bans", foreign, {"user_id": troll_id}))[0] == 403
        # The moderator deletes: everyone gets chat:deleted, history forgets it.
        await m.send({"type": "chat:delete", "id": bad["id"]})
        assert (await watcher.next("chat:deleted"))["id"] == bad["id"]
        late = await join(http, base, "mod-room")
        assert all(x["id"] != bad["id"] for x in (await late.next("chat:history"))["messages"])
        # Moderators cannot act on the owner or on each other; nobody on themselves.
        await m.send({"type": "chat:timeout", "user_id": owner_id, "seconds": 60})
        assert (await m.next("chat:error"))["code"] == "forbidden"
        await m.send({"type": "chat:ban", "user_id": mod_id})
        assert (await m.next("chat:error"))["code"] == "invalid"
        await m.send({"type": "chat:timeout", "user_id": troll_id, "seconds": 0})
        assert (await m.next("chat:error"))["code"] == "invalid"
        # Timeout: the troll is told, and cannot send until it ends.
        await m.send({"type": "chat:timeout", "user_id": troll_id, "seconds": 2})
        assert (await t.next("chat:error"))["code"] == "timed_out"
        await t.say("still trolling")
        assert (await t.next("chat:error"))["code"] == "timed_out"
        await asyncio.sleep(2.1)
        await t.say("sorry")
        assert (await watcher.next("chat:message"))["content"] == "sorry"
        # A timeout can also be given and lifted early over the API.
        assert (
            await _api(http, "POST", f"{room}/timeouts", mod, {"user_id": troll_id, "seconds": 600})
        )[0] == 201
        assert (await _api(http, "DELETE", f"{room}/timeouts/{troll_id}", viewer))[0] == 403
        assert (await _api(http, "DELETE", f"{room}/timeouts/{troll_id}", mod))[0] == 200
        assert (await _api(http, "DELETE", f"{room}/timeouts/{troll_id}", mod))[0] == 404
        # Ban over the API (by the owner), unban over the socket (by the moderator).
        assert (
            await _api(http, "POST", f"{room}/bans", owner, {"user_id": troll_id, "reason": "spam"})
        )[0] == 201
        assert await t.next("chat:error", code="banned")
        await t.say("let me in")
        assert (await t.next("chat:error"))["code"] == "banned"
        status, bans = await _api(http, "GET", f"{room}/bans", mod)
        assert [b["user"]["username"] for b in bans["bans"]] == ["troll"]
        await m.send({"type": "chat:unban", "user_id": troll_id})
        await asyncio.sleep(0.3)
        await t.say("back")
        assert (await watcher.next("chat:message"))["content"] == "back"
        # Removing the moderator takes their powers away.
        assert (await _api(http, "DELETE", f"{room}/moderators/{mod_id}", owner))[0] == 200
        await m.send({"type": "chat:ban", "user_id": troll_id})
        assert (await m.next("chat:error"))["code"] == "forbidden"
        for c in (watcher, t, v, m, f, late):
            await c.ws.close()


async def _owner_token(server, username: str) -> str:
    from storage import queries

    async with server.db.session() as db:
        token = await queries.create_api_token(db, username, "second")
        await db.commit()
    return token


async def test_rate_limit_slow_mode_modes_and_filter(server) -> None:
    channel_id, _, owner = await make_chat_channel(server, "own2", "rules")
    _, fan = await make_user(server, "fan")
    fan_id = await _user_id(server, "fan")
    base = base_url(server)
    settings_url = f"{base}/api/channels/rules/chat/settings"
    async with aiohttp.ClientSession() as http:
        c = await join(http, base, "rules", fan)
        for i in range(3):
            await c.say(f"quick {i}")
        await c.say("one too many")
        err = await c.next("chat:error")
        assert err["code"] == "rate_limited" and "muted" in err["message"]
        await c.say("while muted")
        assert (await c.next("chat:error"))["code"] == "rate_limited"
        assert len(list(c.messages())) <= 3
        await asyncio.sleep(2.1)
        # Bad settings are refused and change nothing.
        for bad in (
            {"slow_mode_seconds": -1},
            {"filter_mode": "nuke"},
            {"nope": 1},
            {"followers_only": "yes"},
            {"word_filter": [1]},
        ):
            status, body = await _api(http, "PATCH", settings_url, owner, bad)
            assert status == 400, (bad, body)
        assert (await _api(http, "PATCH", settings_url, fan, {"slow_mode_seconds": 5}))[0] == 403
        status, body = await _api(
            http,
            "PATCH",
            settings_url,
            owner,
            {"slow_mode_seconds": 1, "word_filter": ["darn", "Heck"], "filter_mode": "mask"},
        )
        assert status == 200 and body["settings"]["word_filter"] == ["darn", "heck"]
        await c.say("darn it, HECK")
        assert await c.next("chat:message", content="**** it, ****")
        await c.say("too soon")
        err = await c.next("chat:error")
        assert err["code"] == "slow_mode" and err["retry_after"] > 0
        await asyncio.sleep(1.05)
        await _api(
            http, "PATCH", settings_url, owner, {"filter_mode": "reject", "slow_mode_seconds": 0}
        )
        await c.say("darn")
        assert (await c.next("chat:error"))["code"] == "filtered"
        await asyncio.sleep(1.0)
        # Followers only: the fan must follow first; the owner is exempt.
        await _api(http, "PATCH", settings_url, owner, {"followers_only": True, "word_filter": []})
        await c.say("hello")
        assert (await c.next("chat:error"))["code"] == "followers_only"
        from storage.models import ChannelFollow

        async with server.db.session() as db:
            db.add(ChannelFollow(user_id=fan_id, channel_id=channel_id))
            await db.commit()
        await c.say("following now")
        assert await c.next("chat:message", content="following now")
        # Logged-in only: anonymous readers are turned away with a clear code.
        await _api(http, "PATCH", settings_url, owner, {"logged_in_only": True})
        ws = await http.ws_connect(f"{base}/ws/chat/rules")
        msg = await ws.receive(timeout=5)
        assert "login_required" in msg.data
        assert (await ws.receive(timeout=5)).type == aiohttp.WSMsgType.CLOSE
        assert ws.close_code == 1008
        from storage.models import Stream

        async with server.db.session() as db:
            stream = Stream(channel_id=channel_id, title="t")
            db.add(stream)
            await db.commit()
        async with http.get(f"{base}/api/streams/{stream.id}/messages") as r:
            assert r.status == 401
        assert (await _api(http, "GET", f"{base}/api/streams/{stream.id}/messages", fan))[0] == 200
        await c.ws.close()


async def _user_id(server, username: str) -> int:
    from storage import queries

    async with server.db.session() as db:
        return (await queries.get_user_by_username(db, username)).id


async def test_block_and_report(server) -> None:
    await make_chat_channel(server, "own3", "blocks")
    pest_id, pest = await make_user(server, "pest")
    _, calm = await make_user(server, "calm")
    _, owner = await _owner_pair(server, "own3")
    base = base_url(server)
    async with aiohttp.ClientSession() as http:
        c = await join(http, base, "blocks", calm)
        p = await join(http, base, "blocks", pest)
        await p.say("before block")
        first = await c.next("chat:message")
        assert (await _api(http, "POST", f"{base}/api/users/{pest_id}/block", calm))[0] == 201
        assert (await _api(http, "POST", f"{base}/api/users/999999/block", calm))[0] == 404
        await asyncio.sleep(0.3)
        await p.say("after block")
        await p.next("chat:message", content="after block")
        assert all(m["content"] != "after block" for m in await c.quiet(0.5))
        assert (await _api(http, "GET", f"{base}/api/blocks", calm))[1]["blocked"][0][
            "id"
        ] == pest_id
        again = await join(http, base, "blocks", calm)
        assert [m["content"] for m in (await again.next("chat:history"))["messages"]] == []
        assert (await _api(http, "DELETE", f"{base}/api/users/{pest_id}/block", calm))[0] == 200
        # Report the message; it lands in the owner's queue, which the reporter cannot see.
        status, rep = await _api(
            http,
            "POST",
            f"{base}/api/reports",
            calm,
            {"message_id": first["id"], "reason": "spam", "details": "x"},
        )
        assert status == 201
        assert (await _api(http, "POST", f"{base}/api/reports", calm, {"reason": "x"}))[0] == 400
        assert (
            await _api(
                http, "POST", f"{base}/api/reports", calm, {"user_id": pest_id, "reason": "rude"}
            )
        )[0] == 400  # no channel
        assert (
            await _api(
                http,
                "POST",
                f"{base}/api/reports",
                calm,
                {"user_id": pest_id, "channel": "blocks", "reason": "rude"},
            )
        )[0] == 201
        status, queue = await _api(http, "GET", f"{base}/api/reports", owner)
        assert [r["reason"] for r in queue["reports"]] == ["rude", "spam"]
        assert queue["reports"][1]["message"]["content"] == "before block"
        assert (await _api(http, "GET", f"{base}/api/reports", calm))[1]["reports"] == []
        assert (
            await _api(
                http,
                "POST",
                f"{base}/api/reports/{rep['id']}/resolve",
                calm,
                {"status": "resolved"},
            )
        )[0] == 404
        assert (
            await _api(
                http,
                "POST",
                f"{base}/api/reports/{rep['id']}/resolve",
                owner,
                {"status": "resolved"},
            )
        )[0] == 200
        status, queue = await _api(http, "GET", f"{base}/api/reports", owner)
        assert [r["reason"] for r in queue["reports"]] == ["rude"]
        # The queue page renders for the owner (server-side, escaped).
        async with http.get(f"{base}/dashboard/reports", headers=auth(owner)) as r:
            assert r.status == 200 and "rude" in await r.text()
        async with http.get(f"{base}/dashboard/channels/blocks/chat", headers=auth(owner)) as r:
            assert r.status == 200 and "Word filter" in await r.text()
        async with http.get(f"{base}/dashboard/channels/blocks/chat", headers=auth(calm)) as r:
            assert r.status == 403
        for x in (c, p, again):
            await x.ws.close()


async def _owner_pair(server, username: str) -> tuple[int, str]:
    return await _user_id(server, username), await _owner_token(server, username)


@pytest.fixture
def small_queue_env(settings_env):
    return {
        **settings_env,
        "AETHEX_CHAT__SEND_QUEUE_BYTES": "65536",
        "AETHEX_CHAT__RATE_LIMIT_MESSAGES": "100000",
    }


# Kernel socket buffers asked for on both ends of every chat socket below (Linux doubles it and
# has a floor of a few KiB). Small on purpose: what a peer does not read then waits in the
# server's own send queue, which is what chat.send_queue_bytes bounds, whatever this machine's
# tcp_wmem/tcp_rmem would otherwise absorb (a second machine's 16 KiB default once made a
# joining reader look slow; these sizes make that case happen everywhere).
SMALL_BUFFER = 4096


def _small_buffer_connector() -> aiohttp.TCPConnector:
    import socket

    def make(addr_info):
        family, kind, proto, _, _ = addr_info
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
        return sock

    return aiohttp.TCPConnector(socket_factory=make)


def _fake_messages(first_id: int, count: int, size: int) -> list[dict]:
    """Events as the bus carries chat messages (they reach the room and its history)."""
    return [
        {
            "type": "chat:message",
            "id": first_id + i,
            "content": "z" * size,
            "user": {"id": 0, "username": "x", "display_name": "x", "badges": []},
            "created_at": "2026-01-01T00:00:00Z",
        }
        for i in range(count)
    ]


async def _history_written(service, room, known: set) -> object:
    """The room's socket that is not in ``known``, once its history frame has been written."""
    dropped = service.dropped
    for _ in range(3000):
        fresh = [c for c in room.clients if c not in known and c.buffer is None]
        if fresh:
            return fresh[0]
        assert service.dropped == dropped, "a joining socket was dropped as a slow reader"
        await asyncio.sleep(0.01)
    raise AssertionError("the new socket never got its history")


async def test_slow_reader_is_dropped_and_room_goes_on(small_queue_env) -> None:
    import socket

    from conftest import running_server

    limit = int(small_queue_env["AETHEX_CHAT__SEND_QUEUE_BYTES"])
    async with running_server(small_queue_env) as server:
        # Sockets the server accepts inherit the listening socket's send buffer size.
        server._http.sockets[0].setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)
        await make_chat_channel(server, "own4", "firehose")
        _, talker = await make_user(server, "talker")
        base = base_url(server)
        assert server._runner is not None
        from webapp.chat import CHAT_KEY

        service = server._runner.app[CHAT_KEY]
        async with aiohttp.ClientSession(connector=_small_buffer_connector()) as http:
            fast = await join(http, base, "firehose", max_msg_size=0)
            # A reader that never reads.
            slow_ws = await http.ws_connect(f"{base}/ws/chat/firehose")
            slow_ws._conn.transport.pause_reading()  # type: ignore[union-attr]
            # 5 ticks of 10 x 100 kB messages: far more than the sockets' buffers hold, and
            # they fill the room's history (50 messages, ~5 MB) for the joins below.
            for tick in range(5):
                await service.bus.publish("firehose", _fake_messages(tick * 10, 10, 100_000))
                await fast.next("chat:message", timeout=60, id=tick * 10 + 9)
            # The fast reader got everything, in order, while the slow one was dropped.
            assert [m["id"] for m in fast.messages()] == list(range(50))
            assert service.dropped == 1
            room = service.rooms["firehose"]
            known = set(room.clients)

            # A talker joins and, like a client on a slow link, has not read its ~5 MB history
            # frame when the room sends the next events: almost all of it is still in the
            # server's send queue. It is no slow reader: nothing queued after the history
            # comes near the limit.
            w_ws = await http.ws_connect(
                f"{base}/ws/chat/firehose", headers=auth(talker), max_msg_size=0
            )
            w_ws._conn.transport.pause_reading()  # type: ignore[union-attr]
            talker_client = await _history_written(service, room, known)
            # And a second joiner that never reads at all.
            idle_ws = await http.ws_connect(f"{base}/ws/chat/firehose", max_msg_size=0)
            idle_ws._conn.transport.pause_reading()  # type: ignore[union-attr]
            idle_client = await _history_written(service, room, known | {talker_client})
            assert idle_client.transport.get_write_buffer_size() > limit  # history waiting
            await service.bus.publish("firehose", _fake_messages(1000, 1, 1000))
            await fast.next("chat:message", timeout=60, id=1000)
            assert service.dropped == 1 and {talker_client, idle_client} <= room.clients

            w_ws._conn.transport.resume_reading()  # type: ignore[union-attr]
            w = ChatClient(w_ws)
            history = await w.next("chat:history", timeout=60)
            assert [m["id"] for m in history["messages"]] == list(range(50))
            assert await w.next("chat:message", timeout=60, id=1000)
            await w.say("after")
            await fast.next("chat:message", timeout=60, content="after")
            await w.next("chat:message", timeout=60, content="after")
            await w.ws.close()

            # The joiner that never reads is dropped as soon as what was queued after its
            # history passes the limit: the history is not a free pass.
            for tick in range(2):
                await service.bus.publish("firehose", _fake_messages(2000 + tick, 1, limit))
                await fast.next("chat:message", timeout=60, id=2000 + tick)
            assert service.dropped == 2 and idle_client not in room.clients

            async with http.get(f"{base}/metrics") as r:
                text = await r.text()
            assert 'aethex_chat_dropped_sockets_total{channel="firehose"} 2.0' in text
            assert "aethex_chat_messages_total 1.0" in text  # "after"; the rest came via the bus
            for ws in (slow_ws, idle_ws):
                ws._conn.transport.resume_reading()  # type: ignore[union-attr]
                msg = await ws.receive(timeout=60)
                while msg.type == aiohttp.WSMsgType.TEXT:
                    msg = await ws.receive(timeout=60)
                assert msg.type in (
                    aiohttp.WSMsgType.CLOSE,
                    aiohttp.WSMsgType.CLOSED,
                    aiohttp.WSMsgType.ERROR,
                ), msg
            await fast.ws.close()
