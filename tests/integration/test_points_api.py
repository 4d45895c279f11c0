"""Channel points through a real server (issue 16): accrual only for login sessions whose
player fetches media, batched in a flush of a fixed number of statements; rewards, redemptions
and the queue; predictions; every action's permission check; bad input; the live events in the
chat room. One server for the whole file.

The live edge is synthetic (parts are opaque bytes to HTTP, as in test_viewer_counting); the
accrual clock is set by the test, so the points credited are exact.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from chat_support import auth, base_url, join, make_chat_channel, make_user
from conftest import running_server
from sqlalchemy import event

from storage import chat as chat_queries
from storage import follows, queries
from storage import points as store
from tests.accounts import csrf_of, register, user_of
from transcode.edge import LiveEdge, RenditionEdge
from transcode.hls import LivePlaylist, PartReady
from webapp.points import ACCRUAL_KEY

pytestmark = pytest.mark.integration

SLUG = "pts"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def synthetic_edge(stream_id: int) -> LiveEdge:
    edge = LiveEdge(SLUG, stream_id, 4)
    rendition = edge.renditions["360p"] = RenditionEdge(
        name="360p",
        init=b"init" * 16,
        codecs="avc1.64001e,mp4a.40.2",
        width=640,
        height=360,
        frame_rate=30.0,
        playlist=LivePlaylist(segment_duration=1.0, part_target=0.5, window_segments=4),
        bandwidth=800_000,
        average_bandwidth=700_000,
    )
    rendition.add_part(
        PartReady(segment=0, index=0, data=b"media " * 64, duration=0.5, independent=True)
    )
    edge.notify()
    return edge


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    token: str | None = None,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    async with http.request(
        method, url, json=body, headers={**auth(token), **(headers or {})}
    ) as r:
        data = await r.json() if r.content_type == "application/json" else await r.text()
        return r.status, data


async def test_points_end_to_end(settings_env: dict[str, str]) -> None:
    env = {
        **settings_env,
        "AETHEX_POINTS__FLUSH_INTERVAL": "3600",  # the test flushes when it wants
        "AETHEX_POINTS__PUBLISH_INTERVAL": "0.05",
        "AETHEX_POINTS__MIN_WINDOW": "10",
        "AETHEX_HLS__VIEWER_TIMEOUT": "60",
    }
    async with running_server(env) as server:
        app = server._runner.app
        base = base_url(server)
        channel_id, owner_id, owner = await make_chat_channel(server, "host", SLUG)
        other_channel, _, _ = await make_chat_channel(server, "elsewhere", "other-pts")
        mod_id, mod = await make_user(server, "mod")
        far_id, far_mod = await make_user(server, "farmod")
        viewer_id, viewer = await make_user(server, "viewer")
        async with server.db.session() as db:
            await chat_queries.add_moderator(db, channel_id, mod_id, owner_id)
            await chat_queries.add_moderator(db, other_channel, far_id, owner_id)
            row = await queries.start_stream(db, channel_id, datetime.now(UTC), "Live")
            await db.commit()
        server.registry.start(
            channel_id=channel_id, slug=SLUG, stream_id=row.id, started_at=datetime.now(UTC)
        )
        server.broadcasts.edges.put(synthetic_edge(row.id))
        accrual = app[ACCRUAL_KEY]
        clock = Clock()
        accrual.clock = clock

        async with (
            await register(base, "watcher") as watcher,
            await register(base, "lurker") as lurker,
            aiohttp.ClientSession() as http,
        ):
            me = await user_of(watcher, base)
            assert not me["is_admin"]
            lurker_id = (await user_of(lurker, base))["id"]
            wh = {"X-CSRF-Token": await csrf_of(watcher, base)}
            lh = {"X-CSRF-Token": await csrf_of(lurker, base)}
            playlist = f"{base}/hls/{SLUG}/360p/index.m3u8"
            # The watcher's player polls the playlist and fetches media; the lurker's page
            # polls the playlist only (same address: the address did fetch media).
            for who, sid in ((watcher, "w" * 20), (lurker, "l" * 20)):
                async with who.get(f"{playlist}?session={sid}") as r:
                    assert r.status == 200
                    text = await r.text()
            part = next(
                line.split('URI="')[1].split('"')[0]
                for line in text.splitlines()
                if line.startswith("#EXT-X-PART:")
            )
            async with watcher.get(f"{base}/hls/{SLUG}/360p/{part}") as r:
                assert r.status == 200
                await r.read()

            async def beat(who: aiohttp.ClientSession, headers: dict[str, str]) -> bool:
                status, data = await call(
                    who,
                    "POST",
                    f"{base}/api/points/heartbeat",
                    body={"slug": SLUG},
                    headers=headers,
                )
                assert status == 200, data
                return data["credited"]

            # Follow (bonus) and chat (bonus) for the watcher.
            async with server.db.session() as db:
                await follows.follow(db, me["id"], channel_id)
                await chat_queries.insert_messages(
                    db,
                    [
                        chat_queries.NewMessage(
                            channel_id, row.id, me["id"], "hi", datetime.now(UTC)
                        )
                    ],
                )
                await db.commit()
            for t in (1000.0, 1030.0, 1060.0):
                clock.now = t
                assert await beat(watcher, wh) is True
                assert await beat(lurker, lh) is False  # no media fetched by this login
            # A bearer token has no login session that fetched anything.
            status, data = await call(
                http, "POST", f"{base}/api/points/heartbeat", viewer, {"slug": SLUG}
            )
            assert (status, data["credited"]) == (200, False)
            status, _ = await call(
                http, "POST", f"{base}/api/points/heartbeat", None, {"slug": SLUG}
            )
            assert status == 401
            status, data = await call(http, "POST", f"{base}/api/points/heartbeat", viewer, {})
            assert status == 400 and data["error"]["code"] == "missing_field"

            # One flush: a fixed number of statements, whatever the number of watchers.
            # Only the flush's own statements: the server's other writers (history, analytics,
            # notifications...) may run one on the same engine while the flush awaits.
            statements: list[str] = []
            flushing = asyncio.ensure_future(accrual.flush())

            def count(conn, cursor, statement, *args) -> None:
                if asyncio.current_task() is flushing:
                    statements.append(statement)

            engine = server.db.engine.sync_engine
            event.listen(engine, "before_cursor_execute", count)
            try:
                assert await flushing == 3  # earned_watch, follow and chat bonuses
            finally:
                event.remove(engine, "before_cursor_execute", count)
            assert len(statements) == 5, statements  # 3 reads, 1 INSERT, 1 upsert
            async with server.db.session() as db:
                assert await store.balance(db, me["id"], channel_id) == 2 + 1 + 1
                assert await store.balance(db, lurker_id, channel_id) == 0
                assert await store.ledger_mismatches(db) == []
            assert accrual.pending_seconds(me["id"], channel_id) == 0

            # Settings: the owner's only; a rate too high is a 400.
            url = f"{base}/api/channels/{SLUG}/points/settings"
            assert (await call(http, "PUT", url, viewer, {"watch_rate": 5}))[0] == 403
            assert (await call(http, "PUT", url, mod, {"watch_rate": 5}))[0] == 403
            status, data = await call(http, "PUT", url, owner, {"watch_rate": 10**6})
            assert status == 400 and data["error"]["code"] == "invalid"
            status, data = await call(http, "PUT", url, owner, {"watch_rate": 5, "chat_bonus": 0})
            assert status == 200 and data["watch_rate"] == 5

            # Rewards: the owner's only.
            rewards = f"{base}/api/channels/{SLUG}/rewards"
            assert (await call(http, "POST", rewards, viewer, {"title": "x", "cost": 1}))[0] == 403
            assert (await call(http, "POST", rewards, mod, {"title": "x", "cost": 1}))[0] == 403
            for bad in (
                {"title": "", "cost": 5},
                {"title": "a", "cost": 0},
                {"title": "a"},
                {"title": 3, "cost": 1},
            ):
                status, data = await call(http, "POST", rewards, owner, bad)
                assert status == 400 and "error" in data, (bad, data)
            status, data = await call(
                http,
                "POST",
                rewards,
                owner,
                {"title": "Hydrate", "cost": 3, "max_per_user_per_stream": 5},
            )
            assert status == 201
            hydrate = data["reward"]["id"]
            status, data = await call(
                http, "POST", rewards, owner, {"title": "Song", "cost": 2, "prompt": "Which song?"}
            )
            song = data["reward"]["id"]
            assert (await call(http, "PATCH", f"{rewards}/{hydrate}", mod, {"cost": 1}))[0] == 403

            # Redeeming: points are spent; short of points is a 409; a prompt needs a text.
            async with server.db.session() as db:
                await store.credit(db, [store.Credit(viewer_id, channel_id, 10, "earned_watch")])
                await db.commit()
            async with aiohttp.ClientSession() as room_http:
                room = await join(room_http, base, SLUG)
                status, data = await call(http, "POST", f"{rewards}/{song}/redeem", viewer, {})
                assert status == 400
                status, data = await call(
                    http, "POST", f"{rewards}/{song}/redeem", viewer, {"text": "Africa"}
                )
                assert status == 201 and data["balance"] == 8
                first = data["redemption"]["id"]
                ev = await room.next("points:redemption")
                assert (
                    ev["redemption"]["text"] == "Africa" and ev["redemption"]["status"] == "pending"
                )
                for _ in range(2):
                    status, data = await call(
                        http, "POST", f"{rewards}/{hydrate}/redeem", viewer, {}
                    )
                    assert status == 201
                status, data = await call(http, "POST", f"{rewards}/{hydrate}/redeem", viewer, {})
                assert status == 409 and data["error"]["code"] == "conflict"  # 2 points left

                # The queue: moderators of this channel only.
                queue = f"{base}/api/channels/{SLUG}/redemptions?status=pending"
                assert (await call(http, "GET", queue, viewer))[0] == 403
                assert (await call(http, "GET", queue, far_mod))[0] == 403
                status, data = await call(http, "GET", queue, mod)
                assert status == 200 and len(data["redemptions"]) == 3
                settle = f"{base}/api/channels/{SLUG}/redemptions/{first}"
                assert (await call(http, "POST", settle + "/refund", viewer))[0] == 403
                assert (await call(http, "POST", settle + "/refund", far_mod))[0] == 403
                status, data = await call(http, "POST", settle + "/refund", mod)
                assert status == 200 and data["redemption"]["status"] == "refunded"
                await room.next("points:redemption", timeout=5)
                assert (await call(http, "POST", settle + "/fulfil", mod))[0] == 409
                second = (await call(http, "GET", queue, owner))[1]["redemptions"][0]["id"]
                status, data = await call(
                    http, "POST", f"{base}/api/channels/{SLUG}/redemptions/{second}/fulfil", owner
                )
                assert status == 200 and data["redemption"]["status"] == "fulfilled"
                status, data = await call(http, "GET", f"{base}/api/channels/{SLUG}/points", viewer)
                assert data["balance"] == 4 and {r["id"] for r in data["rewards"]} == {
                    hydrate,
                    song,
                }

                # Predictions.
                preds = f"{base}/api/channels/{SLUG}/predictions"
                body = {"question": "Win?", "outcomes": ["Yes", "No"], "window_seconds": 60}
                assert (await call(http, "POST", preds, viewer, body))[0] == 403
                assert (await call(http, "POST", preds, far_mod, body))[0] == 403
                for bad in (
                    {**body, "outcomes": ["Only"]},
                    {**body, "outcomes": [str(i) for i in range(11)]},
                    {**body, "window_seconds": 1},
                    {**body, "question": ""},
                    {**body, "outcomes": [1, 2]},
                ):
                    status, data = await call(http, "POST", preds, mod, bad)
                    assert status == 400 and "error" in data, (bad, data)
                status, data = await call(http, "POST", preds, mod, body)
                assert status == 201, data
                pred = data["prediction"]
                yes, no = (o["id"] for o in pred["outcomes"])
                assert (await call(http, "POST", preds, owner, body))[0] == 409  # one at a time
                ev = await room.next("prediction:update")
                assert ev["prediction"]["status"] == "open"
                late = await join(room_http, base, SLUG)  # the join frame has it
                assert any(
                    e["type"] == "prediction:update" and e["prediction"]["id"] == pred["id"]
                    for e in late.events
                )
                one = f"{preds}/{pred['id']}"
                async with server.db.session() as db:
                    await store.credit(db, [store.Credit(mod_id, channel_id, 7, "earned_watch")])
                    await db.commit()
                status, data = await call(
                    http, "POST", one + "/stake", viewer, {"outcome_id": yes, "amount": 4}
                )
                assert status == 200 and data["balance"] == 0
                status, data = await call(
                    http, "POST", one + "/stake", viewer, {"outcome_id": yes, "amount": 1}
                )
                assert status == 409  # nothing left
                status, data = await call(
                    http, "POST", one + "/stake", mod, {"outcome_id": no, "amount": 0}
                )
                assert status == 400
                status, data = await call(
                    http, "POST", one + "/stake", mod, {"outcome_id": no, "amount": 7}
                )
                assert status == 200
                ev = await room.next("prediction:update")
                while ev["prediction"]["pool"] != 11:
                    ev = await room.next("prediction:update")
                assert [o["total"] for o in ev["prediction"]["outcomes"]] == [4, 7]
                for who in (viewer, far_mod):
                    assert (await call(http, "POST", one + "/lock", who))[0] == 403
                    assert (await call(http, "POST", one + "/resolve", who, {"outcome_id": yes}))[
                        0
                    ] == 403
                    assert (await call(http, "POST", one + "/cancel", who))[0] == 403
                assert (await call(http, "POST", one + "/resolve", mod, {"outcome_id": yes}))[
                    0
                ] == 409
                assert (await call(http, "POST", one + "/lock", mod))[0] == 200
                status, _ = await call(
                    http, "POST", one + "/stake", viewer, {"outcome_id": yes, "amount": 1}
                )
                assert status == 409
                assert (await call(http, "POST", one + "/resolve", owner, {"outcome_id": 10**9}))[
                    0
                ] == 400
                status, data = await call(
                    http, "POST", one + "/resolve", owner, {"outcome_id": yes}
                )
                assert status == 200 and data["prediction"]["status"] == "resolved"
                async with server.db.session() as db:
                    assert await store.balance(db, viewer_id, channel_id) == 11  # the pool
                    assert await store.balance(db, mod_id, channel_id) == 0
                    assert await store.ledger_mismatches(db) == []
                    assert await store.prediction_imbalances(db) == []

                # A second one, cancelled: everyone refunded.
                status, data = await call(http, "POST", preds, owner, body)
                p2 = f"{preds}/{data['prediction']['id']}"
                no2 = data["prediction"]["outcomes"][1]["id"]
                assert (
                    await call(
                        http, "POST", p2 + "/stake", viewer, {"outcome_id": no2, "amount": 5}
                    )
                )[0] == 200
                assert (await call(http, "POST", p2 + "/cancel", mod))[0] == 200
                assert (await call(http, "POST", p2 + "/cancel", mod))[0] == 409
                # A prediction of another channel is not found under this one.
                status, _ = await call(
                    http,
                    "POST",
                    f"{base}/api/channels/other-pts/predictions/{pred['id']}/lock",
                    owner,
                )
                assert status == 404
                async with server.db.session() as db:
                    assert await store.balance(db, viewer_id, channel_id) == 11
                    assert await store.ledger_mismatches(db) == []
                    assert await store.prediction_imbalances(db) == []

            # Anonymous callers are asked to log in; a moderator cannot delete rewards.
            assert (await call(http, "POST", f"{rewards}/{song}/redeem", None, {}))[0] == 401
            assert (await call(http, "PUT", url, None, {"watch_rate": 1}))[0] == 401
            assert (
                await call(http, "POST", f"{p2}/stake", None, {"outcome_id": no2, "amount": 1})
            )[0] == 401
            assert (await call(http, "DELETE", f"{rewards}/{song}", mod))[0] == 403
            status, data = await call(http, "DELETE", f"{rewards}/{song}", owner)
            assert status == 200 and data["refunded"] == 0

            # The dashboard page: owner and moderators; not a viewer.
            page = f"{base}/dashboard/channels/{SLUG}/points"
            async with watcher.get(page) as r:
                assert r.status == 403
            for token in (owner, mod):
                async with http.get(page, headers=auth(token)) as r:
                    assert r.status == 200 and "Redemption queue" in await r.text()
