"""The join history comes from each room's in-memory window (webapp/chat/recent.py): it must
say what the DB says after sends and deletes, and a storm of joins must not query the DB per
socket (a tiny connection pool would otherwise time joins out)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
from chat_support import auth, base_url, join, make_chat_channel, make_user

from storage.chat import recent_messages as db_recent_messages  # the unwrapped query

pytestmark = pytest.mark.asyncio


@pytest.fixture
def history_env(settings_env: dict[str, str]) -> dict[str, str]:
    # history 20 -> the window keeps 40: 60 messages make it slide.
    return {
        **settings_env,
        "AETHEX_CHAT__HISTORY": "20",
        "AETHEX_CHAT__RATE_LIMIT_MESSAGES": "100000",
    }


def _count_loads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Wrap the storage function the history load calls; the list grows by one per call."""
    from storage import chat as chat_store

    calls: list[int] = []
    real = chat_store.recent_messages

    async def counted(*args: Any, **kw: Any) -> Any:
        calls.append(1)
        return await real(*args, **kw)

    monkeypatch.setattr(chat_store, "recent_messages", counted)
    return calls


async def _db_history(
    server: Any, channel_id: int, limit: int, exclude: tuple[int, ...] = ()
) -> list[tuple[int, int, str]]:
    async with server.db.session() as session:
        rows = await db_recent_messages(session, channel_id, limit, exclude_users=exclude)
    return [(r.id, r.user_id, r.content) for r in rows]


def _shown(history: dict[str, Any]) -> list[tuple[int, int, str]]:
    return [(m["id"], m["user"]["id"], m["content"]) for m in history["messages"]]


