"""Polls and reactions across two server processes on one PostgreSQL and one Redis (issue 16):
each voter has a socket on both processes and votes on both at once (different options), and
once more after reconnecting: exactly one vote each is kept, the tallies every viewer sees on
either process converge to the exact counts, and the result the owner ends the poll with (on
the other process) is exact. A socket joining the second process after the poll started on the
first finds it in its first frame (each process's memory follows the bus). Reactions tapped on
both processes add up on each."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from chat_support import ChatClient, base_url, join, make_chat_channel, make_user
from conftest import running_server
from test_chat_redis import second_process

pytestmark = pytest.mark.integration

VOTERS = 8
THUMBS = "\U0001f44d"


async def _converge(c: ChatClient, poll_id: int, want: list[int]) -> None:
    seen = [0] * len(want)
    while seen != want:
        ev = await c.next("poll:tally", timeout=15, id=poll_id)
        seen = [max(a, b) for a, b in zip(seen, ev["counts"], strict=True)]
        assert all(s <= w for s, w in zip(seen, want, strict=True)), (seen, want)


async def _answer(c: ChatClient) -> dict[str, Any]:
    """The sender-only answer to a vote: poll:voted or chat:error."""
    while True:
        await c._read_one(15)
        for ev in c.events[c._seen :]:
            c._seen += 1
            if ev["type"] in ("poll:voted", "chat:error"):
                return ev


async def test_one_vote_per_user_across_processes(
    settings_env, redis_url, postgres_url, tmp_path
) -> None:
    env = {
        **settings_env,
        "AETHEX_DATABASE_URL": postgres_url,
        "AETHEX_CHAT__BUS": redis_url,
        "AETHEX_POLLS__TALLY_INTERVAL": "0.1",
    }
    async with running_server(env) as one:
        _, _, owner = await make_chat_channel(one, "host", "vote-room")
        voters = [await make_user(one, f"voter{i}") for i in range(VOTERS)]
        async with second_process(env) as base2:
            base1 = base_url(one)
            async with aiohttp.ClientSession() as http:
                anon1 = await join(http, base1, "vote-room")
                anon2 = await join(http, base2, "vote-room")  # process two loads "no poll"
                o1 = await join(http, base1, "vote-room", owner)
                await o1.send(
                    {
                        "type": "poll:start",
                        "question": "Which?",
                        "options": ["a", "b", "c"],
                        "duration": 300,
                    }
                )
                poll_id = (await anon2.next("poll:start"))["poll"]["id"]
                await anon1.next("poll:start", timeout=10)
                late2 = await join(http, base2, "vote-room")
                first = [e for e in late2.events if e["type"] == "poll:start"]
                assert first and first[0]["poll"]["id"] == poll_id

                pairs = []
                for _, t in voters:
                    pairs.append(
                        (
                            await join(http, base1, "vote-room", t),
                            await join(http, base2, "vote-room", t),
                        )
                    )
                # Both sockets of each voter vote at once, for different options.
                for i, (s1, s2) in enumerate(pairs):
                    await asyncio.gather(
                        s1.send({"type": "poll:vote", "id": poll_id, "option": i % 3}),
                        s2.send({"type": "poll:vote", "id": poll_id, "option": (i + 1) % 3}),
                    )
                want = [0, 0, 0]
                for s1, s2 in pairs:
                    a1, a2 = await _answer(s1), await _answer(s2)
                    kinds = sorted([a1["type"], a2["type"]])
                    assert kinds == ["chat:error", "poll:voted"], (a1, a2)
                    kept = a1 if a1["type"] == "poll:voted" else a2
                    refused = a2 if kept is a1 else a1
                    assert refused["code"] == "already_voted"
                    assert refused["option"] == kept["option"]
                    want[kept["option"]] += 1
                # A reconnect on the other process cannot vote again.
                _, t0 = voters[0]
                again = await join(http, base2, "vote-room", t0)
                await again.send({"type": "poll:vote", "id": poll_id, "option": 2})
                assert (await _answer(again))["code"] == "already_voted"
                assert sum(want) == VOTERS
                await asyncio.gather(
                    _converge(anon1, poll_id, want), _converge(anon2, poll_id, want)
                )

                # Reactions from both processes add up on each.
                (s1, _), (_, s2) = pairs[0], pairs[1]
                await s1.send({"type": "reaction:send", "emoji": THUMBS})
                await s2.send({"type": "reaction:send", "emoji": THUMBS})
                for c in (anon1, anon2):
                    total = 0
                    while total < 2:
                        total += (await c.next("reaction:burst", timeout=10))["counts"][THUMBS]
                    assert total == 2

                # The owner ends it on process two: the stored result is exact, on both.
                o2 = await join(http, base2, "vote-room", owner)
                await o2.send({"type": "poll:end", "id": poll_id})
                for c in (anon1, anon2):
                    ended = (await c.next("poll:end", timeout=10))["poll"]
                    assert [o["votes"] for o in ended["options"]] == want
                async with http.get(f"{base1}/api/channels/vote-room/polls") as r:
                    listed = (await r.json())["polls"]
                assert [o["votes"] for o in listed[0]["options"]] == want
                for c in [anon1, anon2, late2, o1, o2, again, *[s for p in pairs for s in p]]:
                    await c.ws.close()
