"""The database layer on SQLite and PostgreSQL: migrations, connection settings, sessions, locks."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import IntegrityError, StatementError

from socle.errors import ConfigError, StorageError
from socle.storage.db import Database
from socle.storage.dialects import async_url, sync_url
from socle.storage.migrations import head_revision
from socle.storage.models import UNMODELLED_TABLE_PREFIX, Base, OrganisationRow, TeamRow
from socle.storage.types import new_id

pytestmark = pytest.mark.anyio

TABLES = set(Base.metadata.tables)  # the migrations build every table of the models (checked below too)


async def _tables(db: Database) -> set[str]:
    async with db.connect() as connection:
        names = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
    return {n for n in names if not n.startswith(UNMODELLED_TABLE_PREFIX)}  # the knowledge stores' own


async def test_migrations_create_the_schema_on_an_empty_database(database_url: str) -> None:
    async with Database(database_url) as db:
        assert await db.schema_revision() is None
        await db.migrate()
        assert await db.schema_revision() == head_revision()
        assert await _tables(db) == TABLES | {"alembic_version"}


async def test_migrating_again_on_restart_changes_nothing(database_url: str) -> None:
    async with Database(database_url) as db:
        await db.migrate()
        async with db.session() as session:
            session.add(OrganisationRow(name="acme"))
    async with Database(database_url) as db:  # a restart: a new engine on the same database
        await db.migrate()
        await db.migrate()
        assert await db.schema_revision() == head_revision()
        async with db.session() as session:
            assert (await session.scalars(select(OrganisationRow.name))).all() == ["acme"]


async def test_the_migrations_build_exactly_the_models(database: Database) -> None:
    async with database.connect() as connection:
        diff = await connection.run_sync(
            lambda sync: compare_metadata(
                MigrationContext.configure(
                    sync,
                    opts={
                        "include_name": lambda name, type_, _: (
                            not str(name).startswith(UNMODELLED_TABLE_PREFIX)
                        )
                    },
                ),
                Base.metadata,
            )
        )
    assert diff == []


async def test_concurrent_migrations_in_one_process(database_url: str) -> None:
    dbs = [Database(database_url) for _ in range(3)]
    try:
        await asyncio.gather(*(db.migrate() for db in dbs))
        assert await dbs[0].schema_revision() == head_revision()
    finally:
        await asyncio.gather(*(db.close() for db in dbs))


_MIGRATE = """
import asyncio, sys
from socle.storage.db import Database

async def main() -> None:
    db = Database(sys.argv[1])
    try:
        await db.migrate()
    finally:
        await db.close()

asyncio.run(main())
"""


def test_replicas_starting_at_once_migrate_once(database_url: str) -> None:
    """Several processes migrating one empty database at once: all succeed, the schema is built once."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-W", "error", "-c", _MIGRATE, database_url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr

    async def check() -> None:
        async with Database(database_url) as db:
            assert await db.schema_revision() == head_revision()
            async with db.connect() as connection:
                versions = (await connection.execute(text("SELECT version_num FROM alembic_version"))).all()
            assert len(versions) == 1

    asyncio.run(check())


async def test_sqlite_connections_use_wal_and_safe_pragmas(tmp_path: Path) -> None:
    async with Database(f"sqlite:///{tmp_path / 'state' / 'socle.db'}") as db:  # directory made on demand
        await db.migrate()
        async with db.read() as first, db.read() as second:  # two pooled connections
            for connection in (first, second):
                pragmas = {
                    name: (await connection.exec_driver_sql(f"PRAGMA {name}")).scalar()
                    for name in ("journal_mode", "foreign_keys", "synchronous", "busy_timeout")
                }
                assert pragmas == {
                    "journal_mode": "wal",
                    "foreign_keys": 1,
                    "synchronous": 1,
                    "busy_timeout": 10000,
                }


async def test_foreign_keys_are_enforced(database: Database) -> None:
    with pytest.raises(IntegrityError):
        async with database.session() as session:
            session.add(TeamRow(org_id=new_id(), name="orphans"))


async def test_sessions_commit_or_roll_back_as_a_whole(database: Database) -> None:
    async with database.read() as connection:  # autocommit on PostgreSQL: must not leak into the pool
        await connection.execute(text("SELECT 1"))
    with pytest.raises(RuntimeError):
        async with database.session() as session:
            session.add(OrganisationRow(name="rolled-back"))
            await session.flush()
            raise RuntimeError("abort")
    async with database.connect() as connection:
        await connection.execute(
            OrganisationRow.__table__.insert().values(id=new_id(), name="a", created_at=_now())
        )
    async with database.session() as session:
        assert (await session.scalars(select(OrganisationRow.name))).all() == ["a"]


async def test_timestamps_come_back_as_aware_utc(database: Database) -> None:
    paris_summer = datetime(2026, 7, 14, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    async with database.session() as session:
        session.add(OrganisationRow(id="org", name="acme", created_at=paris_summer))
    async with database.session() as session:
        org = await session.get(OrganisationRow, "org")
        assert org is not None
        assert org.created_at.tzinfo is UTC
        assert org.created_at == paris_summer
        assert org.created_at.hour == 10
    with pytest.raises(StatementError, match="naive datetime"):
        async with database.session() as session:
            session.add(OrganisationRow(name="naive", created_at=datetime(2026, 1, 1)))


async def test_locked_sessions_do_not_interleave(database: Database) -> None:
    events: list[str] = []
    entered = asyncio.Event()

    async def first() -> None:
        async with database.locked_session("test") as session:
            events.append("first in")
            entered.set()
            session.add(OrganisationRow(name="first"))
            await asyncio.sleep(0.3)
            events.append("first out")

    async def second() -> None:
        await entered.wait()
        async with database.locked_session("test") as session:
            events.append("second in")
            session.add(OrganisationRow(name="second"))

    await asyncio.gather(first(), second())
    assert events == ["first in", "first out", "second in"]


async def test_an_unreachable_database_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    for url in (
        "postgresql://postgres@/socle?host=" + str(tmp_path / "no-such-socket-dir"),
        f"sqlite:///{tmp_path / 'a-file' / 'socle.db'}",
    ):
        with pytest.raises(StorageError, match="database is unavailable") as caught:
            await Database.open(url)
        assert caught.value.status_code == 503
        assert str(tmp_path) not in caught.value.message  # clients never see hosts or paths
        assert caught.value.detail  # operators do
        db = Database(url)
        with pytest.raises(StorageError):
            await db.migrate()
        await db.close()


def test_urls_pick_socles_drivers() -> None:
    assert str(async_url("sqlite:////data/socle.db")) == "sqlite+aiosqlite:////data/socle.db"
    assert str(sync_url("sqlite+aiosqlite:////data/socle.db")) == "sqlite:////data/socle.db"
    assert async_url("postgres://u:pw@db/socle").drivername == "postgresql+psycopg"
    assert sync_url("postgresql://u:pw@db/socle").drivername == "postgresql+psycopg"
    for bad in ("mysql://db/socle", "sqlite://", "sqlite:///:memory:", "not a url"):
        with pytest.raises(ConfigError):
            async_url(bad)


def test_ids_sort_by_creation_time() -> None:
    ids = [new_id(timestamp_ms=ms) for ms in (1, 2, 1_000, 1_700_000_000_000, 1_700_000_000_001)]
    assert ids == sorted(ids)
    assert all(len(i) == 26 for i in ids)
    assert len({new_id() for _ in range(1000)}) == 1000


def _now() -> datetime:
    return datetime.now(UTC)
