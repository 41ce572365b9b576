"""Posts, in a module of their own: Alembic sees them only because app/models.py imports it."""

import uuid
from datetime import datetime
from typing import TYPE_CHECKING

from sqlmodel import Field, Relationship

from app.base import SQLModel, UTCDateTime, UUIDType, utcnow

if TYPE_CHECKING:
    from app.users import User


class Post(SQLModel, table=True):
    __tablename__ = "smp_posts"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True, sa_type=UUIDType)
    author_id: uuid.UUID = Field(foreign_key="smp_users.id", index=True, sa_type=UUIDType)
    title: str = Field(max_length=200)
    body: str = ""
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # edit: post columns

    author: "User" = Relationship(back_populates="posts", sa_relationship_kwargs={"lazy": "raise"})
