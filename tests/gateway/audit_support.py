"""What the audit API tests share: an audited gateway on fake engines (SQLite or PostgreSQL), and breaking
the audit table."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi.routing import APIRoute
from sqlalchemy import create_engine, text

from socle.config import load_settings
from socle.gateway.admin_audit import change_recorder
from socle.gateway.app import create_app
from socle.gateway.deps import declared_actions
from socle.storage.dialects import sync_url
from socle.testing.server import RunningServer, run_server
from tests.conftest import ADMIN_KEY, fake_engines

__all__ = ["audited_server", "audit_table_away", "ddl", "mutating_routes"]


@contextmanager
def audited_server(
    data_dir: Path, database_url: str | None = None, **overrides: Any
) -> Iterator[RunningServer]:
    """A gateway on ``database_url`` (default: SQLite in ``data_dir``, where its keys are) that retries a
    broken audit log every 0.1 s; ``overrides`` are more settings (``audit`` ones are merged)."""
    audit = {"retry_s": 0.1, "witness_dir": str(data_dir / "witness"), **overrides.pop("audit", {})}
    values: dict[str, Any] = {**fake_engines(), **overrides}
    if database_url is not None:
        values["database_url"] = database_url
    settings = load_settings(
        None, environ={}, data_dir=data_dir, admin_key=ADMIN_KEY, port=0, audit=audit, **values
    )
    with run_server(settings) as running:
        yield running


@contextmanager
def audit_table_away(server: RunningServer) -> Iterator[None]:
    """The audit table cannot be written (renamed away) inside the block."""
    url = sync_url(server.services.settings.sqlalchemy_url)
    ddl(url, "ALTER TABLE audit_entries RENAME TO audit_entries_away")
    try:
        yield
    finally:
        ddl(url, "ALTER TABLE audit_entries_away RENAME TO audit_entries")


def ddl(url: Any, statement: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text(statement))
    finally:
        engine.dispose()


def mutating_routes(prefix: str) -> dict[str, bool]:
    """Every POST, PUT, PATCH or DELETE route under ``prefix`` (``"[methods] path"``), and whether it
    takes the AdminAudit dependency (records its change)."""
    app = create_app(load_settings(None, environ={}))
    found = {}
    for path, route, _ in declared_actions(app.routes):
        if not isinstance(route, APIRoute) or not path.startswith(prefix):
            continue
        if not route.methods & {"POST", "PUT", "PATCH", "DELETE"}:
            continue
        calls = set()
        stack = [route.dependant]
        while stack:
            dependant = stack.pop()
            calls.add(dependant.call)
            stack.extend(dependant.dependencies)
        found[f"{sorted(route.methods)} {path}"] = change_recorder in calls
    return found
