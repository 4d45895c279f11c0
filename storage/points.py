"""Channel points (issue 16): balances and their ledger, accrual, rewards and redemptions,
predictions.

The ledger invariant: every change of ``point_balances.balance`` is made together with one
``point_ledger`` row of the same amount in the same transaction, so a balance is always the sum
of its entries (``ledger_mismatches`` checks it; the tests run it after every step). Spends are
a conditional ``UPDATE ... SET balance = balance - cost WHERE balance >= cost``: on PostgreSQL
the row lock it takes makes a concurrent spend wait and re-check, on SQLite the write lock
does, so two spends can never both pass on one balance; a CHECK constraint backs it.

Every function that changes something starts its transaction with a write (the reward, the
prediction or the redemption row it is about, conditionally): that write takes the row lock
(PostgreSQL) or the database's write lock (SQLite) before anything is read, so the checks
after it (limits, status, the stakes to pay) see every concurrent change and cannot be
overtaken. Functions take an ``AsyncSession``, flush, never commit (like storage.follows).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from storage.chat_models import ChannelModerator
from storage.db import rowcount
from storage.errors import ConflictError, NotFoundError, ValidationError
from storage.models import Channel, ChannelFollow, Message, User, utcnow
from storage.points_models import (
    PointBalance,
    PointLedgerEntry,
    PointRedemption,
    PointReward,
    PointSettings,
    Prediction,
    PredictionOutcome,
    PredictionStake,
)

# Ids per IN list: well under SQLite's bound on parameters of one statement.
CHUNK = 900


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# -- balances and the ledger ------------------------------------------------------------------


@dataclass(frozen=True)
class Credit:
    user_id: int
    channel_id: int
    amount: int  # > 0
    kind: str
    ref_id: int | None = None


async def credit(session: AsyncSession, credits: Sequence[Credit]) -> int:
    """Add points: the ledger rows (one multi-row INSERT) and the balances (one upsert
    statement, executed for each (user, channel) with the sum of its credits). Returns the
    number of ledger rows."""
    credits = [c for c in credits if c.amount > 0]
    if not credits:
        return 0
    now = utcnow()
    await session.execute(
        insert(PointLedgerEntry),
        [
            {
                "user_id": c.user_id,
                "channel_id": c.channel_id,
                "amount": c.amount,
                "kind": c.kind,
                "ref_id": c.ref_id,
                "created_at": now,
            }
            for c in credits
        ],
    )
    sums: dict[tuple[int, int], int] = defaultdict(int)
    for c in credits:
        sums[(c.user_id, c.channel_id)] += c.amount
    dialect = session.get_bind().dialect.name
    upsert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = upsert(PointBalance)
    stmt = stmt.on_conflict_do_update(
        index_elements=[PointBalance.user_id, PointBalance.channel_id],
        set_={
            "balance": PointBalance.balance + stmt.excluded.balance,
            "updated_at": stmt.excluded.updated_at,
        },
    )
    await session.execute(
        stmt,
        [
            {"user_id": u, "channel_id": c, "balance": amount, "updated_at": now}
            for (u, c), amount in sums.items()
        ],
    )
    return len(credits)


async def debit(
    session: AsyncSession, user_id: int, channel_id: int, amount: int, kind: str, ref_id: int | None
) -> None:
    """Take ``amount`` points, or ConflictError when the balance is short (nothing changed)."""
    if amount <= 0:
        raise ValidationError("the amount must be at least 1 point")
    result = await session.execute(
        update(PointBalance)
        .where(
            PointBalance.user_id == user_id,
            PointBalance.channel_id == channel_id,
            PointBalance.balance >= amount,
        )
        .values(balance=PointBalance.balance - amount, updated_at=utcnow())
    )
    if rowcount(result) != 1:
        raise ConflictError(f"not enough points (this costs {amount})")
    session.add(
        PointLedgerEntry(
            user_id=user_id, channel_id=channel_id, amount=-amount, kind=kind, ref_id=ref_id
        )
    )
    await session.flush()


async def balance(session: AsyncSession, user_id: int, channel_id: int) -> int:
    value = await session.scalar(
        select(PointBalance.balance).where(
            PointBalance.user_id == user_id, PointBalance.channel_id == channel_id
        )
    )
    return int(value or 0)


@dataclass(frozen=True)
class LedgerEntry:
    id: int
    amount: int
    kind: str
    ref_id: int | None
    created_at: datetime


async def ledger(
    session: AsyncSession, user_id: int, channel_id: int, limit: int
) -> list[LedgerEntry]:
    rows = await session.execute(
        select(PointLedgerEntry)
        .where(PointLedgerEntry.user_id == user_id, PointLedgerEntry.channel_id == channel_id)
        .order_by(PointLedgerEntry.id.desc())
        .limit(limit)
    )
    return [LedgerEntry(e.id, e.amount, e.kind, e.ref_id, e.created_at) for e in rows.scalars()]


async def ledger_mismatches(session: AsyncSession) -> list[tuple[int, int, int, int]]:
    """Every (user, channel, balance, sum of entries) where the two differ or the balance is
    negative; empty when the ledger holds."""
    sums = {
        (u, c): int(total)
        for u, c, total in await session.execute(
            select(
                PointLedgerEntry.user_id,
                PointLedgerEntry.channel_id,
                func.sum(PointLedgerEntry.amount),
            ).group_by(PointLedgerEntry.user_id, PointLedgerEntry.channel_id)
        )
    }
    balances = {
        (u, c): int(b)
        for u, c, b in await session.execute(
            select(PointBalance.user_id, PointBalance.channel_id, PointBalance.balance)
        )
    }
    bad = []
    for key in sorted(set(sums) | set(balances)):
        b, s = balances.get(key, 0), sums.get(key, 0)
        if b != s or b < 0:
            bad.append((key[0], key[1], b, s))
    return bad


async def prediction_imbalances(session: AsyncSession) -> list[tuple[int, int, int]]:
    """Every ended prediction (id, points staked, points paid back) where what was paid back
    (payouts or refunds) differs from the pool; empty when every pool was conserved."""
    ended = [
        pid
        for (pid,) in await session.execute(
            select(Prediction.id).where(Prediction.status.in_(("resolved", "cancelled")))
        )
    ]
    out = []
    for chunk in _chunks(ended):
        rows = await session.execute(
            select(
                PointLedgerEntry.ref_id, PointLedgerEntry.kind, func.sum(PointLedgerEntry.amount)
            )
            .where(
                PointLedgerEntry.ref_id.in_(chunk),
                PointLedgerEntry.kind.in_(("staked", "payout", "stake_refund")),
            )
            .group_by(PointLedgerEntry.ref_id, PointLedgerEntry.kind)
        )
        staked: dict[int, int] = defaultdict(int)
        paid: dict[int, int] = defaultdict(int)
        for ref, kind, total in rows:
            if ref is None:
                continue
            if kind == "staked":
                staked[ref] -= int(total)
            else:
                paid[ref] += int(total)
        out += [(pid, staked[pid], paid[pid]) for pid in chunk if staked[pid] != paid[pid]]
    return out


# -- settings and accrual ---------------------------------------------------------------------


@dataclass(frozen=True)
class Rates:
    enabled: bool
    watch_rate: int
    follow_bonus: int
    chat_bonus: int


async def get_rates(session: AsyncSession, channel_id: int, defaults: Rates) -> Rates:
    row = await session.get(PointSettings, channel_id)
    if row is None:
        return defaults
    return Rates(row.enabled, row.watch_rate, row.follow_bonus, row.chat_bonus)


async def set_rates(session: AsyncSession, channel_id: int, rates: Rates, max_rate: int) -> None:
    for name in ("watch_rate", "follow_bonus", "chat_bonus"):
        value = getattr(rates, name)
        if not 0 <= value <= max_rate:
            raise ValidationError(f"{name} must be between 0 and {max_rate} points a minute")
    row = await session.get(PointSettings, channel_id)
    if row is None:
        row = PointSettings(channel_id=channel_id)
        session.add(row)
    row.enabled = rates.enabled
    row.watch_rate = rates.watch_rate
    row.follow_bonus = rates.follow_bonus
    row.chat_bonus = rates.chat_bonus
    row.updated_at = utcnow()
    await session.flush()


async def accrue(
    session: AsyncSession,
    minutes: Mapping[tuple[int, int], int],
    defaults: Rates,
    chat_since: datetime,
) -> int:
    """Credit whole minutes watched, per (user id, channel id): the channel's watch rate, plus
    its follower bonus for followers and its chat bonus for users who sent a message in the
    channel since ``chat_since``. Returns the ledger rows written.

    Statements, whatever the number of watchers (per CHUNK ids for the IN lists): one read of
    the channels' settings, one of the followers among the watchers, one of the recent
    chatters, one multi-row INSERT of the ledger rows and one upsert of the balances: five.
    """
    minutes = {k: m for k, m in minutes.items() if m > 0}
    if not minutes:
        return 0
    channels = sorted({c for _, c in minutes})
    users = sorted({u for u, _ in minutes})
    rates = dict.fromkeys(channels, defaults)
    for chunk in _chunks(channels):
        for row in (
            await session.execute(select(PointSettings).where(PointSettings.channel_id.in_(chunk)))
        ).scalars():
            rates[row.channel_id] = Rates(
                row.enabled, row.watch_rate, row.follow_bonus, row.chat_bonus
            )
    followers: set[tuple[int, int]] = set()
    for chunk in _chunks(users):
        followers.update(
            (u, c)
            for u, c in await session.execute(
                select(ChannelFollow.user_id, ChannelFollow.channel_id).where(
                    ChannelFollow.user_id.in_(chunk), ChannelFollow.channel_id.in_(channels)
                )
            )
        )
    chatters: set[tuple[int, int]] = set()
    for chunk in _chunks(channels):
        chatters.update(
            (u, c)
            for u, c in await session.execute(
                select(Message.user_id, Message.channel_id)
                .where(Message.channel_id.in_(chunk), Message.created_at >= chat_since)
                .distinct()
            )
        )
    credits = []
    for (u, c), m in sorted(minutes.items()):
        r = rates[c]
        if not r.enabled:
            continue
        credits.append(Credit(u, c, m * r.watch_rate, "earned_watch"))
        if (u, c) in followers:
            credits.append(Credit(u, c, m * r.follow_bonus, "earned_follow_bonus"))
        if (u, c) in chatters:
            credits.append(Credit(u, c, m * r.chat_bonus, "earned_chat_bonus"))
    return await credit(session, credits)


async def can_moderate(session: AsyncSession, channel: Channel, user: User) -> bool:
    """The channel's owner, one of its moderators, or an admin (read when used)."""
    if user.is_admin or user.id == channel.owner_id:
        return True
    found = await session.scalar(
        select(ChannelModerator.user_id).where(
            ChannelModerator.channel_id == channel.id, ChannelModerator.user_id == user.id
        )
    )
    return found is not None


