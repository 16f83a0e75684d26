"""``GET /v1/usage``: usage sums per day, team, model, principal, engine or zone, as JSON or CSV.

Who sees what: everyone with ``usage.read`` sees their own usage; ``usage.read_team`` (team admins)
the whole team's; ``usage.read_all`` (admins, auditors) every team's.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from starlette.responses import Response

from socle.errors import BadRequestError
from socle.gateway.deps import ServicesDep, require
from socle.gateway.responses import JSONBytes
from socle.governance.identity import Principal
from socle.governance.rbac import allowed
from socle.observability.reports import GROUPS, UsageFilter, UsageLine, usage_report

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["Usage"])
Reader = Annotated[Principal, Depends(require("usage.read"))]


@router.get("/usage", summary="Usage sums over a period, grouped (JSON or CSV)")
async def usage(
    caller: Reader,
    services: ServicesDep,
    since: datetime | None = None,
    until: datetime | None = None,
    team: Annotated[str | None, Query(description="Team id or name")] = None,
    model: str | None = None,
    group_by: Annotated[str, Query(description=f"Comma-separated, among {', '.join(GROUPS)}")] = "day,model",
    format: Literal["json", "csv"] = "json",  # noqa: A002 - the public parameter name
) -> Response:
    groups = [g.strip() for g in group_by.split(",") if g.strip()]
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise BadRequestError(
            f"Unknown group(s) {unknown}; choose among {', '.join(GROUPS)}.", param="group_by"
        )
    team_id = None
    if team is not None:
        everyone = allowed(caller.roles, "usage.read_all")  # admins and auditors: any organisation's team
        team_id = (await services.directory.get_team(None if everyone else caller.org_id, team)).id
    where = _scope(caller, UsageFilter(since=since, until=until, team_id=team_id, model=model))
    lines = await usage_report(services.db, where, groups)  # type: ignore[arg-type]
    if format == "csv":
        return Response(_csv(lines, groups), media_type="text/csv; charset=utf-8")
    since_, until_ = where.period()
    return JSONBytes(
        {
            "object": "usage",
            "since": since_,
            "until": until_,
            "group_by": groups,
            "data": [x.as_dict() for x in lines],
        }
    )


def _scope(caller: Principal, where: UsageFilter) -> UsageFilter:
    """Narrow the filter to what the caller may read."""
    if allowed(caller.roles, "usage.read_all"):
        return where
    if allowed(caller.roles, "usage.read_team"):
        if where.team_id not in (None, caller.team_id):
            raise BadRequestError("You may only read your own team's usage.", code="other_team", param="team")
        return UsageFilter(since=where.since, until=where.until, team_id=caller.team_id, model=where.model)
    return UsageFilter(
        since=where.since,
        until=where.until,
        team_id=where.team_id,
        principal_id=caller.principal_id,
        model=where.model,
    )


def _csv(lines: list[UsageLine], groups: list[str]) -> str:
    out = io.StringIO()
    fields = [
        *groups,
        "requests",
        "errors",
        "prompt_tokens",
        "completion_tokens",
        "cost_eur",
        "max_latency_ms",
    ]
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for line in lines:
        writer.writerow(line.as_dict())
    return out.getvalue()
