"""The relational schema, as typed SQLAlchemy 2 models.

These classes describe the tables; the database is changed only by the Alembic migrations in
:mod:`socle.storage.migrations` (a test checks that the migrations and these models agree). Domain
code hands out frozen dataclasses, never these rows: rows are tied to a session, dataclasses are not.

Identity, as the next issues (teams, roles, budgets, audit) will extend it::

    organisations ─< teams ─< team_members >─ principals ─< api_keys >─ teams
                     teams ─< model_grants (public model names)
                                                          usage_records (append-only ledger)

- A *principal* is who acts: a person (``user``) or a program (``service``). ``external_subject``
  will hold the SSO subject; ``disabled_at`` turns every key of the principal off at once.
- A principal belongs to teams with one or more *roles* per team (rows of ``team_members``).
- An *API key* belongs to a principal and acts for one team: its requests are charged to that team
  and carry the principal's roles in it. Only the sha256 of the key is stored, plus a short prefix
  that lets people recognise their keys.
- ``usage_records`` is a ledger written in batches by :mod:`socle.observability.usage`. It has no
  foreign keys on purpose: a ledger must accept every record (a batch must not fail because an
  identity row changed meanwhile) and outlive the rows it names; its ids come from authenticated
  principals, so they are right by construction. ``request_id`` is unique, which makes a retried
  batch idempotent.
- ``usage_daily_team`` and ``usage_daily_principal`` hold the daily sums of those records (see
  :mod:`socle.observability.rollups`), updated in the transaction that inserts the records.

Every id is a ULID string (:func:`socle.storage.types.new_id`); every timestamp is aware UTC.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    Date,
    Double,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from socle.storage.types import ID_LENGTH, UTCDateTime, new_id, utcnow

__all__ = [
    "LATENCY_BUCKETS",
    "USAGE_DAILY_PRINCIPAL",
    "USAGE_DAILY_TEAM",
    "AlertRow",
    "PRINCIPAL_KINDS",
    "ApiKeyRow",
    "AuditCheckpointRow",
    "AuditContentRow",
    "AuditEntryRow",
    "AuditHeadRow",
    "Base",
    "BudgetCounterRow",
    "BudgetReservationItemRow",
    "BudgetReservationRow",
    "BudgetRow",
    "GuardrailPolicyRow",
    "ConversationMessageRow",
    "ConversationRow",
    "FeedbackRow",
    "ModelGrantRow",
    "CLASSIFICATIONS",
    "KnowledgeChunkRow",
    "KnowledgeCollectionRow",
    "KnowledgeDocumentRow",
    "KnowledgeUploadRow",
    "OrganisationRow",
    "PrincipalRow",
    "RateLimitCounterRow",
    "RateLimitRow",
    "TeamMemberRow",
    "TeamRow",
    "UsageRow",
    "UNMODELLED_TABLE_PREFIX",
]

PRINCIPAL_KINDS = ("user", "service")
CLASSIFICATIONS = ("public", "internal", "confidential", "secret")
"""Data classifications, least to most sensitive (feed residency routing)."""

UNMODELLED_TABLE_PREFIX = "kb_index_"
"""Tables the migrations build per database for the knowledge stores (FTS5 and vectors on SQLite,
tsvector and pgvector on PostgreSQL) and that no model here describes; the model/migration comparison
skips them (see :mod:`socle.knowledge.stores`)."""

# Deterministic constraint names, so that later migrations can drop or alter them on every database.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(none_as_null=True),
        list[str]: JSON(none_as_null=True),
    }


def _id() -> Mapped[str]:
    return mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)


def _created_at() -> Mapped[datetime]:
    return mapped_column(default=utcnow)


class OrganisationRow(Base):
    __tablename__ = "organisations"

    id: Mapped[str] = _id()
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = _created_at()


class TeamRow(Base):
    __tablename__ = "teams"
    __table_args__ = (UniqueConstraint("org_id", "name"),)

    id: Mapped[str] = _id()
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id", ondelete="RESTRICT"))
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = _created_at()
    classification: Mapped[str] = mapped_column(String(16), default="internal", server_default="internal")
    """Default data classification of the team's requests (residency routing)."""


class PrincipalRow(Base):
    __tablename__ = "principals"
    __table_args__ = (
        CheckConstraint("kind IN ('user', 'service')", name="kind"),
        UniqueConstraint("org_id", "email"),
        UniqueConstraint("org_id", "external_subject"),
    )

    id: Mapped[str] = _id()
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id", ondelete="RESTRICT"))
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    external_subject: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = _created_at()
    disabled_at: Mapped[datetime | None]


