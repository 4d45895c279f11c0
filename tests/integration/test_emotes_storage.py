"""The emote sets' rules in storage, on SQLite and PostgreSQL: codes unique per set, a channel
code never a global one, the per-set limit, and the database itself refusing a second global
code (the partial unique index) even past the checks."""

from __future__ import annotations

import pytest
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from storage import emotes, queries
from storage.emote_models import Emote
from storage.errors import ConflictError, ValidationError
from storage.models import Channel

pytestmark = pytest.mark.integration

KEY = "0" * 32


async def test_emote_rules_on_both(db_on_both) -> None:
    async with db_on_both.session() as s:
        user = await queries.create_user(s, "owner", "owner@example.test", None)
        channel = await queries.create_channel(s, "owner", "emo")
        other = await queries.create_channel(s, "owner", "emo-two")
        cid, oid, uid = channel.id, other.id, user.id  # rows expire at each commit
        await s.commit()

        await emotes.create_emote(
            s, channel_id=None, code="Kappa", file_key=KEY, animated=False, limit=5
        )
        await emotes.create_emote(
            s, channel_id=cid, code="Pog", file_key=KEY, animated=True, limit=2,
            follower_only=True, created_by_id=uid,
        )  # fmt: skip
        # The same code in another channel is fine; in the same one, or a global one, not.
        await emotes.create_emote(
            s, channel_id=oid, code="Pog", file_key=KEY, animated=False, limit=2
        )
        await s.commit()
        for channel_id, code in ((cid, "Pog"), (cid, "Kappa"), (None, "Kappa")):
            with pytest.raises(ConflictError):
                await emotes.create_emote(
                    s, channel_id=channel_id, code=code, file_key=KEY, animated=False, limit=5
                )
        with pytest.raises(ValidationError):
            await emotes.create_emote(
                s, channel_id=None, code="Glob", file_key=KEY, animated=False, limit=5,
                follower_only=True,
            )  # fmt: skip
        for bad in ("", "x", "9lives", "a b", "<b>", "é" * 3, "a" * 33):
            with pytest.raises(ValidationError):
                emotes.check_code(bad)
        await emotes.create_emote(
            s, channel_id=cid, code="Two", file_key=KEY, animated=False, limit=2
        )
        with pytest.raises(ValidationError, match="at most 2"):
            await emotes.create_emote(
                s, channel_id=cid, code="Three", file_key=KEY, animated=False, limit=2
            )
        await s.commit()
        assert [e.code for e in await emotes.list_emotes(s, cid)] == ["Pog", "Two"]
        assert [e.code for e in await emotes.list_emotes(s, None)] == ["Kappa"]

        # Renames keep the rules; the index refuses a second global code whatever the checks.
        row = (await emotes.list_emotes(s, cid))[1]
        with pytest.raises(ConflictError):
            await emotes.update_emote(s, row, code="Kappa")
        await s.rollback()
        row = (await emotes.list_emotes(s, cid))[1]
        await emotes.update_emote(s, row, code="Renamed", follower_only=True)
        await s.commit()
        s.add(Emote(channel_id=None, code="Kappa", file_key=KEY))
        with pytest.raises(IntegrityError):
            await s.flush()
        await s.rollback()

        # A deleted channel takes its emotes with it.
        await s.execute(delete(Channel).where(Channel.id == cid))
        await s.commit()
        assert await emotes.count_emotes(s, cid) == 0
        assert await emotes.count_emotes(s, oid) == 1
