"""What a detector reports: a typed span of the scanned text, never the text itself."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["CATEGORIES", "Finding", "category_of", "resolve_overlaps"]

CATEGORIES = {
    "pii": (
        "EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "FR_NIR", "FR_SIREN", "FR_SIRET",
        "IP_ADDRESS", "FR_ID_CARD", "FR_PASSPORT", "LICENCE_PLATE", "DATE_OF_BIRTH", "PERSON",
        "LOCATION", "ADDRESS", "ORGANIZATION",
    ),
    "injection": ("PROMPT_INJECTION", "INDIRECT_INJECTION"),
    "secret": ("SECRET",),
    "leak": ("CANARY",),
    "size": ("RESPONSE_TOO_LONG",),
}  # fmt: skip
"""Every finding type, by category; a policy rule names a type, a category or ``*``."""

_CATEGORY_OF = {t: c for c, types in CATEGORIES.items() for t in types}


def category_of(entity_type: str) -> str:
    return _CATEGORY_OF.get(entity_type, "other")


@dataclass(frozen=True, slots=True)
class Finding:
    """A detected span: ``text[start:end]`` (offsets in the text as received) is of ``type``, according
    to ``detector``, with confidence ``score`` in [0, 1]."""

    type: str
    start: int
    end: int
    detector: str
    score: float

    @property
    def category(self) -> str:
        return category_of(self.type)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "score": round(self.score, 3)}


def resolve_overlaps(findings: Iterable[Finding]) -> list[Finding]:
    """Keep, among overlapping findings, the best one (highest score, then longest), in text order.
    A validated IBAN wins over the phone number its digits also look like."""
    ranked = sorted(findings, key=lambda f: (-f.score, -(f.end - f.start), f.start))
    starts: list[int] = []  # kept spans are disjoint: sorted by start, their ends are sorted too
    kept: list[Finding] = []
    for finding in ranked:
        i = bisect_right(starts, finding.start)
        if i > 0 and kept[i - 1].end > finding.start:
            continue  # the span before overlaps
        if i < len(kept) and kept[i].start < finding.end:
            continue  # the span after overlaps
        starts.insert(i, finding.start)
        kept.insert(i, finding)
    return kept
