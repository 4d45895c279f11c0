"""Raids and chat extras (issue 16): who may raid a channel, the raids made, typing indicators.

Reserved in the chain so the parts of issue 16 built side by side do not fight over revision
numbers; this revision creates its tables when its part lands.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
