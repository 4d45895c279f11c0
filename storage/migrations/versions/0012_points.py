"""Channel points (issue 16): point settings, the ledger, rewards, redemptions, predictions.

Only new tables (storage/points_models.py): nothing is rebuilt.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _fk(table: str, column: str, target: str, ondelete: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], [f"{target}.id"], name=f"fk_{table}_{column}_{target}", ondelete=ondelete
    )


def _when(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "point_settings",
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("watch_rate", sa.Integer(), nullable=False),
        sa.Column("follow_bonus", sa.Integer(), nullable=False),
        sa.Column("chat_bonus", sa.Integer(), nullable=False),
        _when("updated_at"),
        _fk("point_settings", "channel_id", "channels", "CASCADE"),
        sa.PrimaryKeyConstraint("channel_id", name="pk_point_settings"),
    )
    op.create_table(
        "point_balances",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("balance", sa.BigInteger(), nullable=False),
        _when("updated_at"),
        sa.CheckConstraint("balance >= 0", name="ck_point_balances_balance_not_negative"),
        _fk("point_balances", "user_id", "users", "CASCADE"),
        _fk("point_balances", "channel_id", "channels", "CASCADE"),
        sa.PrimaryKeyConstraint("user_id", "channel_id", name="pk_point_balances"),
    )
    op.create_index("ix_point_balances_channel_id", "point_balances", ["channel_id"])
    op.create_table(
        "point_ledger",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("ref_id", sa.Integer(), nullable=True),
        _when("created_at"),
        _fk("point_ledger", "user_id", "users", "CASCADE"),
        _fk("point_ledger", "channel_id", "channels", "CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_point_ledger"),
    )
    op.create_index("ix_point_ledger_channel_id", "point_ledger", ["channel_id"])
    op.create_index(
        "ix_point_ledger_user_id_channel_id_id", "point_ledger", ["user_id", "channel_id", "id"]
    )
    op.create_table(
        "point_rewards",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=64), nullable=False),
        sa.Column("cost", sa.Integer(), nullable=False),
        sa.Column("prompt", sa.String(length=200), nullable=False),
        sa.Column("cooldown_seconds", sa.Integer(), server_default="0", nullable=False),
        sa.Column("max_per_stream", sa.Integer(), server_default="0", nullable=False),
        sa.Column("max_per_user_per_stream", sa.Integer(), server_default="0", nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.true(), nullable=False),
        _when("cooldown_until", nullable=True),
        _when("created_at"),
        _when("updated_at"),
        _fk("point_rewards", "channel_id", "channels", "CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_point_rewards"),
    )
    op.create_index("ix_point_rewards_channel_id", "point_rewards", ["channel_id"])
    op.create_table(
        "point_redemptions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reward_id", sa.Integer(), nullable=True),
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("stream_id", sa.Integer(), nullable=True),
        sa.Column("title", sa.String(length=64), nullable=False),
        sa.Column("cost", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        _when("created_at"),
        _when("resolved_at", nullable=True),
        sa.Column("resolved_by_id", sa.Integer(), nullable=True),
        _fk("point_redemptions", "reward_id", "point_rewards", "SET NULL"),
        _fk("point_redemptions", "channel_id", "channels", "CASCADE"),
        _fk("point_redemptions", "user_id", "users", "CASCADE"),
        _fk("point_redemptions", "stream_id", "streams", "SET NULL"),
        _fk("point_redemptions", "resolved_by_id", "users", "SET NULL"),
        sa.PrimaryKeyConstraint("id", name="pk_point_redemptions"),
    )
    op.create_index("ix_point_redemptions_user_id", "point_redemptions", ["user_id"])
    op.create_index(
        "ix_point_redemptions_channel_id_status_id",
        "point_redemptions",
        ["channel_id", "status", "id"],
    )
    op.create_index(
        "ix_point_redemptions_reward_id_stream_id", "point_redemptions", ["reward_id", "stream_id"]
    )
    op.create_table(
        "predictions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("question", sa.String(length=140), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="open", nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        _when("created_at"),
        _when("locks_at"),
        _when("ended_at", nullable=True),
        sa.Column("winning_outcome_id", sa.Integer(), nullable=True),
        _fk("predictions", "channel_id", "channels", "CASCADE"),
        _fk("predictions", "created_by_id", "users", "SET NULL"),
        sa.PrimaryKeyConstraint("id", name="pk_predictions"),
    )
    op.create_index("ix_predictions_channel_id_status", "predictions", ["channel_id", "status"])
    op.create_table(
        "prediction_outcomes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("prediction_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=64), nullable=False),
        sa.Column("total", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("stakers", sa.Integer(), server_default="0", nullable=False),
        _fk("prediction_outcomes", "prediction_id", "predictions", "CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_prediction_outcomes"),
    )
    op.create_index(
        "ix_prediction_outcomes_prediction_id", "prediction_outcomes", ["prediction_id"]
    )
    op.create_table(
        "prediction_stakes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("prediction_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("outcome_id", sa.Integer(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        _when("created_at"),
        _fk("prediction_stakes", "prediction_id", "predictions", "CASCADE"),
        _fk("prediction_stakes", "user_id", "users", "CASCADE"),
        _fk("prediction_stakes", "outcome_id", "prediction_outcomes", "CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_prediction_stakes"),
        sa.UniqueConstraint(
            "prediction_id", "user_id", name="uq_prediction_stakes_prediction_id_user_id"
        ),
    )
    op.create_index("ix_prediction_stakes_user_id", "prediction_stakes", ["user_id"])
    op.create_index("ix_prediction_stakes_outcome_id", "prediction_stakes", ["outcome_id"])


def downgrade() -> None:
    for table in (
        "prediction_stakes",
        "prediction_outcomes",
        "predictions",
        "point_redemptions",
        "point_rewards",
        "point_ledger",
        "point_balances",
        "point_settings",
    ):
        op.drop_table(table)