# -- rewards and redemptions ------------------------------------------------------------------

REWARD_FIELDS = (
    "title",
    "cost",
    "prompt",
    "cooldown_seconds",
    "max_per_stream",
    "max_per_user_per_stream",
    "enabled",
)


@dataclass(frozen=True)
class RewardLimits:
    max_cost: int
    max_cooldown: int
    max_per_channel: int


def check_reward(values: Mapping[str, Any], limits: RewardLimits) -> dict[str, Any]:
    """The reward fields given, checked (ValidationError naming the bad one)."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        if name not in REWARD_FIELDS or value is None:
            continue
        if name == "title":
            value = value.strip()
            if not 1 <= len(value) <= 64:
                raise ValidationError("title must be 1 to 64 characters")
        elif name == "prompt":
            value = value.strip()
            if len(value) > 200:
                raise ValidationError("prompt must be at most 200 characters")
        elif name == "cost" and not 1 <= value <= limits.max_cost:
            raise ValidationError(f"cost must be between 1 and {limits.max_cost}")
        elif name == "cooldown_seconds" and not 0 <= value <= limits.max_cooldown:
            raise ValidationError(f"cooldown_seconds must be between 0 and {limits.max_cooldown}")
        elif name in ("max_per_stream", "max_per_user_per_stream") and not 0 <= value <= 100000:
            raise ValidationError(f"{name} must be between 0 (no limit) and 100000")
        out[name] = value
    return out


async def list_rewards(
    session: AsyncSession, channel_id: int, *, enabled_only: bool = False
) -> list[PointReward]:
    query = select(PointReward).where(PointReward.channel_id == channel_id)
    if enabled_only:
        query = query.where(PointReward.enabled.is_(True))
    rows = await session.execute(query.order_by(PointReward.cost, PointReward.id))
    return list(rows.scalars())


async def create_reward(
    session: AsyncSession, channel_id: int, values: Mapping[str, Any], limits: RewardLimits
) -> PointReward:
    fields = check_reward(values, limits)
    if "title" not in fields or "cost" not in fields:
        raise ValidationError("a reward needs a title and a cost")
    count = await session.scalar(
        select(func.count()).select_from(PointReward).where(PointReward.channel_id == channel_id)
    )
    if (count or 0) >= limits.max_per_channel:
        raise ValidationError(f"a channel has at most {limits.max_per_channel} rewards")
    now = utcnow()
    row = PointReward(channel_id=channel_id, created_at=now, updated_at=now, **fields)
    session.add(row)
    await session.flush()
    return row


async def get_reward(session: AsyncSession, channel_id: int, reward_id: int) -> PointReward:
    row = await session.get(PointReward, reward_id)
    if row is None or row.channel_id != channel_id:
        raise NotFoundError("no such reward on this channel")
    return row


async def update_reward(
    session: AsyncSession, row: PointReward, values: Mapping[str, Any], limits: RewardLimits
) -> PointReward:
    for name, value in check_reward(values, limits).items():
        setattr(row, name, value)
    row.updated_at = utcnow()
    await session.flush()
    return row


async def delete_reward(session: AsyncSession, row: PointReward, by_id: int) -> int:
    """Delete a reward; its pending redemptions are refunded first. How many were."""
    pending = await session.execute(
        update(PointRedemption)
        .where(PointRedemption.reward_id == row.id, PointRedemption.status == "pending")
        .values(status="refunded", resolved_at=utcnow(), resolved_by_id=by_id)
        .returning(PointRedemption.id, PointRedemption.user_id, PointRedemption.cost)
    )
    refunds = [Credit(u, row.channel_id, cost, "refunded", rid) for rid, u, cost in pending]
    await credit(session, refunds)
    await session.delete(row)
    await session.flush()
    return len(refunds)


async def redeem(
    session: AsyncSession,
    *,
    channel_id: int,
    reward_id: int,
    user_id: int,
    stream_id: int | None,
    text: str,
    max_text: int,
) -> PointRedemption:
    """Spend a reward's cost on it, within its cooldown and limits (ConflictError saying which
    stopped it; nothing is spent then)."""
    reward = await get_reward(session, channel_id, reward_id)
    text = text.strip()
    if reward.prompt and not text:
        raise ValidationError("this reward needs a text")
    if len(text) > max_text:
        raise ValidationError(f"the text must be at most {max_text} characters")
    if not reward.prompt:
        text = ""
    now = utcnow()
    # The first write: takes the reward row (and its cooldown) before any check is made.
    result = await session.execute(
        update(PointReward)
        .where(
            PointReward.id == reward.id,
            PointReward.enabled.is_(True),
            PointReward.cost == reward.cost,
            PointReward.cooldown_seconds == reward.cooldown_seconds,
            or_(PointReward.cooldown_until.is_(None), PointReward.cooldown_until <= now),
        )
        .values(cooldown_until=now + timedelta(seconds=reward.cooldown_seconds))
        .execution_options(synchronize_session=False)
    )
    if rowcount(result) != 1:
        await session.refresh(reward)
        if not reward.enabled:
            raise ConflictError("this reward is not available right now")
        if reward.cooldown_until is not None and reward.cooldown_until > now:
            wait = int((reward.cooldown_until - now).total_seconds()) + 1
            raise ConflictError(f"this reward is cooling down: try again in {wait} s")
        raise ConflictError("this reward just changed: look at it again")
    counted = and_(
        PointRedemption.reward_id == reward.id,
        PointRedemption.status != "refunded",
        PointRedemption.stream_id.is_(None)
        if stream_id is None
        else PointRedemption.stream_id == stream_id,
    )
    if reward.max_per_stream:
        n = await session.scalar(select(func.count()).select_from(PointRedemption).where(counted))
        if (n or 0) >= reward.max_per_stream:
            raise ConflictError("this reward has been redeemed as often as it can be this stream")
    if reward.max_per_user_per_stream:
        n = await session.scalar(
            select(func.count())
            .select_from(PointRedemption)
            .where(counted, PointRedemption.user_id == user_id)
        )
        if (n or 0) >= reward.max_per_user_per_stream:
            raise ConflictError("you have redeemed this reward as often as you can this stream")
    row = PointRedemption(
        reward_id=reward.id,
        channel_id=channel_id,
        user_id=user_id,
        stream_id=stream_id,
        title=reward.title,
        cost=reward.cost,
        text=text,
        status="pending",
        created_at=now,
    )
    session.add(row)
    await session.flush()
    await debit(session, user_id, channel_id, reward.cost, "redeemed", row.id)
    return row


@dataclass(frozen=True)
class RedemptionView:
    id: int
    reward_id: int | None
    title: str
    cost: int
    text: str
    status: str
    user_id: int
    username: str
    created_at: datetime
    resolved_at: datetime | None


def _redemption_query() -> Any:
    return select(PointRedemption, User.username).join(User, User.id == PointRedemption.user_id)


def _redemption_view(row: PointRedemption, username: str) -> RedemptionView:
    return RedemptionView(
        row.id,
        row.reward_id,
        row.title,
        row.cost,
        row.text,
        row.status,
        row.user_id,
        username,
        row.created_at,
        row.resolved_at,
    )


async def redemption_view(session: AsyncSession, redemption_id: int) -> RedemptionView:
    found = (
        await session.execute(_redemption_query().where(PointRedemption.id == redemption_id))
    ).first()
    if found is None:
        raise NotFoundError("no such redemption")
    return _redemption_view(found[0], found[1])


async def list_redemptions(
    session: AsyncSession, channel_id: int, *, status: str | None, limit: int
) -> list[RedemptionView]:
    query = _redemption_query().where(PointRedemption.channel_id == channel_id)
    if status is not None:
        query = query.where(PointRedemption.status == status)
    rows = await session.execute(query.order_by(PointRedemption.id.desc()).limit(limit))
    return [_redemption_view(r, name) for r, name in rows]


async def settle_redemption(
    session: AsyncSession, channel_id: int, redemption_id: int, by_id: int, *, refund: bool
) -> None:
    """Fulfil a pending redemption, or refund it (its cost back through the ledger)."""
    found = await session.execute(
        update(PointRedemption)
        .where(
            PointRedemption.id == redemption_id,
            PointRedemption.channel_id == channel_id,
            PointRedemption.status == "pending",
        )
        .values(
            status="refunded" if refund else "fulfilled",
            resolved_at=utcnow(),
            resolved_by_id=by_id,
        )
        .returning(PointRedemption.user_id, PointRedemption.cost)
        .execution_options(synchronize_session=False)
    )
    row = found.first()
    if row is None:
        status = await session.scalar(
            select(PointRedemption.status).where(
                PointRedemption.id == redemption_id, PointRedemption.channel_id == channel_id
            )
        )
        if status is None:
            raise NotFoundError("no such redemption on this channel")
        raise ConflictError(f"this redemption is already {status}")
    if refund:
        await credit(session, [Credit(row[0], channel_id, row[1], "refunded", redemption_id)])


# -- predictions ------------------------------------------------------------------------------


def largest_remainder(pool: int, stakes: Sequence[tuple[int, int]]) -> dict[int, int]:
    """Share ``pool`` among ``(key, stake)`` in proportion to the stakes, in whole points that
    add up to the pool exactly: each gets floor(pool * stake / total), and the points left
    over (fewer than the number of winners) go one each to the largest remainders, ties to
    the earlier stake (the order given)."""
    total = sum(s for _, s in stakes)
    if total <= 0:
        return {}
    shares = {k: pool * s // total for k, s in stakes}
    left = pool - sum(shares.values())
    order = sorted(range(len(stakes)), key=lambda i: (-(pool * stakes[i][1] % total), i))
    for i in order[:left]:
        shares[stakes[i][0]] += 1
    return shares


@dataclass
class OutcomeView:
    id: int
    title: str
    total: int
    stakers: int


@dataclass
class PredictionView:
    id: int
    channel_id: int
    question: str
    status: str
    created_at: datetime
    locks_at: datetime
    ended_at: datetime | None
    winning_outcome_id: int | None
    outcomes: list[OutcomeView] = field(default_factory=list)


async def prediction_view(session: AsyncSession, prediction_id: int) -> PredictionView:
    p = await session.get(Prediction, prediction_id, populate_existing=True)
    if p is None:
        raise NotFoundError("no such prediction")
    outcomes = await session.execute(
        select(PredictionOutcome)
        .where(PredictionOutcome.prediction_id == p.id)
        .order_by(PredictionOutcome.position)
        .execution_options(populate_existing=True)
    )
    return PredictionView(
        p.id,
        p.channel_id,
        p.question,
        p.status,
        p.created_at,
        p.locks_at,
        p.ended_at,
        p.winning_outcome_id,
        [OutcomeView(o.id, o.title, o.total, o.stakers) for o in outcomes.scalars()],
    )


async def active_predictions(session: AsyncSession) -> list[tuple[str, PredictionView]]:
    """Every open or locked prediction with its channel's slug (read once at start-up)."""
    rows = await session.execute(
        select(Prediction.id, Channel.slug)
        .join(Channel, Channel.id == Prediction.channel_id)
        .where(Prediction.status.in_(("open", "locked")))
    )
    return [(slug, await prediction_view(session, pid)) for pid, slug in rows.all()]


