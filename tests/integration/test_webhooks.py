"""Outgoing webhooks against real HTTP receivers run by the test (aiohttp servers on free ports):
a receiver that checks the signature and timestamp gets stream.online when a real ffmpeg goes
live, stream.offline when it stops and channel.follow when someone follows; one that answers
500 sees the retries come with growing gaps until the delivery is failed; one that never
answers times the attempts out while the server keeps answering; a Discord endpoint gets a
Discord message; a delivery is resent from the API and the dashboard's form. Also: who may
manage webhooks, the 400s for bad input, and the SSRF guard with private addresses refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from chat_support import auth, base_url, make_user
from conftest import make_channel, rtmp_url, running_server, start_ffmpeg
from pg import postgres_server, postgres_url  # noqa: F401  (fixtures)

from storage import queries
from storage import webhooks as store
from storage.errors import NotFoundError
from tests.accounts import csrf_of, login
from webapp.webhooks.signing import verify

pytestmark = pytest.mark.integration

BACKOFF = 0.2  # webhooks.backoff_base in these tests
ATTEMPTS = 3  # webhooks.max_attempts
TIMEOUT = 1.5  # webhooks.timeout
DEADLINE = 60.0  # how long a test waits for something that must happen


@dataclass
class Received:
    at: float
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """An HTTP endpoint on 127.0.0.1 that keeps every request; answers ``status``, or never
    (``hang``) until closed."""

    status: int = 200
    hang: bool = False
    location: str | None = None  # sent with the answer (a redirect)
    requests: list[Received] = field(default_factory=list)
    waiting: int = 0  # requests being held right now (hang)
    url: str = ""
    _released: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(Received(time.monotonic(), dict(request.headers), body))
        if self.hang:
            self.waiting += 1
            try:
                await self._released.wait()
            finally:
                self.waiting -= 1
        headers = {"Location": self.location} if self.location else None
        text = "ok" if self.status < 300 else "broken"
        return web.Response(status=self.status, text=text, headers=headers)

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/hook"
        return self

    async def close(self) -> None:
        self._released.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def of(self, event: str) -> list[Received]:
        return [r for r in self.requests if r.headers.get("X-AeThex-Event") == event]


async def until(
    check: Callable[[], Awaitable[Any]] | Callable[[], Any], what: str, deadline: float = DEADLINE
) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` otherwise."""
    end = time.monotonic() + deadline
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def webhook_env(env: dict[str, str], **extra: str) -> dict[str, str]:
    return {
        **env,
        "AETHEX_WEBHOOKS__ALLOW_PRIVATE_ADDRESSES": "true",
        "AETHEX_WEBHOOKS__BACKOFF_BASE": str(BACKOFF),
        "AETHEX_WEBHOOKS__MAX_ATTEMPTS": str(ATTEMPTS),
        "AETHEX_WEBHOOKS__TIMEOUT": str(TIMEOUT),
        "AETHEX_WEBHOOKS__POLL_INTERVAL": "0.5",
        **extra,
    }


@pytest.fixture
async def server(settings_env: dict[str, str]) -> AsyncIterator[Any]:
    async with running_server(webhook_env(settings_env)) as srv:
        yield srv


@pytest.fixture
async def receivers() -> AsyncIterator[Callable[..., Awaitable[Receiver]]]:
    made: list[Receiver] = []

    async def make(**kw: Any) -> Receiver:
        receiver = await Receiver(**kw).start()
        made.append(receiver)
        return receiver

    yield make
    for receiver in made:
        await receiver.close()


@dataclass
class Owned:
    """A channel, its owner's bearer token and stream key, an HTTP client on the server."""

    channel_id: int
    slug: str
    key: str
    token: str
    http: aiohttp.ClientSession
    base: str

    async def call(
        self, method: str, path: str, body: Any = None, token: str | None = "owner"
    ) -> tuple[int, Any]:
        headers = auth(self.token if token == "owner" else token)
        async with self.http.request(method, path, json=body, headers=headers) as r:
            text = await r.text()
            return r.status, (json.loads(text) if text else None)

    async def add_hook(self, url: str, events: list[str], fmt: str = "json") -> dict[str, Any]:
        status, data = await self.call(
            "POST",
            f"/api/channels/{self.slug}/webhooks",
            {"url": url, "events": events, "payload_format": fmt},
        )
        assert status == 201, data
        return data["webhook"]

    async def deliveries(self, hook_id: int) -> list[dict[str, Any]]:
        status, data = await self.call(
            "GET", f"/api/channels/{self.slug}/webhooks/{hook_id}/deliveries"
        )
        assert status == 200, data
        return data["deliveries"]


