"""The audit entry of a governed call, built from what the pipeline recorded on its :class:`Call`.

A policy refusal (403, 429) is an ``access.denied`` entry naming its reason; anything else that reached
the pipeline is an ``inference.request`` entry: who, which model and engine (zone, model file hash or
upstream model), the policy version, HMACs of prompt and answer, tokens, cost, status, and what other
steps put in ``call.trace`` (sources, guardrail and routing decisions, classification).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from socle.errors import BudgetExceededError, PermissionDeniedError, RateLimitError, SocleError
from socle.governance.audit.events import AccessDenied, Event, InferenceRequest
from socle.governance.audit.log import AuditLog
from socle.governance.money import cost_nano_eur

if TYPE_CHECKING:
    from socle.gateway.pipeline import Call

__all__ = ["audit_event"]


def audit_event(call: Call, status: int, error: SocleError | None, audit: AuditLog) -> Event:
    """The audit entry of a call: ``access.denied`` for a policy refusal, else ``inference.request``."""
    principal = call.principal
    common: dict[str, Any] = {
        "actor": principal.principal_id,
        "team": principal.team_id,
        "request_id": call.request_id,
    }
    if isinstance(error, PermissionDeniedError | RateLimitError):
        return AccessDenied(
            **common,
            reason=_denial_reason(error),
            code=error.code,
            endpoint=call.endpoint,
            model=call.model or None,
            status=status,
            classification=call.trace.get("classification"),
            allowed_zones=call.trace.get("allowed_zones"),
        )
    engine = call.engine
    nano = (
        cost_nano_eur(engine.config, call.usage.prompt_tokens, call.usage.completion_tokens) if engine else 0
    )
    return InferenceRequest(
        **common,
        key_id=principal.key_id,
        endpoint=call.endpoint,
        model=call.model,
        engine=call.engine_name,
        zone=engine.config.zone if engine else "",
        model_ref=engine.model_id if engine else "",
        policy_version=audit.policy_version,
        prompt_hmac=audit.pseudonyms.json(call.prompt) if call.prompt is not None else None,
        response_hmac=audit.pseudonyms.text("".join(call.output)) if call.output else None,
        prompt_tokens=call.usage.prompt_tokens,
        completion_tokens=call.usage.completion_tokens,
        cost_nano_eur=nano,
        status=status,
        error_code=error.code if error is not None else None,
        classification=call.trace.get("classification"),
        retrieved_chunks=call.trace.get("retrieved_chunks"),
        guardrails=call.trace.get("guardrails"),
        routing=call.trace.get("routing")
        or ({"engine": call.engine_name, "zone": engine.config.zone} if engine else None),
        content_stored=call.prompt is not None
        and audit.stores_content(principal.team_id, principal.team_name),
    )


def _denial_reason(error: SocleError) -> Any:
    if isinstance(error, BudgetExceededError):
        return "budget"
    if isinstance(error, RateLimitError):
        return "rate_limit"
    code = error.code or ""
    if code == "model_not_allowed":
        return "model_access"
    for reason in ("residency", "guardrail"):
        if code.startswith(reason):
            return reason
    return "rbac"
