"""storage.clips on SQLite and on a real PostgreSQL (issue 13): one view per viewer key, top
clips by views over 7 days or all time (listed only), the rate limit's count, who may see and
delete, stale drafts and interrupted cuts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from storage import Database, queries
from storage import chat as chat_queries
from storage import clips as clip_queries
from storage.models import StreamStatus

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)


@pytest.fixture
def db(db_on_both: Database) -> Database:
    return db_on_both


async def test_views_top_rights_and_housekeeping(db: Database) -> None:
    async with db.session() as s:
        owner = await queries.create_user(s, "ana", "ana@example.org", "pg-password-1")
        fan = await queries.create_user(s, "bob", "bob@example.org", "pg-password-1")
        mod = await queries.create_user(s, "cyd", "cyd@example.org", "pg-password-1")
        channel = await queries.create_channel(s, "ana", "ana-tv")
        stream = await queries.start_stream(s, channel.id, NOW, title="run")
        await queries.end_stream(s, stream.id, NOW, StreamStatus.ARCHIVED)
        hidden = await queries.start_stream(s, channel.id, NOW, title="private run")
        await queries.end_stream(s, hidden.id, NOW, StreamStatus.ARCHIVED)
        hidden.visibility = "private"
        await chat_queries.add_moderator(s, channel.id, mod.id, owner.id)

        async def clip(title: str, stream_id: int, *, status: str = "ready", age: float = 0):
            row = await clip_queries.create(
                s,
                channel_id=channel.id,
                stream_id=stream_id,
                clipper_id=fan.id,
                title=title,
                source="vod",
                start=0.0,
                end=5.0,
                status=status,
            )
            when = NOW - timedelta(days=age)
            await clip_queries.update_fields(s, row.id, published_at=when, created_at=when)
            return row

        old = await clip("old", stream.id, age=30)
        new = await clip("new", stream.id)
        secret = await clip("secret", hidden.id)
        draft = await clip("draft", stream.id, status="draft", age=2)
        cutting = await clip("cutting", stream.id, status="processing")
        await s.commit()

        assert await clip_queries.record_view(s, new.id, "k1")
        assert not await clip_queries.record_view(s, new.id, "k1")
        assert await clip_queries.record_view(s, new.id, "k2")
        for key in ("k1", "k2", "k3"):
            await clip_queries.record_view(s, old.id, key)
        await clip_queries.record_view(s, secret.id, "k1")
        await s.commit()

        week = await clip_queries.top(s, channel.id, period="7d", limit=10)
        assert [(i.clip.title, i.clip.views) for i in week] == [("new", 2)]
        ever = await clip_queries.top(s, channel.id, period="all", limit=10)
        assert [i.clip.title for i in ever] == ["old", "new"]
        assert await clip_queries.created_since(s, fan.id, NOW - timedelta(days=1)) == 3
        assert await clip_queries.created_since(s, owner.id, NOW - timedelta(days=1)) == 0

        info = await clip_queries.get(s, secret.public_id)
        assert info is not None and info.clipper == "bob"
        assert clip_queries.visibility(info.channel, info.stream) == "private"
        assert not clip_queries.can_view(info, fan.id, False)  # the clipper, but private
        assert clip_queries.can_view(info, owner.id, False)
        assert clip_queries.can_view(info, None, True)
        draft_info = await clip_queries.get(s, draft.public_id)
        assert draft_info is not None
        assert clip_queries.can_view(draft_info, fan.id, False)
        assert not clip_queries.can_view(draft_info, mod.id, False)
        assert await clip_queries.can_delete(s, draft_info, mod)
        assert await clip_queries.can_delete(s, draft_info, fan)
        other = await queries.create_user(s, "dia", "dia@example.org", "pg-password-1")
        assert not await clip_queries.can_delete(s, draft_info, other)

        stale = await clip_queries.stale_drafts(s, NOW - timedelta(days=1))
        assert stale == [draft.public_id]
        assert await clip_queries.mark_deleted_by_public_id(s, stale) == 1
        assert await clip_queries.fail_interrupted(s) == 1
        await s.commit()
        gone = await clip_queries.get(s, draft.public_id)
        assert gone is not None and gone.clip.status == "deleted"
        assert not clip_queries.can_view(gone, owner.id, True)
        failed = await clip_queries.get(s, cutting.public_id)
        assert failed is not None and failed.clip.status == "failed" and failed.clip.error
        assert await clip_queries.mark_deleted(s, new.id)
        assert not await clip_queries.mark_deleted(s, new.id)
