"""``storage.replay`` on a real SQLite file and a real PostgreSQL (issue 13): chat windows and
their cursor pages, chapters recorded as a live stream's title or category changes.

Every query must serve both databases: a window is exactly its messages in (time, id) order,
ties on one microsecond are split by the cursor without loss or repeat, deleted and other
streams' messages never show; on SQLite the plan reads the (stream_id, created_at) index.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.dialects import sqlite

from storage import Database, categories, queries, replay, upgrade
from storage import channels as channel_queries
from storage.creator_models import StreamChapter
from storage.errors import ValidationError
from storage.models import Channel, Message, Stream, StreamStatus

pytestmark = pytest.mark.integration

STARTED = datetime(2026, 5, 1, 20, 0, tzinfo=UTC)


async def _broadcast(db: Database) -> tuple[int, int, int]:
    async with db.session() as session:
        user = await queries.create_user(session, "caster", "caster@example.test", "pw-123456789")
        channel = await queries.create_channel(session, "caster", "caster-tv", "Caster TV")
        stream = await queries.start_stream(session, channel.id, STARTED)
        await session.commit()
        return user.id, channel.id, stream.id


async def test_windows_and_cursor_pages(db_on_both: Database) -> None:
    user_id, channel_id, stream_id = await _broadcast(db_on_both)
    offsets = [k * 0.75 for k in range(160)] + [30.0] * 25  # a burst of ties at 30 s
    async with db_on_both.session() as session:
        rows = [
            Message(
                stream_id=stream_id,
                channel_id=channel_id,
                user_id=user_id,
                content=f"#{k}",
                created_at=STARTED + timedelta(seconds=o),
                deleted_at=STARTED if k % 11 == 3 else None,
            )
            for k, o in enumerate(offsets)
        ]
        session.add_all(rows)
        other = await queries.start_stream(session, channel_id, STARTED)  # ends the first
        session.add(
            Message(
                stream_id=other.id,
                channel_id=channel_id,
                user_id=user_id,
                content="other stream",
                created_at=STARTED + timedelta(seconds=30),
            )
        )
        await session.commit()
        visible = sorted(
            ((r.created_at, r.id, r.content) for r in rows if r.deleted_at is None),
        )

    def expected(start: float, end: float) -> list[str]:
        low, high = STARTED + timedelta(seconds=start), STARTED + timedelta(seconds=end)
        return [c for t, _, c in visible if low <= t < high]

    async with db_on_both.session() as session:
        stream = await queries.end_stream(session, stream_id, STARTED + timedelta(hours=1))
        for start, end in ((0, 30), (30, 30.000001), (29.9, 31), (0, 200), (119.25, 121)):
            got, more = await replay.chat_window(session, stream, start, end, limit=1000)
            assert more is None
            assert [m.content for m in got] == expected(start, end), (start, end)
            assert all(start <= m.offset for m in got)
        # Pages of 4 over the ties: joined, exactly the window once.
        pages: list[str] = []
        cursor = None
        while True:
            got, cursor = await replay.chat_window(session, stream, 29, 31, limit=4, cursor=cursor)
            pages += [m.content for m in got]
            if cursor is None:
                break
            cursor = replay.ChatCursor.decode(cursor.encode())  # as it travels in a URL
        assert pages == expected(29, 31) and len(pages) > 20
        got, _ = await replay.chat_window(session, stream, 10, 5, limit=10)
        assert got == []


async def test_the_window_reads_the_stream_time_index(tmp_path: Path) -> None:
    """SQLite only: its plan is fixed by the schema, where PostgreSQL picks by its statistics."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'aethex.db'}"
    upgrade(url)
    async with Database(url) as db:
        await _assert_plan_uses_the_index(db)


async def _assert_plan_uses_the_index(db: Database) -> None:
    cursor = replay.ChatCursor(STARTED, 7)
    compiled = (
        replay.window_query(1, STARTED, 0, 60, cursor).limit(10).compile(dialect=sqlite.dialect())
    )
    params = tuple(
        str(compiled.params[name])
        if isinstance(compiled.params[name], datetime)
        else compiled.params[name]
        for name in compiled.positiontup or ()
    )
    async with db.engine.connect() as conn:
        plan = (await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + str(compiled), params)).all()
    details = " | ".join(str(row[-1]) for row in plan)
    assert "ix_messages_stream_id_created_at" in details, details
    assert "TEMP B-TREE" not in details, details  # read in the index's order, not sorted


def test_cursor_text_is_checked() -> None:
    cursor = replay.ChatCursor(STARTED + timedelta(microseconds=5), 42)
    assert replay.ChatCursor.decode(cursor.encode()) == cursor
    for bad in ("", "1", "_1", "1_", "a_1", "1_b", "-1_1", "1_1_1", "9" * 19 + "_1"):
        with pytest.raises(ValidationError):
            replay.ChatCursor.decode(bad)


async def test_chapters_follow_title_and_category_changes_while_live(
    db_on_both: Database,
) -> None:
    _, channel_id, stream_id = await _broadcast(db_on_both)
    async with db_on_both.session() as session:
        chess = await categories.create_category(session, {"name": "Chess"})
        stream = await session.get(Stream, stream_id)
        channel = await session.get(Channel, channel_id)
        assert stream is not None and channel is not None
        # Edits through the storage call the stream API uses: each visible change is a chapter.
        await channel_queries.update_stream(session, stream, channel, {"title": "Opening"})
        await channel_queries.update_stream(session, stream, channel, {"tags": ["blitz"]})
        await channel_queries.update_stream(session, stream, channel, {"title": "Opening"})
        await session.commit()
        rows = (
            (
                await session.execute(
                    select(StreamChapter)
                    .where(StreamChapter.stream_id == stream_id)
                    .order_by(StreamChapter.offset_seconds)
                )
            )
            .scalars()
            .all()
        )
        assert [(r.title, r.category_name) for r in rows] == [
            ("Caster TV", None),
            ("Opening", None),
        ]
        assert rows[0].offset_seconds == 0.0 and rows[1].offset_seconds > 0
        # At given times: two changes within a second make one chapter (the last wins).
        at = STARTED + timedelta(seconds=rows[1].offset_seconds + 100)
        stream.category_id, stream.category = chess.id, chess.name
        await replay.add_chapter(session, stream, at)
        stream.title = "Middlegame"
        await replay.add_chapter(session, stream, at + timedelta(seconds=0.5))
        chapters = await replay.list_chapters(session, stream)
        assert [(c.title, c.category_name) for c in chapters][-1] == ("Middlegame", "Chess")
        assert len(chapters) == 3
        assert chapters[-1].offset == pytest.approx(rows[1].offset_seconds + 100, abs=0.001)
        await session.commit()

        # Once the stream is over, edits change the row but make no chapter.
        await queries.end_stream(session, stream_id, at + timedelta(minutes=5))
        stream.status = StreamStatus.ARCHIVED
        await channel_queries.update_stream(session, stream, channel, {"title": "Renamed later"})
        await session.commit()
        assert len(await replay.list_chapters(session, stream)) == 3


async def test_a_broadcast_without_chapter_rows_has_one(db_on_both: Database) -> None:
    _, _, stream_id = await _broadcast(db_on_both)
    async with db_on_both.session() as session:
        await session.execute(
            StreamChapter.__table__.delete().where(StreamChapter.stream_id == stream_id)
        )
        stream = await session.get(Stream, stream_id)
        assert stream is not None
        chapters = await replay.list_chapters(session, stream)
        assert [(c.offset, c.title) for c in chapters] == [(0.0, "Caster TV")]