@contextlib.asynccontextmanager
async def owned_channel(server: Any, slug: str, username: str) -> AsyncIterator[Owned]:
    channel_id, key = await make_channel(server, slug, username)
    async with server.db.session() as db:
        token = await queries.create_api_token(db, username)
        await db.commit()
    base = base_url(server)
    async with aiohttp.ClientSession(base) as http:
        yield Owned(channel_id, slug, key, token, http, base)


@pytest.fixture
async def owned(server: Any) -> AsyncIterator[Owned]:
    async with owned_channel(server, "hooked", "creator") as value:
        yield value


async def follow(server: Any, username: str, slug: str) -> None:
    _, token = await make_user(server, username)
    async with aiohttp.ClientSession(base_url(server), headers=auth(token)) as http:
        async with http.post(f"/api/channels/{slug}/follow") as r:
            assert r.status == 200, await r.text()


def assert_signed(request: Received, secret: str, delivery_id: int | None = None) -> None:
    header = request.headers["X-AeThex-Signature"]
    assert verify(secret, header, request.body, time.time()), header
    stamp = int(dict(p.split("=", 1) for p in header.split(","))["t"])
    assert abs(time.time() - stamp) < 120
    # Another secret, or a changed body, does not verify.
    assert not verify(secret + "x", header, request.body, time.time())
    assert not verify(secret, header, request.body + b" ", time.time())
    # Nor does the right one once the timestamp is stale (a replay).
    assert not verify(secret, header, request.body, time.time() + 3600)
    if delivery_id is not None:
        assert request.headers["X-AeThex-Delivery"] == str(delivery_id)


async def test_live_offline_and_follow_reach_signed_json_and_discord(
    server: Any, owned: Owned, receivers: Any
) -> None:
    good = await receivers()
    discord = await receivers()
    hook = await owned.add_hook(good.url, ["stream.online", "stream.offline", "channel.follow"])
    chat = await owned.add_hook(discord.url, ["stream.online"], "discord")
    assert hook["secret"].startswith("whsec_") and len(hook["secret"]) > 40
    assert hook["secret"] != chat["secret"]

    publisher = await start_ffmpeg(rtmp_url(server, owned.key), seconds=3)
    try:
        await until(lambda: good.of("stream.online"), "stream.online")
        online = good.of("stream.online")[0]
        assert_signed(online, hook["secret"])
        doc = online.json
        assert doc["event"] == "stream.online"
        assert doc["channel"]["slug"] == "hooked"
        assert doc["channel"]["url"].endswith("/streams/hooked")
        assert doc["id"] == int(online.headers["X-AeThex-Delivery"])
        assert isinstance(doc["stream"]["id"], int) and doc["stream"]["started_at"]
        assert online.headers["Content-Type"].startswith("application/json")

        await until(lambda: discord.requests, "the Discord message")
        message = discord.requests[0].json
        assert message["content"].startswith(f"hooked is live: {doc['stream']['title']}")
        assert message["content"].endswith("/streams/hooked")
        assert message["allowed_mentions"] == {"parse": []}
        assert_signed(discord.requests[0], chat["secret"])

        await asyncio.wait_for(publisher.wait(), DEADLINE)
    finally:
        if publisher.returncode is None:
            publisher.kill()
            await publisher.wait()
    await until(lambda: good.of("stream.offline"), "stream.offline")
    offline = good.of("stream.offline")[0]
    assert_signed(offline, hook["secret"])
    assert offline.json["stream"]["id"] == doc["stream"]["id"]
    assert len(discord.requests) == 1  # it asked for stream.online only

    await follow(server, "newfan", "hooked")
    await until(lambda: good.of("channel.follow"), "channel.follow")
    followed = good.of("channel.follow")[0]
    assert_signed(followed, hook["secret"])
    assert followed.json["follower"]["username"] == "newfan"

    rows = await until(lambda: _all_done(owned, hook["id"], 3), "three succeeded deliveries")
    assert {r["event"] for r in rows} == {"stream.online", "stream.offline", "channel.follow"}
    for row in rows:
        assert row["status"] == "succeeded" and row["attempts"] == 1, row
        assert row["last_status_code"] == 200 and row["last_error"] is None
        assert row["delivered_at"]

    # Resend from the API: a new delivery of the same event and body.
    first = next(r for r in rows if r["event"] == "channel.follow")
    status, data = await owned.call(
        "POST", f"/api/channels/hooked/webhooks/{hook['id']}/deliveries/{first['id']}/resend"
    )
    assert status == 202, data
    again = data["delivery"]
    assert again["id"] != first["id"] and again["status"] == "pending"
    await until(lambda: len(good.of("channel.follow")) == 2, "the resent delivery")
    resent = good.of("channel.follow")[1]
    assert_signed(resent, hook["secret"], again["id"])
    assert resent.json["follower"] == followed.json["follower"]

    # A rotated secret signs from then on; the old one no longer verifies.
    status, data = await owned.call("POST", f"/api/channels/hooked/webhooks/{hook['id']}/secret")
    assert status == 200 and data["webhook"]["secret"] != hook["secret"]
    status, _ = await owned.call(
        "POST", f"/api/channels/hooked/webhooks/{hook['id']}/deliveries/{first['id']}/resend"
    )
    assert status == 202
    await until(lambda: len(good.of("channel.follow")) == 3, "the delivery after rotation")
    latest = good.of("channel.follow")[2]
    assert verify(
        data["webhook"]["secret"], latest.headers["X-AeThex-Signature"], latest.body, time.time()
    )
    assert not verify(
        hook["secret"], latest.headers["X-AeThex-Signature"], latest.body, time.time()
    )


