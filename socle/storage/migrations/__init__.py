"""Alembic migrations, run programmatically at start-up: there is no ``alembic.ini``.

:func:`upgrade` brings a database to the newest revision. It is synchronous (Alembic is) and
:meth:`socle.storage.db.Database.migrate` runs it in a worker thread with a sync URL. It is safe when
several replicas start at once: the whole upgrade runs in one transaction that first takes a lock,
``pg_advisory_xact_lock`` on PostgreSQL and ``BEGIN IMMEDIATE`` (the database write lock) on SQLite.
The second replica waits, then finds the schema at head and does nothing. Both databases have
transactional DDL here (see :mod:`socle.storage.dialects` for SQLite), so a failed migration leaves
the schema as it was.

Adding a migration: change :mod:`socle.storage.models`, then generate a revision against a database
at head and review it (``tests/storage`` checks that migrations and models agree)::

    from alembic import command
    from sqlalchemy import create_engine
    from socle.storage.migrations import alembic_config, upgrade

    upgrade("sqlite:///dev.db")
    with create_engine("sqlite:///dev.db").connect() as connection:
        command.revision(alembic_config(connection), "add budgets", autogenerate=True, rev_id="0002")
"""

from __future__ import annotations

import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import URL, Connection, create_engine, func, select
from sqlalchemy.pool import NullPool

from socle.storage.dialects import advisory_lock_key, backend_of, configure_sqlite, sync_url

__all__ = ["MIGRATIONS_DIR", "MIGRATION_LOCK", "alembic_config", "head_revision", "upgrade"]

MIGRATIONS_DIR = Path(__file__).resolve().parent
MIGRATION_LOCK = "socle.migrations"
"""Name of the database lock held while migrating."""

# Alembic's ``context`` and ``op`` are process-wide proxies: two upgrades must not run at the same
# time in one process, whatever database they target. The database lock covers other processes.
_PROCESS_LOCK = threading.Lock()


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration for Socle's scripts; ``env.py`` migrates through ``connection``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision shipped with this version of Socle."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "no migrations found"
    return head


def upgrade(url: str | URL, revision: str = "head") -> None:
    """Migrate the database at ``url`` to ``revision`` (blocking; holds the migration lock meanwhile)."""
    backend = backend_of(url)
    engine = create_engine(sync_url(url), poolclass=NullPool)
    if backend == "sqlite":
        configure_sqlite(engine, begin="IMMEDIATE")
    try:
        with _PROCESS_LOCK, engine.connect() as connection, connection.begin():
            if backend == "postgresql":
                connection.execute(select(func.pg_advisory_xact_lock(advisory_lock_key(MIGRATION_LOCK))))
            command.upgrade(alembic_config(connection), revision)
    finally:
        engine.dispose()
