"""Streams get an unguessable public id: the link to a stream of an unlisted channel.

Stream ids are sequential, so anyone could walk ``/vod/1``, ``/vod/2``… and find recordings of
channels their owners left out of every list. Existing streams get a fresh random id here;
new ones get it from the model's default (``storage.models.new_public_id``).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Added as NULL first (a plain ADD COLUMN), filled, then made NOT NULL.
    op.add_column("streams", sa.Column("public_id", sa.String(32), nullable=True))
    conn = op.get_bind()
    ids = [row[0] for row in conn.execute(sa.text("SELECT id FROM streams"))]
    for stream_id in ids:
        conn.execute(
            sa.text("UPDATE streams SET public_id = :public_id WHERE id = :id"),
            {"public_id": secrets.token_urlsafe(16), "id": stream_id},
        )
    with op.batch_alter_table("streams") as batch:
        batch.alter_column("public_id", existing_type=sa.String(32), nullable=False)
    op.create_index("uq_streams_public_id", "streams", ["public_id"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_streams_public_id", table_name="streams")
    with op.batch_alter_table("streams") as batch:
        batch.drop_column("public_id")
