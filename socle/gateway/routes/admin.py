"""The admin API: organisations, teams, principals (users and service accounts), role bindings and
API keys.

Each route declares its action. Team-scoped actions (``keys.manage``, ``team.manage``) are granted by
a role in the team the caller's key acts for; such callers may act on that team only. The ``admin``
role runs the platform: every organisation. A new key's secret is in the creation response only,
never again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from socle.config import Classification
from socle.errors import BadRequestError, NotFoundError, PermissionDeniedError
from socle.gateway.admin_audit import AdminAudit
from socle.gateway.deps import ServicesDep, require
from socle.gateway.responses import JSONBytes, listing
from socle.gateway.services import Services
from socle.governance.directory import Binding, Directory, PrincipalRecord, TeamRecord
from socle.governance.identity import ApiKeyRecord, Principal
from socle.governance.rbac import ROLES

__all__ = ["DirectoryDep", "router", "team_of"]

router = APIRouter(prefix="/v1/admin", tags=["Administration"])

Admin = Annotated[Principal, Depends(require("admin"))]
KeyManager = Annotated[Principal, Depends(require("keys.manage"))]
TeamManager = Annotated[Principal, Depends(require("team.manage"))]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


_NAME = r"^[A-Za-z0-9][A-Za-z0-9._ -]*$"
_ORG_HELP = "Organisation id or name; default: the caller's."


class OrgIn(_Body):
    name: str = Field(min_length=1, max_length=200, pattern=_NAME)


class TeamIn(_Body):
    name: str = Field(min_length=1, max_length=200, pattern=_NAME)
    org: str | None = Field(default=None, description=_ORG_HELP)
    classification: Classification | None = Field(
        default=None, description="Default data classification; default: residency.default_classification."
    )


class TeamPatch(_Body):
    name: str | None = Field(default=None, min_length=1, max_length=200, pattern=_NAME)
    classification: Classification | None = Field(
        default=None, description="The team's default data classification (residency routing)."
    )


class PrincipalIn(_Body):
    kind: Literal["user", "service"]
    name: str = Field(min_length=1, max_length=200)
    email: str | None = Field(default=None, max_length=320)
    org: str | None = Field(default=None, description=_ORG_HELP)


class PrincipalPatch(_Body):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    email: str | None = Field(default=None, max_length=320, description="Empty string: no e-mail.")
    disabled: bool | None = Field(default=None, description="true disables (all keys stop); false enables.")


class BindingIn(_Body):
    principal_id: str
    role: str


class KeyPatch(_Body):
    name: str | None = Field(default=None, max_length=200)
    expires_at: datetime | None = None
    allowed_models: list[str] | None = None
    ip_allowlist: list[str] | None = None


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


def _org_scope(caller: Principal) -> str | None:
    """The organisation a caller's lookups are confined to: none for admins (they run the platform)."""
    return None if "admin" in caller.roles else caller.org_id


async def _org_id(directory: Directory, caller: Principal, ref: str | None) -> str:
    return caller.org_id if ref is None else (await directory.get_org(ref)).id


async def team_of(directory: Directory, caller: Principal, ref: str) -> TeamRecord:
    """The team ``ref`` names, which the caller must be allowed to act on (its own, or any for admins)."""
    team = await directory.get_team(_org_scope(caller), ref)
    _scoped(caller, team.id)
    return team


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


# Organisations ------------------------------------------------------------------------------------------
@router.get("/organisations", summary="List organisations")
async def list_orgs(caller: Admin, directory: DirectoryDep) -> Response:
    return listing([_asdict(o, "organisation") for o in await directory.list_orgs()])


@router.post("/organisations", status_code=201, summary="Create an organisation")
async def create_org(body: OrgIn, caller: Admin, audit: AdminAudit, directory: DirectoryDep) -> Response:
    data = _asdict(await directory.create_org(body.name), "organisation")
    await audit("organisation.create", "organisation", data["id"], after=data)
    return JSONBytes(data, status_code=201)


@router.get("/organisations/{org}", summary="Show an organisation (by id or name)")
async def get_org(org: str, caller: Admin, directory: DirectoryDep) -> Response:
    return JSONBytes(_asdict(await directory.get_org(org), "organisation"))


