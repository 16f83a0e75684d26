"""Data residency: a request's classification decides which zones its data may be sent to.

A request's classification is the highest of what is known about it (see docs/residency.md):

* its team's default classification (``teams.classification``, set by an admin);
* the ``X-Socle-Classification`` header, which may raise it, never lower it;
* later steps of the pipeline (retrieved documents, guardrail findings), through
  ``Call.raise_classification(level, reason)``.

The operator's :class:`~socle.config.ResidencySettings` map each classification to the zones it may
go to. :meth:`ResidencyPolicy.decide` keeps only the engines of the model's pool that are in those
zones; the router then picks among them, and fails over among them only. A pool with no such engine
is refused with 403 (:class:`~socle.errors.ResidencyError`), reported to the :class:`DecisionSink`.
The whole decision (classification, reasons, zones, engines kept and skipped, engine chosen) is a
:class:`RoutingDecision` the audit trail records with the request.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import bindparam, select

from socle.config import CLASSIFICATIONS, Classification, ResidencySettings
from socle.egress import EgressRefusal
from socle.engines.router import Pool, Slot
from socle.errors import BadRequestError, ResidencyError
from socle.governance.identity import Principal
from socle.storage.db import Database
from socle.storage.models import TeamRow

__all__ = [
    "CLASSIFICATIONS",
    "Classification",
    "Classified",
    "DecisionSink",
    "HEADER",
    "LoggingDecisionSink",
    "Reason",
    "Residency",
    "ResidencyDenial",
    "ResidencyPolicy",
    "RoutingDecision",
    "SkippedEngine",
    "parse_classification",
    "rank",
]

log = logging.getLogger("socle.residency")
_RANK: dict[str, int] = {level: i for i, level in enumerate(CLASSIFICATIONS)}
HEADER = "x-socle-classification"
"""The request header that raises a request's classification."""


def rank(level: Classification) -> int:
    """0 for ``public`` up to 3 for ``secret``."""
    return _RANK[level]


def parse_classification(
    value: str, *, param: str | None = None, source: str = "classification"
) -> Classification:
    """A classification from untrusted input; 400 naming the valid values otherwise."""
    level = value.strip().lower()
    if level not in _RANK:
        raise BadRequestError(
            f"{source} must be one of {', '.join(CLASSIFICATIONS)}; got {value[:50]!r}.",
            code="invalid_classification",
            param=param,
        )
    return level  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class Reason:
    """One thing that contributed to a request's classification."""

    level: Classification
    reason: str


@dataclass(slots=True)
class Classified:
    """A request's classification so far: it only ever goes up."""

    level: Classification = "public"
    reasons: list[Reason] = field(default_factory=list)

    def raise_to(self, level: Classification, reason: str) -> None:
        """Record ``reason``; the classification becomes ``level`` if that is higher."""
        self.reasons.append(Reason(level, reason))
        if _RANK[level] > _RANK[self.level]:
            self.level = level


@dataclass(frozen=True, slots=True)
class SkippedEngine:
    engine: str
    zone: str
    reason: str


@dataclass(slots=True)
class RoutingDecision:
    """Where a request could go and where it went; recorded with the request for the audit trail."""

    classification: Classification
    reasons: tuple[Reason, ...]
    allowed_zones: tuple[str, ...]
    """In trust order, most trusted first."""
    candidates: tuple[str, ...]
    """Engines of the pool in an allowed zone (the only ones the router may use)."""
    skipped: list[SkippedEngine] = field(default_factory=list)
    """Engines not used: outside the allowed zones, or failed (failover)."""
    engine: str | None = None
    zone: str | None = None

    def chose(self, engine: str, zone: str) -> None:
        """Record the engine that served the request."""
        self.engine, self.zone = engine, zone

    def failed(self, slot: Slot, exc: Exception) -> None:
        """Router callback: ``slot`` failed before its first byte and the request moves on."""
        self.skipped.append(SkippedEngine(slot.name, slot.engine.config.zone, f"failed: {exc}"[:300]))

    def refusal(self, model: str) -> ResidencyError:
        """The 403 for a decision without candidates: it names the classification and the zones."""
        why = "; ".join(r.reason for r in self.reasons if r.level == self.classification)
        return ResidencyError(
            f"This request is classified {self.classification!r} ({why or 'default'}), which may only be "
            f"sent to zone(s) {', '.join(self.allowed_zones) or 'none'}; model {model!r} has no engine "
            "there.",
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "classification": self.classification,
            "reasons": [{"level": r.level, "reason": r.reason} for r in self.reasons],
            "allowed_zones": list(self.allowed_zones),
            "candidates": list(self.candidates),
            "skipped": [{"engine": s.engine, "zone": s.zone, "reason": s.reason} for s in self.skipped],
            "engine": self.engine,
            "zone": self.zone,
        }


