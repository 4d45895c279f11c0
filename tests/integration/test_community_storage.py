"""Community channels' storage (issue 16) on a real SQLite file and a real PostgreSQL: topic
rules (names, limit, order), paging newest first by id with a cursor, deleted messages and
excluded authors left out, read markers that only move forward, bounded unread counts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from storage import Database, queries
from storage import community as store
from storage.errors import ConflictError, ValidationError

pytestmark = pytest.mark.integration


async def test_topics_messages_and_unread_on_both(db_on_both: Database) -> None:
    now = datetime.now(UTC)
    async with db_on_both.session() as s:
        owner = await queries.create_user(s, "alice", "alice@example.test", None)
        reader = await queries.create_user(s, "bob", "bob@example.test", None)
        other = await queries.create_user(s, "carol", "carol@example.test", None)
        channel = await queries.create_channel(s, "alice", "alice-live")
        general = await store.create_topic(s, channel.id, "#General", "text", 3)
        news = await store.create_topic(s, channel.id, "news", "announcements", 3)
        clips = await store.create_topic(s, channel.id, "clips", "text", 3)
        await s.commit()

        assert general.name == "general" and news.kind == "announcements"
        cid, owner_id, reader_id, other_id = channel.id, owner.id, reader.id, other.id
        with pytest.raises(ValidationError):
            await store.create_topic(s, channel.id, "more", "text", 3)
        for bad_name, bad_kind in (("a b", "text"), ("ok", "voice"), ("", "text")):
            with pytest.raises(ValidationError):
                await store.create_topic(s, channel.id, bad_name, bad_kind, 10)
        with pytest.raises(ConflictError):
            await store.create_topic(s, channel.id, "news", "text", 10)
        with pytest.raises(ConflictError):
            await store.edit_topic(s, clips, name="general")
        await s.rollback()  # expires every object read so far: ids only from here

        general = await store.get_topic(s, cid, "general")
        news = await store.get_topic(s, cid, "news")
        clips = await store.get_topic(s, cid, "clips")
        assert general is not None and news is not None
        assert clips is not None
        await store.edit_topic(s, clips, name="media", position=0)
        await s.commit()
        assert [t.name for t in await store.list_topics(s, cid)] == [
            "media",
            "general",
            "news",
        ]

        ids = [
            await store.add_message(
                s, general.id, other_id if i % 3 == 0 else owner_id, f"m{i}", now
            )
            for i in range(10)
        ]
        await store.soft_delete(s, ids[5], owner_id, now)
        await s.commit()

        # newest first, cursor by id, deleted and excluded authors left out
        page = await store.page_messages(s, general.id, before=None, limit=4)
        assert [m.content for m in page] == ["m9", "m8", "m7", "m6"]
        page = await store.page_messages(s, general.id, before=page[-1].id, limit=4)
        assert [m.content for m in page] == ["m4", "m3", "m2", "m1"]
        page = await store.page_messages(s, general.id, before=page[-1].id, limit=4)
        assert [m.content for m in page] == ["m0"]
        page = await store.page_messages(
            s, general.id, before=None, limit=20, exclude_users={other_id}
        )
        assert "m9" not in [m.content for m in page] and len(page) == 5
        assert page[0].username == "alice" and page[0].display_name == "alice"
        assert await store.get_message(s, ids[5]) is None
        found = await store.get_message(s, ids[4])
        assert found is not None and found[1].id == general.id

        # unread: never read counts from the start; own and excluded authors never count
        topic_ids = [general.id, news.id]
        assert await store.unread_counts(s, reader_id, topic_ids, cap=99) == {
            general.id: 9,
            news.id: 0,
        }
        assert (await store.unread_counts(s, reader_id, topic_ids, cap=4))[general.id] == 4
        counts = await store.unread_counts(
            s, reader_id, topic_ids, exclude_users={other_id}, cap=99
        )
        assert counts[general.id] == 5
        assert (await store.unread_counts(s, owner_id, topic_ids, cap=99))[general.id] == 4

        assert await store.mark_read(s, reader_id, general.id, ids[6]) == ids[6]
        assert await store.mark_read(s, reader_id, general.id, ids[2]) == ids[6]  # never back
        assert await store.mark_read(s, reader_id, general.id, 10**9) == ids[9]  # not past
        await s.commit()
        assert (await store.unread_counts(s, reader_id, topic_ids, cap=99))[general.id] == 0
        await store.add_message(s, general.id, owner_id, "new", now)
        await s.commit()
        assert (await store.unread_counts(s, reader_id, topic_ids, cap=99))[general.id] == 1
        assert await store.mark_read(s, reader_id, general.id, None) > ids[9]
        assert (await store.unread_counts(s, reader_id, topic_ids, cap=99))[general.id] == 0

        # deleting a topic takes its messages and markers with it
        await store.delete_topic(s, general)
        await s.commit()
        assert await store.get_message(s, ids[4]) is None
        assert await store.unread_counts(s, reader_id, [general.id], cap=99) == {general.id: 0}
