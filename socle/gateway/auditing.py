"""The audit entry of a governed call, built from what the pipeline recorded on its :class:`Call`.

A policy refusal (403, 429) is an ``access.denied`` entry naming its reason; anything else that reached
the pipeline is an ``inference.request`` entry: who, which model and engine (zone, model file hash or
upstream model), the policy version, HMACs of prompt and answer, tokens, cost, status, and what other
steps put in ``call.trace`` (sources, guardrail and routing decisions, classification). A call the
knowledge steps marked (``collections`` in its trace: :mod:`socle.gateway.rag`) is a
``knowledge.request`` entry instead, with the collections, the query's HMAC and the search method.

Refusals of the knowledge catalog (a collection or document outside the caller's access lists) reach
:class:`AuditRefusalSink`, which records them as ``access.denied`` (reason ``knowledge_access``) under
the current request's id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from socle.egress import EgressRefusal
from socle.errors import BudgetExceededError, PermissionDeniedError, RateLimitError, SocleError
from socle.gateway.middleware import current_request
from socle.governance.audit.events import (
    AccessDenied,
    DenialReason,
    EgressRefused,
    Event,
    InferenceRequest,
    KnowledgeRequest,
)
from socle.governance.audit.log import AuditLog
from socle.governance.identity import Principal
from socle.governance.money import cost_nano_eur
from socle.governance.residency import LoggingDecisionSink, ResidencyDenial
from socle.knowledge.catalog import Refusal

if TYPE_CHECKING:
    from socle.gateway.pipeline import Call

__all__ = ["AuditDecisionSink", "AuditRefusalSink", "audit_event", "denial"]

log = logging.getLogger(__name__)


def audit_event(call: Call, status: int, error: SocleError | None, audit: AuditLog) -> Event:
    """The audit entry of a call: ``access.denied`` for a policy refusal, else ``inference.request``."""
    principal = call.principal
    _collect_decisions(call)
    common: dict[str, Any] = {
        "actor": principal.principal_id,
        "team": principal.team_id,
        "request_id": call.request_id,
    }
    if isinstance(error, PermissionDeniedError | RateLimitError) or (
        error is not None and (error.code or "").startswith("guardrail")
    ):
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
    if "collections" in call.trace:
        common.update(
            collections=call.trace["collections"],
            query_hmac=call.trace.get("query_hmac"),
            method=call.trace.get("method"),
            abstained=bool(call.trace.get("abstained")),
        )
    kind = KnowledgeRequest if "collections" in call.trace else InferenceRequest
    return kind(
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


def _collect_decisions(call: Call) -> None:
    """Copy the residency and guardrail steps' decisions into ``call.trace`` (never detected values)."""
    decision = call.residency
    if decision is not None:
        call.trace.setdefault("classification", call.classification)
        call.trace.setdefault("allowed_zones", list(decision.allowed_zones))
        call.trace.setdefault("routing", decision.to_dict())
    guard = call.guard
    if guard is not None and "guardrails" not in call.trace:
        call.trace["guardrails"] = {
            "policy": guard.policy_name,
            "policy_version": guard.policy_version,
            "decisions": [d.to_dict() for d in guard.decisions],
        }


class AuditDecisionSink:
    """Where residency denials and egress refusals go once the audit log runs.

    A residency 403 is already audited by the pipeline (an ``access.denied`` entry with the routing
    decision), so here it is only logged; an egress refusal, which no request owns, becomes an
    ``egress.refused`` entry. Refusals may come from any thread (inside a socket audit hook): they are
    handed to the event loop, never written from the caller's thread.
    """

    def __init__(self, audit: AuditLog, loop: asyncio.AbstractEventLoop) -> None:
        self._audit = audit
        self._loop = loop
        self._log = LoggingDecisionSink()
        self._tasks: set[asyncio.Task[None]] = set()

    async def residency_denied(self, denial: ResidencyDenial) -> None:
        await self._log.residency_denied(denial)

    def egress_refused(self, refusal: EgressRefusal) -> None:
        self._log.egress_refused(refusal)
        event = EgressRefused(actor="system", host=refusal.host, port=refusal.port, purpose=refusal.via)
        with contextlib.suppress(RuntimeError):  # the loop is closed: the refusal was logged
            self._loop.call_soon_threadsafe(self._spawn, event)

    def _spawn(self, event: EgressRefused) -> None:
        task = self._loop.create_task(self._record(event))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _record(self, event: EgressRefused) -> None:
        try:
            await self._audit.record(event)
        except SocleError as exc:  # fail closed does not apply: no request waits; the log says it
            log.error("could not audit an egress refusal (%s): %s", event.host, exc)


class AuditRefusalSink:
    """Records the knowledge catalog's refusals as ``access.denied`` entries (fail closed: if the entry
    cannot be written, :class:`AuditUnavailableError` replaces the refusal and the client gets 503)."""

    def __init__(self, audit: AuditLog) -> None:
        self._audit = audit

    async def knowledge_refused(self, refusal: Refusal) -> bool:
        request_id, endpoint = current_request() or (None, "")
        await self._audit.record(
            denial(
                refusal.principal,
                request_id,
                endpoint,
                "knowledge_access",
                refusal.error,
                action=f"{refusal.object_type}.{refusal.need}",
                object_type=refusal.object_type,
                object_id=refusal.object_id,
            )
        )
        return True


def denial(
    principal: Principal,
    request_id: str | None,
    endpoint: str,
    reason: DenialReason,
    error: SocleError,
    **fields: Any,
) -> AccessDenied:
    """The ``access.denied`` entry of ``principal``'s request refused with ``error`` for ``reason``."""
    return AccessDenied(
        actor=principal.principal_id,
        team=principal.team_id,
        request_id=request_id,
        reason=reason,
        code=error.code,
        endpoint=endpoint,
        status=error.status_code,
        **fields,
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