async def latest_prediction(session: AsyncSession, channel_id: int) -> PredictionView | None:
    pid = await session.scalar(
        select(Prediction.id)
        .where(Prediction.channel_id == channel_id)
        .order_by(Prediction.id.desc())
        .limit(1)
    )
    return None if pid is None else await prediction_view(session, pid)


async def _running(session: AsyncSession, channel_id: int) -> int:
    count = await session.scalar(
        select(func.count())
        .select_from(Prediction)
        .where(Prediction.channel_id == channel_id, Prediction.status.in_(("open", "locked")))
    )
    return int(count or 0)


async def create_prediction(
    session: AsyncSession,
    channel_id: int,
    by_id: int,
    question: str,
    outcomes: Sequence[str],
    window_seconds: int,
) -> PredictionView:
    question = question.strip()
    titles = [o.strip() for o in outcomes]
    if not 1 <= len(question) <= 140:
        raise ValidationError("question must be 1 to 140 characters")
    if not 2 <= len(titles) <= 10:
        raise ValidationError("a prediction has 2 to 10 outcomes")
    if any(not 1 <= len(t) <= 64 for t in titles):
        raise ValidationError("each outcome must be 1 to 64 characters")
    if len(set(titles)) != len(titles):
        raise ValidationError("the outcomes must differ")
    # One running prediction per channel, also against a concurrent start: PostgreSQL takes
    # the channel's row first (FOR UPDATE; SQLite ignores it), and the count is checked again
    # after the insert, when SQLite's write lock is held.
    await session.execute(select(Channel.id).where(Channel.id == channel_id).with_for_update())
    if await _running(session, channel_id):
        raise ConflictError("this channel already has a prediction running: end it first")
    now = utcnow()
    p = Prediction(
        channel_id=channel_id,
        question=question,
        status="open",
        created_by_id=by_id,
        created_at=now,
        locks_at=now + timedelta(seconds=window_seconds),
    )
    session.add(p)
    await session.flush()
    if await _running(session, channel_id) > 1:
        raise ConflictError("this channel already has a prediction running: end it first")
    session.add_all(
        PredictionOutcome(prediction_id=p.id, position=i, title=t, total=0, stakers=0)
        for i, t in enumerate(titles)
    )
    await session.flush()
    return await prediction_view(session, p.id)


