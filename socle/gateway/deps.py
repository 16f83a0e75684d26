"""Typed dependencies shared by routes: the running services, the authenticated principal, the call.

All are ``async def``: FastAPI runs plain ``def`` dependencies in a thread pool, a hop that cost
about a tenth of the gateway's CPU per request in the overhead benchmark.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Annotated, Any, Literal

from fastapi import Depends, Request
from fastapi.routing import APIRoute

from socle.errors import AuthenticationError, PermissionDeniedError
from socle.gateway.auditing import denial
from socle.gateway.pipeline import Call
from socle.gateway.services import Services
from socle.governance.audit.events import AuthFailure
from socle.governance.identity import Principal, display_prefix
from socle.governance.oidc import looks_like_jwt
from socle.governance.rbac import ACTIONS, ensure_allowed
from socle.governance.residency import HEADER as CLASSIFICATION_HEADER
from socle.governance.residency import parse_classification

__all__ = [
    "Authenticated",
    "NewCall",
    "ServicesDep",
    "check_action",
    "declared_actions",
    "get_services",
    "public",
    "require",
]


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def authenticate(request: Request, services: ServicesDep) -> Principal:
    """See :func:`_authenticate`; every refusal is recorded in the audit log (``auth.failure``)."""
    try:
        return await _authenticate(request, services)
    except (AuthenticationError, PermissionDeniedError) as exc:
        await _record_auth_failure(request, services, exc)
        raise


async def _authenticate(request: Request, services: ServicesDep) -> Principal:
    """Bearer API key or SSO token (a JWT) → principal. Every failure is a 401 that says what is wrong
    (403 for a valid SSO token that gives no team). An SSO user in several teams picks one with the
    ``X-Socle-Team`` header; an API key acts for its own team and ignores it."""
    header = request.headers.get("authorization")
    if not header:
        raise AuthenticationError(
            "Missing API key: send it as 'Authorization: Bearer <key>'.", code="missing_api_key"
        )
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationError(
            "The Authorization header must be 'Bearer <key>'.", code="invalid_authorization"
        )
    principal: Principal
    if looks_like_jwt(token):
        if services.oidc is None:
            raise AuthenticationError(
                "SSO is not configured on this gateway: use an API key (sk-socle-...).",
                code="sso_not_configured",
            )
        principal = await services.oidc.authenticate(token, team=request.headers.get("x-socle-team"))
    else:
        client = request.client.host if request.client else None
        principal = await services.keys.authenticate(token, client_ip=client)
    request.state.principal = principal
    return principal


async def _record_auth_failure(
    request: Request, services: Services, exc: AuthenticationError | PermissionDeniedError
) -> None:
    token = request.headers.get("authorization", "").partition(" ")[2].strip()
    credential: Literal["api_key", "sso", "none"] = (
        "none" if not token else "sso" if looks_like_jwt(token) else "api_key"
    )
    client = request.client.host if request.client else None
    await services.audit.record(
        AuthFailure(
            actor="anonymous",
            request_id=request.state.request_id,
            reason=exc.code or "",
            credential=credential,
            key_prefix=display_prefix(token) if credential == "api_key" else None,
            client_hmac=services.audit.pseudonyms.text(client) if client else None,
            endpoint=request.url.path,
        )
    )


Authenticated = Annotated[Principal, Depends(authenticate)]


async def new_call(request: Request, principal: Authenticated) -> Call:
    """The call record of a governed request. An ``X-Socle-Classification`` header raises the request's
    data classification (it can never lower it below the team's default); an invalid one is a 400."""
    call = Call(request_id=request.state.request_id, endpoint=request.url.path, principal=principal)
    header = request.headers.get(CLASSIFICATION_HEADER)
    if header is not None:
        level = parse_classification(header, source="The X-Socle-Classification header")
        call.raise_classification(level, "X-Socle-Classification header")
    return call


NewCall = Annotated[Call, Depends(new_call)]


def require(action: str) -> Callable[..., Awaitable[Principal]]:
    """The dependency every protected route declares: authenticate, then check ``action`` (RBAC).

    ``dependencies=[Depends(require("model.use"))]`` on the route; the declared action is kept on the
    dependency (``socle_action``) so that a test can enumerate every route and its action.
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; declare it in socle.governance.rbac")

    async def dependency(request: Request, principal: Authenticated, services: ServicesDep) -> Principal:
        await check_action(services, principal, action, request.state.request_id, request.url.path)
        return principal

    dependency.socle_action = action  # type: ignore[attr-defined]
    dependency.__name__ = f"require_{action.replace('.', '_')}"
    return dependency


async def check_action(
    services: Services, principal: Principal, action: str, request_id: str | None, endpoint: str
) -> None:
    """RBAC: raise 403 unless ``principal`` may do ``action``, recording the denial (``access.denied``)
    first. :func:`require` uses it; so do routes whose second action depends on the body."""
    try:
        ensure_allowed(principal.roles, action)
    except PermissionDeniedError as exc:
        await services.audit.record(denial(principal, request_id, endpoint, "rbac", exc, action=action))
        exc.audited = True
        raise


async def public() -> None:
    """Declares a route that needs no authentication (probes, metrics)."""


public.socle_action = None  # type: ignore[attr-defined]


def declared_actions(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, Any, set[str | None]]]:
    """Every route with its full path and the actions its dependencies declare (``None``: public), through
    included routers (FastAPI may keep them lazily). Non-API routes (docs) declare nothing."""
    for route in routes:
        original = getattr(route, "original_router", None)
        if original is not None:
            yield from declared_actions(original.routes, prefix + route.include_context.prefix)
            continue
        found: set[str | None] = set()
        stack = [route.dependant] if isinstance(route, APIRoute) else []
        while stack:
            dependant = stack.pop()
            if dependant.call is not None and hasattr(dependant.call, "socle_action"):
                found.add(dependant.call.socle_action)
            stack.extend(dependant.dependencies)
        yield prefix + getattr(route, "path", ""), route, found