class TeamMemberRow(Base):
    """One role of one principal in one team; several rows give several roles."""

    __tablename__ = "team_members"
    __table_args__ = (Index(None, "principal_id"),)

    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True)
    principal_id: Mapped[str] = mapped_column(
        ForeignKey("principals.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = _created_at()


class ApiKeyRow(Base):
    __tablename__ = "api_keys"
    __table_args__ = (Index(None, "principal_id"), Index(None, "team_id"))

    id: Mapped[str] = _id()
    principal_id: Mapped[str] = mapped_column(ForeignKey("principals.id", ondelete="RESTRICT"))
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id", ondelete="RESTRICT"))
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(32))
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    allowed_models: Mapped[list[str] | None]
    ip_allowlist: Mapped[list[str] | None]
    expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = _created_at()
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class UsageRow(Base):
    __tablename__ = "usage_records"
    __table_args__ = (
        Index(None, "team_id", "created_at"),
        Index(None, "principal_id", "created_at"),
        Index(None, "created_at"),  # listing every team's records, and deleting expired ones
    )

    id: Mapped[str] = _id()
    request_id: Mapped[str] = mapped_column(String(64), unique=True)
    key_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    principal_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    team_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    model: Mapped[str] = mapped_column(String(200))
    engine: Mapped[str] = mapped_column(String(200))
    zone: Mapped[str] = mapped_column(String(64))
    endpoint: Mapped[str] = mapped_column(String(200))
    prompt_tokens: Mapped[int]
    completion_tokens: Mapped[int]
    cost_eur: Mapped[Decimal] = mapped_column(Numeric(20, 10))
    latency_ms: Mapped[float]
    ttft_ms: Mapped[float | None]
    status_code: Mapped[int]
    created_at: Mapped[datetime] = _created_at()


LATENCY_BUCKETS = 40
"""Columns ``latency_00`` … ``latency_39`` of the daily sums: a latency histogram (bounds in
:mod:`socle.observability.rollups`)."""


def _usage_daily(name: str, *keys: str) -> Table:
    """A table of daily usage sums keyed by ``day`` (UTC) and ``keys``; every other column is a sum,
    except ``latency_ms_max``."""
    return Table(
        name,
        Base.metadata,
        Column("day", Date, primary_key=True),
        *(Column(key, String(ID_LENGTH if key.endswith("_id") else 200), primary_key=True) for key in keys),
        *(
            Column(column, BigInteger, nullable=False)
            for column in ("requests", "errors", "prompt_tokens", "completion_tokens", "cost_nano_eur")
        ),
        Column("latency_ms_sum", Double, nullable=False),
        Column("latency_ms_max", Double, nullable=False),
        Column("ttft_ms_sum", Double, nullable=False),
        Column("ttft_count", BigInteger, nullable=False),
        *(Column(f"latency_{i:02d}", BigInteger, nullable=False) for i in range(LATENCY_BUCKETS)),
    )


USAGE_DAILY_TEAM = _usage_daily("usage_daily_team", "team_id", "model", "engine", "zone")
"""Daily sums per team, model, engine and zone: what team-level reports read."""
USAGE_DAILY_PRINCIPAL = _usage_daily(
    "usage_daily_principal", "team_id", "principal_id", "model", "engine", "zone"
)
"""The same per principal too: what reports on one principal, or per principal, read."""
Index(None, USAGE_DAILY_PRINCIPAL.c.principal_id, USAGE_DAILY_PRINCIPAL.c.day)
Index(None, USAGE_DAILY_PRINCIPAL.c.team_id, USAGE_DAILY_PRINCIPAL.c.day)


# Budgets and rate limits (see socle.governance.budgets and socle.governance.ratelimits) --------------
class BudgetRow(Base):
    """A limit on what one organisation, team, user (principal) or key may spend per period.

    ``scope_id`` names a row of the scope's table; it has no foreign key because the scope varies.
    Amounts are integers: nano-euros (10^-9 EUR) and tokens. A budget has at least one limit.
    """

    __tablename__ = "budgets"
    __table_args__ = (
        UniqueConstraint("scope", "scope_id", "period"),
        CheckConstraint("scope IN ('organisation', 'team', 'user', 'key')", name="scope"),
        CheckConstraint("period IN ('daily', 'monthly', 'total')", name="period"),
        CheckConstraint("limit_nano_eur IS NOT NULL OR limit_tokens IS NOT NULL", name="has_limit"),
    )

    id: Mapped[str] = _id()
    scope: Mapped[str] = mapped_column(String(16))
    scope_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    period: Mapped[str] = mapped_column(String(16))
    limit_nano_eur: Mapped[int | None] = mapped_column(BigInteger)
    limit_tokens: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _created_at()


class BudgetCounterRow(Base):
    """What one budget spent and holds reserved in one period; a new period is a new row (the reset)."""

    __tablename__ = "budget_counters"

    budget_id: Mapped[str] = mapped_column(ForeignKey("budgets.id", ondelete="CASCADE"), primary_key=True)
    period_start: Mapped[datetime] = mapped_column(primary_key=True)
    spent_nano_eur: Mapped[int] = mapped_column(BigInteger)
    reserved_nano_eur: Mapped[int] = mapped_column(BigInteger)
    spent_tokens: Mapped[int] = mapped_column(BigInteger)
    reserved_tokens: Mapped[int] = mapped_column(BigInteger)


class BudgetReservationRow(Base):
    """The worst case of one request, held in budget counters until it is settled or released."""

    __tablename__ = "budget_reservations"
    __table_args__ = (
        CheckConstraint("state IN ('held', 'settled', 'released', 'expired')", name="state"),
        Index(None, "state", "created_at"),
    )

    id: Mapped[str] = _id()
    request_id: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    nano_eur: Mapped[int] = mapped_column(BigInteger)
    tokens: Mapped[int] = mapped_column(BigInteger)
    charged_nano_eur: Mapped[int | None] = mapped_column(BigInteger)
    charged_tokens: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = _created_at()
    finished_at: Mapped[datetime | None]


class BudgetReservationItemRow(Base):
    """One budget counter a reservation holds amounts in."""

    __tablename__ = "budget_reservation_items"
    __table_args__ = (Index(None, "budget_id"),)

    reservation_id: Mapped[str] = mapped_column(
        ForeignKey("budget_reservations.id", ondelete="CASCADE"), primary_key=True
    )
    budget_id: Mapped[str] = mapped_column(ForeignKey("budgets.id", ondelete="CASCADE"), primary_key=True)
    period_start: Mapped[datetime]


class RateLimitRow(Base):
    """Requests and/or tokens per minute allowed to one key, team or model (``scope_id``: its id or name),
    or to one team on one model (``team_model``, ``scope_id``: ``<team id>:<model name>``)."""

    __tablename__ = "rate_limits"
    __table_args__ = (
        UniqueConstraint("scope", "scope_id"),
        CheckConstraint("scope IN ('key', 'team', 'model', 'team_model')", name="scope"),
        CheckConstraint("requests_per_minute IS NOT NULL OR tokens_per_minute IS NOT NULL", name="has_limit"),
    )

    id: Mapped[str] = _id()
    scope: Mapped[str] = mapped_column(String(16))
    scope_id: Mapped[str] = mapped_column(String(200))
    requests_per_minute: Mapped[int | None] = mapped_column(BigInteger)
    tokens_per_minute: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _created_at()


class RateLimitCounterRow(Base):
    """Requests and tokens one bucket (scope and id) took in one minute (``minute``: since the epoch)."""

    __tablename__ = "rate_limit_counters"

    bucket: Mapped[str] = mapped_column(String(255), primary_key=True)
    minute: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    requests: Mapped[int] = mapped_column(BigInteger)
    tokens: Mapped[int] = mapped_column(BigInteger)


class ModelGrantRow(Base):
    """A team may use a public model (see :mod:`socle.governance.access`)."""

    __tablename__ = "model_grants"
    __table_args__ = (Index(None, "model"),)

    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True)
    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    created_at: Mapped[datetime] = _created_at()