async def _prediction_channel(session: AsyncSession, prediction_id: int) -> int:
    channel_id = await session.scalar(
        select(Prediction.channel_id).where(Prediction.id == prediction_id)
    )
    if channel_id is None:
        raise NotFoundError("no such prediction")
    return int(channel_id)


async def stake(
    session: AsyncSession, prediction_id: int, user_id: int, outcome_id: int, amount: int
) -> int:
    """Stake ``amount`` points on an outcome while the window is open; a user backs one
    outcome (more points may be added to it). Returns the user's whole stake."""
    if amount <= 0:
        raise ValidationError("amount must be at least 1 point")
    now = utcnow()
    locked = await session.execute(
        update(Prediction)
        .where(
            Prediction.id == prediction_id,
            Prediction.status == "open",
            Prediction.locks_at > now,
        )
        .values(status="open")
        .execution_options(synchronize_session=False)
    )
    if rowcount(locked) != 1:
        await _prediction_channel(session, prediction_id)
        raise ConflictError("this prediction is not taking stakes any more")
    channel_id = await _prediction_channel(session, prediction_id)
    outcome = await session.get(PredictionOutcome, outcome_id)
    if outcome is None or outcome.prediction_id != prediction_id:
        raise ValidationError("that outcome is not one of this prediction's")
    existing = (
        await session.execute(
            select(PredictionStake).where(
                PredictionStake.prediction_id == prediction_id, PredictionStake.user_id == user_id
            )
        )
    ).scalar_one_or_none()
    if existing is not None and existing.outcome_id != outcome_id:
        raise ConflictError("you already backed another outcome of this prediction")
    await debit(session, user_id, channel_id, amount, "staked", prediction_id)
    if existing is None:
        session.add(
            PredictionStake(
                prediction_id=prediction_id,
                user_id=user_id,
                outcome_id=outcome_id,
                amount=amount,
                created_at=now,
            )
        )
        whole = amount
    else:
        existing.amount += amount
        whole = existing.amount
    await session.execute(
        update(PredictionOutcome)
        .where(PredictionOutcome.id == outcome_id)
        .values(
            total=PredictionOutcome.total + amount,
            stakers=PredictionOutcome.stakers + (1 if existing is None else 0),
        )
        .execution_options(synchronize_session=False)
    )
    await session.flush()
    return whole


