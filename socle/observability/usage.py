"""Usage records: one row per request, written in batches off the request path, with daily rollups.

:meth:`UsageRecorder.record` appends to an in-memory buffer and returns at once; a background task
writes the buffer every ``flush_interval_s``, or as soon as ``max_batch`` records wait, one multi-row
INSERT per batch. The same transaction adds the batch to the daily rollups
(:mod:`socle.observability.rollups`), so reports read from rollups always agree with the records.

Durability, precisely (docs/operations.md says the same to operators):

- A request's record exists in memory only from the end of the request until the next write: at
  most ``flush_interval_s`` later (plus the time one write takes), or sooner when ``max_batch``
  records are waiting.
- Graceful shutdown (SIGTERM, SIGINT, or the lifespan ending otherwise) writes every buffered record
  before the database is closed: every answered request has its record.
- A crash of the process (kill -9, out of memory, power loss of a SQLite host aside) loses the
  records still buffered: those of requests that finished within the last ``flush_interval_s``
  (plus one write), and never ``max_batch`` or more of them while the database is reachable.
  Records already written are committed (SQLite in WAL mode, PostgreSQL) and survive.
- While the database is unavailable, batches stay in the buffer and are retried at each tick; a
  crash then loses the whole buffer. The buffer is bounded (``max_buffer``); records that do not fit
  are counted in :attr:`UsageRecorder.dropped` (exported as a metric by the gateway) and logged.
- If the database refuses a batch (a value too long for a column, say), the batch is written one
  record at a time, so that only the records at fault are dropped (counted and logged by request id).
- Writes are idempotent: ``request_id`` is unique and a record already written is skipped (in the
  records and in the rollups), so a batch retried after an ambiguous failure (committed, but the
  answer was lost) is not counted twice.

Retention: when ``raw_retention`` is set, a background task deletes records older than that every
``prune_interval_s``, in small transactions; rollups are kept for ``rollup_retention`` (longer).

The recorder belongs to one event loop and is not thread-safe; ``record`` is meant to be called from
request handlers on that loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Insert, Table, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from socle.config import UsageSettings
from socle.errors import StorageError
from socle.governance.money import eur_to_nano, nano_to_eur
from socle.observability.rollups import add_to_rollups
from socle.storage.db import Database
from socle.storage.models import USAGE_DAILY_PRINCIPAL, USAGE_DAILY_TEAM, UsageRow
from socle.storage.types import new_id, utcnow

__all__ = ["Pruned", "UsageRecord", "UsageRecorder", "UsageTotals"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageRecord:
    """What one request used. ``created_at`` is when the request was received (default: now)."""

    request_id: str
    key_id: str
    principal_id: str
    team_id: str
    model: str
    engine: str
    zone: str
    endpoint: str
    prompt_tokens: int
    completion_tokens: int
    cost_eur: Decimal | float
    latency_ms: float
    status_code: int
    ttft_ms: float | None = None
    created_at: datetime = field(default_factory=utcnow)

    @property
    def cost_nano_eur(self) -> int:
        """The cost in nano-euros, rounded up as :mod:`socle.governance.money` rounds prices."""
        return eur_to_nano(self.cost_eur)

    def to_row(self) -> dict[str, Any]:
        """The column values of this record's row (with a new id); the cost is stored to the nano-euro,
        as the rollups count it."""
        return {
            "id": new_id(int(self.created_at.timestamp() * 1000)),
            "request_id": self.request_id,
            "key_id": self.key_id,
            "principal_id": self.principal_id,
            "team_id": self.team_id,
            "model": self.model,
            "engine": self.engine,
            "zone": self.zone,
            "endpoint": self.endpoint,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_eur": nano_to_eur(self.cost_nano_eur),
            "latency_ms": self.latency_ms,
            "ttft_ms": self.ttft_ms,
            "status_code": self.status_code,
            "created_at": self.created_at,
        }


@dataclass(frozen=True, slots=True)
class Pruned:
    """What one pass of retention deleted."""

    records: int
    rollup_rows: int


@dataclass(frozen=True, slots=True)
class UsageTotals:
    """Sums over usage records."""

    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_eur: Decimal


class UsageRecorder:
    """Buffers usage records and writes them in batches (see the module docs)."""

    def __init__(
        self,
        db: Database,
        flush_interval_s: float = 0.5,
        *,
        max_batch: int = 500,
        max_buffer: int = 100_000,
        raw_retention: timedelta | None = None,
        rollup_retention: timedelta | None = None,
        prune_interval_s: float = 3600.0,
    ) -> None:
        self._db = db
        self._raw_retention = raw_retention
        self._rollup_retention = rollup_retention
        self._prune_interval = prune_interval_s
        self._pruner: asyncio.Task[None] | None = None
        self._interval = flush_interval_s
        self._max_batch = max_batch
        self._max_buffer = max_buffer
        self._buffer: deque[UsageRecord] = deque()
        self._wake = asyncio.Event()
        self._writing = asyncio.Lock()
        """Held while a batch is written: :meth:`flush` waits for the background writer's batch."""
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._failing = False
        self.written = 0
        """Records written since start."""
        self.dropped = 0
        """Records lost: buffer full, refused by the database, or unwritten at close."""

    @classmethod
    def from_settings(cls, db: Database, settings: UsageSettings) -> UsageRecorder:
        """A recorder configured by the ``[usage]`` settings."""
        return cls(
            db,
            settings.flush_interval_s,
            max_batch=settings.flush_max_records,
            max_buffer=settings.max_buffer,
            raw_retention=_days(settings.raw_retention_days),
            rollup_retention=_days(settings.rollup_retention_days),
            prune_interval_s=settings.prune_interval_s,
        )

    @property
    def pending(self) -> int:
        """Records waiting to be written."""
        return len(self._buffer)

    def record(self, usage: UsageRecord) -> None:
        """Queue a record for writing; never blocks and never raises."""
        if self._closed or len(self._buffer) >= self._max_buffer:
            self._drop(1, "the recorder is closed" if self._closed else "the buffer is full")
            return
        self._buffer.append(usage)
        if len(self._buffer) >= self._max_batch:
            self._wake.set()

    async def start(self) -> None:
        """Start the background writer, and the retention task if a retention is set."""
        if self._task is None and not self._closed:
            self._task = asyncio.create_task(self._run(), name="socle-usage-writer")
        if self._pruner is None and not self._closed and (self._raw_retention or self._rollup_retention):
            self._pruner = asyncio.create_task(self._prune_periodically(), name="socle-usage-retention")

    async def aclose(self) -> None:
        """Stop the writer and write what remains (one attempt; what cannot be written is dropped)."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        if self._pruner is not None:  # a deletion cut short is rolled back and redone at the next start
            self._pruner.cancel()
            await asyncio.gather(self._pruner, return_exceptions=True)  # nothing may stop the flush below
            self._pruner = None
        if self._task is not None:
            await self._task  # never cancelled: a batch being written must finish or go back
            self._task = None
        await self.flush()
        if self._buffer:
            self._drop(len(self._buffer), "the database is unavailable at shutdown", always=True)
            self._buffer.clear()

    async def flush(self) -> int:
        """Write everything buffered now, after any batch already being written; returns how many
        records this call wrote.

        Stops at the first batch the database cannot take (those records stay buffered).
        """
        written = 0
        async with self._writing:  # first, a batch the background writer has in flight is committed
            while self._buffer:
                count = await self._write_batch()
                if count < 0:
                    break
                written += count
        return written

    async def totals(self, team_id: str | None = None, *, since: datetime | None = None) -> UsageTotals:
        """Sums over written records, for one team or all, optionally from ``since`` on."""
        query = select(
            func.count(),
            func.coalesce(func.sum(UsageRow.prompt_tokens), 0),
            func.coalesce(func.sum(UsageRow.completion_tokens), 0),
            func.coalesce(func.sum(UsageRow.cost_eur), 0),
        )
        if team_id is not None:
            query = query.where(UsageRow.team_id == team_id)
        if since is not None:
            query = query.where(UsageRow.created_at >= since)
        async with self._db.read() as connection:
            requests, prompt, completion, cost = (await connection.execute(query)).one()
        return UsageTotals(int(requests), int(prompt), int(completion), Decimal(str(cost)))

    async def prune(self, now: datetime | None = None, *, chunk: int = 10_000) -> Pruned:
        """Delete the records and rollup rows past their retention, in transactions of at most
        ``chunk`` records (or one day of rollups), so writers never wait long for them."""
        now = now or utcnow()
        records = rollup_rows = 0
        if self._raw_retention is not None:
            old = select(UsageRow.id).where(UsageRow.created_at < now - self._raw_retention)
            while True:
                async with self._db.connect() as connection:
                    ids = old.order_by(UsageRow.created_at).limit(chunk).scalar_subquery()
                    deleted = (
                        await connection.execute(delete(UsageRow).where(UsageRow.id.in_(ids)))
                    ).rowcount
                records += deleted
                if deleted < chunk:
                    break
                await asyncio.sleep(0)  # let the writer in between chunks
        if self._rollup_retention is not None:
            first_kept = (now - self._rollup_retention).date()
            for table in (USAGE_DAILY_TEAM, USAGE_DAILY_PRINCIPAL):
                rollup_rows += await self._prune_days(table, first_kept)
        if records or rollup_rows:
            log.info("usage retention: deleted %d record(s) and %d daily sum(s)", records, rollup_rows)
        return Pruned(records, rollup_rows)

    # Internals ------------------------------------------------------------------------------------
    async def _prune_days(self, table: Table, first_kept: date) -> int:
        deleted = 0
        while True:
            async with self._db.read() as connection:
                oldest = await connection.scalar(select(func.min(table.c.day)))
            if oldest is None or oldest >= first_kept:
                return deleted
            async with self._db.connect() as connection:
                deleted += (await connection.execute(delete(table).where(table.c.day == oldest))).rowcount

    async def _prune_periodically(self) -> None:
        while not self._closed:
            try:
                await self.prune()
            except StorageError as exc:  # the database is away: try again at the next tick
                log.warning("usage retention: cannot delete expired records now: %s", exc)
            except Exception:  # noqa: BLE001 - a bug here must not end retention for good: logged, retried
                log.exception("usage retention failed; retrying in %.0f s", self._prune_interval)
            await asyncio.sleep(self._prune_interval)

    async def _run(self) -> None:
        """Write full batches as soon as they fill, and everything every ``flush_interval_s``: a record
        waits at most one interval, and a write never takes a part batch early (so what a crash can lose
        is exactly what the docs say: the records of the current interval not yet in a full batch)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._interval
        while not self._closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, deadline - loop.time()))
            self._wake.clear()
            if self._closed or loop.time() >= deadline:
                await self.flush()
                deadline = loop.time() + self._interval
                continue
            async with self._writing:
                while len(self._buffer) >= self._max_batch:
                    if await self._write_batch() < 0:
                        break

    async def _write_batch(self) -> int:
        """Write the oldest batch: the number written, or -1 if the database is unavailable."""
        batch = [self._buffer.popleft() for _ in range(min(self._max_batch, len(self._buffer)))]
        try:
            await self._insert(batch)
        except StorageError as exc:
            self._buffer.extendleft(reversed(batch))
            if not self._failing:  # once per outage, not at every retry
                log.warning("usage: cannot write, %d record(s) kept for retry: %s", len(self._buffer), exc)
            self._failing = True
            return -1
        except Exception as exc:  # noqa: BLE001 - some record cannot be written: find it, keep the others
            log.error("usage: a batch of %d was refused (%s); writing one by one", len(batch), exc)
            return await self._insert_one_by_one(batch)
        if self._failing:
            log.warning("usage: writing again (%d record(s) waiting)", len(self._buffer))
            self._failing = False
        self.written += len(batch)
        return len(batch)

    async def _insert_one_by_one(self, batch: Sequence[UsageRecord]) -> int:
        written = 0
        for index, usage in enumerate(batch):
            try:
                await self._insert([usage])
            except StorageError:
                self._buffer.extendleft(reversed(batch[index:]))
                break
            except Exception as exc:  # noqa: BLE001 - counted and logged, never silent
                self._drop(1, f"the record of request {usage.request_id} was refused: {exc}", always=True)
                continue
            written += 1
        self.written += written
        return written

    async def _insert(self, batch: Sequence[UsageRecord]) -> None:
        """Insert the records not written yet and add those to the rollups, in one transaction."""
        statement: Insert
        if self._db.backend == "postgresql":
            statement = postgresql.insert(UsageRow).on_conflict_do_nothing(index_elements=["request_id"])
        else:
            statement = sqlite.insert(UsageRow).on_conflict_do_nothing(index_elements=["request_id"])
        rows = {usage.request_id: usage.to_row() for usage in reversed(batch)}  # the first of duplicates
        async with self._db.connect() as connection:
            result = await connection.execute(statement.returning(UsageRow.request_id), list(rows.values()))
            added = result.scalars().all()
            await add_to_rollups(
                connection, ({**rows[r], "cost_nano_eur": _nano(rows[r]["cost_eur"])} for r in added)
            )

    def _drop(self, count: int, reason: str, *, always: bool = False) -> None:
        """Count lost records; log each loss, or, when the buffer overflows, the first of every 1000."""
        if always or self.dropped % 1000 == 0:
            log.error("usage: dropped %d record(s), %d in all: %s", count, self.dropped + count, reason)
        self.dropped += count


def _days(days: int | None) -> timedelta | None:
    return None if days is None else timedelta(days=days)


def _nano(eur: Decimal) -> int:
    return int(eur.scaleb(9))  # exact: to_row stores whole nano-euros
