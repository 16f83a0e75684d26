"""Answers with verifiable citations: the context given to the model, and what it cites back.

:func:`build_context` numbers the retrieved chunks ``[1]``, ``[2]``... in a system message, within a
token budget. The model is asked to cite them by number. :func:`resolve_citations` then reads the
answer: every marker that names a chunk actually given is mapped to that chunk (id, document, title,
pages, passage); every other marker (``[7]`` when five sources were given, ``[0]``) is removed from the
text and counted, so an answer can never point at a source that was not in its context.

When retrieval finds nothing relevant (:func:`relevant`: no chunk at least ``min_similarity``-similar
to the question), the answer says so (:func:`abstention`) and no model is called: nothing to invent
from.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from socle.knowledge.analysis import detect_language, tokens
from socle.knowledge.retrieve import Hit

__all__ = ["Cited", "abstention", "build_context", "citation_dicts", "relevant", "resolve_citations"]

_MARKER = re.compile(r"\s?\[(\d{1,4}(?:\s*[,;]\s*\d{1,4})*)\]")
_INSTRUCTIONS = {
    "en": (
        "Answer the question using only the numbered sources below. Cite the sources you use with their "
        "number in square brackets, like [1] or [2]. If the sources do not contain the answer, say that "
        "the documents do not answer it."
    ),
    "fr": (
        "Réponds à la question en utilisant uniquement les sources numérotées ci-dessous. Cite les sources "
        "utilisées par leur numéro entre crochets, comme [1] ou [2]. Si les sources ne contiennent pas la "
        "réponse, dis que les documents n'y répondent pas."
    ),
}
_ABSTAIN = {
    "en": "I could not find an answer to this question in the documents you can access.",
    "fr": "Je n'ai pas trouvé de réponse à cette question dans les documents auxquels vous avez accès.",
}
_PASSAGE_CHARS = 1000


@dataclass(frozen=True, slots=True)
class Cited:
    """An answer with its markers checked: ``citations`` maps each kept marker number to its hit."""

    text: str
    citations: dict[int, Hit]
    removed: int


def _language(question: str) -> str:
    return detect_language(tokens(question))


def relevant(hits: Sequence[Hit], min_similarity: float) -> list[Hit]:
    """The hits worth answering from; empty when none is at least ``min_similarity``-similar."""
    if not any(h.similarity is not None and h.similarity >= min_similarity for h in hits):
        return []
    return list(hits)


def abstention(question: str) -> str:
    return _ABSTAIN[_language(question)]


def _approx_tokens(text: str) -> int:
    return int(len(text.split()) * 1.4) + 1


def build_context(question: str, hits: Sequence[Hit], max_tokens: int) -> tuple[str, list[Hit]]:
    """The system message listing the sources, and the hits it includes (in marker order, from 1)."""
    lines = [_INSTRUCTIONS[_language(question)], "", "Sources:"]
    used: list[Hit] = []
    budget = max_tokens
    for hit in hits:
        label = _label(hit)
        text = " ".join(hit.chunk.text.split())
        cost = _approx_tokens(label) + _approx_tokens(text)
        if cost > budget:
            if used:
                break
            words = text.split()[: max(20, int(budget / 1.4) - 20)]  # the first source, shortened
            text = " ".join(words)
        used.append(hit)
        lines.append(f"[{len(used)}] {label}: {text}")
        budget -= cost
    return "\n".join(lines), used


def _label(hit: Hit) -> str:
    title = hit.chunk.title or hit.document.title or hit.document.filename
    pages = _pages(hit)
    return f"{title} ({pages})" if pages else title


def _pages(hit: Hit) -> str:
    start, end = hit.chunk.page_start, hit.chunk.page_end
    if start is None:
        return ""
    return f"p. {start}" if end in (None, start) else f"pp. {start}-{end}"


def resolve_citations(text: str, sources: Sequence[Hit]) -> Cited:
    """Keep the markers that name a given source, remove and count the others."""
    citations: dict[int, Hit] = {}
    removed = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal removed
        numbers = [int(n) for n in re.split(r"\s*[,;]\s*", match.group(1))]
        kept = [n for n in numbers if 1 <= n <= len(sources)]
        removed += len(numbers) - len(kept)
        for n in kept:
            citations.setdefault(n, sources[n - 1])
        if not kept:
            return ""
        space = " " if match.group(0).startswith((" ", "\n", "\t")) else ""
        return space + "[" + ", ".join(str(n) for n in kept) + "]"

    cleaned = _MARKER.sub(replace, text)
    return Cited(cleaned, dict(sorted(citations.items())), removed)


def citation_dicts(cited: Cited) -> list[dict[str, Any]]:
    """The citations as the API returns them."""
    out = []
    for marker, hit in cited.citations.items():
        chunk = hit.chunk
        out.append(
            {
                "marker": marker,
                "chunk_id": chunk.id,
                "document_id": chunk.document_id,
                "collection_id": chunk.collection_id,
                "filename": hit.document.filename,
                "title": chunk.title or hit.document.title,
                "section_path": list(chunk.section_path),
                "page_start": chunk.page_start,
                "page_end": chunk.page_end,
                "passage": chunk.text[:_PASSAGE_CHARS],
            }
        )
    return out
