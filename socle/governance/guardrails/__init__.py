"""Guardrails: personal data, prompt injection, secrets and output filtering (docs/guardrails.md).

One concept per module: :mod:`.normalise` (what detectors read), :mod:`.checksums`, :mod:`.pii`
(structured identifiers), :mod:`.ner` and :mod:`.gazetteer` (names, addresses, places),
:mod:`.injection`, :mod:`.credentials` (secrets), :mod:`.policy` (rules, versions, decisions),
:mod:`.store` (teams' policies stored by admins, versioned),
:mod:`.guard` (detectors + policy = actions) and :mod:`.stream` (streamed answers).
"""

from socle.governance.guardrails.findings import CATEGORIES, Finding
from socle.governance.guardrails.guard import Guard, GuardState, Verdict
from socle.governance.guardrails.injection import mark_untrusted, neutralise
from socle.governance.guardrails.policy import Decision
from socle.governance.guardrails.stream import StreamGuard, guard_stream

__all__ = [
    "CATEGORIES",
    "Decision",
    "Finding",
    "Guard",
    "GuardState",
    "StreamGuard",
    "Verdict",
    "guard_stream",
    "mark_untrusted",
    "neutralise",
]