async def _all_done(owned: Owned, hook_id: int, count: int) -> list[dict[str, Any]] | None:
    rows = await owned.deliveries(hook_id)
    if len(rows) >= count and all(r["status"] != "pending" for r in rows):
        return rows
    return None


async def test_a_failing_receiver_is_retried_with_growing_gaps_then_failed(
    server: Any, owned: Owned, receivers: Any
) -> None:
    broken = await receivers(status=500)
    hook = await owned.add_hook(broken.url, ["channel.follow"])
    await follow(server, "fan500", "hooked")
    rows = await until(lambda: _all_done(owned, hook["id"], 1), "the delivery to fail")
    (row,) = rows
    assert row["status"] == "failed", row
    assert row["attempts"] == ATTEMPTS
    assert row["last_status_code"] == 500
    assert row["last_error"].startswith("HTTP 500") and "broken" in row["last_error"]
    assert row["next_attempt_at"] is None
    assert len(broken.requests) == ATTEMPTS
    assert {r.headers["X-AeThex-Delivery"] for r in broken.requests} == {str(row["id"])}
    for request in broken.requests:
        assert_signed(request, hook["secret"])
    # Never sooner than the backoff: BACKOFF, then twice that (the gaps grow).
    gaps = [b.at - a.at for a, b in zip(broken.requests, broken.requests[1:], strict=False)]
    for i, gap in enumerate(gaps):
        assert gap >= BACKOFF * 2**i - 0.02, gaps
    # Counted on /metrics.
    sample = server.metrics.sample
    assert sample("aethex_webhook_attempts_total", outcome="retry") == ATTEMPTS - 1
    assert sample("aethex_webhook_attempts_total", outcome="failed") == 1
    assert sample("aethex_webhook_in_flight") == 0
    # Failed is final: nothing more comes.
    status, _ = await owned.call("GET", "/api/channels/hooked/webhooks")
    assert status == 200
    assert len(broken.requests) == ATTEMPTS


async def test_redirects_are_not_followed(server: Any, owned: Owned, receivers: Any) -> None:
    target = await receivers()
    mover = await receivers(status=307)
    mover.location = target.url
    hook = await owned.add_hook(mover.url, ["channel.follow"])
    await follow(server, "fan307", "hooked")
    rows = await until(lambda: _all_done(owned, hook["id"], 1), "the redirected delivery")
    assert rows[0]["status"] == "failed" and rows[0]["last_status_code"] == 307, rows
    assert len(mover.requests) == ATTEMPTS
    assert target.requests == []