class GuardrailPolicyRow(Base):
    """One version of a team's guardrail policy (see :mod:`socle.governance.guardrails.store`). Every
    change adds a row with the next ``version``; the highest is current. ``policy`` NULL means the team
    went back to the policy the settings give it."""

    __tablename__ = "guardrail_policies"

    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True)
    version: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(200))
    policy: Mapped[dict[str, Any] | None]
    created_by: Mapped[str] = mapped_column(String(ID_LENGTH))
    created_at: Mapped[datetime] = _created_at()


class AlertRow(Base):
    """An alert, once per (kind, subject, threshold, period): the unique key makes delivery happen once
    across replicas (see :mod:`socle.governance.alerts`)."""

    __tablename__ = "alerts"
    __table_args__ = (UniqueConstraint("kind", "subject", "threshold", "period"), Index(None, "created_at"))

    id: Mapped[str] = _id()
    kind: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(200))
    threshold: Mapped[int]
    period: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(String(2000))
    data: Mapped[dict[str, Any] | None]
    delivered_to: Mapped[list[str] | None]
    created_at: Mapped[datetime] = _created_at()


# Audit trail (see socle.governance.audit.log; append-only, enforced by triggers in migration 0006) ----
class AuditEntryRow(Base):
    """One entry of the audit log: its canonical JSON (what is hashed) and columns copied from it for
    queries. ``seq`` is the leaf index in the Merkle tree, gapless from 0."""

    __tablename__ = "audit_entries"
    __table_args__ = (
        Index(None, "created_at"),
        Index(None, "request_id"),
        Index(None, "actor", "seq"),
        Index(None, "team_id", "seq"),
        Index(None, "type", "seq"),
    )

    # INTEGER on SQLite: the rowid itself, so a scan in seq order reads the table in order (no index hops)
    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=False
    )
    created_at: Mapped[datetime]
    type: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str | None] = mapped_column(String(64))
    team_id: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(64))
    entry: Mapped[bytes] = mapped_column(LargeBinary)
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class AuditCheckpointRow(Base):
    """A signed checkpoint of the log (C2SP tlog-checkpoint note) at one tree size."""

    __tablename__ = "audit_checkpoints"

    size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    note: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _created_at()


