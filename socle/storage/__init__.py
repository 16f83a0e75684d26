"""Relational storage: the async engine and sessions (SQLite or PostgreSQL), the schema, migrations.

Importing this package does nothing; :class:`Database` connects on first use.
"""

from socle.storage.db import Database
from socle.storage.types import new_id, utcnow

__all__ = ["Database", "new_id", "utcnow"]
