"""Pytest fixtures for code that touches the database, run against SQLite and PostgreSQL alike.

Import them by name into a ``conftest.py``::

    from socle.testing.fixtures import anyio_backend, database, database_url, pg_server

- ``database_url`` is parametrised: every test using it runs twice, on a SQLite file in ``tmp_path``
  and on a fresh PostgreSQL database (marked ``postgres``, so ``-m "not postgres"`` skips those).
  The URLs are the plain ``sqlite:///`` / ``postgresql://`` forms an operator would configure.
- ``pg_server`` starts one server for the whole session, on first use only.
- ``module_database_url`` is the same for a whole test module (tests sharing one server): the module
  runs once per backend.
- ``database`` is a migrated :class:`socle.storage.db.Database` on that URL, closed after the test.
- ``anyio_backend`` runs ``@pytest.mark.anyio`` tests on asyncio, the loop Socle serves on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from socle.storage.db import Database
from socle.testing.postgres import PostgresServer, start_postgres

__all__ = ["anyio_backend", "database", "database_url", "module_database_url", "pg_server"]


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    with start_postgres() as server:
        yield server


_BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=_BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with _url(request, tmp_path) as url:
        yield url


@pytest.fixture(scope="module", params=_BACKENDS)
def module_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    with _url(request, tmp_path_factory.mktemp("db")) as url:
        yield url


@contextmanager
def _url(request: pytest.FixtureRequest, directory: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{directory / 'socle.db'}"
        return
    server: PostgresServer = request.getfixturevalue("pg_server")
    with server.database() as url:
        yield url


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    db = Database(database_url)
    try:
        await db.migrate()
        yield db
    finally:
        await db.close()