class AuditHeadRow(Base):
    """The log's one head row (``id`` = 1): its size and Merkle frontier (hex hashes), what pruning
    removed, the last checkpoint, the verifier key its checkpoints are signed with, and the pruning lease.
    Writers lock it."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    size: Mapped[int] = mapped_column(BigInteger)
    frontier: Mapped[list[str]]
    pruned_size: Mapped[int] = mapped_column(BigInteger)
    pruned_frontier: Mapped[list[str]]
    checkpoint_size: Mapped[int] = mapped_column(BigInteger)
    checkpoint_at: Mapped[datetime | None]
    verifier_key: Mapped[str | None] = mapped_column(String(300))
    updated_at: Mapped[datetime] = _created_at()
    prune_lease_owner: Mapped[str | None] = mapped_column(String(64))
    """The process pruning now (scheduled retention), until ``prune_lease_until``."""
    prune_lease_until: Mapped[datetime | None]


class AuditContentRow(Base):
    """A request's prompt and response, AES-256-GCM sealed, kept outside the log so it can be erased."""

    __tablename__ = "audit_contents"
    __table_args__ = (Index(None, "team_id", "created_at"), Index(None, "principal_id"))

    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    team_id: Mapped[str | None] = mapped_column(String(64))
    principal_id: Mapped[str | None] = mapped_column(String(64))
    nonce: Mapped[bytes] = mapped_column(LargeBinary(12))
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = _created_at()


# Knowledge base (see socle.knowledge) ----------------------------------------------------------------
_CLASSIFICATION_CHECK = "classification IN ('public', 'internal', 'confidential', 'secret')"


class KnowledgeCollectionRow(Base):
    """A collection of documents, owned by a team. ``access`` is its access list: entries
    ``{"kind": "user"|"team"|"role", "id": ..., "permission": "read"|"write"}`` (see
    :mod:`socle.knowledge.access`); ``org_read`` lets everyone in the organisation read it."""

    __tablename__ = "kb_collections"
    __table_args__ = (
        UniqueConstraint("org_id", "name"),
        CheckConstraint(_CLASSIFICATION_CHECK, name="classification"),
        Index(None, "team_id"),
    )

    id: Mapped[str] = _id()
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id", ondelete="RESTRICT"))
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id", ondelete="RESTRICT"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(String(2000))
    classification: Mapped[str] = mapped_column(String(16))
    org_read: Mapped[bool]
    access: Mapped[list[dict[str, Any]]] = mapped_column(JSON(none_as_null=True))
    created_by: Mapped[str] = mapped_column(String(ID_LENGTH))
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _created_at()