@dataclass(frozen=True, slots=True)
class ResidencyDenial:
    """A request refused because no engine of its model is in a zone its classification allows."""

    request_id: str
    principal: Principal
    model: str
    decision: RoutingDecision


class DecisionSink(Protocol):
    """Where governance decisions that must be audited go. The default logs them; the gateway's audit
    log implements this protocol and replaces the default on :class:`~socle.gateway.services.Services`.

    ``residency_denied`` is awaited before the 403 is sent (an audit sink that cannot write may raise,
    and the request then fails closed). ``egress_refused`` is called synchronously from whichever thread
    tried to connect, possibly inside the event loop or a socket audit hook: it must not block, must
    not open sockets, and must not raise.
    """

    async def residency_denied(self, denial: ResidencyDenial) -> None: ...

    def egress_refused(self, refusal: EgressRefusal) -> None: ...


class LoggingDecisionSink:
    """The default :class:`DecisionSink`: a WARNING per decision (loggers ``socle.residency`` and
    ``socle.egress``)."""

    async def residency_denied(self, denial: ResidencyDenial) -> None:
        d = denial.decision
        log.warning(
            "residency denied request %s (team %s, model %s): classification %s allows zones %s; skipped %s",
            denial.request_id,
            denial.principal.team_name,
            denial.model,
            d.classification,
            ", ".join(d.allowed_zones),
            ", ".join(f"{s.engine} ({s.zone})" for s in d.skipped) or "none",
        )

    def egress_refused(self, refusal: EgressRefusal) -> None:
        logging.getLogger("socle.egress").warning("egress refused: %s", refusal.describe())


class ResidencyPolicy:
    """The operator's zones and per-classification allowed zones, as a routing filter."""

    def __init__(self, settings: ResidencySettings) -> None:
        self.zones = tuple(settings.zones)
        self._allowed = {
            level: tuple(z for z in self.zones if z in settings.zones_for(level)) for level in CLASSIFICATIONS
        }

    def allowed_zones(self, level: Classification) -> tuple[str, ...]:
        """The zones ``level`` may go to, most trusted first."""
        return self._allowed[level]

    def decide(self, pool: Pool, capability: str, classified: Classified) -> RoutingDecision:
        """The engines of ``pool`` that may serve ``capability`` for this classification (none: the
        request must be refused with :meth:`RoutingDecision.refusal`)."""
        level = classified.level
        zones = self.allowed_zones(level)
        kept: list[str] = []
        skipped: list[SkippedEngine] = []
        for slot in pool.candidates(capability):
            zone = slot.engine.config.zone
            if zone in zones:
                kept.append(slot.name)
            else:
                skipped.append(SkippedEngine(slot.name, zone, f"zone {zone} not allowed for {level}"))
        order = {s.name: i for i, s in enumerate(pool.slots)}
        return RoutingDecision(
            classification=level,
            reasons=tuple(classified.reasons),
            allowed_zones=zones,
            candidates=tuple(sorted(kept, key=order.__getitem__)),
            skipped=sorted(skipped, key=lambda s: order[s.engine]),
        )


class Residency:
    """What the pipeline needs for residency: the policy, teams' default classifications (cached
    ``cache_s`` seconds per process, like other governance configuration) and the decision sink."""

    def __init__(
        self,
        settings: ResidencySettings,
        db: Database,
        *,
        cache_s: float = 5.0,
        sink: DecisionSink | None = None,
    ) -> None:
        self.settings = settings
        self.policy = ResidencyPolicy(settings)
        self.sink: DecisionSink = sink or LoggingDecisionSink()
        self._db = db
        self._cache_s = cache_s
        self._teams: dict[str, tuple[Classification, float]] = {}
        self._query = select(TeamRow.classification).where(TeamRow.id == bindparam("team_id"))

    async def team_classification(self, team_id: str) -> Classification:
        """The team's default classification; the configured default if the team has none."""
        cached = self._teams.get(team_id)
        now = time.monotonic()
        if cached is not None and now - cached[1] < self._cache_s:
            return cached[0]
        rows = await self._db.fetch_all(self._query, {"team_id": team_id})
        value = rows[0][0] if rows else None
        level: Classification = value if value in _RANK else self.settings.default_classification
        if len(self._teams) > 10_000:
            self._teams.clear()
        self._teams[team_id] = (level, now)
        return level

    def forget(self, team_id: str | None = None) -> None:
        """Drop cached team classifications (all, or one team's) after a change."""
        if team_id is None:
            self._teams.clear()
        else:
            self._teams.pop(team_id, None)

    def egress_refused(self, refusal: EgressRefusal) -> None:
        """Forward egress refusals to the current sink (so that the egress guard can report here)."""
        self.sink.egress_refused(refusal)

    async def classify(self, classified: Classified, team_id: str) -> None:
        """Apply the team's default to a request's classification."""
        classified.raise_to(await self.team_classification(team_id), "team default")
