"""Go-live notifications against a real server: the fan-out when a real publisher goes live
(bell-on followers only), the bell's event stream rising without a reload, the list and its
marks as read (one's own only), pruning, the follow's bell toggle, a 100,000-follower fan-out
beside the stream's first playlist, and emails through a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import asyncio
import contextlib
import email.policy
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import aiohttp
import pytest
from aiosmtpd.controller import Controller
from chat_support import auth, base_url, make_chat_channel, make_user
from conftest import free_port, rtmp_url, running_server, start_ffmpeg, transcoding
from notify_support import seed_followers
from pg import postgres_server, postgres_url  # noqa: F401  (fixtures)
from serve_process import SERVE_READY
from sqlalchemy import func, select, text, update

from benchmarks.lib.server import ServerProcess
from storage import follows, notifications, queries
from storage.discovery_models import Notification
from storage.models import Channel, StreamStatus, User
from tests.accounts import csrf_of, register, user_of
from webapp.notifications import NOTIFY_KEY, NotificationsState

pytestmark = pytest.mark.integration


def state_of(server: Any) -> NotificationsState:
    return server._runner.app[NOTIFY_KEY]


async def wait_for(
    check: Callable[[], Awaitable[Any]], what: str, timeout: float = 30.0, interval: float = 0.05
) -> Any:
    """Poll ``check`` until it returns something truthy (and return it)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(interval)


async def call(
    http: aiohttp.ClientSession, method: str, url: str, token: str | None, body: Any = None
) -> tuple[int, Any]:
    async with http.request(method, url, headers=auth(token), json=body) as r:
        return r.status, await r.json()


async def count_rows(server: Any, **where: Any) -> int:
    async with server.db.session() as db:
        query = select(func.count()).select_from(Notification)
        for name, value in where.items():
            query = query.where(getattr(Notification, name) == value)
        return int(await db.scalar(query) or 0)


