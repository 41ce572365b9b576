"""A user's project in miniature, for tests/test_generate_migration.py and test_setup_alembic.py.

The tests copy this folder to a temporary directory (a path with a space), add
templates/base_model.py as sample_app/base_model.py (as a user copies the template), run the
scripts there, and edit this file between migrations (lines marked ``# edit:``).
"""

from __future__ import annotations

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from sample_app.base_model import Base, TimestampMixin


class SpAuthor(TimestampMixin, Base):
    __tablename__ = "sp_authors"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    # edit: author columns


class SpBook(Base):
    __tablename__ = "sp_books"

    id: Mapped[int] = mapped_column(primary_key=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("sp_authors.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    # edit: book columns


# edit: more tables
