"""Counters shared by the nodes of a cluster through a real redis-server (issue 15): viewer
counts, chat rate limits and slow mode, failed logins and who is in chat.

Two nodes share one PostgreSQL database (tests/pg.py) and one Redis: in-process servers, and a
child ``aethex serve`` where a node must die with SIGKILL. The live edge is synthetic (the
parts are opaque bytes to HTTP; counting never looks inside them), put on both nodes as a node
serving the stream's HLS (owner or proxy) holds it. Every wait polls for the event with a
bound derived from the settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mediaserver.cluster.redis import SOCKET_TIMEOUT
from storage import queries
from storage.models import Stream
from tests.chat_support import ChatClient, auth, base_url, join, make_chat_channel, make_user
from tests.conftest import running_server, stop_server
from tests.integration.test_viewer_counting import synthetic_edge
from tests.redis_server import RedisServer
from tests.serve_process import serve_process
from webapp.keys import CHAT_KEY

pytestmark = pytest.mark.integration

SLUG = "crowd-tv"
UPDATE = 0.2  # hls.viewer_update_interval
TTL = 2.0  # cluster.counts_ttl
REFRESH = 0.3  # cluster.counts_refresh
# A dead node's entries are gone within the TTL, and every node notices at its next recount or
# refresh; the rest is slack for a loaded machine.
GONE_WITHIN = TTL + 2 * max(UPDATE, REFRESH) + 10.0


def node_env(
    settings_env: dict[str, str], postgres_url: str, redis_url: str, name: str, tmp: Path
) -> dict[str, str]:
    return {
        **settings_env,
        "AETHEX_DATA_DIR": str(tmp / name),
        "AETHEX_DATABASE_URL": postgres_url,
        "AETHEX_CLUSTER__REDIS_URL": redis_url,
        "AETHEX_CLUSTER__NODE_ID": name,
        "AETHEX_CLUSTER__COUNTS_TTL": str(TTL),
        "AETHEX_CLUSTER__COUNTS_REFRESH": str(REFRESH),
        "AETHEX_CHAT__BUS": redis_url,
        "AETHEX_HLS__VIEWER_UPDATE_INTERVAL": str(UPDATE),
        "AETHEX_HLS__VIEWER_TIMEOUT": "60",
        "AETHEX_HLS__MAX_SESSIONS_PER_ADDRESS": "50",
        "AETHEX_CHAT__RATE_LIMIT_MESSAGES": "3",
        "AETHEX_CHAT__RATE_LIMIT_WINDOW": "60",
        "AETHEX_CHAT__MUTE_SECONDS": "30",
        "AETHEX_AUTH__LOGIN_MAX_FAILURES": "3",
        "AETHEX_AUTH__LOGIN_FAILURE_DELAY_MIN": "0",
        "AETHEX_AUTH__LOGIN_FAILURE_DELAY_MAX": "0.01",
    }


@pytest.fixture
def envs(
    settings_env: dict[str, str], postgres_url: str, redis_url: str, tmp_path: Path
) -> tuple[dict[str, str], dict[str, str]]:
    return (
        node_env(settings_env, postgres_url, redis_url, "node-a", tmp_path),
        node_env(settings_env, postgres_url, redis_url, "node-b", tmp_path),
    )


async def until(what: str, check: Callable[[], Awaitable[bool]], within: float) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, f"not within {within:.1f} s: {what}"
        await asyncio.sleep(0.05)


def client(source: str) -> aiohttp.ClientSession:
    """An HTTP client whose connections come from the loopback address ``source``."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(source, 0)))


async def watch(base: str, source: str, players: int) -> None:
    """``players`` players at ``base`` from ``source``: each polls its media playlist with its
    session, and the address fetches a segment (what makes its sessions count)."""
    async with client(source) as http:
        who = source.replace(".", "-")
        for i in range(players):
            url = f"{base}/hls/{SLUG}/360p/index.m3u8?session=player-{who}-{i:04d}"
            async with http.get(url) as r:
                assert r.status == 200, await r.text()
        async with http.get(f"{base}/hls/{SLUG}/360p/seg0.m4s") as r:
            assert r.status == 200