class Bell:
    """A client of GET /notifications/events: the unread counts it has been sent."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.counts: list[int] = []

    async def next_count(self, timeout: float = 30.0) -> int:
        async def read() -> int:
            event = None
            while True:
                line = (await self.response.content.readline()).decode()
                if not line:
                    raise AssertionError("the event stream ended")
                line = line.rstrip("\n")
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and event == "unread":
                    count = int(json.loads(line.split(":", 1)[1])["unread"])
                    self.counts.append(count)
                    return count

        return await asyncio.wait_for(read(), timeout)

    async def until(self, wanted: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while await self.next_count(max(0.1, deadline - time.monotonic())) != wanted:
            pass


async def open_bell(http: aiohttp.ClientSession, base: str, token: str) -> Bell:
    response = await http.get(f"{base}/notifications/events", headers=auth(token))
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"].startswith("text/event-stream")
    return Bell(response)


async def seed_rows(server: Any, user_id: int, channel_id: int, n: int, **extra: Any) -> list[int]:
    """``n`` stream.online rows for one user, written straight through the storage layer."""
    async with server.db.session() as db:
        rows = [
            Notification(
                user_id=user_id,
                kind="stream.online",
                channel_id=channel_id,
                payload={"channel_slug": "show", "channel_name": "Show", "title": f"Part {i}"},
                **extra,
            )
            for i in range(n)
        ]
        db.add_all(rows)
        await db.commit()
        return [r.id for r in rows]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


# -- fan-out and the bell ---------------------------------------------------------------------


async def test_go_live_notifies_bell_on_followers_and_rings_their_bell(server, http) -> None:
    base = base_url(server)
    channel_id, owner_id, owner = await make_chat_channel(server, "host", "show")
    async with server.db.session() as db:
        channel = await db.get(Channel, channel_id)
        assert channel is not None
        key = channel.stream_key
    fan_id, fan = await make_user(server, "fan")
    quiet_id, quiet = await make_user(server, "quiet")
    stranger_id, stranger = await make_user(server, "stranger")
    follow = f"{base}/api/channels/show/follow"
    bell = f"{base}/api/channels/show/follow/notify"
    gone_id, gone = await make_user(server, "gone")
    for token in (fan, quiet, owner, gone):  # the owner follows too, and is never notified
        assert (await call(http, "POST", follow, token))[0] == 200
    async with server.db.session() as db:  # a disabled account gets a row it cannot see
        await db.execute(update(User).where(User.id == gone_id).values(is_disabled=True))
        await db.commit()
    assert await call(http, "GET", bell, fan) == (200, {"following": True, "notify": True})
    assert await call(http, "PUT", bell, quiet, {"notify": False}) == (
        200,
        {"following": True, "notify": False},
    )
    assert await call(http, "GET", bell, quiet) == (200, {"following": True, "notify": False})
    # The bell belongs to a follow; bad input is a 400, not a 500.
    status, body = await call(http, "PUT", bell, stranger, {"notify": True})
    assert status == 409 and body["error"]["code"] == "not_following"
    assert (await call(http, "PUT", bell, fan, {"notify": "yes"}))[0] == 400
    assert (await call(http, "PUT", bell, None, {"notify": True}))[0] == 401
    assert (await call(http, "GET", f"{base}/api/channels/nope/follow/notify", fan))[0] == 404

    fan_bell = await open_bell(http, base, fan)
    try:
        assert await fan_bell.next_count() == 0
        proc = await start_ffmpeg(rtmp_url(server, key), seconds=30)
        try:
            await fan_bell.until(1)  # pushed, no reload, no poll by the client
            fanout = state_of(server).fanout
            result = await wait_for(
                lambda: asyncio.sleep(0, list(fanout.results)), "the fan-out's report"
            )
            assert result[0].rows == 2  # the fan, and the disabled account
            async with http.get(f"{base}/metrics") as r:  # what operators and benchmarks read
                scrape = await r.text()
            assert "aethex_notification_fanout_seconds_count 1.0" in scrape
            assert "aethex_notifications_created_total 2.0" in scrape
        finally:
            proc.terminate()
            await proc.wait()
    finally:
        fan_bell.response.close()

    status, page = await call(http, "GET", f"{base}/api/notifications", fan)
    assert status == 200 and page["unread"] == 1 and page["next_before"] is None
    [item] = page["notifications"]
    assert item["kind"] == "stream.online" and item["channel_slug"] == "show"
    assert item["url"] == "/streams/show" and item["read"] is False
    assert item["title"]  # the stream's title as it went live
    for user_id in (quiet_id, stranger_id, owner_id):
        assert await count_rows(server, user_id=user_id) == 0
    assert await count_rows(server, user_id=fan_id) == 1
    # No SMTP server configured: no row is owed an email.
    assert await count_rows(server, user_id=fan_id, emailed_at=None) == 0
    for token in (quiet, stranger, owner):
        assert await call(http, "GET", f"{base}/api/notifications/unread-count", token) == (
            200,
            {"unread": 0},
        )


async def test_the_bell_stream_needs_a_login_and_is_bounded(settings_env, http) -> None:
    env = {
        **settings_env,
        "AETHEX_NOTIFICATIONS__MAX_STREAMS_PER_USER": "2",
        "AETHEX_NOTIFICATIONS__HEARTBEAT": "0.1",
    }
    async with running_server(env) as server:
        base = base_url(server)
        user_id, token = await make_user(server, "viewer")
        async with http.get(f"{base}/notifications/events") as r:
            assert r.status == 401
        bells = [await open_bell(http, base, token) for _ in range(2)]
        for bell in bells:
            assert await bell.next_count() == 0
        async with http.get(f"{base}/notifications/events", headers=auth(token)) as r:
            assert r.status == 429
        bells[0].response.close()
        hub = state_of(server).hub

        async def freed() -> bool:
            return len(hub.streams.get(user_id, ())) < 2

        await wait_for(freed, "the closed stream to be let go")  # at its next heartbeat
        third = await open_bell(http, base, token)
        assert await third.next_count() == 0
        for bell in (third, bells[1]):
            bell.response.close()


async def test_the_bell_stream_ends_with_its_login(settings_env) -> None:
    """A logout ends an open bell stream (within a heartbeat): the login is checked again while
    the stream lives, not only when it opened."""
    env = {**settings_env, "AETHEX_NOTIFICATIONS__HEARTBEAT": "0.2"}
    async with running_server(env) as server:
        base = base_url(server)
        async with await register(base, "leaver") as browser:
            csrf = await csrf_of(browser, base)
            uid = (await user_of(browser, base))["id"]
            response = await browser.get(f"{base}/notifications/events")
            assert response.status == 200
            bell = Bell(response)
            assert await bell.next_count() == 0
            async with browser.post(f"{base}/api/auth/logout", headers={"X-CSRF-Token": csrf}) as r:
                assert r.status == 204

            async def drained() -> bytes:
                return await response.content.read()  # returns once the server ends it

            await asyncio.wait_for(drained(), 30.0)
            assert response.content.at_eof()
            response.close()
            hub = state_of(server).hub

            async def released() -> bool:
                return not hub.streams.get(uid)

            await wait_for(released, "the stream to be let go")


async def test_a_bell_that_never_reads_is_closed(settings_env) -> None:
    """A client that opens the stream and never reads is dropped once what waits for it
    passes notifications.send_buffer_bytes; until then each stream holds one pending count
    (a newer one replaces it), so changes it has not read cost no memory."""
    env = {**settings_env, "AETHEX_NOTIFICATIONS__SEND_BUFFER_BYTES": "4096"}
    async with running_server(env) as server:
        user_id, token = await make_user(server, "sleeper")
        reader, writer = await asyncio.open_connection("127.0.0.1", server.http_port)
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        writer.write(
            (
                "GET /notifications/events HTTP/1.1\r\nHost: x\r\n"
                f"Authorization: Bearer {token}\r\n\r\n"
            ).encode()
        )
        await writer.drain()
        hub = state_of(server).hub

        async def opened() -> bool:
            return user_id in hub.streams

        await wait_for(opened, "the stream to open")
        # Count changes much faster than anyone reads them (the client reads nothing).
        deadline = time.monotonic() + 60
        n = 0
        while user_id in hub.streams:
            assert time.monotonic() < deadline, "a client that never reads was kept"
            hub.push(user_id, n)
            for stream in hub.streams.get(user_id, ()):
                assert stream.pending in (None, n)  # one value waits, never a queue
            n += 1
            await asyncio.sleep(0)
        assert n > 1
        writer.close()
        assert reader is not None


# -- the list, marks as read, permissions, pruning ---------------------------------------------


async def test_list_mark_read_and_read_all_only_for_ones_own(server, http) -> None:
    base = base_url(server)
    channel_id, _, _ = await make_chat_channel(server, "host", "show")
    alice_id, alice = await make_user(server, "alice")
    bob_id, bob = await make_user(server, "bob")
    mine = await seed_rows(server, alice_id, channel_id, 5)
    theirs = await seed_rows(server, bob_id, channel_id, 2)
    api = f"{base}/api/notifications"

    status, page = await call(http, "GET", f"{api}?limit=2", alice)
    assert status == 200 and page["unread"] == 5
    assert [n["id"] for n in page["notifications"]] == mine[::-1][:2]  # newest first
    status, more = await call(http, "GET", f"{api}?limit=2&before={page['next_before']}", alice)
    assert [n["id"] for n in more["notifications"]] == mine[::-1][2:4]
    status, last = await call(http, "GET", f"{api}?limit=2&before={more['next_before']}", alice)
    assert [n["id"] for n in last["notifications"]] == mine[:1] and last["next_before"] is None
    for bad in ("limit=0", "limit=abc", "before=-1", "limit=100000"):
        status, body = await call(http, "GET", f"{api}?{bad}", alice)
        assert status == 400 and body["error"]["code"] == "invalid", bad
    assert (await call(http, "GET", api, None))[0] == 401

    # Someone else's notification does not exist for you: 404, and it stays unread.
    for target in (theirs[0], 999999):
        status, body = await call(http, "POST", f"{api}/{target}/read", alice)
        assert status == 404 and body["error"]["code"] == "not_found"
    assert (await call(http, "POST", f"{api}/abc/read", alice))[0] == 404
    assert (await call(http, "POST", f"{api}/{mine[0]}/read", None))[0] == 401

    bell = await open_bell(http, base, alice)
    try:
        assert await bell.next_count() == 5
        status, body = await call(http, "POST", f"{api}/{mine[0]}/read", alice)
        assert status == 200 and body["unread"] == 4 and body["notification"]["read"] is True
        assert (await call(http, "POST", f"{api}/{mine[0]}/read", alice))[1]["unread"] == 4
        await bell.until(4)
        status, body = await call(http, "POST", f"{api}/read-all", alice)
        assert (status, body) == (200, {"marked": 4, "unread": 0})
        await bell.until(0)
    finally:
        bell.response.close()
    assert await call(http, "GET", f"{api}/unread-count", bob) == (200, {"unread": 2})
    assert await call(http, "GET", f"{api}/unread-count", alice) == (200, {"unread": 0})


async def test_the_notifications_page_and_its_forms(server) -> None:
    base = base_url(server)
    channel_id, _, _ = await make_chat_channel(server, "host", "show")
    async with await register(base, "reader") as browser:
        me = await user_of(browser, base)
        ids = await seed_rows(server, me["id"], channel_id, 3)
        async with browser.get(f"{base}/notifications") as r:
            assert r.status == 200
            page = await r.text()
        assert 'href="/streams/show"' in page and "Part 2" in page
        assert page.index("Part 2") < page.index("Part 0")  # newest first
        assert 'id="nav-bell"' in page and "/dashboard/notifications" in page
        csrf = await csrf_of(browser, base)
        async with browser.post(
            f"{base}/notifications/{ids[0]}/read",
            data={"csrf_token": csrf, "back": "/notifications"},
            allow_redirects=False,
        ) as r:
            assert r.status == 303 and r.headers["Location"] == "/notifications"
        async with browser.post(f"{base}/notifications/{ids[1]}/read", data={}) as r:
            assert r.status == 403  # no CSRF token
        async with browser.get(f"{base}/api/notifications/unread-count") as r:
            assert (await r.json())["unread"] == 2
        async with browser.post(
            f"{base}/notifications/read-all", data={"csrf_token": csrf}, allow_redirects=False
        ) as r:
            assert r.status == 303
        async with browser.get(f"{base}/api/notifications/unread-count") as r:
            assert (await r.json())["unread"] == 0
    async with aiohttp.ClientSession() as anon:
        async with anon.get(f"{base}/notifications", allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"].startswith("/auth/login")


async def test_old_notifications_are_pruned(settings_env) -> None:
    env = {
        **settings_env,
        "AETHEX_NOTIFICATIONS__RETENTION_DAYS": "7",
        "AETHEX_NOTIFICATIONS__PRUNE_INTERVAL": "0.1",
    }
    async with running_server(env) as server:
        channel_id, _, _ = await make_chat_channel(server, "host", "show")
        user_id, _ = await make_user(server, "keeper")
        now = datetime.now(UTC)
        # The rows to keep first: the pruner may run between the two inserts, and SQLite would
        # give the kept rows the ids of old ones it had already deleted.
        kept = await seed_rows(server, user_id, channel_id, 2, created_at=now - timedelta(days=6))
        old = await seed_rows(server, user_id, channel_id, 3, created_at=now - timedelta(days=8))

        async def pruned() -> bool:
            return await count_rows(server, user_id=user_id) == len(kept)

        await wait_for(pruned, "the old notifications to be pruned")
        async with server.db.session() as db:
            left = set(await db.scalars(select(Notification.id)))
        assert left == set(kept) and not left & set(old)


async def test_the_bell_of_a_follow_survives_only_with_the_follow(server) -> None:
    """Unfollowing drops the follow (and its bell); following again starts with the bell on."""
    channel_id, _, _ = await make_chat_channel(server, "host", "show")
    user_id, _ = await make_user(server, "fickle")
    async with server.db.session() as db:
        await follows.follow(db, user_id, channel_id)
        await follows.set_notify(db, user_id, channel_id, False)
        await db.commit()
        assert await follows.follow_notify(db, user_id, channel_id) is False
        await follows.unfollow(db, user_id, channel_id)
        await follows.follow(db, user_id, channel_id)
        await db.commit()
        assert await follows.follow_notify(db, user_id, channel_id) is True


# -- email through a real SMTP server -----------------------------------------------------------


class Inbox:
    """What a real SMTP server (aiosmtpd, in its own thread) received, parsed."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = BytesParser(policy=email.policy.default).parsebytes(envelope.content)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in list(self.messages) if m["To"] == address]


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def email_env(settings_env: dict[str, str], port: int, **extra: str) -> dict[str, str]:
    return {
        **settings_env,
        "AETHEX_EMAIL__SMTP_HOST": "127.0.0.1",
        "AETHEX_EMAIL__SMTP_PORT": str(port),
        "AETHEX_EMAIL__SMTP_STARTTLS": "false",
        "AETHEX_EMAIL__FROM_ADDRESS": "AeThex Live <live@example.test>",
        "AETHEX_EMAIL__SEND_INTERVAL": "0.1",
        "AETHEX_NOTIFICATIONS__RENOTIFY_AFTER": "0",
        **extra,
    }


