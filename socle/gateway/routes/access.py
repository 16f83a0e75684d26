"""Admin API for model access: which teams may use which public models (see
:mod:`socle.governance.access`).

Granting and revoking are for admins only: a team admin must not widen their own team's access. A team
admin (``team.manage``) may read their team's access. Model names may be aliases; grants are stored
under the canonical public name. Changes apply at once in this process and within
``governance_cache_s`` on other replicas.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from starlette.responses import Response

from socle.errors import ModelNotFoundError
from socle.gateway.admin_audit import AdminAudit
from socle.gateway.deps import ServicesDep, require
from socle.gateway.responses import JSONBytes, listing
from socle.gateway.routes.admin import DirectoryDep, team_of
from socle.gateway.services import Services
from socle.governance.identity import Principal

__all__ = ["router"]

router = APIRouter(prefix="/v1/admin", tags=["Model access"])

Admin = Annotated[Principal, Depends(require("admin"))]
TeamManager = Annotated[Principal, Depends(require("team.manage"))]


def _canonical(services: Services, model: str) -> str:
    """A configured model's public name (aliases resolve to it); an unconfigured name is kept as is,
    so that grants of a model removed from the configuration can still be listed and revoked."""
    try:
        return services.router.resolve(model).name
    except ModelNotFoundError:
        return model


async def _stored_policy(services: Services, model: str) -> dict[str, object]:
    """The model's access policy as stored (not this process's cached view), for the audit log."""
    services.access.invalidate()
    return (await services.access.policy(model)).to_dict()


@router.get("/teams/{team}/models", summary="The models a team may use, and why")
async def team_models(
    team: str, caller: TeamManager, services: ServicesDep, directory: DirectoryDep
) -> Response:
    record = await team_of(directory, caller, team)
    services.access.invalidate()  # administrators read what is stored, not this process's cache
    granted = {g.model for g in await services.access.grants(team_id=record.id)}
    data = []
    for name in [*services.router.pools, *sorted(granted - set(services.router.pools))]:
        policy = await services.access.policy(name)
        data.append(
            {
                "object": "team_model",
                "team_id": record.id,
                "model": name,
                "allowed": policy.allows(record.id),
                "granted": name in granted,
                "restricted": policy.restricted,
                "configured": name in services.router.pools,
            }
        )
    return listing(data)


@router.put("/teams/{team}/models/{model:path}", summary="Let a team use a model")
async def grant(
    team: str, model: str, caller: Admin, audit: AdminAudit, services: ServicesDep, directory: DirectoryDep
) -> Response:
    record = await team_of(directory, caller, team)
    name = services.router.resolve(model).name  # only configured models can be granted
    before = await _stored_policy(services, name)
    result = await services.access.grant(record.id, name)
    after = await _stored_policy(services, name)
    await audit(
        "grant.create", "model_grant", f"{record.id}:{name}", team=record.id, before=before, after=after
    )
    return JSONBytes({**result.to_dict(), "team": record.name})


@router.delete("/teams/{team}/models/{model:path}", summary="Take a model away from a team")
async def revoke(
    team: str,
    model: str,
    caller: Admin,
    audit: AdminAudit,
    services: ServicesDep,
    directory: DirectoryDep,
    reopen: Annotated[
        bool, Query(description="Allow revoking a model's last grant, which opens it to every team.")
    ] = False,
) -> Response:
    record = await team_of(directory, caller, team)
    name = _canonical(services, model)
    before = await _stored_policy(services, name)
    policy = await services.access.revoke(record.id, name, reopen=reopen)
    object_id = f"{record.id}:{name}"
    await audit(
        "grant.delete", "model_grant", object_id, team=record.id, before=before, after=policy.to_dict()
    )
    return JSONBytes({"deleted": True, "team_id": record.id, **policy.to_dict()})


@router.get("/model-access", summary="Every model: restricted or not, and the teams granted")
async def model_access(
    caller: Admin,
    services: ServicesDep,
    model: Annotated[str | None, Query(description="Only this model")] = None,
) -> Response:
    services.access.invalidate()
    names = [_canonical(services, model)] if model else list(services.router.pools)
    if not model:
        names += sorted({g.model for g in await services.access.grants()} - set(names))
    policies = [await services.access.policy(name) for name in names]
    return listing([{**p.to_dict(), "default": services.access.default} for p in policies])
