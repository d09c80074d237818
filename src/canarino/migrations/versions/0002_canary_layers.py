"""canary layers: exclusive, shared (with bias) and control

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("canaries") as batch:
        batch.add_column(
            sa.Column("layer", sa.String(length=16), server_default="exclusive", nullable=False)
        )
        batch.add_column(sa.Column("bias", sa.Float(), server_default="0", nullable=False))
        batch.create_index("ix_canaries_layer", ["layer"])


def downgrade() -> None:
    with op.batch_alter_table("canaries") as batch:
        batch.drop_index("ix_canaries_layer")
        batch.drop_column("bias")
        batch.drop_column("layer")
