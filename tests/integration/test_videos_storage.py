"""storage.videos on SQLite and on a real PostgreSQL (issue 13): one view per viewer key,
the owner's library with storage used, public listings leaving out unlisted, private and
deleted videos, and retention's plan with per-channel limits and pinned videos."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pg import postgres_server, postgres_url  # noqa: F401  (fixtures)

from storage import Database, browse, channel_pages, queries
from storage import channels as channel_queries
from storage import videos as video_queries
from storage.models import Stream, StreamStatus

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)


@pytest.fixture
def db(db_on_both: Database) -> Database:
    return db_on_both


async def test_views_library_listings_and_retention(db: Database) -> None:
    async with db.session() as s:
        await queries.create_user(s, "ana", "ana@example.org", "pg-password-1")
        await queries.create_channel(s, "ana", "ana-tv")
        await queries.create_channel(s, "ana", "ana-two")
        await s.commit()
    async with db.session() as s:
        one = await queries.get_channel_by_slug(s, "ana-tv")
        two = await queries.get_channel_by_slug(s, "ana-two")
        assert one is not None and two is not None
        made: dict[str, Stream] = {}
        for name, channel, days, size, visibility in (
            ("old", one, 40, 100, "public"),
            ("pinned", one, 50, 100, "public"),
            ("unlisted", one, 3, 200, "unlisted"),
            ("private", one, 2, 300, "private"),
            ("deleted", one, 1, None, "public"),
            ("two old", two, 20, 50, "public"),
        ):
            ended = NOW - timedelta(days=days)
            row = await queries.start_stream(s, channel.id, ended - timedelta(hours=1), name)
            await queries.end_stream(s, row.id, ended, StreamStatus.ARCHIVED)
            row.vod_available, row.size_bytes, row.visibility = True, size, visibility
            made[name] = row
        made["pinned"].pinned = True
        await video_queries.mark_deleted(s, made["deleted"])
        await video_queries.update_channel_video_settings(s, two, {"retention_days": 10})
        await s.commit()

    async with db.session() as s:
        # One view per viewer key.
        sid = made["old"].id
        assert await video_queries.record_view(s, sid, "k1")
        assert not await video_queries.record_view(s, sid, "k1")
        assert await video_queries.record_view(s, sid, "k2")
        assert await video_queries.record_view(s, made["pinned"].id, "k1")
        await s.commit()
    async with db.session() as s:
        assert (await s.get(Stream, made["old"].id)).views == 2  # type: ignore[union-attr]
        # The owner's library: all six, newest first; storage used: the kept ones' bytes.
        library = await video_queries.channel_videos(s, one.id, limit=10)
        assert [r.title for r in library] == ["deleted", "private", "unlisted", "pinned", "old"]
        assert await video_queries.storage_used(s, one.id) == 100 + 100 + 200 + 300
        # Public listings: the public, undeleted ones.
        page = await channel_pages.past_broadcasts(s, one.id, limit=10)
        assert {r.title for r in page.broadcasts} == {"old", "pinned"}
        listed = await channel_queries.list_streams(s, channel_ids=[one.id], live=False)
        assert {r.title for r, _ in listed} == {"old", "pinned"}
        owners = await channel_queries.list_streams(
            s, channel_ids=[one.id], live=False, public_only=False, listed_only=False
        )
        assert len(owners) == 5
        assert await browse.past_in_category(s, 1, 10) == []  # none has a category
        # Retention: the server keeps 30 days; ana-two keeps 10 of its own.
        plan = await video_queries.retention_candidates(s, video_queries.Limits(30, 0), NOW)
        assert {(v.stream_id, slug) for v, slug, _ in plan} == {
            (made["old"].id, "ana-tv"),
            (made["two old"].id, "ana-two"),
        }
        # With no server limit only ana-two's own applies.
        plan = await video_queries.retention_candidates(s, video_queries.Limits(0, 0), NOW)
        assert [v.stream_id for v, _, _ in plan] == [made["two old"].id]
        # By size: the server's 350 bytes (in GB) over the unpinned, kept ones of ana-tv
        # (old 100, unlisted 200, private 300): the oldest go until 350 fit; ana-two's own
        # 10 days still apply beside the server's size limit.
        limits = video_queries.Limits(0, 350 / video_queries.GB)
        plan = await video_queries.retention_candidates(s, limits, NOW)
        assert {v.stream_id for v, _, _ in plan} == {
            made["old"].id,
            made["unlisted"].id,
            made["two old"].id,
        }
