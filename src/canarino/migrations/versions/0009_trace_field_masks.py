"""trace_customers keeps the exposed fields as a bit mask, in a table without rowid

A trace of a large leak writes hundreds of thousands of these rows; the field list as
text made each row several times larger than its ids, and SQLite wrote every row twice
(table and primary-key index). The mask's bits follow ``canarino.fields.FIELD_NAMES``,
frozen below for this migration.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# canarino.fields.FIELD_NAMES when this migration was written: bit i is FIELDS[i].
FIELDS = (
    "first_name",
    "last_name",
    "full_name",
    "email",
    "phone",
    "address",
    "city",
    "postcode",
    "region",
    "country",
    "language",
    "birth_date",
    "tax_code",
    "customer_id",
    "ticket_id",
    "password",
    "iban",
)


def _mask(text: str) -> int:
    return sum(1 << FIELDS.index(f) for f in text.split(",") if f in FIELDS)


def _text(mask: int) -> str:
    return ",".join(f for i, f in enumerate(FIELDS) if mask & (1 << i))


def _recreate() -> str:
    # SQLite rebuilds the table (the only way to drop a column and the rowid there).
    return "always" if op.get_bind().dialect.name == "sqlite" else "auto"


def upgrade() -> None:
    conn = op.get_bind()
    op.add_column(
        "trace_customers", sa.Column("mask", sa.Integer(), nullable=False, server_default="0")
    )
    texts = [t for (t,) in conn.execute(sa.text("SELECT DISTINCT fields FROM trace_customers"))]
    for text in texts:
        conn.execute(
            sa.text("UPDATE trace_customers SET mask = :mask WHERE fields = :text"),
            {"mask": _mask(text), "text": text},
        )
    with op.batch_alter_table(
        "trace_customers", recreate=_recreate(), table_kwargs={"sqlite_with_rowid": False}
    ) as batch:
        batch.drop_column("fields")
        batch.alter_column("mask", server_default=None)


def downgrade() -> None:
    conn = op.get_bind()
    op.add_column(
        "trace_customers",
        sa.Column("fields", sa.String(500), nullable=False, server_default=""),
    )
    masks = [m for (m,) in conn.execute(sa.text("SELECT DISTINCT mask FROM trace_customers"))]
    for mask in masks:
        conn.execute(
            sa.text("UPDATE trace_customers SET fields = :text WHERE mask = :mask"),
            {"mask": mask, "text": _text(mask)},
        )
    with op.batch_alter_table("trace_customers", recreate=_recreate()) as batch:
        batch.drop_column("mask")
        batch.alter_column("fields", server_default=None)
