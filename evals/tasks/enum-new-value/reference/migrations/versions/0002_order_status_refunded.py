"""order status REFUNDED; orders refunded before get it

Revision ID: 0002
Revises: 0001
Create Date: 2024-07-15 11:20:51.306628

Autogenerate does not see a value added to a PostgreSQL enum (MySQL and SQLite show it as a
changed column type), so this revision is written by hand.
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
        # A value added with ALTER TYPE cannot be used before it is committed ("unsafe use of new
        # value"), and Alembic runs all pending revisions in one transaction: add it in its own
        # committed step. (SQLAlchemy's Enum stores member names, so the label is 'REFUNDED'.)
        with op.get_context().autocommit_block():
            op.execute("ALTER TYPE order_status ADD VALUE IF NOT EXISTS 'REFUNDED'")
    else:
        # MySQL/MariaDB: ENUM(...) is part of the column; SQLite: VARCHAR sized for the longest name.
        with op.batch_alter_table("orders") as batch:
            batch.alter_column("status", existing_type=OLD, type_=NEW, existing_nullable=False)
    # Before this revision a refund only set refunded_at.
    op.execute("UPDATE orders SET status = 'REFUNDED' WHERE refunded_at IS NOT NULL")


def downgrade() -> None:
    op.execute("UPDATE orders SET status = 'PAID' WHERE status = 'REFUNDED'")  # refunded_at stays
    if op.get_bind().dialect.name == "postgresql":
        # PostgreSQL cannot drop a value from an enum: replace the type.
        op.execute("ALTER TYPE order_status RENAME TO order_status_with_refunded")
        OLD.create(op.get_bind())
        op.execute("ALTER TABLE orders ALTER COLUMN status TYPE order_status USING status::text::order_status")
        op.execute("DROP TYPE order_status_with_refunded")
    else:
        with op.batch_alter_table("orders") as batch:
            batch.alter_column("status", existing_type=NEW, type_=OLD, existing_nullable=False)
