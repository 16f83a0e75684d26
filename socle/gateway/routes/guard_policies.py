"""Admin API for teams' guardrail policies (see :mod:`socle.governance.guardrails.store`).

Changing a policy is for admins only: guardrails protect the organisation's data (a data-protection
control), so a team admin must not loosen their own team's, as they may not widen its model access. A
team admin (``team.manage``) may read their team's policy and its history. Every change is a new
version, audited (``guardrail_policy.update``); it applies at once in this process and within
``governance_cache_s`` on other replicas.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import Field
from starlette.responses import Response

from socle.config import GuardPolicy
from socle.errors import BadRequestError, UnsupportedError
from socle.gateway.admin_audit import AdminAudit
from socle.gateway.deps import ServicesDep, require
from socle.gateway.responses import JSONBytes, listing
from socle.gateway.routes.admin import DirectoryDep, team_of
from socle.gateway.services import Services
from socle.governance.directory import TeamRecord
from socle.governance.guardrails import Guard
from socle.governance.guardrails.store import PolicyStore
from socle.governance.identity import Principal

__all__ = ["router"]

router = APIRouter(prefix="/v1/admin", tags=["Guardrail policies"])

Admin = Annotated[Principal, Depends(require("admin"))]
TeamManager = Annotated[Principal, Depends(require("team.manage"))]


class PolicyIn(GuardPolicy):
    """A team's policy: the fields of a ``[guardrails.policies.NAME]`` section, and its name. The server
    numbers the versions: ``version`` may not be given."""

    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Name in records and errors; default: team:<team name>.",
    )


def _store(services: Services) -> tuple[Guard, PolicyStore]:
    guard = services.guard
    if guard is None or guard.store is None:
        raise UnsupportedError("Guardrails are disabled on this gateway (guardrails.enabled = false).")
    return guard, guard.store


async def _effective(services: Services, team: TeamRecord) -> dict[str, Any]:
    """The policy the team's next requests get, as stored (not this process's cache)."""
    guard, store = _store(services)
    store.forget(team.id)
    stored = await store.current(team.id)
    state = guard.begin("", team.name, team.id, stored=stored)
    live = stored is not None and stored.policy is not None
    return {
        "object": "guardrail_policy",
        "team_id": team.id,
        "team": team.name,
        "source": "stored" if live else "settings",
        "name": state.policy_name,
        "version": stored.version if stored is not None else None,
        "policy_version": state.policy_version,
        "policy": state.policy.model_dump(mode="json", exclude={"version"}),
        "created_by": stored.created_by if stored is not None else None,
        "created_at": stored.created_at if stored is not None else None,
    }


@router.get("/teams/{team}/guardrails", summary="A team's guardrail policy (stored, or the settings')")
async def get_policy(
    team: str, caller: TeamManager, services: ServicesDep, directory: DirectoryDep
) -> Response:
    return JSONBytes(await _effective(services, await team_of(directory, caller, team)))


@router.get("/teams/{team}/guardrails/versions", summary="Every stored version of a team's policy")
async def list_versions(
    team: str, caller: TeamManager, services: ServicesDep, directory: DirectoryDep
) -> Response:
    record = await team_of(directory, caller, team)
    _, store = _store(services)
    return listing([v.to_dict() for v in await store.history(record.id)])


@router.put("/teams/{team}/guardrails", summary="Store a new version of a team's guardrail policy")
async def put_policy(
    team: str,
    body: PolicyIn,
    caller: Admin,
    audit: AdminAudit,
    services: ServicesDep,
    directory: DirectoryDep,
) -> Response:
    if "version" in body.model_fields_set:
        raise BadRequestError(
            "version is numbered by the server (each change is the next version): remove it.",
            code="invalid_guardrail_policy",
            param="version",
        )
    record = await team_of(directory, caller, team)
    _, store = _store(services)
    before = await _effective(services, record)
    policy = GuardPolicy.model_validate(body.model_dump(exclude={"name", "version"}))
    await store.put(record.id, body.name or f"team:{record.name}", policy, caller.principal_id)
    after = await _effective(services, record)
    await audit(
        "guardrail_policy.update", "guardrail_policy", record.id, team=record.id, before=before, after=after
    )
    return JSONBytes(after)


@router.delete(
    "/teams/{team}/guardrails", summary="Give a team the settings' policy again (a new version; history kept)"
)
async def reset_policy(
    team: str, caller: Admin, audit: AdminAudit, services: ServicesDep, directory: DirectoryDep
) -> Response:
    record = await team_of(directory, caller, team)
    _, store = _store(services)
    before = await _effective(services, record)
    if before["source"] == "settings":
        return JSONBytes(before)  # nothing stored overrides the settings: no new version
    await store.put(record.id, f"team:{record.name}", None, caller.principal_id)
    after = await _effective(services, record)
    await audit(
        "guardrail_policy.reset", "guardrail_policy", record.id, team=record.id, before=before, after=after
    )
    return JSONBytes(after)
