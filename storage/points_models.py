"""Tables of channel points (issue 16): a channel's point settings, every user's balance on a
channel with its ledger, the rewards a channel offers and their redemptions, and predictions.

The ledger is the truth: every change of a balance is one ``point_ledger`` row written in the
same transaction as the change of ``point_balances.balance`` (a copy kept for reading and for
the conditional debit that stops concurrent spends from overdrawing), so a balance always
equals the sum of its entries (``storage.points.ledger_mismatches`` checks it) and is never
negative (a CHECK constraint on top of the conditional UPDATE).

They share ``models.Base`` so one metadata describes the whole schema (migration 0012).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base, utcnow

# Why a ledger row exists. Earned: accrual while watching (and its bonuses); redeemed and
# refunded: rewards; staked, payout and stake_refund: predictions.
LEDGER_KINDS = (
    "earned_watch",
    "earned_follow_bonus",
    "earned_chat_bonus",
    "redeemed",
    "refunded",
    "staked",
    "payout",
    "stake_refund",
)
REDEMPTION_STATES = ("pending", "fulfilled", "refunded")
# open: taking stakes until locks_at; locked: no more stakes, waiting for the result;
# resolved: the winners were paid; cancelled: everyone was refunded.
PREDICTION_STATES = ("open", "locked", "resolved", "cancelled")


class PointSettings(Base):
    """A channel's own rates; a channel without a row uses the server's defaults (``[points]``)."""

    __tablename__ = "point_settings"

    channel_id: Mapped[int] = mapped_column(
        ForeignKey("channels.id", ondelete="CASCADE"), primary_key=True
    )
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # Points per minute watched; extra points per minute for followers and for viewers who
    # chatted in the channel recently.
    watch_rate: Mapped[int] = mapped_column(Integer)
    follow_bonus: Mapped[int] = mapped_column(Integer)
    chat_bonus: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class PointBalance(Base):
    __tablename__ = "point_balances"
    __table_args__ = (CheckConstraint("balance >= 0", name="balance_not_negative"),)

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    channel_id: Mapped[int] = mapped_column(
        ForeignKey("channels.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    balance: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class PointLedgerEntry(Base):
    __tablename__ = "point_ledger"
    __table_args__ = (
        Index("ix_point_ledger_user_id_channel_id_id", "user_id", "channel_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    channel_id: Mapped[int] = mapped_column(
        ForeignKey("channels.id", ondelete="CASCADE"), index=True
    )
    amount: Mapped[int] = mapped_column(BigInteger)  # signed: spends are negative
    kind: Mapped[str] = mapped_column(String(24))
    # The redemption or prediction the entry belongs to (none for accrual).
    ref_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PointReward(Base):
    __tablename__ = "point_rewards"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel_id: Mapped[int] = mapped_column(
        ForeignKey("channels.id", ondelete="CASCADE"), index=True
    )
    title: Mapped[str] = mapped_column(String(64))
    cost: Mapped[int] = mapped_column(Integer)
    # Non-empty: the viewer must type a text when redeeming (this is the prompt).
    prompt: Mapped[str] = mapped_column(String(200), default="")
    cooldown_seconds: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # 0: no limit.
    max_per_stream: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    max_per_user_per_stream: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # Set by each redemption to now + cooldown; the next must come at or after it.
    cooldown_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class PointRedemption(Base):
    __tablename__ = "point_redemptions"
    __table_args__ = (
        Index("ix_point_redemptions_channel_id_status_id", "channel_id", "status", "id"),
        Index("ix_point_redemptions_reward_id_stream_id", "reward_id", "stream_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reward_id: Mapped[int | None] = mapped_column(
        ForeignKey("point_rewards.id", ondelete="SET NULL")
    )
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # The broadcast it was redeemed during (per-stream limits); none while offline.
    stream_id: Mapped[int | None] = mapped_column(ForeignKey("streams.id", ondelete="SET NULL"))
    title: Mapped[str] = mapped_column(String(64))  # the reward's title when redeemed
    cost: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="pending", server_default="pending")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None]
    resolved_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


class Prediction(Base):
    __tablename__ = "predictions"
    __table_args__ = (Index("ix_predictions_channel_id_status", "channel_id", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    question: Mapped[str] = mapped_column(String(140))
    status: Mapped[str] = mapped_column(String(16), default="open", server_default="open")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    locks_at: Mapped[datetime]  # end of the staking window
    ended_at: Mapped[datetime | None]  # locked, resolved or cancelled
    winning_outcome_id: Mapped[int | None] = mapped_column(Integer)


class PredictionOutcome(Base):
    __tablename__ = "prediction_outcomes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    prediction_id: Mapped[int] = mapped_column(
        ForeignKey("predictions.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(64))
    total: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    stakers: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class PredictionStake(Base):
    """One user's stake in a prediction: on one outcome only (more points may be added to it)."""

    __tablename__ = "prediction_stakes"
    __table_args__ = (UniqueConstraint("prediction_id", "user_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    prediction_id: Mapped[int] = mapped_column(ForeignKey("predictions.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    outcome_id: Mapped[int] = mapped_column(
        ForeignKey("prediction_outcomes.id", ondelete="CASCADE"), index=True
    )
    amount: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


__all__ = [
    "LEDGER_KINDS",
    "PREDICTION_STATES",
    "REDEMPTION_STATES",
    "PointBalance",
    "PointLedgerEntry",
    "PointRedemption",
    "PointReward",
    "PointSettings",
    "Prediction",
    "PredictionOutcome",
    "PredictionStake",
]
