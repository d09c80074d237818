"""incident risk assessment: level and the reason recorded for it

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(
            sa.Column("risk", sa.String(length=16), server_default="risk", nullable=False)
        )
        batch.add_column(sa.Column("risk_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.drop_column("risk_reason")
        batch.drop_column("risk")