async def row_viewers(server: Any, stream_id: int) -> int:
    async with server.db.session() as db:
        return int((await db.get(Stream, stream_id)).viewer_count)


async def test_viewers_on_two_nodes_are_summed_and_a_dead_node_drops_out(envs) -> None:
    env_a, env_b = envs
    async with running_server(env_a) as a, running_server(env_b) as b:
        channel_id, _, _ = await make_chat_channel(a, "carol", SLUG)
        now = datetime.now(UTC)
        async with a.db.session() as db:
            stream_id = (await queries.start_stream(db, channel_id, now)).id
            await db.commit()
        # Node A ingests the stream; both serve its HLS.
        live = a.registry.start(
            channel_id=channel_id, slug=SLUG, stream_id=stream_id, started_at=now
        )
        a.broadcasts.edges.put(synthetic_edge(stream_id))
        b.broadcasts.edges.put(synthetic_edge(stream_id))
        async with aiohttp.ClientSession() as http:
            chat_a = await join(http, base_url(a), SLUG)
            chat_b = await join(http, base_url(b), SLUG)
            await watch(base_url(a), "127.0.0.2", 3)
            await watch(base_url(b), "127.0.0.3", 2)
            # The total on both: the origin's registry and the row (the API, the home page,
            # the other nodes' chat), and stream:viewers in chat on either node.
            await until("A's total is 5", lambda: _is(live.viewers, 5), 15)
            await until("the row says 5", lambda: _eq(row_viewers(a, stream_id), 5), 15)
            await chat_a.next("stream:viewers", timeout=15, viewers=5)
            await chat_b.next("stream:viewers", timeout=15, viewers=5)
            async with http.get(f"{base_url(a)}/api/channels/{SLUG}/live") as r:
                assert (await r.json())["viewers"] == 5
            # Each node's gauge stays its own count (Prometheus sums the nodes).
            assert a.metrics.sample("aethex_viewers", channel=SLUG) == 3
            assert b.metrics.sample("aethex_viewers", channel=SLUG) == 2
            # Node B stops refreshing (its recount loop ends with it): its two players drop
            # out of the total once its entry expires.
            await chat_b.ws.close()
            started = time.monotonic()
            await stop_server(b)
            await until("B's players leave the total", lambda: _is(live.viewers, 3), GONE_WITHIN)
            assert time.monotonic() - started >= TTL - 2 * UPDATE - 0.5  # not dropped early
            await chat_a.next("stream:viewers", timeout=GONE_WITHIN, viewers=3)
            await until("the row says 3", lambda: _eq(row_viewers(a, stream_id), 3), 15)
            await chat_a.ws.close()
        b.stop = _noop  # type: ignore[method-assign]  # stopped above


async def _noop() -> None:
    return None


async def _is(value: object, expected: object) -> bool:
    return value == expected


async def _eq(value: Awaitable[object], expected: object) -> bool:
    return await value == expected


async def post_message(http: aiohttp.ClientSession, base: str, token: str, text: str) -> Any:
    async with http.post(
        f"{base}/api/messages", headers=auth(token), json={"channel": SLUG, "content": text}
    ) as r:
        body = await r.json()
        return r.status, body


