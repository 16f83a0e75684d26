"""Usage reports: sums per day, team, model, principal, engine or zone over whole UTC days, read from the
daily rollups; and the per-request records themselves, a page at a time.

Sums come from the rollups (:mod:`socle.observability.rollups`), never from the records: a month of
one team is a few hundred rows whatever its traffic. Reports that neither group nor filter by
principal read ``usage_daily_team``; the others ``usage_daily_principal``. Since rollups are daily, a
report covers whole UTC days: ``since`` counts from the start of its day, ``until`` to the end of the
day it falls in (or to its midnight, exclusive, when it is one). The default is the 31 days ending
today.

Records are listed newest first, filtered by exact times, through the indexes on ``(team_id,
created_at)``, ``(principal_id, created_at)`` and ``created_at``; pages are chained with an opaque
cursor (keyset pagination: every page costs the same, however deep).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from typing import cast as typing_cast

from sqlalchemy import ColumnElement, Select, Table, and_, cast, func, or_, select

from socle.errors import BadRequestError
from socle.governance.money import decimal_text
from socle.observability.rollups import SUM_COLUMNS, Sums, percentile
from socle.storage.db import Database
from socle.storage.models import USAGE_DAILY_PRINCIPAL, USAGE_DAILY_TEAM, UsageRow
from socle.storage.types import utcnow

__all__ = [
    "GROUPS",
    "LINE_FIELDS",
    "RECORD_FIELDS",
    "RecordPage",
    "UsageFilter",
    "UsageLine",
    "list_records",
    "usage_report",
]

Group = Literal["day", "team", "model", "principal", "engine", "zone"]
GROUPS: tuple[Group, ...] = ("day", "team", "model", "principal", "engine", "zone")
DEFAULT_DAYS = 31

LINE_FIELDS = (
    "requests",
    "errors",
    "prompt_tokens",
    "completion_tokens",
    "cost_eur",
    "cost_nano_eur",
    "avg_latency_ms",
    "p95_latency_ms",
    "max_latency_ms",
    "avg_ttft_ms",
)
"""The fields of a report line after its group keys, in the order of CSV columns."""

RECORD_FIELDS = (
    "request_id",
    "created_at",
    "team_id",
    "principal_id",
    "key_id",
    "model",
    "engine",
    "zone",
    "endpoint",
    "status_code",
    "prompt_tokens",
    "completion_tokens",
    "cost_eur",
    "latency_ms",
    "ttft_ms",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageFilter:
    """What a report or a listing covers. Naive datetimes are UTC."""

    since: datetime | date | None = None
    until: datetime | date | None = None
    team_id: str | None = None
    principal_id: str | None = None
    model: str | None = None

    def days(self, today: date | None = None) -> tuple[date, date]:
        """The whole UTC days a report covers: ``[first, end)``."""
        end = _end_day(self.until) if self.until is not None else (today or utcnow().date()) + timedelta(1)
        first = _as_utc(self.since).date() if self.since is not None else end - timedelta(DEFAULT_DAYS)
        return first, max(first, end)

    def narrowed(self, **changes: Any) -> UsageFilter:
        values = {f: getattr(self, f) for f in ("since", "until", "team_id", "principal_id", "model")}
        return UsageFilter(**{**values, **changes})


@dataclass(frozen=True, slots=True)
class UsageLine:
    """The sums of one group."""

    keys: dict[str, str]
    sums: Sums

    def as_dict(self) -> dict[str, Any]:
        s = self.sums
        return {
            **self.keys,
            "requests": s.requests,
            "errors": s.errors,
            "prompt_tokens": s.prompt_tokens,
            "completion_tokens": s.completion_tokens,
            "cost_eur": decimal_text(s.cost_nano_eur),
            "cost_nano_eur": s.cost_nano_eur,
            "avg_latency_ms": _ms(s.latency_ms_sum / s.requests) if s.requests else None,
            "p95_latency_ms": _ms(percentile(s.buckets, 0.95, s.latency_ms_max)),
            "max_latency_ms": _ms(s.latency_ms_max) if s.requests else None,
            "avg_ttft_ms": _ms(s.ttft_ms_sum / s.ttft_count) if s.ttft_count else None,
        }


async def usage_report(db: Database, where: UsageFilter, group_by: Sequence[Group]) -> list[UsageLine]:
    """Sums per group over the filter's whole days, ordered by the groups."""
    table = (
        USAGE_DAILY_PRINCIPAL
        if "principal" in group_by or where.principal_id is not None
        else USAGE_DAILY_TEAM
    )
    keys = [_group_column(table, g).label(g) for g in group_by]
    first, end = where.days()
    query: Select[Any] = select(
        *keys,
        *(_sum(table.c[c]) for c in SUM_COLUMNS),
        func.max(table.c.latency_ms_max),
    ).where(table.c.day >= first, table.c.day < end)
    query = _filtered(query, table, where)
    if keys:
        query = query.group_by(*keys).order_by(*keys)
    n = len(keys)
    lines = []
    for row in await _fetch(db, query):
        values = tuple(row)  # one conversion: slicing a Row is slow
        lines.append(UsageLine(dict(zip(group_by, map(str, values[:n]), strict=True)), Sums.of(values[n:])))
    return lines


