"""Chat send/receive, history, persistence before broadcast, bad frames, XSS as text, API."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC

import aiohttp
import pytest
from chat_support import auth, base_url, join, make_chat_channel, make_user

pytestmark = pytest.mark.integration


async def test_send_receive_and_history(server) -> None:
    await make_chat_channel(server, "owner1", "room-one")
    _, alice = await make_user(server, "alice")
    base = base_url(server)
    async with aiohttp.ClientSession() as http:
        reader = await join(http, base, "room-one")  # anonymous readers are welcome
        writer = await join(http, base, "room-one", alice)
        await writer.say("  hello world  ")
        got = await reader.next("chat:message")
        assert got["content"] == "hello world"  # trimmed
        assert got["user"]["username"] == "alice" and got["user"]["badges"] == []
        assert isinstance(got["id"], int) and got["created_at"].endswith("Z")
        mine = await writer.next("chat:message")
        assert mine["id"] == got["id"]
        for i in range(60):
            async with http.post(
                f"{base}/api/messages",
                headers=auth(alice),
                json={"channel": "room-one", "content": f"m{i}"},
            ) as r:
                assert r.status in (201, 429), await r.text()
                if r.status == 429:
                    body = await r.json()
                    assert body["error"]["code"] == "rate_limited"
                    break
        late = await join(http, base, "room-one")
        history = (await late.next("chat:history"))["messages"]
        assert history[0]["content"] == "hello world"
        assert [m["id"] for m in history] == sorted(m["id"] for m in history)
        assert await late.next("stream:status")
        await reader.ws.close()
        await writer.ws.close()
        await late.ws.close()


async def test_history_holds_the_last_fifty_without_deleted(server, monkeypatch) -> None:
    from datetime import datetime

    from storage.chat import NewMessage, insert_messages

    channel_id, owner_id, owner = await make_chat_channel(server, "owner2", "room-two")
    async with server.db.session() as db:
        now = datetime.now(UTC)
        ids = await insert_messages(
            db, [NewMessage(channel_id, None, owner_id, f"n{i}", now) for i in range(70)]
        )
        await db.commit()
    base = base_url(server)
    async with aiohttp.ClientSession() as http:
        async with http.delete(f"{base}/api/messages/{ids[-1]}", headers=auth(owner)) as r:
            assert r.status == 200, await r.text()
        client = await join(http, base, "room-two")
        history = (await client.next("chat:history"))["messages"]
        assert [m["content"] for m in history] == [f"n{i}" for i in range(19, 69)]
        # The paginated API: pages of 30 walking back from the newest.
        from storage.models import Stream

        async with server.db.session() as db:
            stream = Stream(channel_id=channel_id, title="t")
            db.add(stream)
            await db.flush()
            from sqlalchemy import update

            from storage.models import Message

            await db.execute(update(Message).values(stream_id=stream.id))
            await db.commit()
            sid = stream.id
        async with http.get(f"{base}/api/streams/{sid}/messages?limit=30") as r:
            page = await r.json()
        assert [m["content"] for m in page["messages"]] == [f"n{i}" for i in range(39, 69)]
        async with http.get(
            f"{base}/api/streams/{sid}/messages",
            params={"limit": "30", "before": str(page["next_before"])},
        ) as r:
            page2 = await r.json()
        assert [m["content"] for m in page2["messages"]] == [f"n{i}" for i in range(9, 39)]
        async with http.get(f"{base}/api/streams/{sid}/messages?limit=1000") as r:
            assert r.status == 400
        async with http.get(f"{base}/api/streams/999999/messages") as r:
            assert r.status == 404
        await client.ws.close()


async def test_store_failure_reaches_nobody(server, monkeypatch) -> None:
    import storage.chat

    await make_chat_channel(server, "owner3", "room-three")
    _, bob = await make_user(server, "bob")
    base = base_url(server)

    async def broken(session, rows):
        raise RuntimeError("disk full")

    async with aiohttp.ClientSession() as http:
        reader = await join(http, base, "room-three")
        writer = await join(http, base, "room-three", bob)
        monkeypatch.setattr(storage.chat, "insert_messages", broken)
        await writer.say("lost")
        err = await writer.next("chat:error")
        assert err["code"] == "store_failed"
        async with http.post(
            f"{base}/api/messages",
            headers=auth(bob),
            json={"channel": "room-three", "content": "lost too"},
        ) as r:
            assert r.status == 503 and (await r.json())["error"]["code"] == "store_failed"
        monkeypatch.undo()
        await asyncio.sleep(2.1)  # out of the rate-limit window
        await writer.say("kept")
        got = await reader.next("chat:message")
        assert got["content"] == "kept"
        await writer.next("chat:message", content="kept")
        assert [m["content"] for m in reader.messages()] == ["kept"]
        assert [m["content"] for m in writer.messages()] == ["kept"]
        await reader.ws.close()
        await writer.ws.close()


async def test_a_busy_database_is_tried_again_not_refused(server, monkeypatch) -> None:
    """SQLite's "database is locked" (one writer; an overloaded machine holds the lock past the
    busy timeout) fails the batch's transaction as a whole: the writer tries it again, so the
    message is stored once and delivered, and its sender is not told it failed."""
    import sqlite3

    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    import storage.chat

    await make_chat_channel(server, "owner3b", "room-busy")
    _, dana = await make_user(server, "dana")
    base = base_url(server)
    real = storage.chat.insert_messages
    failures = []

    async def locked_twice(session, rows):
        if len(failures) < 2:
            failures.append(len(rows))
            raise OperationalError("INSERT", {}, sqlite3.OperationalError("database is locked"))
        return await real(session, rows)

    async with aiohttp.ClientSession() as http:
        reader = await join(http, base, "room-busy")
        writer = await join(http, base, "room-busy", dana)
        monkeypatch.setattr(storage.chat, "insert_messages", locked_twice)
        await writer.say("patient")
        got = await reader.next("chat:message")
        assert got["content"] == "patient" and failures == [1, 1]
        monkeypatch.undo()
        async with server.db.session() as db:
            stored = (
                await db.execute(text("SELECT count(*) FROM messages WHERE content = 'patient'"))
            ).scalar_one()
        assert stored == 1
        assert not [e for e in writer.events if e.get("type") == "chat:error"]
        await reader.ws.close()
        await writer.ws.close()


async def test_bad_frames_get_errors_and_the_server_keeps_serving(server) -> None:
    await make_chat_channel(server, "owner4", "room-four")
    _, carol = await make_user(server, "carol")
    base = base_url(server)
    max_bytes = server.settings.chat.max_message_bytes
    async with aiohttp.ClientSession() as http:
        reader = await join(http, base, "room-four")
        c = await join(http, base, "room-four", carol)
        for raw in ("not json", "[1,2]", '{"no":"type"}', '{"type": 5}', "{}"):
            await c.ws.send_str(raw)
            assert (await c.next("chat:error"))["code"] == "bad_frame"
        await c.send({"type": "chat:dance"})
        assert (await c.next("chat:error"))["code"] == "unknown_type"
        await c.ws.send_bytes(b"\x00\x01")
        assert (await c.next("chat:error"))["code"] == "bad_frame"
        for content, code in (
            (None, "invalid"),
            (42, "invalid"),
            ("   ", "empty"),
            ("x" * 501, "too_long"),
            ("a\x00b", "invalid"),
        ):
            await c.send({"type": "chat:send", "content": content})
            assert (await c.next("chat:error"))["code"] == code
        anon = await join(http, base, "room-four")
        await anon.say("hi")
        assert (await anon.next("chat:error"))["code"] == "login_required"
        # Oversized frame: the socket is closed with 1009 (message too big), nothing else.
        big = await join(http, base, "room-four", carol)
        await big.ws.send_str(json.dumps({"type": "chat:send", "content": "y" * max_bytes}))
        msg = await big.ws.receive(timeout=5)
        while msg.type == aiohttp.WSMsgType.TEXT:
            msg = await big.ws.receive(timeout=5)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert big.ws.close_code == 1009
        await c.say("still here")
        assert (await reader.next("chat:message"))["content"] == "still here"
        async with http.get(f"{base}/ws/chat/no-such-room") as r:
            assert r.status == 404
        await reader.ws.close()
        await c.ws.close()
        await anon.ws.close()


async def test_xss_payloads_come_back_as_text(server) -> None:
    await make_chat_channel(server, "owner5", "room-five")
    _, dave = await make_user(server, "dave")
    base = base_url(server)
    payload = '<img src=x onerror="alert(1)"><script>alert(2)</script>&amp;'
    async with aiohttp.ClientSession() as http:
        reader = await join(http, base, "room-five")
        w = await join(http, base, "room-five", dave)
        await w.say(payload)
        assert (await reader.next("chat:message"))["content"] == payload
        async with http.get(f"{base}/streams/room-five") as r:
            page = await r.text()
        assert "<script>alert" not in page and "onerror=" not in page
        await reader.ws.close()
        await w.ws.close()


async def test_presence_and_viewer_list(server) -> None:
    await make_chat_channel(server, "owner6", "room-six")
    _, erin = await make_user(server, "erin")
    base = base_url(server)
    async with aiohttp.ClientSession() as http:
        watcher = await join(http, base, "room-six")
        e = await join(http, base, "room-six", erin)
        joined = await watcher.next("chat:user-joined")
        assert [u["username"] for u in joined["users"]] == ["erin"]
        again = await join(http, base, "room-six")
        assert [u["username"] for u in (await again.next("chat:history"))["users"]] == ["erin"]
        # A second tab of the same user is not a second join, and closing one tab is no leave.
        e2 = await join(http, base, "room-six", erin)
        await e.ws.close()
        assert not [x for x in await watcher.quiet(0.3) if x["type"].startswith("chat:user-")]
        await e2.ws.close()
        left = await watcher.next("chat:user-left")
        assert [u["username"] for u in left["users"]] == ["erin"]
        await watcher.ws.close()
        await again.ws.close()


async def test_stream_status_and_viewers_are_pushed(server) -> None:
    from datetime import datetime

    from storage import queries
    from storage.models import Stream
    from webapp.chat import CHAT_KEY

    channel_id, _, _ = await make_chat_channel(server, "owner7", "room-seven")
    base = base_url(server)
    async with aiohttp.ClientSession() as http:
        c = await join(http, base, "room-seven")
        assert (await c.next("stream:status"))["live"] is False
        now = datetime.now(UTC)
        async with server.db.session() as db:
            stream = await queries.start_stream(db, channel_id, now)
            await db.commit()
        live = server.registry.start(
            channel_id=channel_id, slug="room-seven", stream_id=stream.id, started_at=now
        )
        status = await c.next("stream:status", live=True)
        assert status["stream_id"] == stream.id
        async with server.db.session() as db:
            row = await db.get(Stream, stream.id)
            row.viewer_count = 7
            await db.commit()
        service = server._runner.app[CHAT_KEY]
        await service.update_viewers()  # what the loop does every hls.viewer_update_interval
        assert (await c.next("stream:viewers"))["viewers"] == 7
        server.registry.end(live)
        assert (await c.next("stream:status"))["live"] is False
        await c.ws.close()


@pytest.fixture
def idle_env(settings_env):
    return {**settings_env, "AETHEX_CHAT__IDLE_TIMEOUT": "1", "AETHEX_CHAT__HEARTBEAT": "0"}


async def test_idle_socket_is_closed(idle_env) -> None:
    from conftest import running_server

    async with running_server(idle_env) as server:
        await make_chat_channel(server, "owner8", "room-eight")
        async with aiohttp.ClientSession() as http:
            c = await join(http, base_url(server), "room-eight")
            msg = await c.ws.receive(timeout=5)
            while msg.type == aiohttp.WSMsgType.TEXT:
                msg = await c.ws.receive(timeout=5)
            assert c.ws.close_code == 1000 and msg.extra == "idle timeout"


async def test_cookie_from_another_site_cannot_chat(server) -> None:
    """A page on another origin can make the browser send our cookie with the upgrade; such
    a socket may read but is treated as anonymous. Our own origin (and Bearer) may write."""
    from accounts import register

    await make_chat_channel(server, "owner9", "room-nine")
    base = base_url(server)
    async with await register(base, "cookieuser") as http:
        evil = await join(http, base, "room-nine", origin="https://evil.example")
        assert (await evil.next("chat:history"))["me"] is None
        await evil.say("csrf attempt")
        assert (await evil.next("chat:error"))["code"] == "login_required"
        own = await join(http, base, "room-nine", origin=base)
        assert (await own.next("chat:history"))["me"]["username"] == "cookieuser"
        await own.say("from my own page")
        assert (await own.next("chat:message"))["content"] == "from my own page"
        await evil.ws.close()
        await own.ws.close()
