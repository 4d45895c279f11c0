"""Raids (issue 16) over a real server: who may raid, the target's policy (refuse, followed
channels only), the raiding window (live, or minutes after the end), the cooldown, and the
effects: a viewer socket on the raiding channel gets raid:go naming the target, the target's
room gets raid:incoming with the raiding channel's viewer count, and the raid is recorded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from chat_support import auth, base_url, join, make_chat_channel, make_user

pytestmark = pytest.mark.integration


async def _go_live(server, channel_id: int, slug: str, viewers: int | None = None):
    from storage import queries

    now = datetime.now(UTC)
    async with server.db.session() as db:
        stream = await queries.start_stream(db, channel_id, now)
        await db.commit()
    live = server.registry.start(
        channel_id=channel_id, slug=slug, stream_id=stream.id, started_at=now
    )
    live.viewers = viewers  # what the HLS layer's recount leaves on the registry
    return stream.id


async def _ended(server, channel_id: int, minutes_ago: float) -> None:
    from storage import queries

    end = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    async with server.db.session() as db:
        stream = await queries.start_stream(db, channel_id, end - timedelta(hours=1))
        await queries.end_stream(db, stream.id, end)
        await db.commit()


async def test_raid_permissions_policy_and_delivery(server) -> None:
    from storage import chat as chat_store

    alpha_id, alice_id, alice = await make_chat_channel(server, "alice", "alpha")
    bravo_id, _, bob = await make_chat_channel(server, "bob", "bravo")
    await make_chat_channel(server, "carol", "charlie")  # never live
    delta_id, _, dave = await make_chat_channel(server, "dave", "delta")
    echo_id, _, erin = await make_chat_channel(server, "erin", "echo")
    mod_id, mod = await make_user(server, "moddy")
    _, vic = await make_user(server, "vic")
    async with server.db.session() as db:
        await chat_store.add_moderator(db, alpha_id, mod_id, alice_id)
        await db.commit()
    await _go_live(server, alpha_id, "alpha", viewers=312)
    await _go_live(server, bravo_id, "bravo")
    await _ended(server, delta_id, minutes_ago=20)  # past raids.after_end_seconds (10 min)
    await _ended(server, echo_id, minutes_ago=1)

    base = base_url(server)
    url = f"{base}/api/channels/alpha/raids"
    async with aiohttp.ClientSession() as http:

        async def raid(token: str | None, body: object, path: str = url) -> tuple[int, dict]:
            async with http.post(path, json=body, headers=auth(token)) as r:
                return r.status, await r.json()

        async def extras(token: str, slug: str, body: dict) -> int:
            path = f"{base}/api/channels/{slug}/extras"
            async with http.patch(path, json=body, headers=auth(token)) as r:
                return r.status

        watcher = await join(http, base, "alpha")  # an anonymous viewer of the raiding page
        target_room = await join(http, base, "bravo")

        # Who may raid: the owner (and admins); not a moderator, not a viewer, not anonymous.
        assert (await raid(None, {"target": "bravo"}))[0] == 401
        status, body = await raid(vic, {"target": "bravo"})
        assert (status, body["error"]["code"]) == (403, "forbidden")
        assert (await raid(mod, {"target": "bravo"}))[0] == 403
        # Bad input is a 400 in the error shape; impossible targets say why.
        for bad in ({}, {"target": 5}, {"target": ""}, {"target": "x" * 200}):
            status, body = await raid(alice, bad)
            assert status == 400 and body["error"]["code"] in ("missing_field", "invalid"), bad
        assert (await raid(alice, {"target": "alpha"}))[1]["error"]["code"] == "invalid"
        assert (await raid(alice, {"target": "nowhere"}))[0] == 404
        status, body = await raid(alice, {"target": "charlie"})
        assert (status, body["error"]["code"]) == (409, "target_offline")

        # The target's policy, enforced by the server.
        assert await extras(mod, "alpha", {"raid_policy": "nobody"}) == 403  # owner only
        assert await extras(bob, "bravo", {"raid_policy": "sometimes"}) == 400
        assert await extras(bob, "bravo", {"raid_policy": "nobody"}) == 200
        status, body = await raid(alice, {"target": "bravo"})
        assert (status, body["error"]["code"]) == (403, "raids_refused")
        assert await extras(bob, "bravo", {"raid_policy": "followed"}) == 200
        status, body = await raid(alice, {"target": "bravo"})
        assert (status, body["error"]["code"]) == (403, "raids_followed_only")
        async with http.post(f"{base}/api/channels/alpha/follow", headers=auth(bob)) as r:
            assert r.status in (200, 201)

        # The raid: the raiding room's viewers are sent to the target, the target hears it.
        status, body = await raid(alice, {"target": "bravo"})
        assert status == 201, body
        made = body["raid"]
        assert made["viewers"] == 312 and made["to"]["slug"] == "bravo"
        go = await watcher.next("raid:go")
        assert go["to"] == {"slug": "bravo", "name": made["to"]["name"]}
        assert go["url"] == f"/streams/bravo?raid={made['id']}" and go["viewers"] == 312
        incoming = await target_room.next("raid:incoming")
        assert incoming["from"]["slug"] == "alpha" and incoming["viewers"] == 312
        assert not [e for e in await target_room.quiet(0.2) if e["type"] == "raid:go"]

        # Recorded: the arrival notice reads it back; the channels' lists show it.
        async with http.get(f"{base}/api/channels/bravo/raids/{made['id']}") as r:
            assert (await r.json())["raid"]["from"]["slug"] == "alpha"
        for wrong in (f"alpha/raids/{made['id']}", "bravo/raids/999999"):  # only its target
            async with http.get(f"{base}/api/channels/{wrong}") as r:
                assert r.status == 404
        async with http.get(url, headers=auth(mod)) as r:
            listed = (await r.json())["raids"]
            assert [(x["direction"], x["to"], x["viewers"]) for x in listed] == [
                ("out", "bravo", 312)
            ]
        async with http.get(f"{base}/api/channels/bravo/raids", headers=auth(bob)) as r:
            assert [x["direction"] for x in (await r.json())["raids"]] == ["in"]
        async with http.get(url, headers=auth(vic)) as r:
            assert r.status == 403

        # Rate limit: one raid per raids.cooldown_seconds per channel.
        status, body = await raid(alice, {"target": "bravo"})
        assert (status, body["error"]["code"]) == (429, "rate_limited")

        # The window: 20 minutes after the end is too late; 1 minute is fine, and the count is
        # then the people still on the page (one socket here).
        assert await extras(bob, "bravo", {"raid_policy": "anyone"}) == 200
        status, body = await raid(dave, {"target": "bravo"}, f"{base}/api/channels/delta/raids")
        assert (status, body["error"]["code"]) == (409, "not_live")
        late = await join(http, base, "echo")
        status, body = await raid(erin, {"target": "bravo"}, f"{base}/api/channels/echo/raids")
        assert status == 201 and body["raid"]["viewers"] == 1
        assert (await late.next("raid:go"))["to"]["slug"] == "bravo"

        # The picker lists live channels only, never the raiding one.
        async with http.get(f"{base}/api/channels/alpha/raid-targets", headers=auth(alice)) as r:
            assert [c["slug"] for c in (await r.json())["channels"]] == ["bravo"]
        q = f"{base}/api/channels/alpha/raid-targets?q=%25"
        async with http.get(q, headers=auth(alice)) as r:
            assert (await r.json())["channels"] == []  # % is a character, not a wildcard
        async with http.get(f"{base}/dashboard/channels/alpha/raids", headers=auth(alice)) as r:
            assert r.status == 200 and "Raid a live channel" in await r.text()
        for c in (watcher, target_room, late):
            await c.ws.close()
