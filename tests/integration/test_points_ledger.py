"""The points ledger's invariants under concurrent redemptions and predictions (issue 16),
property-based, on a real SQLite file and on a real PostgreSQL.

Each example makes a channel and a few users with balances, then runs concurrently (one
transaction each, all at once) redemptions of one reward, refunds some of them, stakes on a
prediction concurrently, then resolves or cancels it. After every phase: each balance equals
the sum of its ledger entries and none is negative; no redemption overdrew (the points that
left the balances are exactly the costs of the redemptions kept); per-stream limits held;
after a resolution the pool was paid out to the point, after a cancel everyone got their
stakes back.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage import Database, queries
from storage import points as store
from storage.errors import ConflictError
from tests.db_template import migrate

pytestmark = pytest.mark.integration

_names = itertools.count()


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        db_url = f"sqlite+aiosqlite:///{tmp_path / 'points.db'}"
    else:
        db_url = request.getfixturevalue("postgres_head_url")
    migrate(db_url)
    yield db_url


programs = st.fixed_dictionaries(
    {
        "balances": st.lists(st.integers(0, 300), min_size=2, max_size=5),
        "cost": st.integers(1, 150),
        "max_per_stream": st.integers(0, 6),
        "max_per_user": st.integers(0, 3),
        "redeemers": st.lists(st.integers(0, 4), max_size=10),
        "refunds": st.lists(st.booleans(), min_size=10, max_size=10),
        "outcomes": st.integers(2, 4),
        "stakes": st.lists(
            st.tuples(st.integers(0, 4), st.integers(0, 3), st.integers(1, 200)), max_size=10
        ),
        "end": st.one_of(st.just("cancel"), st.integers(0, 3)),
    }
)


async def _check_ledger(db: Database) -> dict[int, int]:
    async with db.session() as s:
        assert await store.ledger_mismatches(s) == []
        assert await store.prediction_imbalances(s) == []
    return {}


async def _run(url: str, p: dict) -> None:
    db = Database(url)
    await db.connect()
    try:
        n = next(_names)
        async with db.session() as s:
            owner = await queries.create_user(s, f"owner{n}", f"owner{n}@example.test", None)
            channel = await queries.create_channel(s, owner.username, f"pts-{n}")
            users = []
            for i, _ in enumerate(p["balances"]):
                users.append(
                    (await queries.create_user(s, f"u{n}x{i}", f"u{n}x{i}@example.test", None)).id
                )
            await store.credit(
                s,
                [
                    store.Credit(u, channel.id, b, "earned_watch")
                    for u, b in zip(users, p["balances"], strict=True)
                ],
            )
            reward = await store.create_reward(
                s,
                channel.id,
                {
                    "title": "Hydrate",
                    "cost": p["cost"],
                    "max_per_stream": p["max_per_stream"],
                    "max_per_user_per_stream": p["max_per_user"],
                },
                store.RewardLimits(1000, 3600, 50),
            )
            await s.commit()
        start = dict(zip(users, p["balances"], strict=True))
        await _check_ledger(db)

        async def redeem(user_id: int) -> int | None:
            async with db.session() as s:
                try:
                    row = await store.redeem(
                        s,
                        channel_id=channel.id,
                        reward_id=reward.id,
                        user_id=user_id,
                        stream_id=None,
                        text="",
                        max_text=200,
                    )
                except ConflictError:
                    return None
                await s.commit()
                return row.id

        redeemers = [users[i % len(users)] for i in p["redeemers"]]
        done = await asyncio.gather(*(redeem(u) for u in redeemers))
        kept = [(rid, u) for rid, u in zip(done, redeemers, strict=True) if rid is not None]
        if p["max_per_stream"]:
            assert len(kept) <= p["max_per_stream"]
        if p["max_per_user"]:
            for u in users:
                assert sum(1 for _, k in kept if k == u) <= p["max_per_user"]
        for u in users:  # nobody could spend what they did not have
            assert sum(p["cost"] for _, k in kept if k == u) <= start[u]
        await _check_ledger(db)

        async def settle(rid: int, refund: bool) -> None:
            async with db.session() as s:
                await store.settle_redemption(s, channel.id, rid, owner.id, refund=refund)
                await s.commit()

        await asyncio.gather(*(settle(rid, p["refunds"][i]) for i, (rid, _) in enumerate(kept)))
        spent = dict.fromkeys(users, 0)
        for i, (_, u) in enumerate(kept):
            if not p["refunds"][i]:
                spent[u] += p["cost"]
        async with db.session() as s:
            for u in users:
                assert await store.balance(s, u, channel.id) == start[u] - spent[u]
        await _check_ledger(db)

        async def begin() -> store.PredictionView | None:
            async with db.session() as s:
                try:
                    view = await store.create_prediction(
                        s,
                        channel.id,
                        owner.id,
                        "Who wins?",
                        [f"o{i}" for i in range(p["outcomes"])],
                        600,
                    )
                except ConflictError:
                    return None
                await s.commit()
                return view

        started = [v for v in await asyncio.gather(begin(), begin(), begin()) if v is not None]
        assert len(started) == 1  # one running prediction per channel, even started at once
        pred = started[0]
        outcome_ids = [o.id for o in pred.outcomes]

        async def stake(user_id: int, outcome: int, amount: int) -> tuple[int, int, int] | None:
            async with db.session() as s:
                try:
                    await store.stake(s, pred.id, user_id, outcome, amount)
                except ConflictError:
                    return None
                await s.commit()
                return user_id, outcome, amount

        staked = [
            r
            for r in await asyncio.gather(
                *(
                    stake(users[u % len(users)], outcome_ids[o % len(outcome_ids)], a)
                    for u, o, a in p["stakes"]
                )
            )
            if r is not None
        ]
        await _check_ledger(db)
        pool = sum(a for _, _, a in staked)
        before = {}
        async with db.session() as s:
            for u in users:
                before[u] = await store.balance(s, u, channel.id)
                assert before[u] == start[u] - spent[u] - sum(a for k, _, a in staked if k == u)
            view = await store.prediction_view(s, pred.id)
            assert sum(o.total for o in view.outcomes) == pool
        async with db.session() as s:
            if p["end"] == "cancel":
                await store.cancel_prediction(s, pred.id)
            else:
                await store.lock_prediction(s, pred.id)
                await store.resolve_prediction(s, pred.id, outcome_ids[p["end"] % len(outcome_ids)])
            await s.commit()
        await _check_ledger(db)
        async with db.session() as s:
            after = {u: await store.balance(s, u, channel.id) for u in users}
        assert sum(after.values()) == sum(before.values()) + pool  # the pool, to the point
        winner = None if p["end"] == "cancel" else outcome_ids[p["end"] % len(outcome_ids)]
        if winner is None or not any(o == winner for _, o, _ in staked):
            for u in users:  # everyone refunded
                assert after[u] == start[u] - spent[u]
        else:
            for u in users:
                if not any(k == u and o == winner for k, o, _ in staked):
                    assert after[u] == before[u]  # losers and bystanders get nothing
    finally:
        await db.dispose()


def test_ledger_invariants_under_concurrency(url: str) -> None:
    @settings(
        max_examples=10,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(program=programs)
    def run(program: dict) -> None:
        asyncio.run(_run(url, program))

    run()


def test_largest_remainder_conserves_the_pool() -> None:
    @settings(max_examples=300, deadline=None, database=None)
    @given(
        pool=st.integers(0, 10**9),
        stakes=st.lists(st.integers(1, 10**6), min_size=1, max_size=50),
    )
    def run(pool: int, stakes: list[int]) -> None:
        shares = store.largest_remainder(pool, list(enumerate(stakes)))
        assert sum(shares.values()) == pool
        total = sum(stakes)
        for i, s in enumerate(stakes):
            exact = pool * s / total
            assert exact - 1 < shares[i] < exact + 1  # never more than a point off its share

    run()
    assert store.largest_remainder(10, [(1, 1), (2, 1), (3, 1)]) == {1: 4, 2: 3, 3: 3}


async def test_accrual_flush_is_five_statements_for_any_crowd(db_on_both: Database) -> None:
    """accrue() on both databases: watch rate, follower and chat bonuses per (user, channel),
    the channel's own rates over the defaults, a channel with points off earns nothing, and the
    statements stay five (3 reads, 1 INSERT, 1 upsert) for 100 watchers as for 1."""
    from sqlalchemy import event

    from storage import chat as chat_queries
    from storage import follows

    db = db_on_both
    defaults = store.Rates(True, 2, 1, 1)
    async with db.session() as s:
        owner = await queries.create_user(s, "accowner", "accowner@example.test", None)
        a = await queries.create_channel(s, owner.username, "acc-a")
        b = await queries.create_channel(s, owner.username, "acc-b")
        off = await queries.create_channel(s, owner.username, "acc-off")
        users = [
            (await queries.create_user(s, f"acc{i}", f"acc{i}@example.test", None)).id
            for i in range(100)
        ]
        await follows.follow(s, users[0], a.id)
        await chat_queries.insert_messages(
            s, [chat_queries.NewMessage(a.id, None, users[1], "hi", datetime.now(UTC))]
        )
        await store.set_rates(s, b.id, store.Rates(True, 5, 0, 0), 100)
        await store.set_rates(s, off.id, store.Rates(False, 5, 5, 5), 100)
        await s.commit()

    def count(conn, cursor, statement, *args) -> None:
        statements.append(statement)

    engine = db.engine.sync_engine
    for crowd in ([users[0]], users):
        statements: list[str] = []
        event.listen(engine, "before_cursor_execute", count)
        try:
            async with db.session() as s:
                minutes = {(u, a.id): 2 for u in crowd} | {(users[0], b.id): 3}
                minutes[(users[0], off.id)] = 4
                await store.accrue(s, minutes, defaults, datetime.now(UTC) - timedelta(hours=1))
                await s.commit()
        finally:
            event.remove(engine, "before_cursor_execute", count)
        kept = [q for q in statements if not q.strip().upper().startswith(("BEGIN", "COMMIT"))]
        assert len(kept) == 5, kept
    async with db.session() as s:
        # twice: 2 min x 2 + follower bonus 2 x 1, and channel b's own rate 3 x 5
        assert await store.balance(s, users[0], a.id) == 2 * (4 + 2)
        assert await store.balance(s, users[0], b.id) == 2 * 15
        assert await store.balance(s, users[0], off.id) == 0
        assert await store.balance(s, users[1], a.id) == 4 + 2  # once, with the chat bonus
        assert await store.balance(s, users[2], a.id) == 4
        assert await store.ledger_mismatches(s) == []
