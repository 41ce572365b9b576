"""events.occurred_at keeps microseconds on MySQL/MariaDB

Revision ID: 0002
Revises: 0001
Create Date: 2024-06-03 10:41:27.502114

0001 created ``DateTime(timezone=True)``, which MySQL/MariaDB make a whole-second ``DATETIME``.
The model's ``UTCDateTime`` is ``DATETIME(6)`` there. Autogenerate does not compare
fractional-second precision, so this revision is written by hand. PostgreSQL (timestamptz) and
SQLite (text) already keep microseconds: nothing to do there. Existing values stay as they are
(they were written in UTC).
"""
from __future__ import annotations

from alembic import op
from sqlalchemy.dialects import mysql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name in ("mysql", "mariadb"):
        op.alter_column("events", "occurred_at", type_=mysql.DATETIME(fsp=6), existing_type=mysql.DATETIME(),
                        existing_nullable=False)


def downgrade() -> None:
    if op.get_bind().dialect.name in ("mysql", "mariadb"):
        op.alter_column("events", "occurred_at", type_=mysql.DATETIME(), existing_type=mysql.DATETIME(fsp=6),
                        existing_nullable=False)