async def test_chat_rate_limit_and_slow_mode_hold_across_nodes(envs) -> None:
    env_a, env_b = envs
    async with running_server(env_a) as a, running_server(env_b) as b:
        _, _, owner = await make_chat_channel(a, "carol", SLUG)
        _, token = await make_user(a, "chatty")
        bases = [base_url(a), base_url(b)]
        async with aiohttp.ClientSession() as http:
            # Three messages per window (chat.rate_limit_messages), sent to both nodes: the
            # fourth is refused whichever node it reaches, and so is the next on the other.
            for i in range(3):
                status, body = await post_message(http, bases[i % 2], token, f"hello {i}")
                assert status == 201, body
            status, body = await post_message(http, bases[1], token, "one too many")
            assert status == 429 and body["error"]["code"] == "rate_limited", body
            status, body = await post_message(http, bases[0], token, "and on the other")
            assert status == 429 and body["error"]["code"] == "rate_limited", body

            # Slow mode: one message per 30 s per user, whichever node takes it.
            async with http.patch(
                f"{bases[0]}/api/channels/{SLUG}/chat/settings",
                headers=auth(owner),
                json={"slow_mode_seconds": 30},
            ) as r:
                assert r.status == 200, await r.text()
            _, slow = await make_user(a, "slowpoke")
            status, body = await post_message(http, bases[0], slow, "first")
            assert status == 201, body

            async def refused_on_b() -> bool:
                # B learns of the new setting through the bus; until then it has no reason
                # to refuse, and a message it accepts would show the limit is per node.
                state = await b._runner.app[CHAT_KEY].state(SLUG)
                return state is not None and state.slow_mode_seconds == 30

            await until("B has slow mode on", refused_on_b, 15)
            status, body = await post_message(http, bases[1], slow, "second, on B")
            assert status == 429 and body["error"]["code"] == "slow_mode", body


async def login_status(http: aiohttp.ClientSession, base: str, password: str) -> tuple[int, Any]:
    async with http.post(
        f"{base}/api/auth/login", json={"username": "victim", "password": password}
    ) as r:
        return r.status, await r.json()


async def test_failed_logins_on_two_nodes_add_up(envs) -> None:
    env_a, env_b = envs
    async with running_server(env_a) as a, running_server(env_b) as b:
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{base_url(a)}/api/auth/register",
                json={
                    "username": "victim",
                    "email": "victim@example.test",
                    "password": "correct horse battery",
                },
            ) as r:
                assert r.status == 201, await r.text()
        bases = [base_url(a), base_url(b)]
        async with aiohttp.ClientSession() as http:
            # auth.login_max_failures = 3 from one address, spread over both nodes.
            for i in range(3):
                status, body = await login_status(http, bases[i % 2], "wrong password")
                assert status == 401, body
            for base in bases:
                status, body = await login_status(http, base, "correct horse battery")
                assert status == 429 and body["error"]["code"] == "too_many_attempts", body


@contextlib.asynccontextmanager
async def node_process(env: dict[str, str]) -> AsyncIterator[tuple[str, subprocess.Popen[bytes]]]:
    """``aethex serve`` as a child process on its own ports (the shared runner: ready when they
    accept, a failure at once with its log if it exits first)."""
    async with serve_process({**env, "AETHEX_LOG__LEVEL": "warning"}) as server:
        yield server.base, server.proc


def usernames(users: list[dict[str, Any]]) -> set[str]:
    return {u["username"] for u in users}


async def test_presence_spans_nodes_and_a_killed_nodes_users_leave(envs) -> None:
    env_a, env_b = envs
    async with running_server(env_a) as a:
        await make_chat_channel(a, "carol", SLUG)
        _, ann = await make_user(a, "ann")
        _, bob = await make_user(a, "bob")
        async with node_process(env_b) as (base_b, proc), aiohttp.ClientSession() as http:
            on_a = await join(http, base_url(a), SLUG, ann)
            on_b = await join(http, base_b, SLUG, bob)
            while "bob" not in usernames(
                (await on_a.next("chat:user-joined", timeout=15))["users"]
            ):
                pass
            # A reader joining either node later sees both, wherever they are connected.
            for base in (base_url(a), base_b):
                ws = await http.ws_connect(f"{base}/ws/chat/{SLUG}")
                late = ChatClient(ws)
                history = await late.next("chat:history", timeout=15)
                assert usernames(history["users"]) == {"ann", "bob"}, history["users"]
                await ws.close()
            # Node B dies without a word: bob leaves the room on A once B's entry expires.
            proc.send_signal(signal.SIGKILL)
            left = await on_a.next("chat:user-left", timeout=GONE_WITHIN)
            assert usernames(left["users"]) == {"bob"}
            assert usernames(a._runner.app[CHAT_KEY].rooms[SLUG].viewer_list()) == {"ann"}
            await on_a.ws.close()
            await on_b.ws.close()