async def test_a_receiver_that_never_answers_times_out_and_the_server_stays_responsive(
    server: Any, owned: Owned, receivers: Any
) -> None:
    silent = await receivers(hang=True)
    hook = await owned.add_hook(silent.url, ["channel.follow"])
    await follow(server, "fansilent", "hooked")
    await until(lambda: silent.waiting, "the receiver to hold a request")
    # While the delivery hangs, the site answers.
    status, data = await owned.call("GET", f"/api/channels/hooked/webhooks/{hook['id']}")
    assert status == 200 and data["webhook"]["id"] == hook["id"]
    async with owned.http.get("/") as r:
        assert r.status == 200
    rows = await until(lambda: _all_done(owned, hook["id"], 1), "the delivery to time out")
    (row,) = rows
    assert row["status"] == "failed" and row["attempts"] == ATTEMPTS, row
    assert row["last_status_code"] is None
    assert "no answer within" in row["last_error"]
    assert len(silent.requests) == ATTEMPTS


async def test_only_the_owner_manages_webhooks(server: Any, owned: Owned, receivers: Any) -> None:
    good = await receivers()
    hook = await owned.add_hook(good.url, ["channel.follow"])
    _, other = await make_user(server, "mallory")
    one = f"/api/channels/hooked/webhooks/{hook['id']}"
    for method, path, body in (
        ("GET", "/api/channels/hooked/webhooks", None),
        ("POST", "/api/channels/hooked/webhooks", {"url": good.url, "events": ["channel.follow"]}),
        ("GET", one, None),
        ("PATCH", one, {"enabled": False}),
        ("DELETE", one, None),
        ("POST", one + "/secret", None),
        ("GET", one + "/deliveries", None),
    ):
        status, data = await owned.call(method, path, body, token=other)
        assert status == 403, (method, path, data)
        assert data["error"]["code"] == "forbidden"
        status, data = await owned.call(method, path, body, token=None)
        assert status == 401, (method, path, data)
    status, _ = await owned.call("GET", "/api/channels/nope/webhooks")
    assert status == 404
    # Mallory's own channel cannot reach the creator's webhook by id.
    async with owned_channel(server, "mallory-tv", "mallory2") as theirs:
        status, data = await theirs.call("GET", f"/api/channels/mallory-tv/webhooks/{hook['id']}")
        assert status == 404, data
    status, _ = await owned.call("GET", "/api/channels/hooked/webhooks/abc")
    assert status == 404
    # The page too.
    async with aiohttp.ClientSession(owned.base, headers=auth(other)) as http:
        async with http.get("/dashboard/channels/hooked/webhooks") as r:
            assert r.status == 403
    async with aiohttp.ClientSession(owned.base, headers=auth(owned.token)) as http:
        async with http.get("/dashboard/channels/hooked/webhooks") as r:
            assert r.status == 200
            page = await r.text()
    assert hook["secret"] in page and good.url in page
    assert "X-AeThex-Signature" in page and "hmac.compare_digest" in page
    # Nothing changed.
    status, data = await owned.call("GET", one)
    assert status == 200 and data["webhook"] == hook


async def test_bad_input_is_a_400_in_the_error_shape(server: Any, owned: Owned) -> None:
    url = "http://127.0.0.1:9/hook"
    cases: list[Any] = [
        {"events": ["channel.follow"]},
        {"url": "ftp://example.org/x", "events": ["channel.follow"]},
        {"url": "not a url", "events": ["channel.follow"]},
        {"url": "http:///nohost", "events": ["channel.follow"]},
        {"url": "http://user:pw@example.org/", "events": ["channel.follow"]},
        {"url": "http://example.org:99999/", "events": ["channel.follow"]},
        {"url": "https://example.org/" + "a" * 2100, "events": ["channel.follow"]},
        {"url": 5, "events": ["channel.follow"]},
        {"url": url},
        {"url": url, "events": []},
        {"url": url, "events": ["stream.exploded"]},
        {"url": url, "events": "channel.follow"},
        {"url": url, "events": [1]},
        {"url": url, "events": ["channel.follow"], "payload_format": "xml"},
        {"url": url, "events": ["channel.follow"], "enabled": "yes"},
    ]
    for body in cases:
        status, data = await owned.call("POST", "/api/channels/hooked/webhooks", body)
        assert status == 400, (body, data)
        assert set(data["error"]) == {"code", "message"}, data
    status, data = await owned.call("GET", "/api/channels/hooked/webhooks")
    assert data["webhooks"] == []
    hook = await owned.add_hook(url, ["channel.follow"])
    one = f"/api/channels/hooked/webhooks/{hook['id']}"
    for body in ({"url": "gopher://x"}, {"events": []}, {"payload_format": "yaml"}):
        status, data = await owned.call("PATCH", one, body)
        assert status == 400, (body, data)
    status, data = await owned.call("GET", one + "/deliveries?limit=0")
    assert status == 400
    status, data = await owned.call("PATCH", one, {"events": ["stream.offline"], "enabled": False})
    assert status == 200
    assert data["webhook"]["events"] == ["stream.offline"] and not data["webhook"]["enabled"]
    # At most webhooks.max_per_channel endpoints.
    for _ in range(server.settings.webhooks.max_per_channel - 1):
        await owned.add_hook(url, ["channel.follow"])
    status, data = await owned.call(
        "POST", "/api/channels/hooked/webhooks", {"url": url, "events": ["channel.follow"]}
    )
    assert status == 400 and "at most" in data["error"]["message"]
    status, _ = await owned.call("DELETE", one)
    assert status == 204
    status, _ = await owned.call("GET", one)
    assert status == 404


