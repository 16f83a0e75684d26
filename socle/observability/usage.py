"""Usage records: one row per request, written in batches off the request path.

:meth:`UsageRecorder.record` appends to an in-memory buffer and returns at once; a background task
writes the buffer every ``flush_interval_s`` (sooner when a batch fills up), one multi-row INSERT per
batch. Usage feeds reports and budgets after the fact; it is not the audit trail, so it may lag a
fraction of a second, but it must not be lost silently:

- If the database is unavailable, the batch stays in the buffer and is retried at the next tick.
  The buffer is bounded (``max_buffer``); records that do not fit are counted in :attr:`dropped`
  (exported as a metric by the gateway) and logged.
- If the database refuses a batch (a value too long for a column, say), the batch is written one
  record at a time, so that only the records at fault are dropped (counted and logged by request id).
- Writes are idempotent: ``request_id`` is unique and a record already written is skipped, so a batch
  retried after an ambiguous failure (committed, but the answer was lost) is not counted twice.
- :meth:`UsageRecorder.aclose` writes what remains before the database is closed.

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
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Insert, func, select
from sqlalchemy.dialects import postgresql, sqlite

from socle.errors import StorageError
from socle.storage.db import Database
from socle.storage.models import UsageRow
from socle.storage.types import new_id, utcnow

__all__ = ["UsageRecord", "UsageRecorder", "UsageTotals"]

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

    def to_row(self) -> dict[str, Any]:
        """The column values of this record's row (with a new id)."""
        cost = self.cost_eur if isinstance(self.cost_eur, Decimal) else Decimal(repr(float(self.cost_eur)))
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
            "cost_eur": cost,
            "latency_ms": self.latency_ms,
            "ttft_ms": self.ttft_ms,
            "status_code": self.status_code,
            "created_at": self.created_at,
        }


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
    ) -> None:
        self._db = db
        self._interval = flush_interval_s
        self._max_batch = max_batch
        self._max_buffer = max_buffer
        self._buffer: deque[UsageRecord] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._failing = False
        self.written = 0
        """Records written since start."""
        self.dropped = 0
        """Records lost: buffer full, refused by the database, or unwritten at close."""

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
        """Start the background writer."""
        if self._task is None and not self._closed:
            self._task = asyncio.create_task(self._run(), name="socle-usage-writer")

    async def aclose(self) -> None:
        """Stop the writer and write what remains (one attempt; what cannot be written is dropped)."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        if self._task is not None:
            await self._task  # never cancelled: a batch being written must finish or go back
            self._task = None
        await self.flush()
        if self._buffer:
            self._drop(len(self._buffer), "the database is unavailable at shutdown", always=True)
            self._buffer.clear()

    async def flush(self) -> int:
        """Write everything buffered now; returns how many records were written.

        Stops at the first batch the database cannot take (those records stay buffered).
        """
        written = 0
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

    # Internals ------------------------------------------------------------------------------------
    async def _run(self) -> None:
        while not self._closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            self._wake.clear()
            await self.flush()

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
        statement: Insert
        if self._db.backend == "postgresql":
            statement = postgresql.insert(UsageRow).on_conflict_do_nothing(index_elements=["request_id"])
        else:
            statement = sqlite.insert(UsageRow).on_conflict_do_nothing(index_elements=["request_id"])
        async with self._db.connect() as connection:
            await connection.execute(statement, [usage.to_row() for usage in batch])

    def _drop(self, count: int, reason: str, *, always: bool = False) -> None:
        """Count lost records; log each loss, or, when the buffer overflows, the first of every 1000."""
        if always or self.dropped % 1000 == 0:
            log.error("usage: dropped %d record(s), %d in all: %s", count, self.dropped + count, reason)
        self.dropped += count