@dataclass(frozen=True, slots=True)
class RecordPage:
    """One page of usage records, newest first; ``next_cursor`` fetches the next one (``None``: last)."""

    records: list[dict[str, Any]]
    next_cursor: str | None


async def list_records(
    db: Database, where: UsageFilter, *, limit: int = 100, cursor: str | None = None
) -> RecordPage:
    """The records matching a filter (exact times), newest first, ``limit`` at a time."""
    records = typing_cast(Table, UsageRow.__table__)
    query: Select[Any] = select(*(records.c[f] for f in RECORD_FIELDS), records.c.id)
    if where.since is not None:
        query = query.where(records.c.created_at >= _as_utc(where.since))
    if where.until is not None:
        query = query.where(records.c.created_at < _as_utc(where.until))
    query = _filtered(query, records, where)
    if cursor is not None:
        after, after_id = _decode(cursor)
        query = query.where(
            records.c.created_at <= after, or_(records.c.created_at < after, records.c.id < after_id)
        )
    query = query.order_by(records.c.created_at.desc(), records.c.id.desc()).limit(limit + 1)
    rows = await _fetch(db, query)
    page = [_record(row._mapping) for row in rows[:limit]]
    last = rows[limit - 1] if len(rows) > limit else None
    return RecordPage(page, _encode(last.created_at, last.id) if last is not None else None)


# Internals ----------------------------------------------------------------------------------------
async def _fetch(db: Database, query: Select[Any]) -> list[Any]:
    """Off the event loop (unlike ``Database.fetch_all`` on SQLite): a report may take milliseconds."""
    async with db.read() as connection:
        return list((await connection.execute(query)).all())


def _filtered(query: Select[Any], table: Table, where: UsageFilter) -> Select[Any]:
    conditions = [
        table.c[column] == value
        for column, value in (
            ("team_id", where.team_id),
            ("principal_id", where.principal_id),
            ("model", where.model),
        )
        if value is not None
    ]
    return query.where(and_(*conditions)) if conditions else query


def _sum(column: ColumnElement[Any]) -> ColumnElement[Any]:
    """A sum of the column's own type (PostgreSQL sums BIGINTs as NUMERIC, read as slow Decimals)."""
    return cast(func.sum(column), column.type)


def _group_column(table: Table, group: Group) -> ColumnElement[Any]:
    name = {"team": "team_id", "principal": "principal_id"}.get(group, group)
    return table.c[name]


def _record(row: Any) -> dict[str, Any]:
    record = {f: row[f] for f in RECORD_FIELDS}
    record["created_at"] = row["created_at"].isoformat()
    record["cost_eur"] = format(row["cost_eur"].normalize(), "f")
    return record


def _as_utc(moment: datetime | date) -> datetime:
    if not isinstance(moment, datetime):
        return datetime.combine(moment, time(), UTC)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _end_day(until: datetime | date) -> date:
    """The first day after a period that ends (exclusive) at ``until``."""
    moment = _as_utc(until)
    return moment.date() if moment.time() == time() else moment.date() + timedelta(1)


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _encode(created_at: datetime, record_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{record_id}".encode()).decode().rstrip("=")


def _decode(cursor: str) -> tuple[datetime, str]:
    try:
        moment, record_id = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().split("|")
        return _as_utc(datetime.fromisoformat(moment)), record_id
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise BadRequestError(
            "Invalid cursor: use next_cursor from the previous page.", param="cursor"
        ) from exc