async def test_history_from_memory_matches_db(
    history_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from conftest import running_server

    loads = _count_loads(monkeypatch)
    async with running_server(history_env) as server:
        channel_id, _, owner = await make_chat_channel(server, "histown", "hist")
        a_id, a_tok = await make_user(server, "talka")
        b_id, b_tok = await make_user(server, "talkb")
        c_id, c_tok = await make_user(server, "reader")
        base = base_url(server)
        async with aiohttp.ClientSession() as http:
            viewer = await join(http, base, "hist")
            assert loads == [1]  # the window was loaded by the first join, empty
            reader = await join(http, base, "hist", c_tok)
            wa = await join(http, base, "hist", a_tok)
            wb = await join(http, base, "hist", b_tok)
            for i in range(60):
                await (wa if i % 2 == 0 else wb).say(f"m{i}")
            await viewer.next("chat:message", timeout=10, content="m59")
            ids = [m["id"] for m in viewer.messages()]
            assert len(ids) == 60
            # The window slid (40 kept) and the joins served from it match the DB.
            fresh = await join(http, base, "hist")
            hist = fresh.events[0]
            assert _shown(hist) == await _db_history(server, channel_id, 20)
            assert [m["content"] for m in hist["messages"]] == [f"m{i}" for i in range(40, 60)]

            # Delete one message inside the served window and one kept but older than it.
            for mid in (ids[50], ids[25]):
                async with http.delete(f"{base}/api/messages/{mid}", headers=auth(owner)) as r:
                    assert r.status == 200, await r.text()
                await viewer.next("chat:deleted", id=mid)
            fresh = await join(http, base, "hist")
            shown = _shown(fresh.events[0])
            assert shown == await _db_history(server, channel_id, 20)
            assert ids[50] not in [s[0] for s in shown] and shown[0][0] == ids[39]

            # A reader who blocks talkb: their next socket gets the kept window (messages from
            # ids[20] on, 40 kept minus the 2 deleted) without talkb's, the last 20 of them:
            # what the DB holds in that id range for a query that excludes talkb. (Not the
            # DB's last 20 overall: that could reach back past the window; see recent.py.)
            async with http.post(f"{base}/api/users/{b_id}/block", headers=auth(c_tok)) as r:
                assert r.status == 201, await r.text()
            service = _service(server)
            deadline = time.monotonic() + 5
            while b_id not in service._blocked[c_id][0]:  # the reload after the block
                assert time.monotonic() < deadline, "the block never reached the reader's set"
                await asyncio.sleep(0.02)
            second = await join(http, base, "hist", c_tok)
            shown = _shown(second.events[0])
            kept = [
                r
                for r in await _db_history(server, channel_id, 100, exclude=(b_id,))
                if r[0] >= ids[20]
            ]
            assert shown == kept[-20:] and len(shown) == 19
            assert all(uid == a_id for _, uid, _ in shown)
            await wb.say("hidden from the reader")
            await wa.say("seen by the reader")
            await second.next("chat:message", content="seen by the reader")
            assert all(m["user"]["id"] != b_id for m in second.messages())

            # Every join above was served from memory: still only the one load.
            assert loads == [1]
            for c in (viewer, reader, wa, wb, fresh, second):
                await c.ws.close()


def _service(server: Any) -> Any:
    from webapp.chat import CHAT_KEY

    assert server._runner is not None
    return server._runner.app[CHAT_KEY]


@pytest.fixture
def tiny_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every engine the server makes gets one pooled connection and a 2 s checkout timeout."""
    from sqlalchemy.pool import AsyncAdaptedQueuePool

    import storage.db

    real = storage.db.create_async_engine

    def tiny(url: Any, **kw: Any) -> Any:
        if "poolclass" in kw:  # the migrations' own engine: leave it alone
            return real(url, **kw)
        # A queue pool even for SQLite (which defaults to NullPool: unlimited connections).
        return real(
            url, poolclass=AsyncAdaptedQueuePool, pool_size=1, max_overflow=0, pool_timeout=2, **kw
        )

    monkeypatch.setattr(storage.db, "create_async_engine", tiny)


async def _storm(http: aiohttp.ClientSession, base: str, n: int) -> list[Any]:
    return await asyncio.gather(*(join(http, base, "storm") for _ in range(n)))


async def test_join_storm_needs_one_history_query(
    settings_env: dict[str, str], tiny_pool: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conftest import running_server

    n = 300
    # 300 sockets from one address: past http.max_connections_per_address, which is not what
    # this test is about.
    env = {**settings_env, "AETHEX_HTTP__MAX_CONNECTIONS_PER_ADDRESS": "0"}
    async with running_server(env) as server:
        _, _, owner = await make_chat_channel(server, "stormown", "storm")
        base = base_url(server)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            w = await join(http, base, "storm", owner)
            for i in range(3):
                await w.say(f"before {i}")
                await w.next("chat:message", content=f"before {i}")
            await w.ws.close()
            await asyncio.sleep(0.1)  # the room empties and forgets its window
            loads = _count_loads(monkeypatch)

            # A cold room: 300 sockets join at once; one load serves them all.
            start = time.monotonic()
            first = await _storm(http, base, n)
            took = time.monotonic() - start
            assert len(loads) == 1, f"{len(loads)} history queries for {n} joins"
            for c in first:
                assert [m["content"] for m in c.events[0]["messages"]] == [
                    "before 0",
                    "before 1",
                    "before 2",
                ]
            assert took < 20, f"{n} joins took {took:.1f} s"

            # The room is warm: with the pool's only connection held elsewhere any query
            # would wait 2 s and fail, yet 300 more joins all get their history at once.
            async with server.db.engine.connect():
                start = time.monotonic()
                second = await _storm(http, base, n)
                took = time.monotonic() - start
            assert len(loads) == 1
            assert all(len(c.events[0]["messages"]) == 3 for c in second)
            assert took < 20, f"{n} warm joins took {took:.1f} s"
            await asyncio.gather(*(c.ws.close() for c in first + second))


def _msg(mid: int, uid: int = 1) -> dict[str, Any]:
    return {
        "type": "chat:message",
        "id": mid,
        "content": f"c{mid}",
        "user": {"id": uid, "username": "u", "display_name": "u", "badges": []},
        "created_at": "2026-01-01T00:00:00Z",
    }


async def test_window_load_races_and_refills() -> None:
    """Events delivered while the load runs are merged by id; deletions that leave fewer than
    ``size`` while older messages exist make the next read load again (once for everyone)."""
    from webapp.chat.recent import RecentMessages

    db = {i: _msg(i, uid=2 if i == 10 else 1) for i in range(1, 11)}  # ids 1..10 stored
    gate = asyncio.Event()
    calls = 0

    async def load(limit: int) -> list[dict[str, Any]]:
        nonlocal calls
        calls += 1
        snapshot = [db[k] for k in sorted(db)][-limit:]
        await gate.wait()
        return snapshot

    recent = RecentMessages(3)  # keeps 6
    readers = [asyncio.ensure_future(recent.window(load)) for _ in range(50)]
    await asyncio.sleep(0)
    # During the load: id 11 is stored and delivered, id 9 (in the snapshot) deleted, and a
    # late delivery of id 10 (already in the snapshot) arrives.
    db[11] = _msg(11)
    recent.apply(db[11])
    del db[9]
    recent.apply({"type": "chat:deleted", "id": 9})
    recent.apply(db[10])
    gate.set()
    await asyncio.gather(*readers)
    assert calls == 1
    assert recent.ids == [5, 6, 7, 8, 10, 11] and not recent.complete
    assert [e["id"] for e in recent.for_reader(set())] == [8, 10, 11]
    # Deletions down to 2 kept: the next read loads again and matches the store.
    for mid in (5, 6, 7, 8):
        del db[mid]
        recent.apply({"type": "chat:deleted", "id": mid})
    assert recent.stale
    await asyncio.gather(*(recent.window(load) for _ in range(10)))
    assert calls == 2 and recent.ids == [1, 2, 3, 4, 10, 11]
    assert [e["id"] for e in recent.for_reader(set())] == [4, 10, 11]
    assert [e["id"] for e in recent.for_reader({2})] == [3, 4, 11]  # a reader who blocked 2
