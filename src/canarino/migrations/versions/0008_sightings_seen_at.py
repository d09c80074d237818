"""sightings by time: the overview's recent sightings and `sightings list --since`

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_sightings_seen_at", "sightings", ["seen_at"])


def downgrade() -> None:
    op.drop_index("ix_sightings_seen_at", table_name="sightings")
