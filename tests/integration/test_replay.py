"""Chat replay and chapters of a past broadcast through the JSON API (issue 13).

A real server on free ports, real accounts through the API, a real SQLite file. The broadcast
is an ARCHIVED stream row whose messages are written at known offsets from its start (some on
the same microsecond, some deleted), so each answer can be compared with what it must hold:
the window [from, to) exactly, in order, with no deleted message; pages of a busy window joined
by their cursor give the whole window once; walking the video window by window gives the whole
chat; a seek to any offset gives exactly the messages of that window. Visibility is the video
page's: private for its owner and admins, 404 for the rest (as for a deleted or unknown one).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from storage import queries
from storage.chat_models import ChatSettings
from storage.creator_models import StreamChapter
from storage.models import Message, Stream, StreamStatus
from tests.accounts import register, user_of
from tests.conftest import make_channel, running_server

# One server and one seeded broadcast for the whole file (seeding is most of a test's time): the
# tests that change the video or its channel's chat settings put them back.
pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

STARTED = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
DURATION = 3600.0


@dataclass
class Broadcast:
    base: str
    server: Any
    stream: Stream
    ref: str
    # (exact offset, id, content) of every visible message, in (created_at, id) order.
    visible: list[tuple[float, int, str]]
    users: dict[str, aiohttp.ClientSession]

    async def get(self, path: str, who: str = "anon") -> tuple[int, Any]:
        async with aiohttp.ClientSession() as anon:
            http = self.users.get(who, anon)
            async with http.get(f"{self.base}{path}") as resp:
                return resp.status, await resp.json(content_type=None)

    def expected(self, start: float, end: float) -> list[tuple[float, int, str]]:
        """The visible messages in [start, end), as the API shows them (offsets in ms)."""
        return [(round(o, 3), i, c) for o, i, c in self.visible if start <= o < end]


def offsets() -> list[float]:
    """Seconds into the stream of the messages: a steady drizzle, a burst of 40 on one
    microsecond at 100 s (ties broken by id), and messages on window edges."""
    out = [i * 7.3 for i in range(400)]  # up to ~2900 s
    out += [100.0] * 40
    out += [60.0, 120.0, 179.999999]
    return out


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def broadcast(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Broadcast]:
    env = {
        "AETHEX_DATA_DIR": str(tmp_path_factory.mktemp("replay") / "data"),
        "AETHEX_HTTP_HOST": "127.0.0.1",
        "AETHEX_HTTP_PORT": "0",
        "AETHEX_RTMP_HOST": "127.0.0.1",
        "AETHEX_RTMP_PORT": "0",
        "AETHEX_TRANSCODE__ENABLED": "false",
    }
    async with running_server(env) as server:
        async for made in _seeded(server):
            yield made


async def _seeded(server: Any) -> AsyncIterator[Broadcast]:
    base = f"http://127.0.0.1:{server.http_port}"
    users = {}
    for name in ("admin", "owner", "other"):  # the first account is the admin
        users[name] = await register(base, name)
    try:
        channel_id, _ = await make_channel(server, "replay-tv", "owner")
        owner = await user_of(users["owner"], base)
        async with server.db.session() as db:
            row = await queries.start_stream(db, channel_id, STARTED)
            await queries.end_stream(db, row.id, STARTED + timedelta(seconds=DURATION))
            row.status = StreamStatus.ARCHIVED
            row.vod_available, row.vod_duration_seconds = True, DURATION
            messages = []
            for k, offset in enumerate(offsets()):
                m = Message(
                    stream_id=row.id,
                    channel_id=channel_id,
                    user_id=owner["id"],
                    content=f"m{k} <b>&",
                    created_at=STARTED + timedelta(seconds=offset),
                )
                if k % 9 == 4:
                    m.deleted_at = STARTED + timedelta(seconds=offset + 1)
                messages.append(m)
            db.add_all(messages)
            # Another stream's message at the same times is never part of this replay.
            other = await queries.start_stream(db, channel_id, STARTED)
            db.add(
                Message(
                    stream_id=other.id,
                    channel_id=channel_id,
                    user_id=owner["id"],
                    content="elsewhere",
                    created_at=STARTED + timedelta(seconds=10),
                )
            )
            await db.commit()
            visible = sorted(
                (
                    ((m.created_at - STARTED).total_seconds(), m.id, m.content)
                    for m in messages
                    if m.deleted_at is None
                ),
                key=lambda t: (STARTED + timedelta(seconds=t[0]), t[1]),
            )
            stream = row
        yield Broadcast(base, server, stream, str(stream.id), visible, users)
    finally:
        for http in users.values():
            await http.close()


def triples(body: dict) -> list[tuple[float, int, str]]:
    return [(m["offset"], m["id"], m["content"]) for m in body["messages"]]


async def test_a_window_holds_exactly_its_messages_in_order(broadcast: Broadcast) -> None:
    status, body = await broadcast.get(f"/api/videos/{broadcast.ref}/chat?from=0&to=60")
    assert status == 200, body
    assert triples(body) == broadcast.expected(0, 60)
    assert body["next_cursor"] is None and body["from"] == 0 and body["to"] == 60
    assert body["duration"] == DURATION
    first = body["messages"][0]
    assert first["user"]["username"] == "owner" and first["content"] == "m0 <b>&"
    # The message at exactly 60 s is the next window's, never both.
    status, nxt = await broadcast.get(f"/api/videos/{broadcast.ref}/chat?from=60&to=120")
    assert any(m["offset"] == 60.0 for m in nxt["messages"])
    assert not any(m["offset"] == 60.0 for m in body["messages"])


async def test_deleted_messages_are_left_out(broadcast: Broadcast) -> None:
    seen: list[str] = []
    for start in range(0, 3600, 600):
        _, body = await broadcast.get(
            f"/api/videos/{broadcast.ref}/chat?from={start}&to={start + 600}&limit=1000"
        )
        seen += [m["content"] for m in body["messages"]]
    deleted = {f"m{k} <b>&" for k in range(len(offsets())) if k % 9 == 4}
    assert seen and not deleted & set(seen)
    assert "elsewhere" not in seen


async def test_a_busy_window_pages_by_cursor_and_walking_gives_the_whole_chat(
    broadcast: Broadcast,
) -> None:
    # 40 messages on one microsecond at 100 s: pages of 7 split them, the cursor (time, id)
    # continues exactly after the last one.
    got: list[tuple[float, int, str]] = []
    cursor, pages = None, 0
    while True:
        query = "from=90&to=110&limit=7" + (f"&cursor={cursor}" if cursor else "")
        status, body = await broadcast.get(f"/api/videos/{broadcast.ref}/chat?{query}")
        assert status == 200, body
        assert len(body["messages"]) <= 7
        got += triples(body)
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert got == broadcast.expected(90, 110) and pages > 5
    assert len(set(got)) == len(got)

    walked: list[tuple[float, int, str]] = []
    start = 0.0
    while start < DURATION:
        cursor = None
        while True:
            query = f"from={start}&to={start + 60}&limit=25" + (
                f"&cursor={cursor}" if cursor else ""
            )
            _, body = await broadcast.get(f"/api/videos/{broadcast.ref}/chat?{query}")
            walked += triples(body)
            if (cursor := body["next_cursor"]) is None:
                break
        start += 60
    assert walked == broadcast.expected(0, DURATION)


@pytest.mark.parametrize("at", [0.0, 7.3, 99.99, 100.0, 123.45, 179.999999, 1800.5, 2915.0])
async def test_seeking_loads_the_window_at_the_new_position(
    broadcast: Broadcast, at: float
) -> None:
    status, body = await broadcast.get(f"/api/videos/{broadcast.ref}/chat?from={at}&to={at + 30}")
    assert status == 200, body
    assert triples(body) == broadcast.expected(at, at + 30)
    # Without "to", the server's default window (replay.chat_window_seconds).
    window = broadcast.server.settings.replay.chat_window_seconds
    _, body = await broadcast.get(f"/api/videos/{broadcast.ref}/chat?from={at}")
    assert body["to"] == pytest.approx(at + window)
    assert triples(body) == broadcast.expected(at, at + window)[: len(body["messages"])]


@pytest.mark.parametrize(
    "query",
    [
        "from=-1",
        "from=abc",
        "from=nan",
        "from=inf",
        "from=10&to=5",
        "from=10&to=10",
        "from=0&to=100000",
        "limit=0",
        "limit=100000",
        "cursor=zzz",
        "cursor=1_",
        "cursor=99999999999999999999_1",
    ],
)
async def test_bad_windows_are_400_with_the_error_shape(broadcast: Broadcast, query: str) -> None:
    status, body = await broadcast.get(f"/api/videos/{broadcast.ref}/chat?{query}")
    assert status == 400, (query, body)
    assert body["error"]["code"] == "invalid" and body["error"]["message"]


async def test_replay_and_chapters_follow_the_video_visibility(broadcast: Broadcast) -> None:
    paths = [f"/api/videos/{broadcast.ref}/chat", f"/api/videos/{broadcast.ref}/chapters"]
    for path in paths:
        for who in ("anon", "other", "owner", "admin"):
            status, _ = await broadcast.get(path, who)
            assert status == 200, (path, who)
    try:
        await set_video(broadcast, visibility="private")
        for path in paths:
            for who, expected in (("anon", 404), ("other", 404), ("owner", 200), ("admin", 200)):
                status, body = await broadcast.get(path, who)
                assert status == expected, (path, who, body)
            # By its public id too: private means private.
            status, _ = await broadcast.get(path.replace(broadcast.ref, broadcast.stream.public_id))
            assert status == 404
        await set_video(broadcast, visibility="public", deleted_at=datetime.now(UTC))
        for path in paths + ["/api/videos/999999/chat", "/api/videos/nope/chapters"]:
            for who in ("anon", "owner"):
                status, body = await broadcast.get(path, who)
                assert status == 404, (path, who)
                assert body["error"]["code"] == "not_found"
    finally:
        await set_video(broadcast, visibility="public", deleted_at=None)


async def set_video(broadcast: Broadcast, **fields: Any) -> None:
    async with broadcast.server.db.session() as db:
        row = await db.get(Stream, broadcast.stream.id)
        assert row is not None
        for name, value in fields.items():
            setattr(row, name, value)
        await db.commit()


async def test_chapters_in_order_with_their_categories(broadcast: Broadcast) -> None:
    # start_stream recorded the first chapter (at 0, the title it started with).
    status, body = await broadcast.get(f"/api/videos/{broadcast.ref}/chapters")
    assert status == 200
    assert [c["offset"] for c in body["chapters"]] == [0.0]
    async with broadcast.server.db.session() as db:
        db.add_all(
            [
                StreamChapter(
                    stream_id=broadcast.stream.id,
                    offset_seconds=1200.5,
                    title="Boss fight",
                    category_name="Games",
                ),
                StreamChapter(stream_id=broadcast.stream.id, offset_seconds=600.0, title="Intro"),
            ]
        )
        await db.commit()
    _, body = await broadcast.get(f"/api/videos/{broadcast.ref}/chapters")
    assert [(c["offset"], c["title"]) for c in body["chapters"]][1:] == [
        (600.0, "Intro"),
        (1200.5, "Boss fight"),
    ]
    assert body["chapters"][2]["category"] == {"id": None, "name": "Games"}
    assert body["chapters"][1]["category"] is None
    assert body["duration"] == DURATION


async def test_a_chat_for_logged_in_users_is_replayed_to_them_only(broadcast: Broadcast) -> None:
    async with broadcast.server.db.session() as db:
        db.add(ChatSettings(channel_id=broadcast.stream.channel_id, logged_in_only=True))
        await db.commit()
    try:
        path = f"/api/videos/{broadcast.ref}/chat?from=0&to=60"
        status, body = await broadcast.get(path)
        assert status == 401 and body["error"]["code"] == "unauthenticated"
        status, body = await broadcast.get(path, "other")
        assert status == 200 and triples(body) == broadcast.expected(0, 60)
        status, _ = await broadcast.get(f"/api/videos/{broadcast.ref}/chapters")
        assert status == 200  # chapters are the video's, not the chat's
    finally:
        async with broadcast.server.db.session() as db:
            row = await db.get(ChatSettings, broadcast.stream.channel_id)
            assert row is not None
            await db.delete(row)
            await db.commit()
