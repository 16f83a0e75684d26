"""Identifiers and column types shared by every table.

Ids are ULIDs: 26 characters of Crockford base32 encoding a 48-bit millisecond timestamp followed by
80 random bits. They sort by creation time (as strings, in any database and in Python), so recent
rows cluster at the end of B-tree indexes and a listing ordered by id is ordered by age; they need no
database sequence, so a replica can name a row before it writes it (usage records are named in memory
and written in batches). Within one millisecond the order is random, which is fine for every use here.

Timestamps are timezone-aware UTC everywhere in Python. PostgreSQL stores them as ``timestamptz``;
SQLite has no such type, so :class:`UTCDateTime` stores naive UTC there and re-attaches UTC on the way
out. Handing a naive datetime to the database is a bug and is refused rather than guessed at.
"""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Dialect
from sqlalchemy.types import TypeDecorator

__all__ = ["ID_LENGTH", "UTCDateTime", "new_id", "utcnow"]

ID_LENGTH = 26
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_id(timestamp_ms: int | None = None) -> str:
    """A new ULID (k-sortable, 128 bits: 48 of milliseconds since the epoch, 80 random)."""
    ms = time.time_ns() // 1_000_000 if timestamp_ms is None else timestamp_ms
    value = (ms & ((1 << 48) - 1)) << 80 | secrets.randbits(80)
    chars = []
    for _ in range(ID_LENGTH):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python, whatever the database stores."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: use timezone-aware UTC (socle.storage.types.utcnow)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
