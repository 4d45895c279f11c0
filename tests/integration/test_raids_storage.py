"""Raids' storage (issue 16) on SQLite and PostgreSQL: a channel's extras (defaults without a
row, partial updates, validation), follow dates in one query, a channel's broadcast window,
the live channels a raid may target (search with LIKE characters taken literally, unlisted
ones by exact slug only), and raids recorded, listed both ways and read back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from storage import Database, follows, queries
from storage import raids as store
from storage.errors import ValidationError

pytestmark = pytest.mark.integration


async def test_raid_storage(db_on_both: Database) -> None:
    now = datetime.now(UTC)
    async with db_on_both.session() as s:
        for name in ("ann", "ben", "cat"):
            await queries.create_user(s, name, f"{name}@example.test", None)
        a = await queries.create_channel(s, "ann", "ann-live", title="Ann 100% fun")
        b = await queries.create_channel(s, "ben", "ben-live", title="Ben")
        c = await queries.create_channel(s, "cat", "cat-hidden", title="Cat")
        c.is_public = False
        await s.commit()

        assert (await store.get_extras(s, a.id)).as_dict() == {
            "raid_policy": "anyone",
            "typing_indicators": True,
        }
        for bad in ([], {"raid_policy": "maybe"}, {"typing_indicators": "yes"}, {"x": 1}):
            with pytest.raises(ValidationError):
                store.validate_extras(bad)
        await store.update_extras(s, a.id, store.validate_extras({"raid_policy": "followed"}))
        await store.update_extras(s, a.id, {"typing_indicators": False})
        await s.commit()
        assert (await store.get_extras(s, a.id)).as_dict() == {
            "raid_policy": "followed",
            "typing_indicators": False,
        }

        ben = await queries.get_user_by_username(s, "ben")
        cat = await queries.get_user_by_username(s, "cat")
        assert ben is not None and cat is not None
        await follows.follow(s, ben.id, a.id)
        await s.commit()
        dates = await store.follow_dates(s, a.id, [ben.id, cat.id])
        assert list(dates) == [ben.id] and abs(dates[ben.id] - now) < timedelta(minutes=5)
        assert await store.follows_channel(s, ben.id, a.id)
        assert not await store.follows_channel(s, cat.id, a.id)

        assert await store.broadcast_of(s, a.id) is None
        old = await queries.start_stream(s, a.id, now - timedelta(hours=2))
        await queries.end_stream(s, old.id, now - timedelta(hours=1))
        ended = await store.broadcast_of(s, a.id)
        assert ended is not None and not ended.live and ended.ended_at is not None
        live = await queries.start_stream(s, a.id, now)
        live.viewer_count = 7
        await queries.start_stream(s, b.id, now)
        await queries.start_stream(s, c.id, now)
        await s.commit()
        got = await store.broadcast_of(s, a.id)
        assert got is not None and got.live and got.viewers == 7

        async def slugs(q: str, exclude: int = 0) -> list[str]:
            rows = await store.live_channels(s, q, exclude_id=exclude, limit=10)
            return [r.slug for r in rows]

        assert await slugs("") == ["ann-live", "ben-live"]  # most watched first; no unlisted
        assert await slugs("", exclude=a.id) == ["ben-live"]
        assert await slugs("100%") == ["ann-live"]  # the title's own "%"
        assert await slugs("%") == ["ann-live"]
        assert await slugs("_") == []
        assert await slugs("cat") == []
        assert await slugs("cat-hidden") == ["cat-hidden"]

        assert await store.last_raid_at(s, a.id) is None
        raid = await store.record_raid(s, a.id, b.id, ben.id, 7, now)
        await s.commit()
        last = await store.last_raid_at(s, a.id)
        assert last is not None and abs(last - now) < timedelta(seconds=1)
        out = await store.list_raids(s, a.id, 10)
        into = await store.list_raids(s, b.id, 10)
        assert [(r["direction"], r["to"], r["by"]) for r in out] == [("out", "ben-live", "ben")]
        assert [(r["direction"], r["from"]) for r in into] == [("in", "ann-live")]
        one = await store.get_raid(s, raid.id)
        assert one is not None and one["from"]["slug"] == "ann-live" and one["viewers"] == 7
        assert await store.get_raid(s, raid.id + 1000) is None
