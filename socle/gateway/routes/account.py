"""``GET /v1/me``: who the caller is, for which team it acts and what it may do there.

The console starts here: it shows only the pages the caller's actions allow (the API still checks
every call), and an SSO user in several teams picks one from ``teams`` (sent back as ``X-Socle-Team``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from socle.gateway.deps import ServicesDep, require
from socle.gateway.responses import JSONBytes
from socle.governance._jwt import looks_like_jwt
from socle.governance.identity import Principal
from socle.governance.rbac import ACTIONS, allowed

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["Account"])
Caller = Annotated[Principal, Depends(require("account.read"))]


@router.get("/me", summary="The caller's identity, acting team, roles and allowed actions")
async def me(caller: Caller, request: Request, services: ServicesDep) -> Response:
    teams: list[dict[str, Any]] = [_team(caller)]
    sso = caller.key_id.startswith("oidc:")
    if sso and services.oidc is not None:
        token = request.headers["authorization"].partition(" ")[2].strip()
        if looks_like_jwt(token):
            teams = [_team(p) for p in await services.oidc.memberships(token)]
    return JSONBytes(
        {
            "id": caller.principal_id,
            "name": caller.name,
            "kind": caller.kind,
            "organisation": caller.org_id,
            "auth": "sso" if sso else "api_key",
            "key_id": None if sso else caller.key_id,
            "team": _team(caller),
            "teams": teams,
            "roles": sorted(caller.roles),
            "actions": sorted(a for a in ACTIONS if allowed(caller.roles, a)),
            "allowed_models": None if caller.allowed_models is None else sorted(caller.allowed_models),
        }
    )


def _team(principal: Principal) -> dict[str, Any]:
    return {"id": principal.team_id, "name": principal.team_name, "roles": sorted(principal.roles)}
