"""Chat extras (issue 16) over a real server: typing indicators throttled per user and
coalesced per room, off by the owner's setting and in rooms over chat.typing_max_room;
follower-age badges from the follows' dates (live and in a history loaded from the database);
each person's role in presence for the grouped viewer list."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from chat_support import auth, base_url, join, make_chat_channel, make_user
from sqlalchemy import update

pytestmark = pytest.mark.integration


@pytest.fixture
def extras_env(settings_env):
    # A long throttle makes "at most one per interval" exact; a wide flush window makes the
    # two typists land in one event; a room of more than 3 sockets counts as crowded.
    return {
        **settings_env,
        "AETHEX_CHAT__TYPING_INTERVAL": "30",
        "AETHEX_CHAT__TYPING_FLUSH": "1.0",
        "AETHEX_CHAT__TYPING_MAX_ROOM": "3",
    }


def _typing(events: list[dict]) -> list[dict]:
    return [e for e in events if e["type"] == "typing:active"]


async def test_typing_badges_and_roles(extras_env) -> None:
    from conftest import running_server

    from storage import chat as chat_store
    from storage import follows, queries
    from storage.models import ChannelFollow
    from webapp.keys import CHAT_KEY

    async with running_server(extras_env) as server:
        channel_id, olive_id, olive = await make_chat_channel(server, "olive", "extras")
        fan_id, fan = await make_user(server, "fan")
        monthly_id, monthly = await make_user(server, "monthly")
        _, newbie = await make_user(server, "newbie")
        _, plain = await make_user(server, "plain")
        moddy_id, moddy = await make_user(server, "moddy")
        now = datetime.now(UTC)
        async with server.db.session() as db:
            for uid, days in ((fan_id, 400), (monthly_id, 40)):
                await follows.follow(db, uid, channel_id)
                await db.execute(
                    update(ChannelFollow)
                    .where(ChannelFollow.user_id == uid, ChannelFollow.channel_id == channel_id)
                    .values(created_at=now - timedelta(days=days))
                )
            await chat_store.add_moderator(db, channel_id, moddy_id, olive_id)
            await db.commit()
        base = base_url(server)
        async with aiohttp.ClientSession() as http:

            async def extras(body: dict) -> None:
                path = f"{base}/api/channels/extras/extras"
                async with http.patch(path, json=body, headers=auth(olive)) as r:
                    assert r.status == 200, await r.text()

            async def say(token: str, text: str) -> None:
                body = {"channel": "extras", "content": text}
                async with http.post(f"{base}/api/messages", json=body, headers=auth(token)) as r:
                    assert r.status == 201, await r.text()

            reader = await join(http, base, "extras")
            assert (await reader.next("typing:config"))["enabled"] is True
            async with server.db.session() as db:  # live, so the messages have a stream
                stream = await queries.start_stream(db, channel_id, now)
                await db.commit()
            server.registry.start(
                channel_id=channel_id, slug="extras", stream_id=stream.id, started_at=now
            )
            await reader.next("stream:status", live=True)
            f = await join(http, base, "extras", fan)
            p = await join(http, base, "extras", plain)

            # Throttled per user, coalesced per room: three frames from fan and one from
            # plain make one typing:active naming each once.
            for _ in range(3):
                await f.send({"type": "typing:start"})
            await p.send({"type": "typing:start"})
            first = await reader.next("typing:active")
            seen = [first, *_typing(await reader.quiet(1.5))]
            assert sorted(u["username"] for u in first["users"]) == ["fan", "plain"], seen
            assert [u["username"] for e in seen for u in e["users"]].count("fan") == 1
            assert first["ttl"] == 6.0
            assert not [e for e in f.events + p.events if e["type"] == "chat:error"]

            # Off when the owner says so: a join is told, and a typist is not announced.
            await p.ws.close()
            await reader.next("chat:user-left")
            await extras({"typing_indicators": False})
            m = await join(http, base, "extras", monthly)  # 3 sockets: not crowded
            assert (await m.next("typing:config"))["enabled"] is False
            await m.send({"type": "typing:start"})
            assert not _typing(await reader.quiet(1.5))

            # Off in a room over chat.typing_max_room (3) whatever the setting.
            await extras({"typing_indicators": True})
            async with http.post(f"{base}/api/channels/extras/follow", headers=auth(newbie)) as r:
                assert r.status in (200, 201)
            n = await join(http, base, "extras", newbie)  # the 4th socket
            assert (await n.next("typing:config"))["enabled"] is False
            await n.send({"type": "typing:start"})
            assert not _typing(await reader.quiet(1.5))

            # Roles in presence, for the grouped viewer list.
            o = await join(http, base, "extras", olive)
            d = await join(http, base, "extras", moddy)
            roles = {  # quiet() passed over the earlier joins: read them from the record
                u["username"]: u["role"]
                for e in reader.events
                if e["type"] == "chat:user-joined"
                for u in e["users"]
            }
            while len(roles) < 6:
                ev = await reader.next("chat:user-joined")
                roles.update({u["username"]: u["role"] for u in ev["users"]})
            assert roles == {
                "fan": "follower",
                "plain": "viewer",
                "monthly": "follower",
                "newbie": "follower",
                "olive": "owner",
                "moddy": "moderator",
            }

            # Follower-age badges, from the follow's date, on each message.
            expected = {
                "fan": ["follower-1y"],
                "monthly": ["follower-1m"],
                "newbie": ["follower"],
                "plain": [],
                "olive": ["owner"],
                "moddy": ["moderator"],
            }
            for name, token in (
                ("fan", fan),
                ("monthly", monthly),
                ("newbie", newbie),
                ("plain", plain),
                ("olive", olive),
                ("moddy", moddy),
            ):
                await say(token, f"hello from {name}")
                got = await reader.next("chat:message")
                assert got["user"]["username"] == name
                assert got["user"]["badges"] == expected[name], got

            # The API's history pages have them too.
            async with http.get(f"{base}/api/streams/{stream.id}/messages") as r:
                paged = (await r.json())["messages"]
            assert {m["user"]["username"]: m["user"]["badges"] for m in paged} == expected

            # A history loaded from the database once the room has closed has them too.
            service = server._runner.app[CHAT_KEY]
            for c in (reader, f, m, n, o, d):
                await c.ws.close()
            loop_deadline = datetime.now(UTC) + timedelta(seconds=10)
            while "extras" in service.rooms:
                assert datetime.now(UTC) < loop_deadline, "the room never closed"
                await asyncio.sleep(0.05)
            again = await join(http, base, "extras")
            history = (await again.next("chat:history"))["messages"]
            assert {m["user"]["username"]: m["user"]["badges"] for m in history} == expected
            await again.ws.close()