async def test_a_redis_outage_falls_back_to_each_nodes_own_counts(
    settings_env, postgres_url, redis_server: RedisServer, tmp_path
) -> None:
    # The chat bus stays in memory here: this is about the counters, not the bus.
    env = node_env(settings_env, postgres_url, redis_server.url, "node-a", tmp_path)
    env["AETHEX_CHAT__BUS"] = "memory"
    async with running_server(env) as a:
        channel_id, _, _ = await make_chat_channel(a, "carol", SLUG)
        _, token = await make_user(a, "chatty")
        now = datetime.now(UTC)
        async with a.db.session() as db:
            stream_id = (await queries.start_stream(db, channel_id, now)).id
            await db.commit()
        live = a.registry.start(
            channel_id=channel_id, slug=SLUG, stream_id=stream_id, started_at=now
        )
        a.broadcasts.edges.put(synthetic_edge(stream_id))
        base = base_url(a)
        async with aiohttp.ClientSession() as http:
            chat = await join(http, base, SLUG, token)
            status, body = await post_message(http, base, token, "before")
            assert status == 201, body
            redis_server.stop()
            # Viewers: this node's own count.
            await watch(base, "127.0.0.2", 2)
            await until("the local count", lambda: _is(live.viewers, 2), 15)
            # Chat: sent, and still limited by this node (3 per window; one was before).
            for i in range(2):
                status, body = await post_message(http, base, token, f"during {i}")
                assert status == 201, body
            status, body = await post_message(http, base, token, "too many")
            assert status == 429 and body["error"]["code"] == "rate_limited", body
            # Logins: refused as wrong, not a 500.
            async with http.post(
                f"{base}/api/auth/login", json={"username": "chatty", "password": "nope"}
            ) as r:
                assert r.status == 401, await r.text()
            assert await chat.next("chat:message", content="during 1")
            for what in ("viewers", "chat_limits", "logins"):
                assert (a.metrics.sample("aethex_cluster_redis_errors_total", what=what) or 0) > 0
            # Redis back: the counts are shared again.
            redis_server.start()
            await watch(base, "127.0.0.3", 1)
            await until("the count through Redis", lambda: _is(live.viewers, 3), 15)
            await chat.ws.close()


def test_counts_ttl_must_outlast_the_refreshes(settings_env) -> None:
    from mediaserver.settings import SettingsError, load_settings

    env = {**settings_env, "AETHEX_CLUSTER__REDIS_URL": "redis://127.0.0.1:6379/0"}
    with pytest.raises(SettingsError, match="cluster.counts_ttl"):
        load_settings(None, env={**env, "AETHEX_CLUSTER__COUNTS_TTL": "3"})  # 2 x 5 s recount
    with pytest.raises(SettingsError, match="cluster.counts_refresh"):
        load_settings(None, env={**env, "AETHEX_CLUSTER__COUNTS_REFRESH": "0"})
    load_settings(None, env={**env, "AETHEX_CLUSTER__COUNTS_TTL": "10"})
    # One node (no Redis) has no shared entries to keep alive.
    load_settings(None, env={**settings_env, "AETHEX_CLUSTER__COUNTS_TTL": "3"})


