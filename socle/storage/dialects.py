"""What differs between SQLite and PostgreSQL, kept in one place.

URLs
    Socle talks to both databases through one driver family per database: ``aiosqlite`` (async) and
    the standard ``sqlite3`` module (sync, for Alembic) for SQLite; psycopg 3 for PostgreSQL, which
    serves both the async engine and the sync one. :func:`async_url` and :func:`sync_url` turn any URL
    an operator may write (``sqlite:///...``, ``postgres://``, ``postgresql://``) into those.

SQLite connections
    Every connection gets, before anything else: ``busy_timeout`` (wait for a writer instead of
    failing at once), ``journal_mode=WAL`` (readers never block the writer and vice versa; persistent
    in the file), ``foreign_keys=ON`` (off by default in SQLite) and ``synchronous=NORMAL`` (durable
    across application crashes; in WAL mode only a power cut can lose the last transactions).

    Python's ``sqlite3`` driver, by default, opens transactions only before INSERT/UPDATE/DELETE, so
    SELECTs and DDL run outside them and SAVEPOINTs do not nest. Socle switches that off
    (``isolation_level = None``) and emits ``BEGIN`` itself when SQLAlchemy begins a transaction, as
    the SQLAlchemy documentation recommends: transactions then mean what they mean on PostgreSQL,
    and migrations are transactional.

    Which ``BEGIN``: in WAL mode, a transaction that reads first and writes later (``BEGIN
    DEFERRED``) fails at once with "database is locked" if another connection wrote in between; the
    busy timeout cannot help, since its snapshot is stale. So units of work that may write begin
    ``IMMEDIATE``: they take the (single) write lock up front and wait their turn for it, up to the
    busy timeout. Read-only connections use ``NONE``: no BEGIN at all, each statement is its own
    implicit transaction and sees the latest committed data (like autocommit reads on PostgreSQL),
    never waits (WAL readers do not block and are not blocked), and saves the BEGIN and ROLLBACK
    hops to aiosqlite's thread. The engine's default is given to :func:`configure_sqlite`; a
    connection picks another with the execution option :data:`SQLITE_BEGIN`.

Locks
    On PostgreSQL, named locks are transaction-scoped advisory locks; :func:`advisory_lock_key` maps a
    name to the 64-bit key they take.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from sqlalchemy import URL, Connection, Engine, event, make_url
from sqlalchemy.exc import ArgumentError

from socle.errors import ConfigError

__all__ = [
    "SQLITE_BEGIN",
    "SQLITE_BUSY_TIMEOUT_MS",
    "Backend",
    "advisory_lock_key",
    "async_url",
    "backend_of",
    "configure_sqlite",
    "sync_url",
]

Backend = Literal["sqlite", "postgresql"]

SQLITE_BEGIN = "socle_sqlite_begin"
"""Execution option naming the SQLite ``BEGIN`` mode of a connection: IMMEDIATE, DEFERRED or NONE."""

SQLITE_BUSY_TIMEOUT_MS = 10_000
_SQLITE_PRAGMAS = (
    f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}",  # first: the pragmas below may have to wait
    "PRAGMA journal_mode = WAL",
    "PRAGMA foreign_keys = ON",
    "PRAGMA synchronous = NORMAL",
)
_BEGIN_MODES = frozenset({"DEFERRED", "IMMEDIATE", "EXCLUSIVE", "NONE"})
_DRIVERS: dict[Backend, tuple[str, str]] = {
    # backend: (async driver, sync driver)
    "sqlite": ("sqlite+aiosqlite", "sqlite"),
    "postgresql": ("postgresql+psycopg", "postgresql+psycopg"),
}


def backend_of(url: str | URL) -> Backend:
    """``sqlite`` or ``postgresql``; anything else is a configuration error."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"invalid database URL: {exc}") from exc
    name = parsed.get_backend_name()
    if name in ("postgresql", "postgres"):
        return "postgresql"
    if name == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:") or parsed.query.get("mode") == "memory":
            raise ConfigError(
                "SQLite must be a file: an in-memory database is not shared between connections"
            )
        return "sqlite"
    raise ConfigError(f"unsupported database {name!r}: Socle runs on SQLite or PostgreSQL")


def async_url(url: str | URL) -> URL:
    """The URL with Socle's async driver (aiosqlite or psycopg)."""
    driver = _DRIVERS[backend_of(url)][0]
    return make_url(url).set(drivername=driver)


def sync_url(url: str | URL) -> URL:
    """The URL with Socle's sync driver (sqlite3 or psycopg), for Alembic."""
    driver = _DRIVERS[backend_of(url)][1]
    return make_url(url).set(drivername=driver)


def advisory_lock_key(name: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_xact_lock``, derived from a lock name."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


def configure_sqlite(engine: Engine, *, begin: str = "IMMEDIATE") -> None:
    """Install the per-connection pragmas and explicit ``BEGIN`` on a (sync, or async's sync) engine.

    ``begin`` is the default mode; a connection may override it with the :data:`SQLITE_BEGIN` option.
    """
    if begin not in _BEGIN_MODES:
        raise ValueError(f"unknown SQLite BEGIN mode {begin!r}")

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see _on_begin)
        cursor = dbapi_connection.cursor()
        try:
            for pragma in _SQLITE_PRAGMAS:
                cursor.execute(pragma)
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get(SQLITE_BEGIN, begin)
        if mode not in _BEGIN_MODES:
            raise ValueError(f"unknown SQLite BEGIN mode {mode!r}")
        if mode != "NONE":
            connection.exec_driver_sql(f"BEGIN {mode}")
