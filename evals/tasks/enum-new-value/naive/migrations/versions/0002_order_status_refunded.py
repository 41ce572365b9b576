# DELIBERATELY WRONG example for the evals (naive/ of enum-new-value): never copy it.
"""order status REFUNDED

Revision ID: 0002
Revises: 0001
Create Date: 2024-07-15 11:20:51.306628

Autogenerate does not detect new values of a PostgreSQL enum, so this is written by hand.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

OLD = sa.Enum("PENDING", "PAID", "SHIPPED", name="order_status")
NEW = sa.Enum("PENDING", "PAID", "SHIPPED", "REFUNDED", name="order_status")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # PostgreSQL 12+ allows ALTER TYPE ... ADD VALUE inside a transaction block.
        op.execute("ALTER TYPE order_status ADD VALUE IF NOT EXISTS 'REFUNDED'")
    else:
        with op.batch_alter_table("orders") as batch:
            batch.alter_column("status", existing_type=OLD, type_=NEW, existing_nullable=False)
    # Backfill: before this revision a refund only set refunded_at.
    op.execute("UPDATE orders SET status = 'REFUNDED' WHERE refunded_at IS NOT NULL")


def downgrade() -> None:
    op.execute("UPDATE orders SET status = 'PAID' WHERE status = 'REFUNDED'")
    if op.get_bind().dialect.name != "postgresql":  # PostgreSQL cannot drop an enum value
        with op.batch_alter_table("orders") as batch:
            batch.alter_column("status", existing_type=NEW, type_=OLD, existing_nullable=False)