class KnowledgeDocumentRow(Base):
    """A document of a collection and the state of its ingestion (``status``: queued, processing, ready,
    or an error status). ``access`` (optional) narrows the collection's access list; ``classification``
    (optional) raises the collection's. ``claimed_by``/``claimed_at`` are the ingestion lease."""

    __tablename__ = "kb_documents"
    __table_args__ = (
        UniqueConstraint("collection_id", "content_sha256"),
        CheckConstraint(f"classification IS NULL OR {_CLASSIFICATION_CHECK}", name="classification"),
        Index(None, "status", "updated_at"),
    )

    id: Mapped[str] = _id()
    collection_id: Mapped[str] = mapped_column(ForeignKey("kb_collections.id", ondelete="CASCADE"))
    filename: Mapped[str] = mapped_column(String(500))
    title: Mapped[str | None] = mapped_column(String(1000))
    mime: Mapped[str | None] = mapped_column(String(200))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    content_sha256: Mapped[str] = mapped_column(String(64))
    version: Mapped[int]
    status: Mapped[str] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(String(2000))
    progress: Mapped[float] = mapped_column(Float)
    pages: Mapped[int | None]
    chunk_count: Mapped[int]
    access: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON(none_as_null=True))
    classification: Mapped[str | None] = mapped_column(String(16))
    meta: Mapped[dict[str, Any] | None]
    created_by: Mapped[str] = mapped_column(String(ID_LENGTH))
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _created_at()
    indexed_at: Mapped[datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_at: Mapped[datetime | None]
    attempts: Mapped[int]


class KnowledgeUploadRow(Base):
    """The bytes of a document version waiting for ingestion; deleted once it is ingested (or failed)."""

    __tablename__ = "kb_uploads"

    document_id: Mapped[str] = mapped_column(
        ForeignKey("kb_documents.id", ondelete="CASCADE"), primary_key=True
    )
    content: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = _created_at()


class KnowledgeChunkRow(Base):
    """A searchable passage of a document. ``key`` is the store's integer key (never reused: SQLite
    AUTOINCREMENT, PostgreSQL identity), ``id`` the public one."""

    __tablename__ = "kb_chunks"
    __table_args__ = (
        Index(None, "document_id", "ordinal"),
        Index(None, "collection_id"),
        {"sqlite_autoincrement": True},
    )

    key: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    id: Mapped[str] = mapped_column(String(ID_LENGTH), unique=True, default=new_id)
    document_id: Mapped[str] = mapped_column(ForeignKey("kb_documents.id", ondelete="CASCADE"))
    collection_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    ordinal: Mapped[int]
    text: Mapped[str] = mapped_column(Text)
    title: Mapped[str | None] = mapped_column(String(1000))
    section_path: Mapped[list[str] | None]
    page_start: Mapped[int | None]
    page_end: Mapped[int | None]
    token_count: Mapped[int]


# Chat history and feedback (see socle.assistant) -----------------------------------------------------
class ConversationRow(Base):
    """One conversation of one principal (the console's history). The title is sealed (AES-256-GCM,
    :mod:`socle.assistant.sealing`): ``title`` holds nonce and ciphertext."""

    __tablename__ = "conversations"
    __table_args__ = (Index(None, "principal_id", "updated_at"),)

    id: Mapped[str] = _id()
    principal_id: Mapped[str] = mapped_column(ForeignKey("principals.id", ondelete="CASCADE"))
    team_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    title: Mapped[bytes] = mapped_column(LargeBinary)
    model: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _created_at()


class ConversationMessageRow(Base):
    """One message of a conversation. ``sealed`` holds its content and citations, encrypted."""

    __tablename__ = "conversation_messages"
    __table_args__ = (
        Index(None, "conversation_id", "id"),
        CheckConstraint("role IN ('user', 'assistant')", name="role"),
    )

    id: Mapped[str] = _id()
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(16))
    model: Mapped[str | None] = mapped_column(String(200))
    request_id: Mapped[str | None] = mapped_column(String(64))
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = _created_at()


class FeedbackRow(Base):
    """A user's rating of one answer (one per request and user; re-rating updates it). ``model`` and
    ``team_id`` are the rated request's, copied from its audit entry; ``comment`` is sealed."""

    __tablename__ = "feedback"
    __table_args__ = (
        UniqueConstraint("request_id", "principal_id"),
        Index(None, "created_at"),
        Index(None, "team_id", "created_at"),
        CheckConstraint("rating IN ('up', 'down')", name="rating"),
    )

    id: Mapped[str] = _id()
    request_id: Mapped[str] = mapped_column(String(64))
    principal_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    team_id: Mapped[str | None] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(200))
    rating: Mapped[str] = mapped_column(String(8))
    comment: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _created_at()
