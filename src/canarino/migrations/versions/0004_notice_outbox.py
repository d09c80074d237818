"""notice outbox: lease, reference, route, content hash, note and event history

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("notices") as batch:
        batch.add_column(sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("lease_owner", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("reference", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("route", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("content_sha256", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("note", sa.Text(), nullable=True))
        batch.add_column(sa.Column("events", sa.JSON(), nullable=True))
        batch.create_index("ix_notices_reference", ["reference"])
        batch.create_index("ix_notices_message_id", ["message_id"])


def downgrade() -> None:
    with op.batch_alter_table("notices") as batch:
        batch.drop_index("ix_notices_message_id")
        batch.drop_index("ix_notices_reference")
        batch.drop_column("events")
        batch.drop_column("note")
        batch.drop_column("content_sha256")
        batch.drop_column("route")
        batch.drop_column("reference")
        batch.drop_column("lease_owner")
        batch.drop_column("lease_until")