async def test_private_addresses_are_refused_unless_allowed(
    settings_env: dict[str, str], receivers: Any
) -> None:
    env = webhook_env(
        settings_env,
        AETHEX_WEBHOOKS__ALLOW_PRIVATE_ADDRESSES="false",
        AETHEX_WEBHOOKS__MAX_ATTEMPTS="1",
    )
    good = await receivers()
    async with running_server(env) as server:
        async with owned_channel(server, "guarded", "careful") as owned:
            for url in (
                good.url,
                "http://localhost:8080/x",
                "http://10.1.2.3/x",
                "http://192.168.0.1/x",
                "http://169.254.169.254/latest/meta-data",
                "http://[::1]:8080/x",
                "http://[::ffff:127.0.0.1]/x",
                "http://0.0.0.0/x",
                "http://no-such-host.invalid/x",
            ):
                status, data = await owned.call(
                    "POST",
                    "/api/channels/guarded/webhooks",
                    {"url": url, "events": ["channel.follow"]},
                )
                assert status == 400, (url, data)
                assert data["error"]["message"].startswith("refused"), data
            # An endpoint already stored (say, before the setting was turned off) is checked
            # again at delivery: nothing reaches the receiver.
            async with server.db.session() as db:
                hook = await store.create_webhook(
                    db, owned.channel_id, url=good.url, events=["channel.follow"]
                )
                await db.commit()
            await follow(server, "fanx", "guarded")
            rows = await until(lambda: _all_done(owned, hook.id, 1), "the refused delivery")
            assert rows[0]["status"] == "failed", rows
            assert rows[0]["last_error"].startswith("refused"), rows
            assert good.requests == []


async def test_dashboard_forms_need_the_csrf_token(
    server: Any, owned: Owned, receivers: Any
) -> None:
    good = await receivers()
    page = "/dashboard/channels/hooked/webhooks"
    form = {"url": good.url, "events": ["channel.follow", "stream.online"], "enabled": "on"}
    async with await login(owned.base, "creator", "pw-123456789") as http:
        async with http.post(page, data=form, allow_redirects=False) as r:
            assert r.status == 403  # no CSRF field
        csrf = await csrf_of(http, owned.base)
        data = aiohttp.FormData()
        data.add_field("csrf_token", csrf)
        data.add_field("url", good.url)
        data.add_field("events", "channel.follow")
        data.add_field("events", "stream.online")
        data.add_field("payload_format", "discord")
        data.add_field("enabled", "on")
        async with http.post(page, data=data, allow_redirects=False) as r:
            assert r.status == 303, await r.text()
        status, listed = await owned.call("GET", "/api/channels/hooked/webhooks")
        (hook,) = listed["webhooks"]
        assert hook["events"] == ["stream.online", "channel.follow"]
        assert hook["payload_format"] == "discord" and hook["enabled"]
        # A bad URL shows the page again with the error.
        bad = aiohttp.FormData()
        bad.add_field("csrf_token", csrf)
        bad.add_field("url", "ftp://x")
        bad.add_field("events", "channel.follow")
        async with http.post(page, data=bad, allow_redirects=False) as r:
            assert r.status == 400
            assert "http:// or https://" in await r.text()
        # Resend from the page's form.
        await follow(server, "formfan", "hooked")
        await until(lambda: good.requests, "the follow delivery")
        rows = await owned.deliveries(hook["id"])
        resend = aiohttp.FormData()
        resend.add_field("csrf_token", csrf)
        async with http.post(
            f"{page}/{hook['id']}/deliveries/{rows[0]['id']}/resend",
            data=resend,
            allow_redirects=False,
        ) as r:
            assert r.status == 303
        await until(lambda: len(good.requests) == 2, "the resent delivery")
        assert good.requests[1].json["content"].startswith("formfan followed hooked")
        async with http.get(page) as r:
            text = await r.text()
        assert text.count('data-status="succeeded"') >= 1
        # The dashboard links here.
        async with http.get("/dashboard") as r:
            assert page in await r.text()
        # Delete through the form.
        gone = aiohttp.FormData()
        gone.add_field("csrf_token", csrf)
        async with http.post(f"{page}/{hook['id']}/delete", data=gone, allow_redirects=False) as r:
            assert r.status == 303
    status, listed = await owned.call("GET", "/api/channels/hooked/webhooks")
    assert listed["webhooks"] == []


