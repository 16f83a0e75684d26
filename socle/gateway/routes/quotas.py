"""Admin API for budgets and rate limits (``/v1/admin/budgets``, ``/v1/admin/limits``).

Organisation- and team-wide budgets and team, model and team-and-model limits are set by admins
only: a team admin must not be able to raise their own team's ceiling. Team admins
(``budget.manage``) set budgets and limits on the users and keys of their own team. Everyone with the
action can read the status of the budgets they may set. Changes apply at once in this process and
within ``governance_cache_s`` on other replicas.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from socle.errors import BadRequestError, NotFoundError, PermissionDeniedError
from socle.gateway.admin_audit import AdminAudit
from socle.gateway.deps import ServicesDep, require
from socle.gateway.responses import JSONBytes, listing
from socle.gateway.services import Services
from socle.governance.identity import Principal

__all__ = ["router"]

router = APIRouter(prefix="/v1/admin", tags=["Budgets and limits"])
Manager = Annotated[Principal, Depends(require("budget.manage"))]


class BudgetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scope: Literal["organisation", "team", "user", "key"]
    target: str | None = Field(default=None, description="Team name or id, principal id or key id.")
    period: Literal["daily", "monthly", "total"]
    limit_eur: Decimal | None = Field(default=None, ge=0)
    limit_tokens: int | None = Field(default=None, ge=0)


class BudgetPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit_eur: Decimal | None = Field(default=None, ge=0)
    limit_tokens: int | None = Field(default=None, ge=0)


class LimitIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scope: Literal["key", "team", "model", "team_model"]
    target: str = Field(
        description="Key id, team name or id, public model name, or for team_model 'TEAM:MODEL'."
    )
    requests_per_minute: int | None = Field(default=None, ge=1)
    tokens_per_minute: int | None = Field(default=None, ge=1)


class LimitPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requests_per_minute: int | None = Field(default=None, ge=1, description="null: no request limit.")
    tokens_per_minute: int | None = Field(default=None, ge=1, description="null: no token limit.")


_ADMIN_SCOPES = ("organisation", "team", "model", "team_model")


async def _target(services: Services, caller: Principal, scope: str, target: str | None) -> str:
    """Resolve a new budget's or limit's target to its stored id, checking the caller may govern it."""
    await _may_govern(services, caller, scope, target)
    directory = services.directory
    if scope == "organisation":
        return (await directory.get_org(target)).id if target else caller.org_id
    if scope == "model":
        return services.router.resolve(target or "").name
    if scope == "team":
        return (await directory.get_team(None, target or caller.team_id)).id
    if scope == "team_model":
        team, sep, model = (target or "").partition(":")
        if not sep:
            raise BadRequestError("A team_model target is 'TEAM:MODEL'.", param="target")
        return f"{(await directory.get_team(None, team)).id}:{services.router.resolve(model).name}"
    if not target:
        raise NotFoundError(f"A {scope} budget needs a target id.", code="target_required")
    return target


async def _may_govern(services: Services, caller: Principal, scope: str, scope_id: str | None) -> None:
    """Admins govern everything; team admins the users and keys of their own team."""
    if "admin" in caller.roles:
        return
    if scope in _ADMIN_SCOPES:
        raise PermissionDeniedError(f"Only an admin may set {scope} budgets or limits.", code="admin_only")
    if scope_id and caller.team_id not in await _teams_of(services, scope, scope_id):
        raise PermissionDeniedError("You may only govern the users and keys of your team.", code="other_team")


async def _teams_of(services: Services, scope: str, target: str) -> set[str]:
    if scope == "key":
        return {k.team_id for k in await services.keys.list_keys() if k.id == target}
    return {b.team_id for b in await services.directory.bindings(principal_id=target)}


@router.get("/budgets", summary="Budgets with their current period's spend")
async def list_budgets(
    caller: Manager,
    services: ServicesDep,
    scope: Literal["organisation", "team", "user", "key"] | None = None,
    team: Annotated[str | None, Query(description="Only this team's budget (name or id)")] = None,
) -> Response:
    store = services.quotas.budgets
    scope_id = None
    if team is not None:
        org_scope = None if "admin" in caller.roles else caller.org_id
        scope, scope_id = "team", (await services.directory.get_team(org_scope, team)).id
    budgets = await store.list_budgets(scope=scope, scope_id=scope_id)
    if "admin" not in caller.roles:  # a team admin sees their team's budget and its users' and keys'
        budgets = [
            b
            for b in budgets
            if (b.scope == "team" and b.scope_id == caller.team_id)
            or (
                b.scope in ("user", "key")
                and caller.team_id in await _teams_of(services, b.scope, b.scope_id)
            )
        ]
    return listing([(await store.budget_status(b.id)).to_dict() for b in budgets])


@router.post("/budgets", status_code=201, summary="Create a budget")
async def create_budget(
    body: BudgetIn, caller: Manager, audit: AdminAudit, services: ServicesDep
) -> Response:
    scope_id = await _target(services, caller, body.scope, body.target)
    budget = await services.quotas.budgets.create_budget(
        body.scope, scope_id, body.period, limit_eur=body.limit_eur, limit_tokens=body.limit_tokens
    )
    services.quotas.invalidate()
    await audit("budget.create", "budget", budget.id, after=budget.to_dict())
    return JSONBytes((await services.quotas.budgets.budget_status(budget.id)).to_dict(), status_code=201)


@router.patch("/budgets/{budget_id}", summary="Change a budget's limits")
async def update_budget(
    budget_id: str, body: BudgetPatch, caller: Manager, audit: AdminAudit, services: ServicesDep
) -> Response:
    store = services.quotas.budgets
    budget = await store.get_budget(budget_id)
    await _may_govern(services, caller, budget.scope, budget.scope_id)
    changes = body.model_dump(exclude_unset=True)
    await store.update_budget(budget_id, **changes)
    services.quotas.invalidate()
    status = await store.budget_status(budget_id)
    await audit("budget.update", "budget", budget_id, before=budget.to_dict(), after=status.budget.to_dict())
    return JSONBytes(status.to_dict())


@router.delete("/budgets/{budget_id}", summary="Delete a budget")
async def delete_budget(
    budget_id: str, caller: Manager, audit: AdminAudit, services: ServicesDep
) -> Response:
    store = services.quotas.budgets
    budget = await store.get_budget(budget_id)
    await _may_govern(services, caller, budget.scope, budget.scope_id)
    await store.delete_budget(budget_id)
    services.quotas.invalidate()
    await audit("budget.delete", "budget", budget_id, before=budget.to_dict())
    return JSONBytes({"deleted": True, "id": budget_id})


@router.get("/limits", summary="Rate limits")
async def list_limits(caller: Manager, services: ServicesDep) -> Response:
    limits = await services.quotas.limits.list_limits()
    if "admin" not in caller.roles:
        own_keys = {k.id for k in await services.keys.list_keys(team_id=caller.team_id)}
        limits = [
            x
            for x in limits
            if (x.scope, x.scope_id) == ("team", caller.team_id)
            or (x.scope == "team_model" and x.scope_id.startswith(caller.team_id + ":"))
            or (x.scope == "key" and x.scope_id in own_keys)
        ]
    return listing([x.to_dict() for x in limits])


@router.post("/limits", status_code=201, summary="Create a rate limit")
async def create_limit(body: LimitIn, caller: Manager, audit: AdminAudit, services: ServicesDep) -> Response:
    scope_id = await _target(services, caller, body.scope, body.target)
    limit = await services.quotas.limits.create_limit(
        body.scope,
        scope_id,
        requests_per_minute=body.requests_per_minute,
        tokens_per_minute=body.tokens_per_minute,
    )
    services.quotas.invalidate()
    await audit("limit.create", "rate_limit", limit.id, after=limit.to_dict())
    return JSONBytes(limit.to_dict(), status_code=201)


@router.patch("/limits/{limit_id}", summary="Change a rate limit (null removes one kind)")
async def update_limit(
    limit_id: str, body: LimitPatch, caller: Manager, audit: AdminAudit, services: ServicesDep
) -> Response:
    store = services.quotas.limits
    limit = await store.get_limit(limit_id)
    await _may_govern(services, caller, limit.scope, limit.scope_id)
    updated = await store.update_limit(limit_id, **body.model_dump(exclude_unset=True))
    services.quotas.invalidate()
    await audit("limit.update", "rate_limit", limit_id, before=limit.to_dict(), after=updated.to_dict())
    return JSONBytes(updated.to_dict())


@router.delete("/limits/{limit_id}", summary="Delete a rate limit")
async def delete_limit(limit_id: str, caller: Manager, audit: AdminAudit, services: ServicesDep) -> Response:
    limit = await services.quotas.limits.get_limit(limit_id)
    await _may_govern(services, caller, limit.scope, limit.scope_id)
    await services.quotas.limits.delete_limit(limit_id)
    services.quotas.invalidate()
    await audit("limit.delete", "rate_limit", limit_id, before=limit.to_dict())
    return JSONBytes({"deleted": True, "id": limit_id})
