"""Alembic's entry point for Socle's migrations; Alembic runs it, nothing else imports it.

Socle calls Alembic with an open connection inside a transaction that already holds the migration
lock (see :func:`socle.storage.migrations.upgrade`); this script only hands that connection on.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from socle.storage.models import UNMODELLED_TABLE_PREFIX, Base


def _include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """Skip the per-database knowledge index tables, which no model describes."""
    return not (type_ == "table" and name is not None and name.startswith(UNMODELLED_TABLE_PREFIX))


def _run_migrations() -> None:
    connection = context.config.attributes.get("connection")
    if not isinstance(connection, Connection):
        raise RuntimeError(
            "run Socle's migrations with socle.storage.migrations.upgrade(), not the alembic CLI"
        )
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite cannot ALTER most things: later migrations use batch mode (copy and swap tables).
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_name=_include_name,
    )
    with context.begin_transaction():
        context.run_migrations()


_run_migrations()