@router.patch("/organisations/{org}", summary="Rename an organisation")
async def update_org(
    org: str, body: OrgIn, caller: Admin, audit: AdminAudit, directory: DirectoryDep
) -> Response:
    before = _asdict(await directory.get_org(org), "organisation")
    data = _asdict(await directory.rename_org(org, body.name), "organisation")
    await audit("organisation.update", "organisation", data["id"], before=before, after=data)
    return JSONBytes(data)


@router.delete("/organisations/{org}", summary="Delete an organisation without teams or principals (409)")
async def delete_org(org: str, caller: Admin, audit: AdminAudit, directory: DirectoryDep) -> Response:
    record = await directory.delete_org(org)
    await audit("organisation.delete", "organisation", record.id, before=_asdict(record, "organisation"))
    return JSONBytes({"deleted": True, "id": record.id, "name": record.name})


# Teams --------------------------------------------------------------------------------------------------
@router.get("/teams", summary="List teams (of every organisation, or of ?org=), with their member counts")
async def list_teams(
    caller: Admin,
    directory: DirectoryDep,
    org: Annotated[str | None, Query(description="Organisation id or name")] = None,
) -> Response:
    org_id = (await directory.get_org(org)).id if org else None
    counts = await directory.member_counts()
    teams = await directory.list_teams(org_id)
    return listing([{**_asdict(t, "team"), "members": counts.get(t.id, 0)} for t in teams])


@router.post("/teams", status_code=201, summary="Create a team (in the caller's organisation, or in org)")
async def create_team(
    body: TeamIn, caller: Admin, audit: AdminAudit, services: ServicesDep, directory: DirectoryDep
) -> Response:
    level = body.classification or services.settings.residency.default_classification
    team = await directory.create_team(await _org_id(directory, caller, body.org), body.name, level)
    data = _asdict(team, "team")
    await audit("team.create", "team", team.id, team=team.id, after=data)
    return JSONBytes(data, status_code=201)


@router.get("/teams/{team}", summary="Show a team (a team admin: their own)")
async def get_team(team: str, caller: TeamManager, directory: DirectoryDep) -> Response:
    return JSONBytes(_asdict(await team_of(directory, caller, team), "team"))


@router.patch("/teams/{team}", summary="Rename a team or change its default data classification")
async def update_team(
    team: str,
    body: TeamPatch,
    caller: Admin,
    audit: AdminAudit,
    services: ServicesDep,
    directory: DirectoryDep,
) -> Response:
    if body.name is None and body.classification is None:
        raise BadRequestError("Give a new name, a classification, or both.", param="name")
    record = before = await directory.get_team(None, team)
    if body.name is not None:
        record = await directory.rename_team(None, record.id, body.name)
    if body.classification is not None:
        record = await directory.set_classification(None, record.id, body.classification)
        services.residency.forget(record.id)
    data = _asdict(record, "team")
    await audit("team.update", "team", record.id, team=record.id, before=_asdict(before, "team"), after=data)
    return JSONBytes(data)


@router.delete("/teams/{team}", summary="Delete a team that never had keys (409 otherwise)")
async def delete_team(
    team: str, caller: Admin, audit: AdminAudit, services: ServicesDep, directory: DirectoryDep
) -> Response:
    record = await directory.delete_team(None, team)
    services.quotas.invalidate()
    services.access.invalidate()
    services.residency.forget(record.id)
    await audit("team.delete", "team", record.id, team=record.id, before=_asdict(record, "team"))
    return JSONBytes({"deleted": True, "id": record.id, "team": record.name})


# Principals ---------------------------------------------------------------------------------------------
@router.get("/principals", summary="List users and service accounts, with their role bindings")
async def list_principals(
    caller: Admin,
    directory: DirectoryDep,
    kind: Literal["user", "service"] | None = None,
    org: Annotated[str | None, Query(description="Organisation id or name")] = None,
) -> Response:
    org_id = (await directory.get_org(org)).id if org else None
    held: dict[str, list[dict[str, str]]] = {}
    for b in await directory.bindings():
        held.setdefault(b.principal_id, []).append({"team_id": b.team_id, "role": b.role})
    principals = await directory.list_principals(org_id, kind)
    return listing([{**_asdict(p, "principal"), "bindings": held.get(p.id, [])} for p in principals])


