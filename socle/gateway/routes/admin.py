"""The admin API: teams, principals (users and service accounts), role bindings and API keys.

Each route declares its action. Team-scoped actions (``keys.manage``, ``team.manage``) are granted by
a role in the team the caller's key acts for; such callers may act on that team only. The ``admin``
role is organisation-wide. A new key's secret is in the creation response only, never again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from socle.config import Classification
from socle.errors import NotFoundError, PermissionDeniedError
from socle.gateway.deps import ServicesDep, require
from socle.gateway.responses import JSONBytes, listing
from socle.governance.directory import Directory
from socle.governance.identity import ApiKeyRecord, Principal
from socle.governance.rbac import ROLES

__all__ = ["router"]

router = APIRouter(prefix="/v1/admin", tags=["Administration"])

Admin = Annotated[Principal, Depends(require("admin"))]
KeyManager = Annotated[Principal, Depends(require("keys.manage"))]
TeamManager = Annotated[Principal, Depends(require("team.manage"))]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TeamIn(_Body):
    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._ -]*$")
    classification: Classification | None = Field(
        default=None, description="Default data classification; default: residency.default_classification."
    )


class TeamChange(_Body):
    classification: Classification = Field(description="The team's default data classification.")


class PrincipalIn(_Body):
    kind: Literal["user", "service"]
    name: str = Field(min_length=1, max_length=200)
    email: str | None = Field(default=None, max_length=320)


class BindingIn(_Body):
    principal_id: str
    role: str


class KeyIn(_Body):
    principal_id: str | None = Field(default=None, description="Default: the caller.")
    team: str | None = Field(default=None, description="Team id or name; default: the caller's team.")
    name: str = Field(default="key", max_length=200)
    expires_at: datetime | None = None
    allowed_models: list[str] | None = None
    ip_allowlist: list[str] | None = None


async def _directory(services: ServicesDep) -> Directory:
    return services.directory


DirectoryDep = Annotated[Directory, Depends(_directory)]


def _scoped(principal: Principal, team_id: str) -> None:
    """Team-scoped callers act on their own team only; org-wide admins on any."""
    if "admin" not in principal.roles and team_id != principal.team_id:
        raise PermissionDeniedError("You may only manage your own team.", code="other_team")


def _key(record: ApiKeyRecord, secret: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": record.id,
        "object": "api_key",
        "name": record.name,
        "prefix": record.prefix,
        "principal_id": record.principal_id,
        "team_id": record.team_id,
        "allowed_models": sorted(record.allowed_models) if record.allowed_models is not None else None,
        "ip_allowlist": list(record.ip_allowlist) if record.ip_allowlist is not None else None,
        "expires_at": record.expires_at,
        "created_at": record.created_at,
        "last_used_at": record.last_used_at,
        "revoked_at": record.revoked_at,
    }
    if secret is not None:
        data["key"] = secret
    return data


def _asdict(record: Any, kind: str) -> dict[str, Any]:
    return {"object": kind, **{name: getattr(record, name) for name in record.__slots__}}


# Teams --------------------------------------------------------------------------------------------------
@router.get("/teams", summary="List teams")
async def list_teams(caller: Admin, directory: DirectoryDep) -> Response:
    return listing([_asdict(t, "team") for t in await directory.list_teams(caller.org_id)])


@router.post("/teams", status_code=201, summary="Create a team")
async def create_team(
    body: TeamIn, caller: Admin, services: ServicesDep, directory: DirectoryDep
) -> Response:
    level = body.classification or services.settings.residency.default_classification
    team = await directory.create_team(caller.org_id, body.name, level)
    return JSONBytes(_asdict(team, "team"), status_code=201)


@router.patch("/teams/{team}", summary="Change a team's default data classification")
async def change_team(
    team: str, body: TeamChange, caller: Admin, services: ServicesDep, directory: DirectoryDep
) -> Response:
    record = await directory.set_classification(caller.org_id, team, body.classification)
    services.residency.forget(record.id)
    return JSONBytes(_asdict(record, "team"))


@router.delete("/teams/{team}", summary="Delete a team without keys")
async def delete_team(team: str, caller: Admin, directory: DirectoryDep) -> Response:
    await directory.delete_team(caller.org_id, team)
    return JSONBytes({"deleted": True, "team": team})


# Principals ---------------------------------------------------------------------------------------------
@router.get("/principals", summary="List users and service accounts")
async def list_principals(
    caller: Admin, directory: DirectoryDep, kind: Literal["user", "service"] | None = None
) -> Response:
    return listing([_asdict(p, "principal") for p in await directory.list_principals(caller.org_id, kind)])


@router.post("/principals", status_code=201, summary="Create a user or a service account")
async def create_principal(body: PrincipalIn, caller: Admin, directory: DirectoryDep) -> Response:
    principal = await directory.create_principal(caller.org_id, body.kind, body.name, body.email)
    return JSONBytes(_asdict(principal, "principal"), status_code=201)


@router.delete("/principals/{principal_id}", summary="Disable a principal (all its keys stop working)")
async def disable_principal(principal_id: str, caller: Admin, directory: DirectoryDep) -> Response:
    principal = await directory.disable_principal(caller.org_id, principal_id)
    return JSONBytes(_asdict(principal, "principal"))


# Role bindings ------------------------------------------------------------------------------------------
@router.get("/roles", summary="The roles and the actions each grants")
async def list_roles(caller: TeamManager) -> Response:
    roles = [
        {"name": r.name, "description": r.description, "actions": sorted(r.actions)} for r in ROLES.values()
    ]
    return listing(roles)


@router.get("/teams/{team}/members", summary="List a team's role bindings")
async def list_members(team: str, caller: TeamManager, directory: DirectoryDep) -> Response:
    record = await directory.get_team(caller.org_id, team)
    _scoped(caller, record.id)
    return listing([_asdict(b, "binding") for b in await directory.bindings(team_id=record.id)])


@router.post("/teams/{team}/members", status_code=201, summary="Bind a principal to a role in a team")
async def bind(team: str, body: BindingIn, caller: TeamManager, directory: DirectoryDep) -> Response:
    record = await directory.get_team(caller.org_id, team)
    _scoped(caller, record.id)
    if ROLES.get(body.role) is not None and ROLES[body.role].org_wide and "admin" not in caller.roles:
        raise PermissionDeniedError("Only an admin may grant the admin role.", code="permission_denied")
    binding = await directory.bind(caller.org_id, record.id, body.principal_id, body.role)
    return JSONBytes(_asdict(binding, "binding"), status_code=201)


@router.delete("/teams/{team}/members/{principal_id}/{role}", summary="Remove a role binding")
async def unbind(
    team: str, principal_id: str, role: str, caller: TeamManager, directory: DirectoryDep
) -> Response:
    record = await directory.get_team(caller.org_id, team)
    _scoped(caller, record.id)
    await directory.unbind(record.id, principal_id, role)
    return JSONBytes({"deleted": True})


# API keys -----------------------------------------------------------------------------------------------
@router.get("/keys", summary="List API keys (a team admin sees their team's)")
async def list_keys(
    caller: KeyManager,
    services: ServicesDep,
    directory: DirectoryDep,
    team: Annotated[str | None, Query(description="Team id or name")] = None,
) -> Response:
    team_id = (await directory.get_team(caller.org_id, team)).id if team else None
    if "admin" not in caller.roles:
        team_id = team_id or caller.team_id
        _scoped(caller, team_id)
    records = await services.keys.list_keys(team_id=team_id)
    return listing([_key(r) for r in records])


@router.post("/keys", status_code=201, summary="Create an API key (the secret is shown once)")
async def create_key(
    body: KeyIn, caller: KeyManager, services: ServicesDep, directory: DirectoryDep
) -> Response:
    team_id = (await directory.get_team(caller.org_id, body.team)).id if body.team else caller.team_id
    _scoped(caller, team_id)
    principal_id = body.principal_id or caller.principal_id
    await directory.get_principal(caller.org_id, principal_id)
    secret, record = await services.keys.create_key(
        principal_id,
        team_id,
        body.name,
        expires_at=body.expires_at,
        allowed_models=body.allowed_models,
        ip_allowlist=body.ip_allowlist,
    )
    return JSONBytes(_key(record, secret), status_code=201)


@router.delete("/keys/{key_id}", summary="Revoke an API key (effective at the next request)")
async def revoke_key(key_id: str, caller: KeyManager, services: ServicesDep) -> Response:
    records = {
        r.id: r
        for r in await services.keys.list_keys(team_id=None if "admin" in caller.roles else caller.team_id)
    }
    if key_id not in records:
        raise NotFoundError("No such key in a team you manage.", code="key_not_found")
    record = await services.keys.revoke_key(key_id)
    return JSONBytes(_key(record))


# Alerts -------------------------------------------------------------------------------------------------
@router.get("/alerts", summary="Budget-threshold and limit-hit alerts, newest first")
async def list_alerts(
    caller: Admin,
    services: ServicesDep,
    kind: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    return listing(await services.alerts.list(kind=kind, limit=limit))
