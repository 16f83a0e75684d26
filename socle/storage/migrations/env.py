"""Alembic's entry point for Socle's migrations; Alembic runs it, nothing else imports it.

Socle calls Alembic with an open connection inside a transaction that already holds the migration
lock (see :func:`socle.storage.migrations.upgrade`); this script only hands that connection on.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from socle.storage.models import Base


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
    )
    with context.begin_transaction():
        context.run_migrations()


_run_migrations()
