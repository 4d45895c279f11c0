"""What a chat socket's re-check reads (storage.chat.credential_standings), on both databases:
live, signed-out, expired, revoked, disabled and unknown credentials in one call, and across
the statement chunks a big wave is read in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import storage.chat as chat_store
from storage import Database, queries
from storage.accounts import create_login_session, delete_login_session
from storage.models import User
from storage.queries import sha256_hex

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("chunk", [500, 2])
async def test_standings_of_many_credentials_at_once(
    db_on_both: Database, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    monkeypatch.setattr(chat_store, "STANDINGS_CHUNK", chunk)
    now = datetime.now(UTC)
    async with db_on_both.session() as s:
        ann = await queries.create_user(s, "ann", "ann@example.test", None, is_admin=True)
        bob = await queries.create_user(s, "bob", "bob@example.test", None)
        cid = await queries.create_user(s, "cid", "cid@example.test", None)
        live = await create_login_session(s, ann.id, now, 3600)
        gone = await create_login_session(s, ann.id, now, 3600)
        old = await create_login_session(s, bob.id, now - timedelta(hours=2), 60)
        token = await queries.create_api_token(s, "bob")
        revoked = await queries.create_api_token(s, "bob")
        disabled = await create_login_session(s, cid.id, now, 3600)
        await s.commit()
    async with db_on_both.session() as s:
        await delete_login_session(s, gone)
        await queries.revoke_api_token(s, revoked, now)
        (await s.get(User, cid.id)).is_disabled = True
        await s.commit()
    asked = {
        (ann.id, "session", sha256_hex(live)): chat_store.Standing(True, None),
        (ann.id, "session", sha256_hex(gone)): chat_store.Standing(True, "session_ended"),
        (bob.id, "session", sha256_hex(old)): chat_store.Standing(False, "session_ended"),
        (bob.id, "token", sha256_hex(token)): chat_store.Standing(False, None),
        (bob.id, "token", sha256_hex(revoked)): chat_store.Standing(False, "token_revoked"),
        (cid.id, "session", sha256_hex(disabled)): chat_store.Standing(False, "account_disabled"),
        (9999, "session", sha256_hex(live)): chat_store.Standing(False, "account_disabled"),
        # someone else's live session is not this user's
        (bob.id, "session", sha256_hex(live)): chat_store.Standing(False, "session_ended"),
    }
    async with db_on_both.session() as s:
        got = await chat_store.credential_standings(s, list(asked), datetime.now(UTC))
    assert got == asked
