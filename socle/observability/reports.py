"""Usage reports: sums of usage records per day, team, model or principal, over a period.

Reports read ``usage_records`` with the indexes on ``(team_id, created_at)`` and
``(principal_id, created_at)``; every report is bounded by a period (default: the last 31 days).
Days are UTC days.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import ColumnElement, func, select

from socle.storage.db import Database
from socle.storage.models import UsageRow
from socle.storage.types import utcnow

__all__ = ["GROUPS", "UsageFilter", "UsageLine", "usage_report"]

Group = Literal["day", "team", "model", "principal", "engine", "zone"]
GROUPS: tuple[Group, ...] = ("day", "team", "model", "principal", "engine", "zone")


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageFilter:
    since: datetime | None = None
    until: datetime | None = None
    team_id: str | None = None
    principal_id: str | None = None
    model: str | None = None

    def period(self) -> tuple[datetime, datetime]:
        until = self.until or utcnow()
        return self.since or until - timedelta(days=31), until


@dataclass(frozen=True, slots=True)
class UsageLine:
    keys: dict[str, str]
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    cost_eur: Decimal
    max_latency_ms: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.keys,
            "requests": self.requests,
            "errors": self.errors,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_eur": str(self.cost_eur),
            "max_latency_ms": self.max_latency_ms,
        }


def _column(db: Database, group: Group) -> ColumnElement[Any]:
    if group == "day":
        if db.backend == "postgresql":
            return func.to_char(func.timezone("UTC", UsageRow.created_at), "YYYY-MM-DD")
        return func.substr(UsageRow.created_at, 1, 10)  # SQLite stores naive UTC ISO text
    columns: dict[str, ColumnElement[Any]] = {
        "team": UsageRow.__table__.c.team_id,
        "model": UsageRow.__table__.c.model,
        "principal": UsageRow.__table__.c.principal_id,
        "engine": UsageRow.__table__.c.engine,
        "zone": UsageRow.__table__.c.zone,
    }
    return columns[group]


async def usage_report(db: Database, where: UsageFilter, group_by: Sequence[Group]) -> list[UsageLine]:
    """Sums per group over the filter's period, ordered by the groups."""
    since, until = where.period()
    keys = [_column(db, g).label(g) for g in group_by]
    query = select(
        *keys,
        func.count().label("requests"),
        func.coalesce(func.sum(func.cast(UsageRow.status_code >= 400, UsageRow.prompt_tokens.type)), 0),
        func.coalesce(func.sum(UsageRow.prompt_tokens), 0),
        func.coalesce(func.sum(UsageRow.completion_tokens), 0),
        func.coalesce(func.sum(UsageRow.cost_eur), 0),
        func.max(UsageRow.latency_ms),
    ).where(UsageRow.created_at >= since, UsageRow.created_at < until)
    for column, value in (
        (UsageRow.team_id, where.team_id),
        (UsageRow.principal_id, where.principal_id),
        (UsageRow.model, where.model),
    ):
        if value is not None:
            query = query.where(column == value)
    if keys:
        query = query.group_by(*keys).order_by(*keys)
    async with db.read() as connection:
        rows = (await connection.execute(query)).all()
    lines = []
    for row in rows:
        values = tuple(row)
        n = len(group_by)
        requests, errors, prompt, completion, cost, max_latency = values[n:]
        lines.append(
            UsageLine(
                keys={g: str(v) for g, v in zip(group_by, values[:n], strict=True)},
                requests=int(requests),
                errors=int(errors),
                prompt_tokens=int(prompt),
                completion_tokens=int(completion),
                cost_eur=Decimal(str(cost)),
                max_latency_ms=float(max_latency) if max_latency is not None else None,
            )
        )
    return lines
