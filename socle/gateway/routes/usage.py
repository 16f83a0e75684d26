"""``GET /v1/usage``: usage sums per day, team, model, principal, engine or zone (from the daily
rollups), and ``GET /v1/usage/records``: the per-request records, a page at a time; JSON or CSV.

Who sees what: everyone with ``usage.read`` sees their own usage; ``usage.read_team`` (team admins)
the whole team's; ``usage.read_all`` (admins, auditors) every team's.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from starlette.responses import Response

from socle.errors import BadRequestError
from socle.gateway.deps import ServicesDep, require
from socle.gateway.responses import JSONBytes
from socle.gateway.services import Services
from socle.governance.identity import Principal
from socle.governance.rbac import allowed
from socle.observability.reports import (
    GROUPS,
    LINE_FIELDS,
    RECORD_FIELDS,
    UsageFilter,
    list_records,
    usage_report,
)

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["Usage"])
Reader = Annotated[Principal, Depends(require("usage.read"))]
Format = Literal["json", "csv"]
TeamParam = Annotated[str | None, Query(description="Team id or name")]
PrincipalParam = Annotated[str | None, Query(description="Principal (user or service account) id")]


@router.get("/usage", summary="Usage sums per whole UTC day, grouped (JSON or CSV)")
async def usage(
    caller: Reader,
    services: ServicesDep,
    since: Annotated[
        datetime | None, Query(description="First day (its start); default: 30 days ago")
    ] = None,
    until: Annotated[datetime | None, Query(description="End, exclusive, rounded up to a day")] = None,
    team: TeamParam = None,
    principal: PrincipalParam = None,
    model: str | None = None,
    group_by: Annotated[str, Query(description=f"Comma-separated, among {', '.join(GROUPS)}")] = "day,model",
    format: Format = "json",  # noqa: A002 - the public parameter name
) -> Response:
    groups = [g.strip() for g in group_by.split(",") if g.strip()]
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise BadRequestError(
            f"Unknown group(s) {unknown}; choose among {', '.join(GROUPS)}.", param="group_by"
        )
    where = await _where(caller, services, since, until, team, principal, model)
    lines = [line.as_dict() for line in await usage_report(services.db, where, groups)]  # type: ignore[arg-type]
    if format == "csv":
        return _csv(lines, [*groups, *LINE_FIELDS])
    first, end = where.days()
    return JSONBytes(
        {
            "object": "usage",
            "since": datetime.combine(first, time(), UTC),
            "until": datetime.combine(end, time(), UTC),
            "group_by": groups,
            "data": lines,
        }
    )


@router.get("/usage/records", summary="Per-request usage records, newest first, a page at a time")
async def usage_records(
    caller: Reader,
    services: ServicesDep,
    since: datetime | None = None,
    until: datetime | None = None,
    team: TeamParam = None,
    principal: PrincipalParam = None,
    model: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    format: Format = "json",  # noqa: A002 - the public parameter name
) -> Response:
    where = await _where(caller, services, since, until, team, principal, model)
    page = await list_records(services.db, where, limit=limit, cursor=cursor)
    if format == "csv":
        response = _csv(page.records, RECORD_FIELDS)
        if page.next_cursor is not None:
            response.headers["x-next-cursor"] = page.next_cursor
        return response
    return JSONBytes(
        {
            "object": "list",
            "data": page.records,
            "has_more": page.next_cursor is not None,
            "next_cursor": page.next_cursor,
        }
    )


async def _where(
    caller: Principal,
    services: Services,
    since: datetime | None,
    until: datetime | None,
    team: str | None,
    principal: str | None,
    model: str | None,
) -> UsageFilter:
    team_id = None
    if team is not None:
        everyone = allowed(caller.roles, "usage.read_all")  # admins and auditors: any organisation's team
        team_id = (await services.directory.get_team(None if everyone else caller.org_id, team)).id
    where = UsageFilter(since=since, until=until, team_id=team_id, principal_id=principal, model=model)
    return _scope(caller, where)


def _scope(caller: Principal, where: UsageFilter) -> UsageFilter:
    """Narrow the filter to what the caller may read."""
    if allowed(caller.roles, "usage.read_all"):
        return where
    if allowed(caller.roles, "usage.read_team"):
        if where.team_id not in (None, caller.team_id):
            raise BadRequestError("You may only read your own team's usage.", code="other_team", param="team")
        return where.narrowed(team_id=caller.team_id)
    if where.principal_id not in (None, caller.principal_id):
        raise BadRequestError("You may only read your own usage.", code="other_principal", param="principal")
    return where.narrowed(principal_id=caller.principal_id)


def _csv(rows: Iterable[dict[str, Any]], fields: Sequence[str]) -> Response:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(fields), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8")