async def test_a_hung_redis_costs_a_timeout_not_an_error(
    settings_env, postgres_url, redis_server: RedisServer, tmp_path
) -> None:
    """SIGSTOP: Redis accepts nothing and answers nothing. A message waits at most the client's
    timeout once, then the node falls back at once while the backoff lasts."""
    env = node_env(settings_env, postgres_url, redis_server.url, "node-a", tmp_path)
    env["AETHEX_CHAT__BUS"] = "memory"
    async with running_server(env) as a:
        await make_chat_channel(a, "carol", SLUG)
        _, token = await make_user(a, "chatty")
        base = base_url(a)
        async with aiohttp.ClientSession() as http:
            status, body = await post_message(http, base, token, "before")
            assert status == 201, body
            assert redis_server.proc is not None
            redis_server.proc.send_signal(signal.SIGSTOP)
            try:
                status, body = await post_message(http, base, token, "while hung")
                assert status == 201, body
                started = time.monotonic()
                status, body = await post_message(http, base, token, "right after")
                assert status == 201, body
                # Not another Redis timeout (2 s): the backoff answered from memory.
                assert time.monotonic() - started < SOCKET_TIMEOUT
            finally:
                redis_server.proc.send_signal(signal.SIGCONT)
        assert (a.metrics.sample("aethex_cluster_redis_errors_total", what="chat_limits") or 0) > 0


async def test_the_scripts_against_redis(redis_url: str) -> None:
    """The Redis side alone: what each script answers, with two nodes' views of one Redis."""
    import redis.asyncio as aioredis

    from mediaserver.cluster.counts import ClusterCounts

    r = aioredis.from_url(redis_url, decode_responses=True)
    try:
        one, two = ClusterCounts(r, "n1", 60.0), ClusterCounts(r, "n2", 0.5)
        # Viewers: summed; a node whose count fell to 0 leaves; an expired node leaves.
        assert await one.viewer_totals({"ch": 3}, []) == {"ch": 3}
        assert await two.viewer_totals({"ch": 4}, ["other"]) == {"ch": 7, "other": 0}
        deadline = time.monotonic() + 10
        while (await one.viewer_totals({}, ["ch"]))["ch"] != 3:  # n2's TTL is 0.5 s
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert await one.viewer_totals({"ch": 0}, []) == {"ch": 0}
        assert await r.smembers("aethex:viewers:ch") == set()
        # Chat: 2 per 60 s, then muted 30 s; slow mode 10 s.
        assert await one.chat_admit(1, 9, 0, 2, 60, 30) == ("ok", 0)
        assert await two.chat_admit(1, 9, 0, 2, 60, 30) == ("ok", 0)
        verdict, wait = await one.chat_admit(1, 9, 0, 2, 60, 30)
        assert verdict == "rate_limited" and wait == 30
        verdict, wait = await two.chat_admit(1, 9, 0, 2, 60, 30)
        assert verdict == "muted" and 29 < wait <= 30
        assert await one.chat_admit(1, 8, 10, 2, 60, 30) == ("ok", 0)
        verdict, wait = await two.chat_admit(1, 8, 10, 2, 60, 30)
        assert verdict == "slow_mode" and 9 < wait <= 10
        assert await two.chat_admit(2, 8, 10, 2, 60, 30) == ("ok", 0)  # another channel
        # Logins: a sliding window per key, the first limit reached named by its index.
        limits = [("user:1@a", 2), ("addr:a", 3)]
        assert await one.login_retry_after(limits, 60) is None
        await one.login_failure(limits, 60)
        await two.login_failure(limits, 60)
        index, wait = await two.login_retry_after(limits, 60) or (None, 0.0)
        assert index == 0 and 59 < wait <= 60
        await one.login_clear("user:1@a")
        assert await one.login_retry_after(limits, 60) is None
        await one.login_failure([("addr:a", 3)], 60)
        assert (await one.login_retry_after(limits, 60) or (None,))[0] == 1
        # Presence: the union of the nodes' hashes, a user on both nodes counted twice.
        ann = {"id": 1, "username": "ann", "display_name": "Ann"}
        bob = {"id": 2, "username": "bob", "display_name": "bob"}
        await one.presence_put({"room": [ann, bob]})
        await two.presence_change("room", ann, True)
        room = (await one.presence_read(["room"]))["room"]
        assert room == {1: (ann, 2), 2: (bob, 1)}
        await one.presence_change("room", bob, False)
        await one.presence_put({"room": [ann]})
        deadline = time.monotonic() + 10
        while (await one.presence_read(["room"]))["room"] != {1: (ann, 1)}:  # n2's TTL
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
    finally:
        await r.aclose()
