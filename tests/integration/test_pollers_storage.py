"""The statements the background pollers run every second, built once and executed with new
parameters each time (``storage.restream.enabled_destinations``, ``storage.notifications.
latest_id``): the same answers on SQLite and PostgreSQL, call after call, whatever the number
of ids in the IN list."""

from __future__ import annotations

import pytest

from storage import Database, queries
from storage import notifications as notes
from storage import restream as store
from storage.discovery_models import Notification

pytestmark = pytest.mark.integration


async def test_enabled_destinations_and_the_newest_notification(db_on_both: Database) -> None:
    async with db_on_both.session() as s:
        channels = []
        for name in ("ann", "ben", "cat"):
            await queries.create_user(s, name, f"{name}@example.test", None)
            channels.append(await queries.create_channel(s, name, f"{name}-live", title=name))
        ann, ben, cat = (c.id for c in channels)
        made = {}
        for channel_id, name, enabled in (
            (ann, "a1", True),
            (ann, "a2", False),
            (ben, "b1", True),
            (cat, "c1", True),
        ):
            row = await store.create_destination(
                s,
                channel_id,
                name=name,
                preset="custom",
                ingest_url="rtmp://relay.example.test/live",
                stream_key=f"key-{name}",
                enabled=enabled,
            )
            made[name] = row.id
        await s.commit()
        assert await notes.latest_id(s) == 0

    async def names(ids: list[int]) -> list[str]:
        async with db_on_both.session() as s:
            return [r.name for r in await store.enabled_destinations(s, ids)]

    # The one statement, with IN lists of every length and twice each (its cache must not
    # keep the first call's parameters).
    for _ in range(2):
        assert await names([ann]) == ["a1"]
        assert await names([ann, ben]) == ["a1", "b1"]
        assert await names([cat, ben, ann, 999_999]) == ["a1", "b1", "c1"]
        assert await names([999_999]) == []
        assert await names([]) == []
        assert await names(list(range(1, 2000))) == ["a1", "b1", "c1"]

    async with db_on_both.session() as s:
        user = await queries.get_user_by_username(s, "ben")
        assert user is not None
        for _ in range(3):
            row = Notification(user_id=user.id, kind="stream.online", channel_id=ann, payload={})
            s.add(row)
            await s.commit()
            assert await notes.latest_id(s) == row.id
