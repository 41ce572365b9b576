"""Example domain models on the template ``Base``: users, posts, tags. Replace them with yours.

Shows the relationship shapes most apps need, each declared with ``lazy="raise"`` so that touching
an unloaded relationship raises at once (in tests too) instead of emitting hidden I/O, which in
async code would be ``MissingGreenlet``. Load what you need with ``selectinload`` / ``joinedload``
in the query.

- one-to-many: ``User.posts`` / ``Post.author`` (foreign key indexed, ``ON DELETE CASCADE``);
- many-to-many through an association object that carries its own column: ``Post`` <-> ``Tag``
  via ``PostTag.position``;
- self-referential: ``User.manager`` / ``User.reports`` (``remote_side``).

The examples and tests use these classes; ``examples/relationships.py`` shows them at work.
"""

from __future__ import annotations

import uuid

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base_model import Base, SoftDeleteMixin, TimestampMixin, UUIDPrimaryKeyMixin


class User(UUIDPrimaryKeyMixin, TimestampMixin, SoftDeleteMixin, Base):
    __tablename__ = "users"

    email: Mapped[str] = mapped_column(String(255), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    manager_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"), index=True)

    posts: Mapped[list[Post]] = relationship(
        back_populates="author", lazy="raise", cascade="all, delete-orphan", order_by="Post.created_at"
    )
    # Self-referential: remote_side marks the "one" side of the hierarchy.
    manager: Mapped[User | None] = relationship(back_populates="reports", remote_side="User.id", lazy="raise")
    reports: Mapped[list[User]] = relationship(back_populates="manager", lazy="raise")


class Post(UUIDPrimaryKeyMixin, TimestampMixin, Base):
    __tablename__ = "posts"

    author_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text, default="")

    author: Mapped[User] = relationship(back_populates="posts", lazy="raise")
    tag_links: Mapped[list[PostTag]] = relationship(
        back_populates="post", lazy="raise", cascade="all, delete-orphan", order_by="PostTag.position"
    )


class Tag(Base):
    __tablename__ = "tags"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)

    post_links: Mapped[list[PostTag]] = relationship(back_populates="tag", lazy="raise")


class PostTag(Base):
    """Association object: the link row has data of its own (``position``)."""

    __tablename__ = "post_tags"

    post_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True)
    tag_id: Mapped[int] = mapped_column(ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True, index=True)
    position: Mapped[int] = mapped_column(default=0)

    post: Mapped[Post] = relationship(back_populates="tag_links", lazy="raise")
    tag: Mapped[Tag] = relationship(back_populates="post_links", lazy="raise")
