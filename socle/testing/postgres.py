"""A throwaway PostgreSQL server for tests, from the ``pgserver`` pip package (PostgreSQL 16 + pgvector).

:func:`start_postgres` runs one server in a fresh directory (``socle-pg-*`` under the system temp
dir) for as long as its ``with`` block lasts; :meth:`PostgresServer.database` gives each test an empty
database of its own and drops it afterwards. The server listens on a Unix socket in its own
directory only, never on a TCP port, so parallel sessions cannot collide.

Running as root (CI containers): PostgreSQL refuses to run as root, so ``pgserver`` creates a system
user ``pgserver`` (``useradd``), hands it the data directory and runs ``initdb`` and ``pg_ctl`` as that
user; it also opens read/traverse permission on the parents of the data directory. That is why the
directory lives in its own ``socle-pg-*`` folder rather than in pytest's private ``tmp_path``.

A session killed before its clean-up (SIGKILL, CI timeout) leaves its server running; the next
:func:`start_postgres` stops such orphans (their owner process is gone) and removes their directories.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from socle.storage.types import new_id

__all__ = ["PostgresServer", "start_postgres"]

log = logging.getLogger(__name__)

_DIR_PREFIX = "socle-pg-"
_OWNER_FILE = "owner.pid"


class PostgresServer:
    """A running pgserver instance; make databases on it with :meth:`database`."""

    def __init__(self, server: Any, base_dir: Path) -> None:
        self._server = server
        self.base_dir = base_dir

    @property
    def url(self) -> str:
        """``postgresql://`` URL of the ``postgres`` maintenance database (superuser, trust auth)."""
        return str(self._server.get_uri())

    def url_for(self, database: str) -> str:
        return str(self._server.get_uri(database))

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database and return its ``postgresql://`` URL."""
        name = name or f"socle_test_{new_id().lower()}"
        with psycopg.connect(self.url, autocommit=True) as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting whoever is still connected to it."""
        with psycopg.connect(self.url, autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    @contextmanager
    def database(self) -> Iterator[str]:
        """A fresh empty database for the ``with`` block; dropped afterwards."""
        name = f"socle_test_{new_id().lower()}"
        url = self.create_database(name)
        try:
            yield url
        finally:
            self.drop_database(name)


@contextmanager
def start_postgres(parent: Path | None = None) -> Iterator[PostgresServer]:
    """Start a PostgreSQL server in a new directory under ``parent`` (default: the temp dir).

    The server is stopped and its directory removed when the block ends.
    """
    pgserver = _import_pgserver()
    parent = Path(parent or tempfile.gettempdir()).resolve()
    _reap_orphans(parent)
    base_dir = Path(tempfile.mkdtemp(prefix=_DIR_PREFIX, dir=parent))
    (base_dir / _OWNER_FILE).write_text(str(os.getpid()))
    server = None
    try:
        server = pgserver.get_server(base_dir / "pgdata", cleanup_mode="stop")
        yield PostgresServer(server, base_dir)
    finally:
        if server is not None:
            server.cleanup()  # pg_ctl stop (fast: disconnects clients), then forget the instance
            atexit.unregister(server._cleanup)
        shutil.rmtree(base_dir, ignore_errors=True)


def _import_pgserver() -> Any:
    """Import pgserver (not at module import: it looks up binaries and lock paths when imported)."""
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI) and falls back to a
        # private temp dir, which is what pgserver needs; the warning is noise there.
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
        import pgserver
    return pgserver


def _reap_orphans(parent: Path) -> None:
    """Stop servers left by sessions that died before their clean-up, and remove their directories."""
    for base_dir in parent.glob(_DIR_PREFIX + "*"):
        try:
            owner = int((base_dir / _OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue
        if _process_exists(owner):
            continue
        pgdata = base_dir / "pgdata"
        if (pgdata / "postmaster.pid").exists():
            _stop_orphan(pgdata)
        shutil.rmtree(base_dir, ignore_errors=True)
        log.info("removed an orphaned test PostgreSQL in %s", base_dir)


def _stop_orphan(pgdata: Path) -> None:
    pg_ctl = _import_pgserver().pg_ctl
    user = "pgserver" if os.geteuid() == 0 else None
    try:
        pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=pgdata, user=user, timeout=30)
    except (subprocess.SubprocessError, OSError) as exc:
        log.warning("could not stop the orphaned PostgreSQL in %s: %s", pgdata, exc)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
