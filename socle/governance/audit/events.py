"""Audit event types, declared as data: one frozen dataclass per type, all listed in :data:`EVENT_TYPES`.

Every event says who acted (``actor``: a principal id, or ``anonymous``, ``system``, ``cli``), for
which team (``team``: a team id) and in which request (``request_id``), plus the fields of its type.
The log wraps it in an envelope (sequence number, time, type, format version) and stores the RFC 8785
canonical JSON of the whole (see :mod:`socle.governance.audit.log`).

Personal data is kept out on purpose: people appear as pseudonymous ids, prompts, responses and client
addresses as keyed HMACs (:mod:`socle.governance.audit.pseudonyms`). Contents, when a team's policy
asks for them, go to the encrypted vault outside the log, so erasing them never breaks verification.

Values are JSON: strings, booleans, null, integers within ±2^53 (money in nano-euros, never floats),
lists and objects of those.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, ClassVar, Final, Literal

__all__ = [
    "DENIAL_REASONS",
    "EVENT_TYPES",
    "AccessDenied",
    "AdminChange",
    "AuditExport",
    "AuditOutage",
    "AuditPrune",
    "AuthFailure",
    "DataErasure",
    "DenialReason",
    "EgressRefused",
    "Event",
    "FeedbackGiven",
    "InferenceRequest",
    "KnowledgeRequest",
]

_COMMON = ("actor", "team", "request_id")

DenialReason = Literal[
    "rbac", "budget", "rate_limit", "residency", "model_access", "guardrail", "knowledge_access"
]
DENIAL_REASONS: Final = (
    "rbac",
    "budget",
    "rate_limit",
    "residency",
    "model_access",
    "guardrail",
    "knowledge_access",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """What every audit event carries. Subclasses set ``type`` and ``description`` and add fields."""

    type: ClassVar[str] = ""
    description: ClassVar[str] = ""
    data_fields: ClassVar[tuple[str, ...]] = ()

    actor: str | None = None
    """Who acted: a principal id, or ``anonymous``, ``system``, ``cli``."""
    team: str | None = None
    """The team id the action was for."""
    request_id: str | None = None
    """The gateway request id (``x-request-id``), if the event belongs to a request."""

    def data(self) -> dict[str, Any]:
        """The type's own fields, as a JSON object."""
        return {name: getattr(self, name) for name in type(self).data_fields}


