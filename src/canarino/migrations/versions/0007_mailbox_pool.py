"""mailbox pool: provisioned mailboxes at consumer providers for canaries

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mailbox_pool",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("digest", sa.LargeBinary(length=32), nullable=False),
        sa.Column("domain", sa.String(length=253), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=True),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("canary_id", sa.Integer(), nullable=True),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["canary_id"],
            ["canaries.id"],
            name=op.f("fk_mailbox_pool_canary_id_canaries"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mailbox_pool")),
        sa.UniqueConstraint("digest", name=op.f("uq_mailbox_pool_digest")),
    )
    with op.batch_alter_table("mailbox_pool", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_mailbox_pool_canary_id"), ["canary_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_mailbox_pool_domain"), ["domain"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("mailbox_pool", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mailbox_pool_domain"))
        batch_op.drop_index(batch_op.f("ix_mailbox_pool_canary_id"))
    op.drop_table("mailbox_pool")
