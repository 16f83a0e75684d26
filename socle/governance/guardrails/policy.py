"""Policies: which team gets which policy, what each rule does with a finding, and the record of what
was decided (detector, rule, action, policy version; never the detected value)."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any

from socle.config import GuardPolicy, GuardrailSettings, GuardRule
from socle.errors import BadRequestError, ConfigError
from socle.governance.guardrails.findings import CATEGORIES, Finding

__all__ = ["ACTION_ORDER", "Decision", "PolicyBook", "check_policy", "match_rule", "policy_version"]

ACTION_ORDER = ("allow", "log", "raise_classification", "pseudonymise", "redact", "block")
"""Actions from the mildest to the strongest."""


def policy_version(policy: GuardPolicy) -> str:
    """The declared version and a digest of the content (``3.1f2e4d5c``): an edit made without raising
    the version still shows in the records."""
    digest = hashlib.sha256(policy.model_dump_json().encode()).hexdigest()[:8]
    return f"{policy.version}.{digest}"


def check_policy(policy: GuardPolicy) -> None:
    """Refuse (400 ``invalid_guardrail_policy``) a policy a stored edit would make useless or
    misleading: a rule naming no known finding type or category (a typo would silently protect
    nothing), a ``level`` on a rule that does not raise the classification, a rule with no stage."""
    known = {"*", *CATEGORIES, *(t for types in CATEGORIES.values() for t in types)}
    for i, rule in enumerate(policy.rules):
        param = f"rules[{i}]"
        if rule.match not in known:
            raise BadRequestError(
                f"{param}.match {rule.match!r} is not a detector's finding type, a category or '*'. "
                f"Categories: {', '.join(CATEGORIES)}; types: "
                f"{', '.join(sorted(t for types in CATEGORIES.values() for t in types))}.",
                code="invalid_guardrail_policy",
                param=f"{param}.match",
            )
        if rule.level is not None and rule.action != "raise_classification":
            raise BadRequestError(
                f"{param}.level is only for action raise_classification (the action is {rule.action}).",
                code="invalid_guardrail_policy",
                param=f"{param}.level",
            )
        if not rule.stages:
            raise BadRequestError(
                f"{param}.stages is empty: the rule would never apply.",
                code="invalid_guardrail_policy",
                param=f"{param}.stages",
            )


def match_rule(policy: GuardPolicy, finding: Finding, stage: str) -> GuardRule | None:
    """The first rule of ``policy`` that applies to ``finding`` at ``stage``, if any."""
    for rule in policy.rules:
        if rule.match not in (finding.type, finding.category, "*"):
            continue
        if stage in rule.stages and finding.score >= rule.min_score:
            return rule
    return None


@dataclass(frozen=True, slots=True)
class Decision:
    """One guardrail decision, as recorded on the call and in the audit trail: ``count`` findings of
    ``type`` by ``detector`` at ``stage`` led ``rule`` of the policy to take ``action``."""

    stage: str
    type: str
    detector: str
    rule: str
    action: str
    policy: str
    policy_version: str
    count: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class PolicyBook:
    """The configured policies, and which one a team uses (by team name or id)."""

    def __init__(self, settings: GuardrailSettings) -> None:
        for name, policy in settings.policies.items():  # the checks stored policies get (start-up error)
            try:
                check_policy(policy)
            except BadRequestError as exc:
                raise ConfigError(f"guardrails.policies.{name}: {exc.message}") from exc
        self.settings = settings
        self.versions = {name: policy_version(p) for name, p in settings.policies.items()}

    def for_team(self, team_name: str | None, team_id: str | None) -> tuple[str, GuardPolicy]:
        teams = self.settings.teams
        name = teams.get(team_name or "") or teams.get(team_id or "") or self.settings.default_policy
        return name, self.settings.policies[name]

    def needs(self, policy: GuardPolicy, stage: str) -> set[str]:
        """The finding types, categories (or ``*``) some rule acts on at ``stage``: detectors nobody
        acts on are not run."""
        return {r.match for r in policy.rules if stage in r.stages and r.action != "allow"}