async def lock_prediction(session: AsyncSession, prediction_id: int) -> None:
    result = await session.execute(
        update(Prediction)
        .where(Prediction.id == prediction_id, Prediction.status == "open")
        .values(status="locked", ended_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if rowcount(result) != 1:
        await _prediction_channel(session, prediction_id)
        raise ConflictError("only an open prediction can be locked")


async def _stakes(session: AsyncSession, prediction_id: int) -> list[PredictionStake]:
    rows = await session.execute(
        select(PredictionStake)
        .where(PredictionStake.prediction_id == prediction_id)
        .order_by(PredictionStake.created_at, PredictionStake.id)
    )
    return list(rows.scalars())


async def resolve_prediction(session: AsyncSession, prediction_id: int, outcome_id: int) -> int:
    """The outcome happened: its backers share the whole pool in proportion to their stakes
    (``largest_remainder``); if nobody backed it, everyone gets their stake back. A locked
    prediction, or an open one whose window is over. Returns the points paid out."""
    now = utcnow()
    result = await session.execute(
        update(Prediction)
        .where(
            Prediction.id == prediction_id,
            or_(
                Prediction.status == "locked",
                and_(Prediction.status == "open", Prediction.locks_at <= now),
            ),
        )
        .values(status="resolved", ended_at=now, winning_outcome_id=outcome_id)
        .execution_options(synchronize_session=False)
    )
    if rowcount(result) != 1:
        await _prediction_channel(session, prediction_id)
        raise ConflictError("lock the prediction before resolving it (or it has ended)")
    channel_id = await _prediction_channel(session, prediction_id)
    outcome = await session.get(PredictionOutcome, outcome_id)
    if outcome is None or outcome.prediction_id != prediction_id:
        raise ValidationError("that outcome is not one of this prediction's")
    stakes = await _stakes(session, prediction_id)
    pool = sum(s.amount for s in stakes)
    winners = [(s.user_id, s.amount) for s in stakes if s.outcome_id == outcome_id]
    if not winners:
        await credit(
            session,
            [
                Credit(s.user_id, channel_id, s.amount, "stake_refund", prediction_id)
                for s in stakes
            ],
        )
        return 0
    shares = largest_remainder(pool, winners)
    await credit(
        session,
        [Credit(u, channel_id, n, "payout", prediction_id) for u, n in shares.items()],
    )
    return pool


async def cancel_prediction(session: AsyncSession, prediction_id: int) -> int:
    """Call it off: every stake goes back. Returns the points refunded."""
    result = await session.execute(
        update(Prediction)
        .where(Prediction.id == prediction_id, Prediction.status.in_(("open", "locked")))
        .values(status="cancelled", ended_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if rowcount(result) != 1:
        await _prediction_channel(session, prediction_id)
        raise ConflictError("this prediction has already ended")
    channel_id = await _prediction_channel(session, prediction_id)
    stakes = await _stakes(session, prediction_id)
    await credit(
        session,
        [Credit(s.user_id, channel_id, s.amount, "stake_refund", prediction_id) for s in stakes],
    )
    return sum(s.amount for s in stakes)


async def user_stake(
    session: AsyncSession, prediction_id: int, user_id: int
) -> tuple[int, int] | None:
    """(outcome id, amount) of a user's stake, if any."""
    row = (
        await session.execute(
            select(PredictionStake.outcome_id, PredictionStake.amount).where(
                PredictionStake.prediction_id == prediction_id, PredictionStake.user_id == user_id
            )
        )
    ).first()
    return None if row is None else (int(row[0]), int(row[1]))