async def test_a_restart_resumes_the_deliveries_still_due(
    settings_env: dict[str, str], receivers: Any
) -> None:
    """The first server gets a 500 and schedules a retry, then stops; the next server on the
    same data dir sends it when due, to the receiver now answering 200.

    Deliveries are at least once (README, Webhooks): on a slow machine the first server may
    still be stopping when the retry comes due, and try it (another 500, counted) or have it
    cut short by the stop after the receiver got it (not counted, given back and sent again
    by the next server). So the receiver may see more than two requests; what holds is that
    they are all the same delivery (one X-AeThex-Delivery id), that every counted attempt
    reached it, and that the delivery succeeded after the restart (the receiver answered 500
    until then)."""
    receiver = await receivers(status=500)
    env = webhook_env(
        settings_env, AETHEX_WEBHOOKS__BACKOFF_BASE="1.0", AETHEX_WEBHOOKS__MAX_ATTEMPTS="20"
    )
    async with running_server(env) as server:
        async with owned_channel(server, "resumed", "keeper") as owned:
            hook = await owned.add_hook(receiver.url, ["channel.follow"])
            await follow(server, "earlyfan", "resumed")
            await until(lambda: receiver.requests, "the first attempt")

            async def retry_scheduled() -> Any:
                rows = await owned.deliveries(hook["id"])
                return rows and rows[0]["attempts"] >= 1 and rows[0]["next_attempt_at"]

            await until(retry_scheduled, "the retry to be scheduled")
    before_restart = len(receiver.requests)
    receiver.status = 200
    async with running_server(env) as server:

        async def delivered() -> Any:
            async with server.db.session() as db:
                rows = await store.recent_deliveries(db, hook["id"], 10)
            return rows if rows and rows[0].status != "pending" else None

        rows = await until(delivered, "the resumed delivery")
    assert len(rows) == 1 and rows[0].status == "succeeded", rows
    assert len(receiver.requests) > before_restart  # the success came from the second server
    assert 2 <= rows[0].attempts <= len(receiver.requests), (rows, receiver.requests)
    assert {r.headers["X-AeThex-Delivery"] for r in receiver.requests} == {str(rows[0].id)}
    assert receiver.requests[-1].json["follower"]["username"] == "earlyfan"


