"""Every successful administrative change is an ``admin.change`` audit entry (who, what, before, after).

Mutating admin routes take the :data:`AdminAudit` dependency, and so do the knowledge API's changes
(collections and documents: :mod:`socle.gateway.routes.knowledge`). It refuses the request with 503
*before* anything is changed while the audit log is known to be unwritable, so that a change is
never made unrecorded in that state. Each route then records its change once it succeeded; should
that write fail (the log broke during the change), the response is 503 although the change is
committed (documented in docs/audit.md). Requests refused by RBAC are recorded by
:func:`socle.gateway.deps.require`; invalid requests (4xx) record nothing, since they change nothing.

States are the API's own representations, made JSON for the log (datetimes as ISO 8601 text,
decimals and floats as text), without secrets: fields named like a secret are dropped.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import Depends, Request

from socle.gateway.deps import Authenticated, ServicesDep
from socle.gateway.services import Services
from socle.governance.audit.events import AdminChange
from socle.governance.identity import Principal

__all__ = ["AdminAudit", "ChangeRecorder", "audit_state", "change_recorder"]

SECRET_FIELDS = frozenset({"key", "secret", "key_hash", "hash", "password", "client_secret", "token"})
"""Field names never copied into the log, at any depth."""


def audit_state(value: Any) -> Any:
    """``value`` as the log's JSON: no datetimes, decimals or floats (as text), no secret fields."""
    if isinstance(value, dict):
        return {str(k): audit_state(v) for k, v in value.items() if str(k) not in SECRET_FIELDS}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [audit_state(v) for v in value]
        return items if isinstance(value, (list, tuple)) else sorted(items, key=str)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (Decimal, float)):
        return str(value)
    return value


class ChangeRecorder:
    """Records one request's admin changes under its caller and request id."""

    __slots__ = ("_caller", "_request_id", "_services")

    def __init__(self, services: Services, caller: Principal, request_id: str | None) -> None:
        self._services = services
        self._caller = caller
        self._request_id = request_id

    async def __call__(
        self,
        operation: str,
        object_type: str,
        object_id: str,
        *,
        team: str | None = None,
        before: dict[str, Any] | None = None,
        after: dict[str, Any] | None = None,
    ) -> None:
        """Append the change (``operation`` as ``<object>.<verb>``, e.g. ``key.revoke``); ``team`` is
        the team the object belongs to (default: the caller's). Raises ``AuditUnavailableError``."""
        await self._services.audit.record(
            AdminChange(
                actor=self._caller.principal_id,
                team=team or self._caller.team_id,
                request_id=self._request_id,
                operation=operation,
                object_type=object_type,
                object_id=object_id,
                before=None if before is None else audit_state(before),
                after=None if after is None else audit_state(after),
            )
        )


async def change_recorder(request: Request, caller: Authenticated, services: ServicesDep) -> ChangeRecorder:
    """The recorder of a mutating admin route; 503 at once if the audit log cannot be written."""
    services.audit.ensure_available()
    return ChangeRecorder(services, caller, getattr(request.state, "request_id", None))


AdminAudit = Annotated[ChangeRecorder, Depends(change_recorder)]