async def go_live(server: Any, channel_id: int, title: str) -> None:
    """A go-live as ingest records it (the stream row), fanned out by the server's fan-out
    (the same code the registry's start runs; the real publisher is in the tests above)."""
    async with server.db.session() as db:
        stream = await queries.start_stream(db, channel_id, datetime.now(UTC), title)
        await db.commit()
    result = await state_of(server).fanout.run(stream.id)
    assert result is not None
    async with server.db.session() as db:
        await queries.end_stream(db, stream.id, datetime.now(UTC), StreamStatus.OFFLINE)
        await db.commit()


async def follow_with_bell(server: Any, user_id: int, channel_id: int) -> None:
    async with server.db.session() as db:
        await follows.follow(db, user_id, channel_id)
        await db.commit()


async def test_one_email_per_stream_and_one_click_unsubscribe(settings_env, smtp, http) -> None:
    inbox, port = smtp
    async with running_server(email_env(settings_env, port)) as server:
        base = base_url(server)
        channel_id, _, _ = await make_chat_channel(server, "host", "show")
        fan_id, _ = await make_user(server, "fan")
        other_id, _ = await make_user(server, "other")
        for user_id in (fan_id, other_id):
            await follow_with_bell(server, user_id, channel_id)

        await go_live(server, channel_id, "Speedrun night")
        await wait_for(lambda: asyncio.sleep(0, len(inbox.messages) >= 2), "two emails")
        [mail] = inbox.to("fan@example.test")
        assert mail["From"] == "AeThex Live <live@example.test>"
        assert "show is live: Speedrun night" in mail["Subject"]
        body = mail.get_content()
        assert "/streams/show" in body
        assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        link = mail["List-Unsubscribe"].strip("<>")
        assert link in body
        path = link[link.index("/notifications/unsubscribe") :]

        async def all_sent() -> bool:
            async with server.db.session() as db:
                owed = await db.scalar(
                    select(func.count())
                    .select_from(Notification)
                    .where(Notification.emailed_at.is_(None))
                )
            return owed == 0

        await wait_for(all_sent, "every notification marked emailed")

        # The link: GET asks (changes nothing), POST (a mail client's one-click) unsubscribes.
        async with http.get(base + path) as r:
            assert r.status == 200 and "Unsubscribe" in await r.text()
        async with server.db.session() as db:
            assert (await notifications.email_prefs(db, fan_id)).email_go_live is True
        async with http.post(base + path, data={"List-Unsubscribe": "One-Click"}) as r:
            assert r.status == 200 and "Unsubscribed" in await r.text()
        async with server.db.session() as db:
            assert (await notifications.email_prefs(db, fan_id)).email_go_live is False

        # Damaged links are a 400 page, and change nothing.
        other_path = path.replace(f"u={fan_id}", f"u={other_id}")
        bad = [other_path, path[:-2] + ("00" if not path.endswith("00") else "11")]
        bad += ["/notifications/unsubscribe", "/notifications/unsubscribe?u=x&t=y"]
        for target in bad:
            async with http.get(base + target) as r:
                assert r.status == 400 and "not valid" in await r.text(), target
            async with http.post(base + target, data={}) as r:
                assert r.status == 400, target
        async with server.db.session() as db:
            assert (await notifications.email_prefs(db, other_id)).email_go_live is True

        # The next go-live mails the other follower only (in-app notifications still come).
        await go_live(server, channel_id, "Second night")
        await wait_for(
            lambda: asyncio.sleep(0, len(inbox.to("other@example.test")) == 2), "the next email"
        )
        await wait_for(all_sent, "every notification settled")
        assert len(inbox.to("fan@example.test")) == 1
        assert await count_rows(server, user_id=fan_id) == 2


