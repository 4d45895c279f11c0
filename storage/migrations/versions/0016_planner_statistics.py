"""PostgreSQL: the planner's statistics of every table, made again.

Why: migration 0008 added ``streams.visibility`` and ``streams.deleted_at`` with a server
default, which rewrites no row, so autovacuum never re-analyzed the table and PostgreSQL had
no statistics for the two columns. It then took each of them to keep 0.5 % of the rows, and
a category page's past broadcasts (``storage.browse.past_in_category``: a category, ended,
public, not deleted, newest first) for a set of one row: it read all of a large category's
18,000 broadcasts and sorted them (130 ms) instead of walking the category's index backwards
to the first 24 (2 ms). ``ANALYZE`` runs in the migration's transaction and samples a bounded
number of rows per table, so it takes seconds on a large database.

SQLite keeps no statistics unless asked (its planner works from the schema): nothing there.
Later migrations that add a column queries filter on should end the same way.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ANALYZE")


def downgrade() -> None:
    pass  # statistics are not schema: nothing to undo
