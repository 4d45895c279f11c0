"""Community channels (issue 16) through a real server: topics managed by the owner, the live
chat's rules on posting (announcements, bans, timeouts, word filter, rate limit), blocks,
paging, unread markers, deletion, real-time delivery through the chat room, bad input, the
pages, and messages surviving a restart. One server (and a second on the same data dir for the
restart), several checks per step, to keep the file cheap."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from tests.chat_support import auth, base_url, join, make_chat_channel, make_user
from tests.conftest import running_server

pytestmark = pytest.mark.integration

SLUG = "alice-live"
TOPICS = f"/api/channels/{SLUG}/community/topics"


class Api:
    """A logged-in (or anonymous) JSON client: (status, body) per call."""

    def __init__(self, http: aiohttp.ClientSession, token: str | None) -> None:
        self.http = http
        self.headers = auth(token)

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        kw: dict[str, Any] = {"headers": self.headers}
        if body is not None:
            kw["json"] = body
        async with self.http.request(method, path, **kw) as r:
            data = await r.json() if r.content_type == "application/json" else await r.text()
            return r.status, data

    async def post(self, topic: str, content: Any) -> tuple[int, Any]:
        return await self.call("POST", f"{TOPICS}/{topic}/messages", {"content": content})

    async def page(self, topic: str, query: str = "") -> tuple[int, Any]:
        return await self.call("GET", f"{TOPICS}/{topic}/messages{query}")

    async def unread(self) -> dict[str, int | None]:
        status, data = await self.call("GET", TOPICS)
        assert status == 200, data
        return {t["name"]: t["unread"] for t in data["topics"]}


def code(data: Any) -> str:
    return data["error"]["code"]


@pytest.fixture
def env(settings_env: dict[str, str]) -> dict[str, str]:
    return {
        **settings_env,
        "AETHEX_COMMUNITY__MAX_TOPICS": "4",
        "AETHEX_COMMUNITY__PAGE_MAX": "5",
        "AETHEX_COMMUNITY__PAGE_SIZE": "3",
        # A window no loaded machine outruns: the limit trips on the count, never on timing.
        "AETHEX_CHAT__RATE_LIMIT_MESSAGES": "6",
        "AETHEX_CHAT__RATE_LIMIT_WINDOW": "600",
    }


async def test_community_channels_end_to_end(env: dict[str, str]) -> None:
    async with running_server(env) as server:
        base = base_url(server)
        _, owner_id, owner_t = await make_chat_channel(server, "alice", SLUG)
        bob_id, bob_t = await make_user(server, "bob")
        carol_id, carol_t = await make_user(server, "carol")
        dave_id, dave_t = await make_user(server, "dave")
        eve_id, eve_t = await make_user(server, "eve")
        async with aiohttp.ClientSession(base) as http:
            owner, bob, carol = Api(http, owner_t), Api(http, bob_t), Api(http, carol_t)
            dave, eve, anon = Api(http, dave_t), Api(http, eve_t), Api(http, None)

            # -- topics: owner only, names checked, a limit per channel ----------------------
            assert (await anon.call("GET", TOPICS))[1]["topics"] == []
            for name, kind in (("general", "text"), ("#News", "announcements"), ("clips", None)):
                body = {"name": name} if kind is None else {"name": name, "kind": kind}
                status, data = await owner.call("POST", TOPICS, body)
                assert status == 201, data
            assert data["topic"] == {
                "name": "clips",
                "kind": "text",
                "position": 2,
                "unread": 0,
                "can_write": True,
            }
            status, data = await bob.call("POST", TOPICS, {"name": "mine"})
            assert (status, code(data)) == (403, "forbidden")
            assert (await anon.call("POST", TOPICS, {"name": "x"}))[0] == 401
            for bad in ("", "has space", "-dash", "x" * 33, 7):
                status, data = await owner.call("POST", TOPICS, {"name": bad})
                assert status == 400 and "error" in data, (bad, data)
            assert (await owner.call("POST", TOPICS, {"name": "t", "kind": "voice"}))[0] == 400
            assert (await owner.call("POST", TOPICS, {"name": "general"}))[0] == 409
            assert (await owner.call("POST", TOPICS, {"name": "extra"}))[0] == 201
            status, data = await owner.call("POST", TOPICS, {"name": "fifth"})
            assert status == 400 and "at most 4" in data["error"]["message"]
            assert (await owner.call("DELETE", f"{TOPICS}/extra"))[0] == 200
            assert (await owner.call("DELETE", f"{TOPICS}/extra"))[0] == 404
            status, data = await owner.call("PATCH", f"{TOPICS}/clips", {"name": "media"})
            assert status == 200 and data["topic"]["name"] == "media"
            assert (await owner.call("PATCH", f"{TOPICS}/media", {"name": "general"}))[0] == 409
            assert (await owner.call("PATCH", f"{TOPICS}/media", {"position": -1}))[0] == 400
            assert (await bob.call("PATCH", f"{TOPICS}/media", {"position": 0}))[0] == 403
            assert (await owner.call("PATCH", f"{TOPICS}/media", {"position": 0}))[0] == 200
            assert list(await anon.unread()) == ["media", "general", "news"]
            assert set((await anon.unread()).values()) == {None}  # nobody to count for

            # carol moderates; eve is timed out; dave is banned later
            status, _ = await owner.call(
                "POST", f"/api/channels/{SLUG}/moderators", {"user_id": carol_id}
            )
            assert status == 201

            # -- real time through the channel's chat room -----------------------------------
            watcher = await join(http, base, SLUG, bob_t)
            status, data = await owner.post("general", "welcome everyone")
            assert status == 201, data
            first = data["message"]
            assert first["user"]["badges"] == ["owner"] and first["topic"] == "general"
            event = await watcher.next("community:message")
            assert event["id"] == first["id"] and event["content"] == "welcome everyone"

            # -- announcements: the owner and moderators only --------------------------------
            status, data = await bob.post("news", "me too")
            assert (status, code(data)) == (403, "forbidden")
            assert (await carol.post("news", "stream at 8"))[0] == 201
            news = {t["name"]: t for t in (await bob.call("GET", TOPICS))[1]["topics"]}["news"]
            assert news["can_write"] is False

            # -- the chat's rules: bans, timeouts, word filter, rate limit -------------------
            assert (await dave.post("general", "before the ban"))[0] == 201
            assert (await owner.call("POST", f"/api/channels/{SLUG}/bans", {"user_id": dave_id}))[
                0
            ] == 201
            status, data = await dave.post("general", "after the ban")
            assert (status, code(data)) == (403, "banned")
            status, _ = await carol.call(
                "POST", f"/api/channels/{SLUG}/timeouts", {"user_id": eve_id, "seconds": 600}
            )
            assert status in (200, 201)
            status, data = await eve.post("general", "hello?")
            assert (status, code(data)) == (403, "timed_out")
            settings = f"/api/channels/{SLUG}/chat/settings"
            assert (await owner.call("PATCH", settings, {"word_filter": ["darn"]}))[0] == 200
            status, data = await bob.post("general", "well darn it")
            assert status == 201 and data["message"]["content"] == "well **** it"
            patch = {"filter_mode": "reject"}
            assert (await owner.call("PATCH", settings, patch))[0] == 200
            status, data = await bob.post("general", "darn")
            assert (status, code(data)) == (400, "filtered")
            for bad in ("", "   ", 5, None, "x" * 501, "bell\x07"):
                status, data = await bob.post("general", bad)
                assert status == 400 and "error" in data, (bad, data)
            sent = 0
            while True:  # one of bob's counts (masked); refused ones never do
                status, data = await bob.post("media", f"spam {sent}")
                if status != 201:
                    break
                sent += 1
            assert (status, code(data)) == (429, "rate_limited") and sent == 5

            # -- blocks hide authors; unread counts; marking read ----------------------------
            assert (await bob.call("POST", f"/api/users/{carol_id}/block"))[0] in (200, 201)
            assert (await carol.post("general", "carol speaking"))[0] == 201
            status, data = await bob.page("general")
            assert status == 200
            assert "carol speaking" not in [m["content"] for m in data["messages"]]
            assert (await carol.page("general"))[1]["messages"][0]["content"] == "carol speaking"
            # bob's own messages never count; carol's are hidden from him
            assert await bob.unread() == {"media": 0, "general": 2, "news": 0}
            assert (await owner.unread())["general"] == 3
            status, data = await bob.call("POST", f"{TOPICS}/general/read", {})
            assert status == 200 and data["last_read_id"] > first["id"]
            assert (await bob.unread())["general"] == 0
            assert (await owner.post("general", "one more"))[0] == 201
            assert (await bob.unread())["general"] == 1
            assert (await bob.call("POST", f"{TOPICS}/general/read", {"last_id": 1}))[0] == 200
            assert (await bob.unread())["general"] == 1  # a marker never moves back

            # -- paging: newest first, cursor by id, bounded ---------------------------------
            status, data = await owner.page("media")
            assert status == 200 and len(data["messages"]) == 3  # page_size
            ids = [m["id"] for m in data["messages"]]
            assert ids == sorted(ids, reverse=True)
            status, rest = await owner.page("media", f"?before={data['next_before']}&limit=5")
            assert [m["content"] for m in rest["messages"]] == ["spam 1", "spam 0"]
            assert rest["next_before"] is None
            for query in ("?limit=0", "?limit=6", "?limit=x", "?before=0", "?before=abc"):
                status, data = await owner.page("media", query)
                assert status == 400 and "error" in data, (query, data)

            # -- deleting: moderators, the author; deleted messages are gone -----------------
            _, data = await bob.page("general")
            mine = next(m for m in data["messages"] if m["user"]["id"] == bob_id)
            owners = next(m for m in data["messages"] if m["user"]["id"] == owner_id)
            dave_msg = next(m for m in data["messages"] if m["user"]["id"] == dave_id)
            assert (await bob.call("DELETE", f"/api/community/messages/{dave_msg['id']}"))[0] == 403
            status, data = await carol.call("DELETE", f"/api/community/messages/{owners['id']}")
            assert status == 403  # moderators do not delete the owner's messages
            assert (await bob.call("DELETE", f"/api/community/messages/{mine['id']}"))[0] == 200
            assert (await carol.call("DELETE", f"/api/community/messages/{dave_msg['id']}"))[
                0
            ] == 200
            assert (await carol.call("DELETE", f"/api/community/messages/{dave_msg['id']}"))[
                0
            ] == 404
            gone = await watcher.next("community:deleted")
            assert gone["topic"] == "general"
            _, data = await owner.page("general")
            shown = {m["id"] for m in data["messages"]}
            assert mine["id"] not in shown and dave_msg["id"] not in shown
            await watcher.ws.close()

            # -- bad input and unknown things ------------------------------------------------
            assert (await bob.call("POST", f"{TOPICS}/general/read", {"last_id": -1}))[0] == 400
            assert (await bob.call("POST", f"{TOPICS}/general/read", {"last_id": "x"}))[0] == 400
            async with http.post(
                f"{TOPICS}/general/messages", data="content", headers=auth(bob_t)
            ) as r:
                assert r.status == 415
            async with http.post(
                f"{TOPICS}/general/messages",
                data="{nope",
                headers={**auth(bob_t), "Content-Type": "application/json"},
            ) as r:
                assert r.status == 400 and (await r.json())["error"]["code"] == "invalid_json"
            assert (await bob.page("nope"))[0] == 404
            assert (await bob.page("Bad Name!"))[0] == 404
            assert (await bob.call("GET", "/api/channels/nobody/community/topics"))[0] == 404
            assert (await bob.call("DELETE", "/api/community/messages/999999"))[0] == 404
            assert (await anon.post("general", "hi"))[0] == 401

            # -- a logged-in-only chat is a logged-in-only community -------------------------
            assert (await owner.call("PATCH", settings, {"logged_in_only": True}))[0] == 200
            assert (await anon.call("GET", TOPICS))[0] == 401
            assert (await anon.page("general"))[0] == 401
            async with http.get(f"/streams/{SLUG}/community/general", allow_redirects=False) as r:
                assert r.status == 303 and r.headers["Location"].startswith("/auth/login")
            assert (await owner.call("PATCH", settings, {"logged_in_only": False}))[0] == 200

            # -- the pages -------------------------------------------------------------------
            async with http.get(f"/streams/{SLUG}/community", allow_redirects=False) as r:
                assert r.status == 303 and r.headers["Location"].endswith("/community/media")
            async with http.get(f"/streams/{SLUG}/community/general") as r:
                assert r.status == 200
                html = await r.text()
                assert "#general" in html and "#news" in html and "community.js" in html
            async with http.get(f"/streams/{SLUG}/community/missing") as r:
                assert r.status == 404
            async with http.get(f"/streams/{SLUG}") as r:
                assert f'href="/streams/{SLUG}/community"' in await r.text()
            async with http.get(
                f"/dashboard/channels/{SLUG}/community", headers=auth(owner_t)
            ) as r:
                assert r.status == 200 and "Add topic" in await r.text()
            async with http.get(f"/dashboard/channels/{SLUG}/community", headers=auth(bob_t)) as r:
                assert r.status == 403
            kept = [m["content"] for m in (await owner.page("general", "?limit=5"))[1]["messages"]]

    # -- messages, topics and markers are in the database: a restart keeps them ---------------
    started = datetime.now(UTC)
    async with running_server(env) as again:
        async with aiohttp.ClientSession(base_url(again)) as http:
            owner, bob = Api(http, owner_t), Api(http, bob_t)
            status, data = await owner.page("general", "?limit=5")
            assert status == 200 and [m["content"] for m in data["messages"]] == kept
            assert all(datetime.fromisoformat(m["created_at"]) < started for m in data["messages"])
            assert await bob.unread() == {"media": 0, "general": 1, "news": 0}


async def test_cluster_node_shares_the_chat_rate_limit(
    settings_env: dict[str, str], redis_url: str
) -> None:
    """On a node with Redis the community post is counted by the chat's own limit in Redis
    for that channel and user: live chat messages and community posts share one budget, so it
    holds across nodes (and cannot be doubled by writing in both)."""
    env = {
        **settings_env,
        "AETHEX_CLUSTER__REDIS_URL": redis_url,
        "AETHEX_CHAT__RATE_LIMIT_MESSAGES": "3",
        "AETHEX_CHAT__RATE_LIMIT_WINDOW": "600",
    }
    async with running_server(env) as server:
        _, _, owner_t = await make_chat_channel(server, "alice", SLUG)
        _, bob_t = await make_user(server, "bob")
        async with aiohttp.ClientSession(base_url(server)) as http:
            owner, bob = Api(http, owner_t), Api(http, bob_t)
            assert (await owner.call("POST", TOPICS, {"name": "general"}))[0] == 201
            for n in range(2):
                status, data = await bob.call(
                    "POST", "/api/messages", {"channel": SLUG, "content": f"live {n}"}
                )
                assert status == 201, data
            assert (await bob.post("general", "third"))[0] == 201
            status, data = await bob.post("general", "fourth")
            assert (status, code(data)) == (429, "rate_limited"), data
            status, data = await bob.call(
                "POST", "/api/messages", {"channel": SLUG, "content": "live again"}
            )
            assert (status, code(data)) == (429, "rate_limited"), data
