"""Polls and reactions in a chat room (issue 16), on one server: who may start and end a poll
(a viewer cannot, nor a moderator of another channel), one vote per user across reconnects, exact
tallies published as totals, the result stored and listed by the API and the stream's analytics,
a poll ending at its duration; reactions counted per emoji per tick and rate limited per viewer.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from chat_support import ChatClient, auth, base_url, join, make_chat_channel, make_user

pytestmark = pytest.mark.integration

THUMBS, FIRE = "\U0001f44d", "\U0001f525"


async def _get(http: aiohttp.ClientSession, url: str, token: str | None = None) -> Any:
    async with http.get(url, headers=auth(token)) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def _error(c: ChatClient, frame: dict[str, Any]) -> str:
    await c.send(frame)
    return str((await c.next("chat:error"))["code"])


def _start(question: str = "Best map?", n: int = 2, duration: int = 60) -> dict[str, Any]:
    options = ["Dust", "Inferno", "Nuke", "Mirage", "Train", "Vertigo"][:n]
    return {"type": "poll:start", "question": question, "options": options, "duration": duration}


async def _counts_reach(c: ChatClient, poll_id: int, want: list[int]) -> None:
    """Tallies are totals; a client keeps the larger count per option (they only grow)."""
    seen = [0] * len(want)
    while seen != want:
        ev = await c.next("poll:tally", id=poll_id)
        seen = [max(a, b) for a, b in zip(seen, ev["counts"], strict=True)]
        assert ev["total"] <= sum(want)


async def test_polls_and_reactions(settings_env) -> None:
    from conftest import running_server

    from storage import emotes, queries
    from webapp.keys import CHAT_KEY

    env = {
        **settings_env,
        "AETHEX_POLLS__MIN_DURATION": "1",
        "AETHEX_REACTIONS__RATE_LIMIT": "5",
        "AETHEX_REACTIONS__RATE_WINDOW": "60",
        "AETHEX_REACTIONS__TICK": "0.2",
    }
    async with running_server(env) as server:
        channel_id, _, owner = await make_chat_channel(server, "pollster", "poll-room")
        await make_chat_channel(server, "elsewhere", "other-room")
        mod_id, mod = await make_user(server, "pollmod")
        other_mod_id, other_mod = await make_user(server, "othermod")
        _, v1 = await make_user(server, "voter1")
        _, v2 = await make_user(server, "voter2")
        _, v3 = await make_user(server, "voter3")
        now = datetime.now(UTC)
        async with server.db.session() as db:
            stream = await queries.start_stream(db, channel_id, now)
            await db.commit()
        server.registry.start(
            channel_id=channel_id, slug="poll-room", stream_id=stream.id, started_at=now
        )
        base = base_url(server)
        async with aiohttp.ClientSession() as http:
            for slug, token, uid in (("poll-room", owner, mod_id), ("other-room", None, 0)):
                if token is None:  # the other channel's owner appoints othermod there
                    async with server.db.session() as db:
                        owner2 = await queries.create_api_token(db, "elsewhere")
                        await db.commit()
                    token, uid = owner2, other_mod_id
                async with http.post(
                    f"{base}/api/channels/{slug}/moderators",
                    headers=auth(token),
                    json={"user_id": uid},
                ) as r:
                    assert r.status == 201, await r.text()
            anon = await join(http, base, "poll-room")
            assert (await anon.next("reaction:set"))["emojis"][0] == THUMBS
            m = await join(http, base, "poll-room", mod)
            om = await join(http, base, "poll-room", other_mod)
            c1 = await join(http, base, "poll-room", v1)
            c2 = await join(http, base, "poll-room", v2)
            c3 = await join(http, base, "poll-room", v3)

            # -- who may start: not anonymous, not a viewer, not another channel's moderator
            assert await _error(anon, _start()) == "login_required"
            assert await _error(c1, _start()) == "forbidden"
            assert await _error(om, _start()) == "forbidden"
            assert await _error(m, _start(n=1)) == "invalid"
            assert await _error(m, _start(n=6)) == "invalid"
            assert await _error(m, {**_start(), "duration": 99999}) == "invalid"
            assert await _error(m, {**_start(), "question": "  "}) == "invalid"
            await m.send(_start())
            started = (await anon.next("poll:start"))["poll"]
            assert started["question"] == "Best map?" and started["total"] == 0
            assert [o["text"] for o in started["options"]] == ["Dust", "Inferno"]
            poll_id = started["id"]
            assert await _error(m, _start()) == "poll_running"

            # -- one vote per user, across reconnects; exact totals
            await c1.send({"type": "poll:vote", "id": poll_id, "option": 0})
            assert (await c1.next("poll:voted"))["option"] == 0
            assert await _error(c1, {"type": "poll:vote", "id": poll_id, "option": 1}) == (
                "already_voted"
            )
            await c1.ws.close()
            c1 = await join(http, base, "poll-room", v1)
            assert (await c1.next("poll:start"))["poll"]["id"] == poll_id  # in the first frame
            assert await _error(c1, {"type": "poll:vote", "id": poll_id, "option": 1}) == (
                "already_voted"
            )
            assert await _error(c2, {"type": "poll:vote", "id": poll_id, "option": 2}) == "invalid"
            assert await _error(c2, {"type": "poll:vote", "id": poll_id + 1, "option": 0}) == (
                "poll_closed"
            )
            await c2.send({"type": "poll:vote", "id": poll_id, "option": 1})
            await c3.send({"type": "poll:vote", "id": poll_id, "option": 1})
            await c2.next("poll:voted")
            await c3.next("poll:voted")
            await _counts_reach(anon, poll_id, [1, 2])
            current = await _get(http, f"{base}/api/channels/poll-room/polls/current")
            assert [o["votes"] for o in current["poll"]["options"]] == [1, 2]

            # -- who may end: not a viewer, not another channel's moderator; the owner may
            assert await _error(c1, {"type": "poll:end", "id": poll_id}) == "forbidden"
            assert await _error(om, {"type": "poll:end", "id": poll_id}) == "forbidden"
            owner_socket = await join(http, base, "poll-room", owner)
            await owner_socket.send({"type": "poll:end", "id": poll_id})
            ended = (await anon.next("poll:end"))["poll"]
            assert ended["id"] == poll_id and ended["running"] is False
            assert [o["votes"] for o in ended["options"]] == [1, 2] and ended["total"] == 3
            _, late = await make_user(server, "latecomer")
            cl = await join(http, base, "poll-room", late)
            assert not [e for e in cl.events if e["type"] == "poll:start"]
            assert await _error(cl, {"type": "poll:vote", "id": poll_id, "option": 0}) == (
                "poll_closed"
            )

            # -- stored: the API and the stream's analytics report
            listed = await _get(http, f"{base}/api/channels/poll-room/polls")
            assert [p["id"] for p in listed["polls"]] == [poll_id]
            assert listed["polls"][0]["options"][1] == {"text": "Inferno", "votes": 2}
            assert (await _get(http, f"{base}/api/channels/poll-room/polls/current"))[
                "poll"
            ] is None
            report = await _get(http, f"{base}/api/streams/{stream.id}/analytics", owner)
            assert [p["id"] for p in report["polls"]] == [poll_id]
            assert report["polls"][0]["total"] == 3

            # -- a poll ends by itself at its duration
            await m.send(_start("Quick one?", 3, duration=1))
            quick = (await c2.next("poll:start"))["poll"]
            await c2.send({"type": "poll:vote", "id": quick["id"], "option": 2})
            done = (await c2.next("poll:end", timeout=10))["poll"]
            assert done["id"] == quick["id"] and [o["votes"] for o in done["options"]] == [0, 0, 1]

            # -- reactions: aggregated per tick, rate limited, logged in only
            assert await _error(anon, {"type": "reaction:send", "emoji": THUMBS}) == (
                "login_required"
            )
            # The channel's emotes (made before the room first looks them up; later changes
            # reach it through the bus, below).
            async with server.db.session() as db:
                for code, follower_only in (("PollHype", False), ("FanOnly", True)):
                    await emotes.create_emote(
                        db,
                        channel_id=channel_id,
                        code=code,
                        file_key="0" * 32,
                        animated=False,
                        follower_only=follower_only,
                        limit=50,
                    )
                await db.commit()
            assert await _error(c1, {"type": "reaction:send", "emoji": "<b>"}) == "invalid"
            taps = [(c1, THUMBS)] * 3 + [(c1, FIRE), (c2, FIRE)]
            for c, emoji in taps:
                await c.send({"type": "reaction:send", "emoji": emoji})
            for _ in range(8):  # 3 over voter3's limit of 5: dropped, one error
                await c3.send({"type": "reaction:send", "emoji": THUMBS})
            err = await c3.next("chat:error")
            assert err["code"] == "rate_limited" and err["retry_after"] > 0
            want = {THUMBS: 8, FIRE: 2}
            seen: dict[str, int] = {}
            bursts = 0
            while seen != want:
                burst = await anon.next("reaction:burst")
                bursts += 1
                for emoji, n in burst["counts"].items():
                    seen[emoji] = seen.get(emoji, 0) + n
                assert all(seen[e] <= want.get(e, 0) for e in seen), seen
            assert bursts < len(taps) + 5  # fewer events than counted taps
            assert not [
                e for e in await anon.quiet(0.5) if e["type"] == "reaction:burst"
            ]  # the dropped taps never show
            assert [e for e in c3.events if e["type"] == "chat:error"] == [err]

            # -- the room's emotes are reactions too (not follower-only ones); a set changed
            # on the bus (the emotes area's own event) is followed without a reload
            assert await _error(c1, {"type": "reaction:send", "emoji": "FanOnly"}) == "invalid"
            await c1.send({"type": "reaction:send", "emoji": "PollHype"})
            assert (await anon.next("reaction:burst"))["counts"] == {"PollHype": 1}
            chat = server._runner.app[CHAT_KEY]
            changed = {"type": "emotes:changed", "scope": "channel", "channel_id": channel_id}
            await chat.publish("poll-room", [{**changed, "emotes": [{"code": "Fresh"}]}])
            await c2.send({"type": "reaction:send", "emoji": "Fresh"})
            assert (await anon.next("reaction:burst"))["counts"] == {"Fresh": 1}
            assert await _error(c2, {"type": "reaction:send", "emoji": "PollHype"}) == "invalid"
            for c in (anon, m, om, c1, c2, c3, owner_socket, cl):
                await c.ws.close()
