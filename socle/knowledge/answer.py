"""Answers with verifiable citations: the context given to the model, and what it cites back.

:func:`build_context` numbers the retrieved chunks ``[1]``, ``[2]``... in a system message, within a
token budget. The model is asked to cite them by number. :func:`resolve_citations` then reads the
answer: every marker that names a chunk actually given is mapped to that chunk (id, document, title,
pages, passage); every other marker (``[7]`` when five sources were given, ``[0]``) is removed from the
text and counted, so an answer can never point at a source that was not in its context.

A streamed answer is checked as it arrives by :class:`CitationStream`, the same code the whole-text
:func:`resolve_citations` runs: it holds back only a tail that could still become a marker (``" ["``,
``"[1, "``), so the streamed text, joined, is exactly what the whole answer gives, and its citations
are the same.

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

__all__ = [
    "CitationStream",
    "Cited",
    "abstention",
    "build_context",
    "citation_dicts",
    "relevant",
    "resolve_citations",
]

_MARKER = re.compile(r"\s?\[(\d{1,4}(?:\s*[,;]\s*\d{1,4})*)\]")
_UNFINISHED = re.compile(r"(?:\s|\s?\[(?:\d{1,4}(?:\s*[,;]\s*\d{1,4})*(?:\s*(?:[,;]\s*)?)?)?)\Z")
"""A text end that a marker could still grow from: every proper prefix of a ``_MARKER`` match."""
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


class CitationStream:
    """Checks the markers of an answer arriving in pieces: :meth:`feed` returns the text that can be
    shown now, :meth:`close` the rest, :meth:`cited` the outcome.

    Why the joined output equals a check of the whole text: only the tail that could still grow into a
    marker is held back (the leftmost position from which the text so far is an unfinished marker), so
    no marker of the whole text straddles a cut, and each part released is matched exactly as it would be
    in the whole text.
    """

    def __init__(self, sources: Sequence[Hit]) -> None:
        self._sources = sources
        self._pending = ""
        self._parts: list[str] = []
        self.citations: dict[int, Hit] = {}
        self.removed = 0

    def feed(self, text: str) -> str:
        pending = self._pending + text
        unfinished = _UNFINISHED.search(pending)
        cut = unfinished.start() if unfinished is not None else len(pending)
        self._pending = pending[cut:]
        return self._release(pending[:cut])

    def close(self) -> str:
        rest, self._pending = self._pending, ""
        return self._release(rest)

    def cited(self) -> Cited:
        """What was released so far, with its citations (call after :meth:`close`)."""
        return Cited("".join(self._parts), dict(sorted(self.citations.items())), self.removed)

    def _release(self, text: str) -> str:
        checked = _MARKER.sub(self._replace, text) if "[" in text else text
        self._parts.append(checked)
        return checked

    def _replace(self, match: re.Match[str]) -> str:
        numbers = [int(n) for n in re.split(r"\s*[,;]\s*", match.group(1))]
        kept = [n for n in numbers if 1 <= n <= len(self._sources)]
        self.removed += len(numbers) - len(kept)
        for n in kept:
            self.citations.setdefault(n, self._sources[n - 1])
        if not kept:
            return ""
        space = " " if match.group(0).startswith((" ", "\n", "\t")) else ""
        return space + "[" + ", ".join(str(n) for n in kept) + "]"


def resolve_citations(text: str, sources: Sequence[Hit]) -> Cited:
    """Keep the markers that name a given source, remove and count the others."""
    stream = CitationStream(sources)
    stream.feed(text)
    stream.close()
    return stream.cited()


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