@dataclass(frozen=True, slots=True, kw_only=True)
class InferenceRequest(Event):
    """One governed inference call (chat, completion, embeddings), whatever its outcome."""

    type: ClassVar[str] = "inference.request"
    description: ClassVar[str] = (
        "A governed inference request: who, which model and engine (zone, model file sha256 or upstream "
        "model), HMACs of prompt and response, tokens, cost, status, and the policy, sources, guardrail "
        "and routing decisions it was served under."
    )
    key_id: str | None = None
    endpoint: str = ""
    model: str = ""
    engine: str = ""
    zone: str = ""
    model_ref: str = ""
    """``sha256:<hex>`` of a local model file, or ``upstream:<model>`` for an OpenAI-compatible engine."""
    policy_version: str | None = None
    prompt_hmac: str | None = None
    response_hmac: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_nano_eur: int = 0
    status: int = 200
    error_code: str | None = None
    classification: str | None = None
    retrieved_chunks: list[dict[str, Any]] | None = None
    guardrails: dict[str, Any] | None = None
    routing: dict[str, Any] | None = None
    content_stored: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class KnowledgeRequest(InferenceRequest):
    """A search or a question to the knowledge base: an inference request (model fields empty for a
    search) plus the collections asked for, the HMAC of the query and what was retrieved."""

    type: ClassVar[str] = "knowledge.request"
    description: ClassVar[str] = (
        "A knowledge-base search or answer: as inference.request, plus the collections asked for, the "
        "HMAC of the query, the search method, and the chunks returned or given to the model (document "
        "ids, titles, chunk ids)."
    )
    collections: list[str] | None = None
    """The collection ids the request named; ``None``: every collection the caller may read."""
    query_hmac: str | None = None
    method: str | None = None
    """``bm25``, ``dense`` or ``hybrid`` for a search; ``None`` for an answer."""
    abstained: bool = False
    """An answer with no relevant passage: no model was called."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthFailure(Event):
    """A request whose credentials were missing or refused (401)."""

    type: ClassVar[str] = "auth.failure"
    description: ClassVar[str] = (
        "Authentication failed: missing, malformed, unknown, revoked or expired credentials."
    )
    reason: str = ""
    """The error code sent to the client (``invalid_api_key``, ``missing_api_key``...)."""
    credential: Literal["api_key", "sso", "none"] = "none"
    key_prefix: str | None = None
    client_hmac: str | None = None
    """HMAC of the client address (pseudonymous: links attempts without storing the address)."""
    endpoint: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessDenied(Event):
    """An authenticated request refused by a policy (403 or 429; 404 for a knowledge object the caller
    may not see, which the API does not tell from a missing one)."""

    type: ClassVar[str] = "access.denied"
    description: ClassVar[str] = (
        "A request was refused by policy: RBAC, budget, rate limit, residency, model access, guardrail "
        "or a knowledge collection's or document's access list."
    )
    reason: DenialReason = "rbac"
    code: str | None = None
    action: str | None = None
    endpoint: str = ""
    model: str | None = None
    status: int = 403
    classification: str | None = None
    allowed_zones: list[str] | None = None
    object_type: str | None = None
    """For a knowledge refusal: ``collection``, ``document`` or ``team``..."""
    object_id: str | None = None
    """...and its id."""

    def __post_init__(self) -> None:
        if self.reason not in DENIAL_REASONS:
            raise ValueError(f"unknown denial reason {self.reason!r}; one of {', '.join(DENIAL_REASONS)}")


@dataclass(frozen=True, slots=True, kw_only=True)
class AdminChange(Event):
    """A change to governed configuration: teams, principals, roles, keys, budgets, limits, engines."""

    type: ClassVar[str] = "admin.change"
    description: ClassVar[str] = "An administrative change, with the object and its state before and after."
    operation: str = ""
    """``<object>.<verb>``: ``team.create``, ``key.revoke``, ``budget.update``, ``grant.create``..."""
    object_type: str = ""
    object_id: str = ""
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditExport(Event):
    """The log was exported (who, how much, where to)."""

    type: ClassVar[str] = "audit.export"
    description: ClassVar[str] = "The audit log was exported."
    destination: str = ""
    size: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class DataErasure(Event):
    """Stored contents were erased (GDPR Art. 17): the log keeps the HMACs, the vault loses the text."""

    type: ClassVar[str] = "data.erasure"
    description: ClassVar[str] = "Stored prompt and response contents were erased from the vault."
    subject: str = ""
    """What was erased: a request id, or a principal id for all of its requests."""
    items: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class EgressRefused(Event):
    """An outbound connection to a host outside the allow-list was refused."""

    type: ClassVar[str] = "egress.refused"
    description: ClassVar[str] = "An outbound connection to a host not on the egress allow-list was refused."
    host: str = ""
    port: int | None = None
    purpose: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditPrune(Event):
    """Entries older than the retention period were removed, at a signed checkpoint."""

    type: ClassVar[str] = "audit.prune"
    description: ClassVar[str] = (
        "Entries before a signed checkpoint and older than the retention were pruned; the frontier "
        "hashes that keep later checkpoints verifiable are recorded."
    )
    pruned_size: int = 0
    root_hash: str = ""
    frontier: list[str] = field(default_factory=list)
    retention_days: int = 0
    cutoff: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditOutage(Event):
    """The log could not be written for a while; governed requests were refused meanwhile."""

    type: ClassVar[str] = "audit.outage"
    description: ClassVar[str] = (
        "The audit log could not be written between two times; governed requests were refused (503)."
    )
    since: str = ""
    until: str = ""
    refused: int = 0
    error: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedbackGiven(Event):
    """A user rated one of their answers (thumbs up or down, with an optional comment)."""

    type: ClassVar[str] = "feedback"
    description: ClassVar[str] = (
        "A user rated an answer they received: the rated request, the model, the rating and the HMAC "
        "of the comment (the comment itself is kept, encrypted, outside the log)."
    )
    answer_request_id: str = ""
    model: str = ""
    rating: Literal["up", "down"] = "up"
    comment_hmac: str | None = None


_EVENTS: Final = (
    InferenceRequest,
    KnowledgeRequest,
    AuthFailure,
    AccessDenied,
    AdminChange,
    AuditExport,
    DataErasure,
    EgressRefused,
    AuditPrune,
    AuditOutage,
    FeedbackGiven,
)
EVENT_TYPES: Final = MappingProxyType({e.type: e for e in _EVENTS})
"""Every event type, by name."""

for _event in _EVENTS:  # the data fields of each type, computed once (events are built per request)
    _event.data_fields = tuple(f.name for f in fields(_event) if f.name not in _COMMON)
