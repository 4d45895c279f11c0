"""Helpers for the notification tests and the benchmark (not a test module): many followers
seeded with set-based SQL (100,000 in a second or two, never a row at a time), on SQLite and
PostgreSQL."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


async def seed_followers(
    session: AsyncSession, channel_id: int, count: int, *, prefix: str = "fan", notify: bool = True
) -> None:
    """``count`` new users (``{prefix}{n}``) who all follow the channel, bell on or off.
    The caller commits."""
    pg = session.get_bind().dialect.name == "postgresql"
    if pg:
        numbers = "SELECT generate_series(1, :count) AS n"
        stamp = "TIMESTAMPTZ '2026-01-01 00:00:00+00'"
        true = "TRUE" if notify else "FALSE"
    else:
        numbers = (
            "WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < :count)"
            " SELECT n FROM seq"
        )
        stamp = "'2026-01-01 00:00:00.000000'"
        true = "1" if notify else "0"
    await session.execute(
        text(
            "INSERT INTO users (username, email, password_hash, is_admin, is_disabled, created_at)"
            f" SELECT :prefix || n, :prefix || n || '@example.test', '!', {'FALSE' if pg else '0'},"
            f" {'FALSE' if pg else '0'}, {stamp} FROM ({numbers}) AS numbers"
        ),
        {"count": count, "prefix": prefix},
    )
    await session.execute(
        text(
            "INSERT INTO channel_follows (user_id, channel_id, created_at, notify)"
            f" SELECT id, :channel_id, {stamp}, {true} FROM users WHERE username LIKE :pattern"
        ),
        {"channel_id": channel_id, "pattern": prefix + "%"},
    )
    await session.execute(
        text(
            "UPDATE channels SET follower_count = (SELECT count(*) FROM channel_follows"
            " WHERE channel_id = :channel_id) WHERE id = :channel_id"
        ),
        {"channel_id": channel_id},
    )
