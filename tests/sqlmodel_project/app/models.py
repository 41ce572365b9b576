"""Every table module of the app, imported in one place.

Alembic's target is ``app.models:SQLModel.metadata``: a table module nobody imports here is missing
from the metadata (autogenerate then drops its table), and a relationship naming a class in a
module that was never imported fails with "expression 'Post' failed to locate a name".
"""

from sqlmodel import SQLModel

from app.posts import Post
from app.users import User

# edit: more modules

__all__ = ["Post", "SQLModel", "User"]
