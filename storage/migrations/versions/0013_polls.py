"""Polls (issue 16): polls with their options and votes.

Reserved in the chain so the parts of issue 16 built side by side do not fight over revision
numbers; this revision creates its tables when its part lands.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