@router.post("/principals", status_code=201, summary="Create a user or a service account")
async def create_principal(
    body: PrincipalIn, caller: Admin, audit: AdminAudit, directory: DirectoryDep
) -> Response:
    org_id = await _org_id(directory, caller, body.org)
    principal = await directory.create_principal(org_id, body.kind, body.name, body.email)
    data = _asdict(principal, "principal")
    await audit("principal.create", "principal", principal.id, after=data)
    return JSONBytes(data, status_code=201)


@router.get("/principals/{principal_id}", summary="Show a user or service account, with its bindings")
async def get_principal(principal_id: str, caller: Admin, directory: DirectoryDep) -> Response:
    data = _asdict(await directory.get_principal(None, principal_id), "principal")
    data["bindings"] = [_asdict(b, "binding") for b in await directory.bindings(principal_id=principal_id)]
    return JSONBytes(data)


@router.patch("/principals/{principal_id}", summary="Rename, change the e-mail, disable or enable")
async def update_principal(
    principal_id: str, body: PrincipalPatch, caller: Admin, audit: AdminAudit, directory: DirectoryDep
) -> Response:
    enabled = None if body.disabled is None else not body.disabled
    before = _asdict(await directory.get_principal(None, principal_id), "principal")
    principal = await directory.update_principal(
        None, principal_id, name=body.name, email=body.email, enabled=enabled
    )
    data = _asdict(principal, "principal")
    await audit("principal.update", "principal", principal.id, before=before, after=data)
    return JSONBytes(data)


@router.delete("/principals/{principal_id}", summary="Disable a principal (all its keys stop working)")
async def disable_principal(
    principal_id: str, caller: Admin, audit: AdminAudit, directory: DirectoryDep
) -> Response:
    before = _asdict(await directory.get_principal(None, principal_id), "principal")
    principal = await directory.disable_principal(None, principal_id)
    data = _asdict(principal, "principal")
    await audit("principal.disable", "principal", principal.id, before=before, after=data)
    return JSONBytes(data)


# Role bindings ------------------------------------------------------------------------------------------
@router.get("/roles", summary="The roles and the actions each grants")
async def list_roles(caller: TeamManager) -> Response:
    roles = [
        {"name": r.name, "description": r.description, "actions": sorted(r.actions)} for r in ROLES.values()
    ]
    return listing(roles)


@router.get("/teams/{team}/members", summary="List a team's role bindings, with each principal's name")
async def list_members(team: str, caller: TeamManager, directory: DirectoryDep) -> Response:
    record = await team_of(directory, caller, team)
    bindings = await directory.bindings(team_id=record.id)
    names = await directory.principals_by_id({b.principal_id for b in bindings})
    return listing([_member(b, names.get(b.principal_id)) for b in bindings])


def _member(binding: Binding, principal: PrincipalRecord | None) -> dict[str, Any]:
    """A binding with its principal's name and kind, so that a team admin (who may not list
    principals) can tell the members apart."""
    return {
        **_asdict(binding, "binding"),
        "principal_name": principal.name if principal else None,
        "principal_kind": principal.kind if principal else None,
        "principal_disabled": bool(principal and principal.disabled_at),
    }


@router.post("/teams/{team}/members", status_code=201, summary="Bind a principal to a role in a team")
async def bind(
    team: str, body: BindingIn, caller: TeamManager, audit: AdminAudit, directory: DirectoryDep
) -> Response:
    record = await team_of(directory, caller, team)
    if ROLES.get(body.role) is not None and ROLES[body.role].org_wide and "admin" not in caller.roles:
        raise PermissionDeniedError("Only an admin may grant the admin role.", code="permission_denied")
    binding = await directory.bind(_org_scope(caller), record.id, body.principal_id, body.role)
    data = _asdict(binding, "binding")
    object_id = f"{record.id}/{body.principal_id}/{body.role}"
    await audit("binding.create", "binding", object_id, team=record.id, after=data)
    return JSONBytes(data, status_code=201)