async def test_a_digest_instead_of_one_email_per_stream(settings_env, smtp) -> None:
    inbox, port = smtp
    env = email_env(settings_env, port, AETHEX_EMAIL__DIGEST_INTERVAL="2")
    async with running_server(env) as server:
        base = base_url(server)
        first, _, _ = await make_chat_channel(server, "host1", "first")
        second, _, _ = await make_chat_channel(server, "host2", "second")
        async with await register(base, "reader") as browser:
            me = await user_of(browser, base)
            async with browser.get(f"{base}/dashboard/notifications") as r:
                assert r.status == 200 and 'name="email_go_live"' in await r.text()
            csrf = await csrf_of(browser, base)
            async with browser.post(
                f"{base}/dashboard/notifications",
                data={"csrf_token": csrf, "email_go_live": "on", "delivery": "digest"},
                allow_redirects=False,
            ) as r:
                assert r.status == 303
        async with server.db.session() as db:
            prefs = await notifications.email_prefs(db, me["id"])
        assert prefs.email_go_live and prefs.email_digest
        for channel_id in (first, second):
            await follow_with_bell(server, me["id"], channel_id)
        await go_live(server, first, "Opening")
        await go_live(server, second, "Closing")

        await wait_for(lambda: asyncio.sleep(0, inbox.to("reader@example.test")), "a digest")
        [digest] = inbox.to("reader@example.test")
        assert digest["Subject"] == "2 channels you follow went live"
        body = digest.get_content()
        assert "first is live: Opening" in body and "second is live: Closing" in body
        assert digest["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


# -- 100,000 followers beside the stream's first playlist ---------------------------------------

BIG = 100_000
LADDER = [{"name": "240p", "height": 240, "fps": 30, "video_kbps": 300}]


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
async def test_a_100000_follower_fan_out_beside_the_first_playlist(
    database: str, settings_env: dict[str, str], request: pytest.FixtureRequest
) -> None:
    """Going live is not held by the fan-out: the first playlist is served while it runs,
    and when it reports done every follower has the row.

    On PostgreSQL the test holds a lock on the notifications table, so the fan-out provably
    cannot finish before the playlist is served; SQLite has no table locks (a database lock
    would stop the stream's own writes too), so there the two simply run together."""
    env = {
        **transcoding(settings_env),
        "AETHEX_TRANSCODE__LADDER": json.dumps(LADDER),
        "AETHEX_HLS__SEGMENT_DURATION": "1",
    }
    if database == "postgresql":
        env["AETHEX_DATABASE_URL"] = request.getfixturevalue("postgres_url")
    async with running_server(env) as server:
        base = base_url(server)
        channel_id, _, _ = await make_chat_channel(server, "star", "star")
        async with server.db.session() as db:
            await seed_followers(db, channel_id, BIG)
            channel = await db.get(Channel, channel_id)
            assert channel is not None
            key = channel.stream_key
            await db.commit()
        fanout = state_of(server).fanout
        async with contextlib.AsyncExitStack() as stack:
            if database == "postgresql":
                # Another client writes-locks the table (inserts wait; reads do not).
                lock = await stack.enter_async_context(server.db.session())
                await lock.execute(text("LOCK TABLE notifications IN SHARE MODE"))
            proc = await start_ffmpeg(rtmp_url(server, key), seconds=60, size="426x240")
            stack.push_async_callback(_stop, proc)
            async with aiohttp.ClientSession() as http:

                async def playlist() -> bool:
                    try:
                        async with http.get(
                            f"{base}/hls/star/master.m3u8", timeout=aiohttp.ClientTimeout(10)
                        ) as r:
                            return r.status == 200 and "#EXTM3U" in await r.text()
                    except TimeoutError:
                        return False

                await wait_for(playlist, "the first playlist", timeout=60, interval=0.1)
                served = time.monotonic()
                if database == "postgresql":
                    assert fanout.running and not fanout.results  # still held by the lock
                    await lock.rollback()  # the lock goes, the fan-out goes on
                [result] = await wait_for(
                    lambda: asyncio.sleep(0, list(fanout.results)), "the fan-out", timeout=60
                )
                assert result.rows == BIG
                assert await count_rows(server, channel_id=channel_id) == BIG
                if database == "postgresql":
                    assert served < result.finished
                else:
                    assert result.seconds < 10  # the bound, on a busy machine too
                # The bell count of a follower is right at once.
                async with server.db.session() as db:
                    some = await db.scalar(
                        select(Notification.user_id).where(Notification.channel_id == channel_id)
                    )
                    assert some is not None
                    assert await notifications.unread_count(db, some) == 1


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        await proc.wait()


# -- across processes -----------------------------------------------------------------------------


async def test_a_go_live_on_another_process_rings_the_bell_here(settings_env, http) -> None:
    """Two server processes on one database: the one that takes the publish fans out (once),
    and a bell open on the other rises without a reload (its poll sees the new rows)."""
    env = {**settings_env, "AETHEX_NOTIFICATIONS__POLL_INTERVAL": "0.5"}
    async with running_server(env) as here:
        base = base_url(here)
        channel_id, _, _ = await make_chat_channel(here, "host", "show")
        fan_id, fan = await make_user(here, "fan")
        await follow_with_bell(here, fan_id, channel_id)
        async with here.db.session() as db:
            channel = await db.get(Channel, channel_id)
            assert channel is not None
            key = channel.stream_key
        bell = await open_bell(http, base, fan)
        try:
            assert await bell.next_count() == 0
            # The shared runner: ready when both ports accept, a failure at once (with its
            # log) if it exits first. Its start takes ~4 s here idle and ~30 s at load 16 on
            # 2 cores (the old 30 s bound failed a loaded run): SERVE_READY only bounds a hang.
            other = ServerProcess({**env, "AETHEX_LOG__LEVEL": "warning"})
            try:
                await asyncio.to_thread(other.wait_ready, SERVE_READY)
                url = f"rtmp://127.0.0.1:{other.rtmp_port}/{here.settings.rtmp.app}/{key}"
                proc = await start_ffmpeg(url, seconds=30)
                try:
                    await bell.until(1)
                finally:
                    await _stop(proc)
            finally:
                await asyncio.to_thread(other.stop, 20)
        finally:
            bell.response.close()
        assert await count_rows(here, user_id=fan_id) == 1  # one fan-out, by the other process
        assert not state_of(here).fanout.results


async def test_a_bell_opened_after_none_were_open_hears_what_another_process_wrote(
    settings_env, http
) -> None:
    """With no bell open here a poll asks the database nothing. Rows another process writes
    meanwhile (here: straight through storage, which never tells this hub) are in the first
    count of a bell opened later; a row written after that count and before the next poll is
    counted by that poll (it recounts the open bells when it catches the mark up); and later
    rows raise the bell as usual. The test runs the polls itself (the loop's is an hour)."""
    env = {**settings_env, "AETHEX_NOTIFICATIONS__POLL_INTERVAL": "3600"}
    async with running_server(env) as here:
        base = base_url(here)
        channel_id, _, _ = await make_chat_channel(here, "host", "show")
        fan_id, fan = await make_user(here, "fan")
        hub = state_of(here).hub
        await seed_rows(here, fan_id, channel_id, 2)
        await hub.poll()
        assert hub.idle_polls == 1
        bell = await open_bell(http, base, fan)
        try:
            assert await bell.next_count() == 2
            await seed_rows(here, fan_id, channel_id, 1)  # after the bell's count, before a poll
            await hub.poll()
            await bell.until(3)
            await seed_rows(here, fan_id, channel_id, 1)
            await hub.poll()
            await bell.until(4)
            assert hub.idle_polls == 1
        finally:
            bell.response.close()


async def test_no_email_is_lost_to_a_down_smtp_server_or_a_crashed_sender(settings_env) -> None:
    """SMTP down: the claimed rows are given back and mailed once it is up. A sender that
    claimed a row and died: the row is mailed by the next look after its lease."""

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"421 down for maintenance\r\n")  # an SMTP server that is not taking mail
        await writer.drain()
        writer.close()

    down = await asyncio.start_server(refuse, "127.0.0.1", 0)  # holds the port meanwhile
    port = down.sockets[0].getsockname()[1]
    env = email_env(settings_env, port, AETHEX_EMAIL__CLAIM_SECONDS="1")
    async with running_server(env) as server:
        channel_id, _, _ = await make_chat_channel(server, "host", "show")
        fan_id, _ = await make_user(server, "fan")
        await follow_with_bell(server, fan_id, channel_id)
        await go_live(server, channel_id, "Into the void")

        def failures() -> float:
            value = server.metrics.registry.get_sample_value(
                "aethex_notification_emails_total", {"kind": "single", "outcome": "failed"}
            )
            return value or 0.0

        await wait_for(lambda: asyncio.sleep(0, failures() >= 1), "a failed attempt")
        assert await count_rows(server, user_id=fan_id, emailed_at=None) == 1

        # A sender elsewhere claims the next one and dies before sending it.
        await go_live(server, channel_id, "Claimed and lost")
        async with server.db.session() as db:
            await db.execute(
                update(Notification)
                .where(Notification.user_id == fan_id, Notification.emailed_at.is_(None))
                .values(email_claimed_until=datetime.now(UTC) + timedelta(seconds=1))
            )
            await db.commit()

        down.close()
        await down.wait_closed()
        inbox = Inbox()
        controller = Controller(inbox, hostname="127.0.0.1", port=port)
        controller.start()
        try:
            await wait_for(
                lambda: asyncio.sleep(0, len(inbox.to("fan@example.test")) >= 2), "both emails"
            )
            subjects = sorted(m["Subject"] for m in inbox.to("fan@example.test"))
            assert subjects == ["show is live: Claimed and lost", "show is live: Into the void"]

            # A row is marked emailed after its message is accepted: wait for that.
            async def all_marked() -> bool:
                return await count_rows(server, user_id=fan_id, emailed_at=None) == 0

            await wait_for(all_marked, "both rows marked as emailed")
        finally:
            controller.stop()