async def test_a_delivery_in_flight_at_shutdown_is_due_again_at_once(
    settings_env: dict[str, str], receivers: Any
) -> None:
    """Stopping gives back the claim of an attempt it cut short (it does not count), so the
    next start sends it at once instead of after the claim's lease."""
    from storage import Database
    from storage.models import utcnow

    receiver = await receivers(hang=True)
    env = webhook_env(settings_env, AETHEX_WEBHOOKS__TIMEOUT="30")
    async with running_server(env) as server:
        url = server.settings.effective_database_url
        async with owned_channel(server, "cut", "cutter") as owned:
            hook = await owned.add_hook(receiver.url, ["channel.follow"])
            await follow(server, "cutfan", "cut")
            await until(lambda: receiver.waiting, "the attempt to be in flight")
    db = Database(url)
    await db.connect()
    try:
        async with db.session() as session:
            (row,) = await store.recent_deliveries(session, hook["id"], 10)
    finally:
        await db.dispose()
    assert row.status == "pending" and row.attempts == 0
    assert row.next_attempt_at is not None and row.next_attempt_at <= utcnow()
    receiver.hang = False
    async with running_server(env) as server:

        async def delivered() -> Any:
            async with server.db.session() as session:
                rows = await store.recent_deliveries(session, hook["id"], 10)
            return rows if rows and rows[0].status != "pending" else None

        rows = await until(delivered, "the delivery after the restart")
    assert rows[0].status == "succeeded" and rows[0].attempts == 1


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
async def test_storage_on_both_databases(
    database: str, tmp_path: Any, request: pytest.FixtureRequest
) -> None:
    """Queue, claim (two senders never take the same row), backoff, fail, resend, list and
    prune, on SQLite and on PostgreSQL."""
    from datetime import UTC, datetime, timedelta

    from storage import Database, upgrade

    if database == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'hooks.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    await asyncio.to_thread(upgrade, url)
    db = Database(url)
    await db.connect()
    t0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    try:
        async with db.session() as s:
            await queries.create_user(s, "owner", "owner@example.test", None)
            channel = await queries.create_channel(s, "owner", "pgshow")
            a = await store.create_webhook(
                s, channel.id, url="https://a.test/h", events=["channel.follow"]
            )
            b = await store.create_webhook(
                s,
                channel.id,
                url="https://b.test/h",
                events=["stream.online"],
                payload_format="discord",
            )
            off = await store.create_webhook(
                s, channel.id, url="https://c.test/h", events=["channel.follow"], enabled=False
            )
            await s.commit()
        assert {a.id, b.id, off.id} and a.secret != b.secret
        async with db.session() as s:
            ids = [
                await store.enqueue(s, channel.id, "channel.follow", {"n": n}, t0) for n in range(4)
            ]
            assert await store.enqueue(s, channel.id, "stream.offline", {}, t0) == []
            await s.commit()
        assert all(len(i) == 1 for i in ids)  # the disabled endpoint gets nothing

        async def claim(now: datetime, limit: int) -> list[store.DueDelivery]:
            async with db.session() as s:
                got = await store.claim_due(s, now, limit=limit, lease=60)
                await s.commit()
                return got

        first, second = await asyncio.gather(claim(t0, 2), claim(t0, 2))
        taken = [d.id for d in first + second]
        assert len(taken) == len(set(taken))  # never the same row twice
        assert {d.url for d in first + second} == {"https://a.test/h"}
        rest = await claim(t0, 10)
        assert {d.id for d in rest}.isdisjoint(taken)
        assert len(taken) + len(rest) == 4
        assert await claim(t0 + timedelta(seconds=30), 10) == []  # leased
        everyone = taken + [d.id for d in rest]

        delivery_id = everyone[0]
        now = t0
        async with db.session() as s:
            for attempt in range(1, 4):
                row = await store.record_attempt(
                    s,
                    delivery_id,
                    ok=False,
                    status_code=503,
                    error="HTTP 503 " + "x" * 1000,
                    now=now,
                    max_attempts=3,
                    backoff_base=10,
                    backoff_max=15,
                )
                assert row is not None and row.attempts == attempt
                if attempt < 3:
                    assert row.status == "pending"
                    assert row.next_attempt_at == now + timedelta(seconds=[10, 15][attempt - 1])
                    now = row.next_attempt_at
            assert row.status == "failed" and row.next_attempt_at is None
            assert len(row.last_error or "") == store.ERROR_COLUMN_LENGTH
            done = await store.record_attempt(
                s,
                everyone[1],
                ok=True,
                status_code=204,
                error=None,
                now=t0,
                max_attempts=3,
                backoff_base=10,
                backoff_max=15,
            )
            assert done is not None and done.status == "succeeded" and done.delivered_at == t0
            again = await store.resend(s, a.id, delivery_id, t0 + timedelta(hours=1))
            with pytest.raises(NotFoundError):
                await store.resend(s, b.id, delivery_id)
            await s.commit()
        assert again.id not in everyone and again.payload == {"n": 0}
        async with db.session() as s:
            latest = await store.recent_deliveries(s, a.id, 3)
            assert [r.id for r in latest][0] == again.id and len(latest) == 3
            due = await store.next_due_at(s)
            assert due is not None
            removed = await store.prune_deliveries(s, t0 + timedelta(days=1))
            assert removed == 2  # the failed and the succeeded; pending ones stay
            await store.delete_webhook(s, channel.id, a.id)
            with pytest.raises(NotFoundError):
                await store.get_webhook(s, channel.id, a.id)
            await s.commit()
            assert await store.recent_deliveries(s, a.id, 10) == []
    finally:
        await db.dispose()
