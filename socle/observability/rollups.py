"""Daily usage rollups: sums of usage records per UTC day, kept in step with the records.

Two tables with the same columns (see :mod:`socle.storage.models`):

- ``usage_daily_team``: per (day, team, model, engine, zone). Team-level reports read it: a month of
  50 teams and 8 models is about 12,000 rows, however many requests they made.
- ``usage_daily_principal``: the same, per principal too. Reports on one principal (a member's own
  usage) or per principal read it.

Each row holds requests, errors (status ≥ 400), tokens in and out, cost in nano-euros (exact
integers, see :mod:`socle.governance.money`), the sum and maximum of latencies, the sum and count of
times to first token, and a latency histogram of :data:`LATENCY_BOUNDS_MS` buckets from which
percentiles are estimated (:func:`percentile`).

Consistency: :func:`add_to_rollups` runs in the transaction that inserts a batch of records, with the
records that insert actually added (a record already written is skipped in both). It adds with
``INSERT ... ON CONFLICT DO UPDATE SET n = n + excluded.n``: an atomic increment of the row on
SQLite and PostgreSQL, so processes sharing a database never lose each other's increments, and the
rows are updated in key order, so two of them cannot deadlock. Rollups therefore never disagree
with the records, except for records deleted by retention (rollups are kept longer).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import ColumnElement, Insert, Table, func
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from socle.storage.models import LATENCY_BUCKETS, USAGE_DAILY_PRINCIPAL, USAGE_DAILY_TEAM

__all__ = [
    "BUCKET_COLUMNS",
    "LATENCY_BOUNDS_MS",
    "SUM_COLUMNS",
    "Sums",
    "add_to_rollups",
    "bucket_of",
    "percentile",
]

LATENCY_BOUNDS_MS: tuple[float, ...] = tuple(2 ** (i / 2) for i in range(LATENCY_BUCKETS - 1))
"""Upper bounds (inclusive) of the latency buckets: 1 ms, 1.41 ms, 2 ms ... 524 s; the last bucket
has no upper bound. Neighbouring bounds differ by √2, so an estimated percentile lies within a
factor √2 of the true one (in practice much closer: it is interpolated within its bucket)."""

BUCKET_COLUMNS = tuple(f"latency_{i:02d}" for i in range(LATENCY_BUCKETS))
SUM_COLUMNS = (
    "requests",
    "errors",
    "prompt_tokens",
    "completion_tokens",
    "cost_nano_eur",
    "latency_ms_sum",
    "ttft_ms_sum",
    "ttft_count",
    *BUCKET_COLUMNS,
)
"""Every column of a rollup row that is a sum (all but the keys and ``latency_ms_max``)."""


def bucket_of(latency_ms: float) -> int:
    """The histogram bucket of a latency."""
    return bisect.bisect_left(LATENCY_BOUNDS_MS, latency_ms)


def percentile(buckets: Sequence[int], q: float, max_ms: float | None = None) -> float | None:
    """Estimate the ``q`` quantile (0 < q ≤ 1) of a latency histogram, interpolating linearly within the
    bucket that holds it (as Prometheus does); never above ``max_ms``, the largest latency seen."""
    total = sum(buckets)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(buckets):
        if count and seen + count >= rank:
            lower = LATENCY_BOUNDS_MS[index - 1] if index else 0.0
            if index == len(LATENCY_BOUNDS_MS):  # the open last bucket: the largest latency seen
                return max_ms if max_ms is not None else lower
            upper = LATENCY_BOUNDS_MS[index]
            estimate = lower + (upper - lower) * (rank - seen) / count
            return min(estimate, max_ms) if max_ms is not None else estimate
        seen += count
    raise AssertionError("unreachable: the rank is at most the total")


@dataclass(slots=True)
class Sums:
    """The sums of some usage records (one rollup row, or a report line)."""

    requests: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_nano_eur: int = 0
    latency_ms_sum: float = 0.0
    latency_ms_max: float = 0.0
    ttft_ms_sum: float = 0.0
    ttft_count: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * LATENCY_BUCKETS)

    def add(self, row: dict[str, Any]) -> None:
        """Add one usage record (the column values of its row, with ``cost_nano_eur``)."""
        latency = float(row["latency_ms"])
        self.requests += 1
        self.errors += int(row["status_code"]) >= 400
        self.prompt_tokens += int(row["prompt_tokens"])
        self.completion_tokens += int(row["completion_tokens"])
        self.cost_nano_eur += int(row["cost_nano_eur"])
        self.latency_ms_sum += latency
        self.latency_ms_max = max(self.latency_ms_max, latency)
        if row["ttft_ms"] is not None:
            self.ttft_ms_sum += float(row["ttft_ms"])
            self.ttft_count += 1
        self.buckets[bucket_of(latency)] += 1

    def columns(self) -> dict[str, Any]:
        values: dict[str, Any] = {
            "requests": self.requests,
            "errors": self.errors,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_nano_eur": self.cost_nano_eur,
            "latency_ms_sum": self.latency_ms_sum,
            "latency_ms_max": self.latency_ms_max,
            "ttft_ms_sum": self.ttft_ms_sum,
            "ttft_count": self.ttft_count,
        }
        values.update(zip(BUCKET_COLUMNS, self.buckets, strict=True))
        return values

    @classmethod
    def of(cls, values: Sequence[Any]) -> Sums:
        """From query results in the order of :data:`SUM_COLUMNS`, then ``latency_ms_max``."""
        n = len(BUCKET_COLUMNS)
        (requests, errors, prompt, completion, nano, latency, ttft, ttft_count), rest = values[:8], values[8:]
        return cls(
            requests=int(requests or 0),
            errors=int(errors or 0),
            prompt_tokens=int(prompt or 0),
            completion_tokens=int(completion or 0),
            cost_nano_eur=int(nano or 0),
            latency_ms_sum=float(latency or 0),
            ttft_ms_sum=float(ttft or 0),
            ttft_count=int(ttft_count or 0),
            buckets=[int(b or 0) for b in rest[:n]],
            latency_ms_max=float(rest[n] or 0),
        )


_TABLES: tuple[tuple[Table, tuple[str, ...]], ...] = (
    (USAGE_DAILY_TEAM, ("team_id", "model", "engine", "zone")),
    (USAGE_DAILY_PRINCIPAL, ("team_id", "principal_id", "model", "engine", "zone")),
)


async def add_to_rollups(connection: AsyncConnection, rows: Iterable[dict[str, Any]]) -> None:
    """Add usage records (row values with ``cost_nano_eur``) to both rollup tables, in the caller's
    transaction."""
    rows = list(rows)
    if not rows:
        return
    for table, keys in _TABLES:
        groups: dict[tuple[Any, ...], Sums] = {}
        for row in rows:
            key = (_day(row), *(row[k] for k in keys))
            groups.setdefault(key, Sums()).add(row)
        values = [
            {"day": key[0], **dict(zip(keys, key[1:], strict=True)), **groups[key].columns()}
            for key in sorted(groups)  # one lock order for every writer: no deadlock between processes
        ]
        await connection.execute(_upsert(connection.dialect.name, table, ("day", *keys)), values)


def _day(row: dict[str, Any]) -> date:
    created: datetime = row["created_at"]
    return created.astimezone(UTC).date() if created.tzinfo is not None else created.date()


def _upsert(dialect: str, table: Table, keys: tuple[str, ...]) -> Insert:
    statement: Any = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    excluded = statement.excluded
    updates: dict[str, ColumnElement[Any]] = {c: table.c[c] + excluded[c] for c in SUM_COLUMNS}
    greatest = func.greatest if dialect == "postgresql" else func.max  # SQLite's two-argument max
    updates["latency_ms_max"] = greatest(table.c.latency_ms_max, excluded.latency_ms_max)
    result: Insert = statement.on_conflict_do_update(index_elements=list(keys), set_=updates)
    return result
