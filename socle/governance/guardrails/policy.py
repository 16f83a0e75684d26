"""Policies: which team gets which policy, what each rule does with a finding, and the record of what
was decided (detector, rule, action, policy version; never the detected value)."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any

from socle.config import GuardPolicy, GuardrailSettings, GuardRule
from socle.governance.guardrails.findings import Finding

__all__ = ["ACTION_ORDER", "Decision", "PolicyBook", "match_rule", "policy_version"]

ACTION_ORDER = ("allow", "log", "raise_classification", "pseudonymise", "redact", "block")
"""Actions from the mildest to the strongest."""


def policy_version(policy: GuardPolicy) -> str:
    """The declared version and a digest of the content (``3.1f2e4d5c``): an edit made without raising
    the version still shows in the records."""
    digest = hashlib.sha256(policy.model_dump_json().encode()).hexdigest()[:8]
    return f"{policy.version}.{digest}"


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
