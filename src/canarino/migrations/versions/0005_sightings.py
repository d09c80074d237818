"""sightings and the senders each recipient is authorised to use

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "allowed_senders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("recipient_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["recipient_id"],
            ["recipients.id"],
            name=op.f("fk_allowed_senders_recipient_id_recipients"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_allowed_senders")),
        sa.UniqueConstraint(
            "recipient_id", "kind", "value", name=op.f("uq_allowed_senders_recipient_id")
        ),
    )
    op.create_index(op.f("ix_allowed_senders_recipient_id"), "allowed_senders", ["recipient_id"])
    op.create_table(
        "sightings",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("dedup_key", sa.String(length=64), nullable=False),
        sa.Column("contact_digest", sa.LargeBinary(length=32), nullable=False),
        sa.Column("canary_id", sa.Integer(), nullable=True),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("strong", sa.Boolean(), nullable=False),
        sa.Column("expected_use", sa.Boolean(), nullable=False),
        sa.Column("allowed_recipient_id", sa.Integer(), nullable=True),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["allowed_recipient_id"],
            ["recipients.id"],
            name=op.f("fk_sightings_allowed_recipient_id_recipients"),
        ),
        sa.ForeignKeyConstraint(
            ["canary_id"], ["canaries.id"], name=op.f("fk_sightings_canary_id_canaries")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sightings")),
        sa.UniqueConstraint("dedup_key", name=op.f("uq_sightings_dedup_key")),
    )
    op.create_index(op.f("ix_sightings_canary_id"), "sightings", ["canary_id"])
    op.create_index(op.f("ix_sightings_contact_digest"), "sightings", ["contact_digest"])


def downgrade() -> None:
    op.drop_table("sightings")
    op.drop_table("allowed_senders")
