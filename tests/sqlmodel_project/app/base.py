"""Shared column types and the naming convention for every table module of the sample app.

``base_model.py`` next to this file is templates/base_model.py, copied in by the tests (the way a
user copies the template). SQLModel keeps one global ``MetaData``: give it the naming convention
before any table class is defined, so every table module imports this module first.
"""

from sqlmodel import SQLModel

from app.base_model import NAMING_CONVENTION, UTCDateTime, UUIDType, utcnow

SQLModel.metadata.naming_convention = NAMING_CONVENTION

__all__ = ["SQLModel", "UTCDateTime", "UUIDType", "utcnow"]
