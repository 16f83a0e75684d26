"""The database: one async engine, sessions, named locks and migrations.

A :class:`Database` wraps one SQLAlchemy :class:`~sqlalchemy.ext.asyncio.AsyncEngine` (aiosqlite or
psycopg 3) and its connection pool. The gateway's lifespan builds one, runs :meth:`Database.migrate`,
hands it to the stores and closes it last. Building it does no I/O; the first connection is made by
the first query (or by :meth:`ping`).

Four ways in, one per need:

- :meth:`Database.session`: an ORM unit of work, one transaction, committed on exit and rolled back
  if the block raises. Most code uses this.
- :meth:`Database.connect`: a Core connection in one transaction, for hot paths that want no ORM
  overhead (batched inserts and updates).
- :meth:`Database.read`: a Core connection for reads only, which never waits for writers. It runs
  without a transaction (autocommit): each statement sees the latest committed data, and a lookup
  is one round trip instead of three (BEGIN, SELECT, COMMIT) on PostgreSQL, one hop to aiosqlite's
  thread instead of three on SQLite. The per-request key lookup uses it. A block that needs several
  reads to agree with each other (one snapshot) uses a session instead.
- :meth:`Database.fetch_all`: one read statement, the fastest way in, for per-request lookups. On
  SQLite it runs on the calling (event-loop) thread through a dedicated synchronous connection: a WAL
  reader never waits for writers, and an indexed lookup takes tens of microseconds, less than the hop
  to aiosqlite's worker thread it replaces (the gateway benchmark showed that hop as the largest cost
  of a request). On PostgreSQL it is one autocommit round trip, as :meth:`Database.read`.
- :meth:`Database.transact`: run a *synchronous* function of a Core connection in one write
  transaction, in one hop to a worker thread. Hot write paths (budget reservation and settlement, rate
  limits) use it: on the event loop, every statement of an async transaction is a round trip through
  the loop, so under load a transaction that holds a lock (SQLite's write lock, PostgreSQL row locks
  on a team's counters) holds it for as many loop turns as it has statements, and throughput collapses.
  In a worker thread the statements run back to back and the lock is held only for the SQL itself. On
  SQLite one thread with one connection serialises the writers of this process (SQLite has one writer
  anyway); on PostgreSQL a small pool of threads and connections runs them side by side.
- :meth:`Database.locked_session`: a session whose transaction first takes a named lock, for
  read-then-write sequences that must not interleave across processes or replicas (first-start
  bootstrap; later, budget settlement). PostgreSQL takes a transaction-scoped advisory lock for the
  name.

On SQLite, sessions and ``connect`` transactions begin ``IMMEDIATE`` (see :mod:`socle.storage.dialects`
for why): they take the database's single write lock up front and queue for it, so every write
transaction is serialised, and a ``locked_session`` needs nothing more. Hence: read through
:meth:`Database.read` when a block only reads, and keep write transactions short.

Errors that mean "the database cannot be reached or used now" (connection refused, lost, pool
timeout, SQLite locked past its busy timeout) become :class:`socle.errors.StorageError` (HTTP 503).
Errors that mean the caller did something wrong (an ``IntegrityError``, say) pass through unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, Self, TypeVar

from sqlalchemy import Connection, Engine, Executable, Row, create_engine, func, select, text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import StaticPool

from socle.errors import StorageError
from socle.storage import migrations
from socle.storage.dialects import (
    SQLITE_BEGIN,
    advisory_lock_key,
    async_url,
    backend_of,
    configure_sqlite,
    sync_url,
)

__all__ = ["Database"]

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")
_PG_WRITER_THREADS = 8

# Failures of the database itself, as opposed to failures of the statement sent to it.
_UNAVAILABLE: tuple[type[BaseException], ...] = (OperationalError, InterfaceError, PoolTimeoutError)


class Database:
    """One database, reached through an async connection pool.

    ``url`` is any SQLite or PostgreSQL URL (``sqlite:///path``, ``postgresql://...``; the async
    drivers are chosen here). ``pool_size`` and ``max_overflow`` size the pool per process.
    """

    def __init__(self, url: str, *, pool_size: int = 10, max_overflow: int = 20, echo: bool = False) -> None:
        self.backend = backend_of(url)
        self._url = async_url(url)
        self.engine = create_async_engine(
            self._url,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_recycle=1800,
            echo=echo,
        )
        if self.backend == "sqlite":
            configure_sqlite(self.engine.sync_engine)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        read_options = (
            {"isolation_level": "AUTOCOMMIT"} if self.backend == "postgresql" else {SQLITE_BEGIN: "NONE"}
        )
        self._reader = self.engine.execution_options(**read_options)
        self._sync_reader = None
        if self.backend == "sqlite":
            sync_engine = create_engine(
                sync_url(url), poolclass=StaticPool, connect_args={"check_same_thread": False}
            )
            configure_sqlite(sync_engine)
            self._sync_reader = sync_engine.execution_options(**read_options)
        self._sync_url = sync_url(url)
        self._pool_size = pool_size
        self._writer: tuple[Engine, ThreadPoolExecutor] | None = None
        self._writer_lock = threading.Lock()

    @classmethod
    async def open(cls, url: str, **options: Any) -> Database:
        """Build a database and check that it answers (raises :class:`StorageError` if not)."""
        db = cls(url, **options)
        try:
            await db.ping()
        except BaseException:
            await db.close()
            raise
        return db

    @property
    def display_url(self) -> str:
        """The URL without its password, for logs and messages."""
        return self._url.render_as_string(hide_password=True)

    def __repr__(self) -> str:
        return f"Database({self.display_url!r})"

    async def close(self) -> None:
        """Close every pooled connection. The object must not be used afterwards."""
        await self.engine.dispose()
        if self._sync_reader is not None:
            self._sync_reader.dispose()
        writer, self._writer = self._writer, None
        if writer is not None:
            engine, executor = writer
            await asyncio.to_thread(executor.shutdown, wait=True)
            engine.dispose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # Ways in --------------------------------------------------------------------------------------
    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """An ORM unit of work in one transaction: committed on exit, rolled back on error."""
        try:
            async with self._sessions.begin() as session:
                yield session
        except _UNAVAILABLE as exc:
            raise self._unavailable(exc) from exc

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        """A Core connection in one transaction: committed on exit, rolled back on error."""
        try:
            async with self.engine.begin() as connection:
                yield connection
        except _UNAVAILABLE as exc:
            raise self._unavailable(exc) from exc

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A Core connection for reads only, without a transaction (see the module docs)."""
        try:
            async with self._reader.connect() as connection:
                yield connection
        except _UNAVAILABLE as exc:
            raise self._unavailable(exc) from exc

    async def fetch_all(self, statement: Executable, params: dict[str, Any] | None = None) -> list[Row[Any]]:
        """Run one read statement and return its rows (see the module docs for why this is fast)."""
        if self._sync_reader is not None:
            try:
                with self._sync_reader.connect() as connection:
                    return list(connection.execute(statement, params or {}).all())
            except _UNAVAILABLE as exc:
                raise self._unavailable(exc) from exc
        async with self.read() as connection:
            return list((await connection.execute(statement, params or {})).all())

    async def transact(
        self, fn: Callable[Concatenate[Connection, P], T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run ``fn(connection, *args, **kwargs)`` in one write transaction on a worker thread (see the
        module docs): committed if it returns, rolled back if it raises.

        If the caller is cancelled, the transaction still runs to its end (it cannot be interrupted
        half-way, and its result is dropped): callers whose work must be undone then shield the
        awaitable themselves and undo it when it completes.
        """
        engine, executor = self._writer_pool()
        return await asyncio.get_running_loop().run_in_executor(
            executor, lambda: self._run_transaction(engine, fn, args, kwargs)
        )

    def _run_transaction(self, engine: Engine, fn: Callable[..., T], args: Any, kwargs: Any) -> T:
        try:
            with engine.begin() as connection:
                return fn(connection, *args, **kwargs)
        except _UNAVAILABLE as exc:
            raise self._unavailable(exc) from exc

    def _writer_pool(self) -> tuple[Engine, ThreadPoolExecutor]:
        """The synchronous engine and threads of :meth:`transact`, made at first use."""
        writer = self._writer
        if writer is not None:
            return writer
        with self._writer_lock:
            if self._writer is None:
                if self.backend == "sqlite":
                    engine = create_engine(
                        self._sync_url, poolclass=StaticPool, connect_args={"check_same_thread": False}
                    )
                    configure_sqlite(engine)
                    threads = 1  # one connection, one writer: SQLite has one write lock
                else:
                    threads = min(self._pool_size, _PG_WRITER_THREADS)
                    engine = create_engine(
                        self._sync_url, pool_size=threads, max_overflow=0, pool_recycle=1800
                    )
                self._writer = (engine, ThreadPoolExecutor(threads, thread_name_prefix="socle-db-writer"))
            return self._writer

    @asynccontextmanager
    async def locked_session(self, name: str) -> AsyncIterator[AsyncSession]:
        """A unit of work that holds the lock ``name`` (across processes) until it commits or rolls back."""
        try:
            async with self._sessions.begin() as session:
                if self.backend == "postgresql":
                    await session.execute(select(func.pg_advisory_xact_lock(advisory_lock_key(name))))
                else:  # BEGIN IMMEDIATE, now rather than at the first statement: the write lock is the lock
                    await session.connection()
                yield session
        except _UNAVAILABLE as exc:
            raise self._unavailable(exc) from exc

    # Operations -----------------------------------------------------------------------------------
    async def ping(self) -> None:
        """Run a trivial query; raises :class:`StorageError` if the database cannot be reached."""
        await asyncio.to_thread(self._ensure_sqlite_dir)
        async with self.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def migrate(self) -> None:
        """Apply every pending migration (see :mod:`socle.storage.migrations`); safe on concurrent starts."""
        url = self._url.render_as_string(hide_password=False)
        await asyncio.to_thread(self._ensure_sqlite_dir)
        try:
            await asyncio.to_thread(migrations.upgrade, url)
        except _UNAVAILABLE as exc:
            raise self._unavailable(exc) from exc

    async def schema_revision(self) -> str | None:
        """The migration revision the database is at (``None`` before the first migration)."""
        async with self.connect() as connection:
            has_table = await connection.run_sync(
                lambda sync: sync.dialect.has_table(sync, "alembic_version")
            )
            if not has_table:
                return None
            revision = await connection.scalar(text("SELECT version_num FROM alembic_version"))
        return None if revision is None else str(revision)

    # Internals ------------------------------------------------------------------------------------
    def _ensure_sqlite_dir(self) -> None:
        """SQLite creates the file but not its directory; create it (owner-only) if missing."""
        if self.backend == "sqlite" and self._url.database:
            try:
                Path(self._url.database).expanduser().parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            except OSError as exc:
                raise self._unavailable(exc) from exc

    def _unavailable(self, exc: BaseException) -> StorageError:
        reason = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
        detail = str(reason).strip().splitlines()[0] if str(reason).strip() else type(reason).__name__
        log.warning("database %s unavailable: %s", self.display_url, reason)
        return StorageError(
            "The database is unavailable; the request was refused.",
            detail=f"{self.display_url}: {type(reason).__name__}: {detail}",
        )
