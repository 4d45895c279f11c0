"""Hostile client input against a real server: every case used to be a 500 with a traceback in
the log. Afterwards each gets a 4xx in the API error shape (or a chat:error on the socket), and
nothing at ERROR level or with a traceback reaches the log."""

from __future__ import annotations

import asyncio
import json
import logging

import aiohttp
import pytest

from tests.chat_support import auth, base_url, join, make_chat_channel, make_user

pytestmark = pytest.mark.integration

DEEP = "[" * 100_000 + "]" * 100_000


async def error_of(response: aiohttp.ClientResponse, status: int) -> dict:
    assert response.status == status, await response.text()
    body = await response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["message"]
    return body["error"]


def assert_clean_log(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, "\n".join(f"{r.name}: {r.getMessage()}" for r in bad)


async def test_hostile_json_bodies_get_400_or_413(server, caplog) -> None:
    caplog.set_level(logging.INFO)
    base = base_url(server)
    limit = server.settings.http.max_json_bytes
    json_type = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(base) as http:
        # The anonymous login, as found: a 100k-deep array (200 KB: over the size bound), and
        # one as deep as fits under the bound.
        async with http.post("/api/auth/login", data=DEEP, headers=json_type) as r:
            assert (await error_of(r, 413))["code"] == "payload_too_large"
        depth = limit // 2
        async with http.post(
            "/api/auth/login", data="[" * depth + "]" * depth, headers=json_type
        ) as r:
            err = await error_of(r, 400)
            assert err["code"] == "invalid_json" and "nested" in err["message"]
        for body in (
            '{"username": NaN, "password": "x"}',
            '{"username": "a", "password": 1e999',
            b'{"username": "\xff"}',
            '{"username": 99999999999999999999}',
        ):
            async with http.post("/api/auth/login", data=body, headers=json_type) as r:
                assert (await error_of(r, 400))["code"] == "invalid_json"
        # Bigger than any JSON body of the API, though far under the upload limit.
        padded = json.dumps({"username": "a", "password": "x" * limit})
        assert len(padded) < server.settings.uploads.max_bytes
        async with http.post("/api/auth/login", data=padded, headers=json_type) as r:
            assert (await error_of(r, 413))["code"] == "payload_too_large"

        async def chunked():  # no Content-Length: the bound holds while reading
            for _ in range(limit // 1000 + 2):
                yield b" " * 1000

        async with http.post("/api/auth/login", data=chunked(), headers=json_type) as r:
            assert (await error_of(r, 413))["code"] == "payload_too_large"
        async with http.post(
            "/api/auth/login",
            json={"username": "nobody", "password": "pw"},
        ) as r:  # the server still answers ordinary logins
            assert r.status == 401
    assert_clean_log(caplog)


async def test_integer_parameters_are_bounded(server, caplog) -> None:
    caplog.set_level(logging.INFO)
    _, _, token = await make_chat_channel(server, "intowner", "int-room")
    base = base_url(server)
    async with aiohttp.ClientSession(base, headers=auth(token)) as http:
        # As found: SQLite cannot hold the value (OverflowError in the driver).
        for path in (
            "/api/streams?before=100000000000000000000000",
            "/api/streams?before=1e23",
            "/api/streams?limit=-1",
            "/api/streams?limit=100000000000000000000000",
            "/api/streams/1/messages?before=100000000000000000000000",
            "/api/streams/1/messages?before=1e23",
            "/api/streams/1/messages?limit=0",
            "/api/channels?limit=%C2%B2",
        ):
            async with http.get(path) as r:
                err = await error_of(r, 400)
                assert err["code"] == "invalid" and "from" in err["message"], (path, err)
        # A path id that str.isdigit() accepts but int() does not ("²"), or past 64 bits.
        for method, path in (
            ("GET", "/api/users/%C2%B2"),
            ("GET", "/api/users/100000000000000000000000"),
            ("DELETE", "/api/messages/%C2%B2"),
            ("DELETE", "/api/auth/tokens/%C2%B2"),
            ("POST", "/api/reports/0/resolve"),
        ):
            async with http.request(method, path, json={}) as r:
                assert (await error_of(r, 404))["code"] == "not_found", path
        # Body ids past 64 bits are refused when the JSON is read.
        async with http.post("/api/channels/int-room/bans", json={"user_id": 10**23}) as r:
            assert (await error_of(r, 400))["code"] == "invalid_json"
    assert_clean_log(caplog)


async def test_malformed_forms_get_400(server, caplog) -> None:
    caplog.set_level(logging.INFO)
    _, token = await make_user(server, "formuser")
    base = base_url(server)
    async with aiohttp.ClientSession(base, cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        # An upload whose multipart type has no boundary.
        async with http.post(
            "/api/upload/avatar",
            data=b"x",
            headers={**auth(token), "Content-Type": "multipart/form-data"},
        ) as r:
            assert (await error_of(r, 400))["code"] == "invalid_form"
        # A part header aiohttp's parser refuses.
        body = b'--b\r\nContent-Disposition: form-data; name="\xc2\xb3C\x17"\r\n\r\nx\r\n--b--\r\n'
        async with http.post(
            "/api/upload/avatar",
            data=body,
            headers={**auth(token), "Content-Type": "multipart/form-data; boundary=b"},
        ) as r:
            assert (await error_of(r, 400))["code"] == "invalid_form"
        # The sign-in form (its CSRF check reads the form) with a body that is not UTF-8.
        async with http.get("/auth/login") as r:
            assert r.status == 200
        async with http.post(
            "/auth/login",
            data=b"username=\xff\xfe&password=x",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        ) as r:
            assert r.status == 400
    assert_clean_log(caplog)


async def test_chat_socket_answers_hostile_frames_and_stays_open(server, caplog) -> None:
    caplog.set_level(logging.INFO)
    await make_chat_channel(server, "frameowner", "frame-room")
    _, carol = await make_user(server, "framecarol")
    base = base_url(server)
    max_bytes = server.settings.chat.max_message_bytes
    async with aiohttp.ClientSession() as http:
        reader = await join(http, base, "frame-room")
        c = await join(http, base, "frame-room", carol)
        deep_frames = [
            "[" * (max_bytes - 1),
            "[" * 1500 + "]" * 1500,
            '{"type": "chat:send", "content": ' + "[" * 1000 + "]" * 1000 + "}",
            '{"type": "chat:delete", "id": 100000000000000000000000}',
            '{"type": "chat:ban", "user_id": 100000000000000000000000}',
            '{"type": "chat:send", "content": NaN}',
        ]
        for raw in deep_frames:
            assert len(raw) <= max_bytes
            await c.ws.send_str(raw)
            assert (await c.next("chat:error"))["code"] == "bad_frame", raw[:60]
        await c.say("still here")
        assert (await reader.next("chat:message"))["content"] == "still here"
        await reader.ws.close()
        await c.ws.close()
    assert_clean_log(caplog)


async def test_malformed_http_is_answered_without_an_error_log(server, caplog) -> None:
    """aiohttp logs a request it cannot parse at ERROR with a traceback; anyone can send one."""
    caplog.set_level(logging.INFO)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.http_port)
    writer.write(b"GET /api/streams HTTP/1.1\r\nHost: x\r\nX-Probe: \x00\r\n\r\n")
    await writer.drain()
    status = await asyncio.wait_for(reader.readline(), 10)
    assert status.split()[1] == b"400", status
    writer.close()
    async with aiohttp.ClientSession(base_url(server)) as http:
        async with http.request("TRACE", "/api/streams") as r:  # 405 keeps its Allow header
            assert (await error_of(r, 405))["code"] == "method_not_allowed"
            assert "GET" in r.headers.get("Allow", "")
    assert_clean_log(caplog)


async def test_a_deleted_channels_chat_state_goes_with_it(server, caplog) -> None:
    """The chat service cached a channel's state (its id) by slug after the channel was
    deleted: the next channel with that slug then wrote its chat settings under the old id (a
    500 from the foreign key, or another channel's settings once SQLite reused the id)."""
    caplog.set_level(logging.INFO)
    _, _, token = await make_chat_channel(server, "gone", "gone-room")
    base = base_url(server)
    async with aiohttp.ClientSession(base, headers=auth(token)) as http:
        async with http.get("/api/channels/gone-room/chat/settings") as r:
            assert r.status == 200  # the state is cached now
        async with http.delete("/api/channels/gone-room") as r:
            assert r.status == 204
        async with http.get("/api/channels/gone-room/chat/settings") as r:
            assert (await error_of(r, 404))["code"] == "not_found"
        async with http.post("/api/channels", json={"slug": "gone-room"}) as r:
            assert r.status == 201, await r.text()
            new_id = (await r.json())["id"]
        async with http.patch(
            "/api/channels/gone-room/chat/settings", json={"slow_mode_seconds": 7}
        ) as r:
            assert r.status == 200, await r.text()
    async with server.db.session() as db:
        from storage.chat_models import ChatSettings

        row = await db.get(ChatSettings, new_id)
        assert row is not None and row.slow_mode_seconds == 7
    assert_clean_log(caplog)
