"""Users: a UUID key, AutoString columns (one without a length), aware datetimes, a relationship.

No ``from __future__ import annotations`` in SQLModel table modules: it turns ``list["Post"]``
into the string "list['Post']", which the relationship cannot resolve.
"""

import uuid
from datetime import datetime
from typing import TYPE_CHECKING

from sqlmodel import Field, Relationship

from app.base import SQLModel, UTCDateTime, UUIDType, utcnow

if TYPE_CHECKING:
    from app.posts import Post


class User(SQLModel, table=True):
    __tablename__ = "smp_users"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True, sa_type=UUIDType)
    email: str = Field(max_length=255, unique=True)
    name: str  # AutoString without a length: VARCHAR(255) on MySQL/MariaDB, VARCHAR elsewhere
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    deleted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # edit: user columns

    posts: list["Post"] = Relationship(back_populates="author", sa_relationship_kwargs={"lazy": "raise"})