@router.delete("/teams/{team}/members/{principal_id}/{role}", summary="Remove a role binding")
async def unbind(
    team: str, principal_id: str, role: str, caller: TeamManager, audit: AdminAudit, directory: DirectoryDep
) -> Response:
    record = await team_of(directory, caller, team)
    await directory.unbind(record.id, principal_id, role)
    before = {"object": "binding", "team_id": record.id, "principal_id": principal_id, "role": role}
    await audit(
        "binding.delete", "binding", f"{record.id}/{principal_id}/{role}", team=record.id, before=before
    )
    return JSONBytes({"deleted": True})


# API keys -----------------------------------------------------------------------------------------------
@router.get("/keys", summary="List API keys (a team admin sees their team's)")
async def list_keys(
    caller: KeyManager,
    services: ServicesDep,
    directory: DirectoryDep,
    team: Annotated[str | None, Query(description="Team id or name")] = None,
) -> Response:
    team_id = (await team_of(directory, caller, team)).id if team else None
    if "admin" not in caller.roles:
        team_id = caller.team_id
    records = await services.keys.list_keys(team_id=team_id)
    return listing([_key(r) for r in records])


@router.post("/keys", status_code=201, summary="Create an API key (the secret is shown once)")
async def create_key(
    body: KeyIn, caller: KeyManager, audit: AdminAudit, services: ServicesDep, directory: DirectoryDep
) -> Response:
    team_id = (await team_of(directory, caller, body.team)).id if body.team else caller.team_id
    principal_id = body.principal_id or caller.principal_id
    await directory.get_principal(_org_scope(caller), principal_id)
    secret, record = await services.keys.create_key(
        principal_id,
        team_id,
        body.name,
        expires_at=body.expires_at,
        allowed_models=body.allowed_models,
        ip_allowlist=body.ip_allowlist,
    )
    await audit("key.create", "api_key", record.id, team=record.team_id, after=_key(record))
    return JSONBytes(_key(record, secret), status_code=201)


async def _managed_key(services: Services, caller: Principal, key_id: str) -> ApiKeyRecord:
    """A key the caller manages (any for admins, their team's for team admins); 404 otherwise."""
    try:
        record = await services.keys.get_key(key_id)
    except NotFoundError:
        record = None
    if record is None or ("admin" not in caller.roles and record.team_id != caller.team_id):
        raise NotFoundError("No such key in a team you manage.", code="key_not_found")
    return record


@router.get("/keys/{key_id}", summary="Show an API key (never its secret)")
async def get_key(key_id: str, caller: KeyManager, services: ServicesDep) -> Response:
    return JSONBytes(_key(await _managed_key(services, caller, key_id)))


@router.patch("/keys/{key_id}", summary="Change a key's name, expiry, allowed models or IP allow-list")
async def update_key(
    key_id: str, body: KeyPatch, caller: KeyManager, audit: AdminAudit, services: ServicesDep
) -> Response:
    before = _key(await _managed_key(services, caller, key_id))
    record = await services.keys.update_key(key_id, body.model_dump(exclude_unset=True))
    data = _key(record)
    await audit("key.update", "api_key", key_id, team=record.team_id, before=before, after=data)
    return JSONBytes(data)


@router.delete("/keys/{key_id}", summary="Revoke an API key (effective at the next request)")
async def revoke_key(key_id: str, caller: KeyManager, audit: AdminAudit, services: ServicesDep) -> Response:
    before = _key(await _managed_key(services, caller, key_id))
    record = await services.keys.revoke_key(key_id)
    data = _key(record)
    await audit("key.revoke", "api_key", key_id, team=record.team_id, before=before, after=data)
    return JSONBytes(data)


# Alerts -------------------------------------------------------------------------------------------------
@router.get("/alerts", summary="Budget-threshold and limit-hit alerts, newest first")
async def list_alerts(
    caller: Admin,
    services: ServicesDep,
    kind: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    return listing(await services.alerts.list(kind=kind, limit=limit))
