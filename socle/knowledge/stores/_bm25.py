"""BM25 as both stores rank keywords, and the exact top k without ranking every match.

The score is SQLite FTS5's ``bm25()``, constants included, so that the two stores give a chunk the same
score: for each query term ``t`` the chunk holds ``f`` times,
``idf(t) * f * (k1 + 1) / (f + k1 * (1 - b + b * length / average length))``, with
``idf(t) = log((N - n + 0.5) / (n + 0.5))`` (``1e-6`` where that is not positive), ``N`` the number of
indexed chunks and ``n`` how many hold ``t``. A chunk's length counts its terms plus its two scope tokens
(FTS5 counts every column of the row, and the SQLite store keeps the scope tokens in a second column).

**Exact top k** (:func:`top_k`). Ranking costs a few microseconds per matching chunk, and a long query's
OR of terms matches a large part of the corpus. Yet a term adds at most ``idf x (k1 + 1)`` to any chunk's
score, whatever its frequency and length, and common terms have a small idf. So the rarer terms, up to
:data:`DRIVING_POSTINGS` postings in all, *drive* the search (a candidate holds one of them), and the
store scores each candidate with every query term. If the k-th score found beats the most a chunk holding
only common terms could score, that top k is the full query's; otherwise one more search keeps as
non-driving only the common terms whose bound stays under that k-th score, which is then exact by the
same argument. A store's ``rank`` must therefore return the exact full-query top k among the chunks
holding a driving term.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from socle.knowledge.stores.base import Scored

__all__ = ["B", "DRIVING_POSTINGS", "K1", "SCOPE_TOKENS", "TERM_BOUND", "Statistics", "idf", "top_k"]

K1 = 1.2
B = 0.75
TERM_BOUND = K1 + 1
"""A term's largest factor in BM25: ``f (k1 + 1) / (f + k1 (1 - b + b |d| / avgdl)) < k1 + 1``."""
SCOPE_TOKENS = 2
"""Tokens of a chunk's length that are not terms: its collection and document ids (see the module docs)."""
DRIVING_POSTINGS = 30_000
"""How many postings (chunks containing a term) the driving terms may have in all, when there are
common terms to leave out of the drive; the rarest term always drives."""


@dataclass(frozen=True, slots=True)
class Statistics:
    """What BM25 needs besides the chunk itself: ``chunks`` indexed, their total ``length`` (0 where
    the store does not need it), and how many chunks hold each query term."""

    chunks: int
    length: int
    postings: dict[str, int]

    @property
    def average_length(self) -> float:
        return self.length / self.chunks if self.chunks else 1.0


def idf(postings: int, chunks: int) -> float:
    """FTS5's idf: ``log((N - n + 0.5) / (n + 0.5))``, and 1e-6 where that is not positive."""
    value = math.log((chunks - postings + 0.5) / (postings + 0.5))
    return value if value > 0 else 1e-6


Rank = Callable[[Sequence[str], Sequence[str], dict[str, float], int], Awaitable[list[Scored]]]
"""``rank(driving, scoring, idf, k)``: the exact full-query top ``k`` among chunks holding a driving
term, scored with every term of ``driving`` and ``scoring`` (``idf``: each term's)."""


async def top_k(statistics: Statistics, terms: Sequence[str], k: int, rank: Rank) -> list[Scored]:
    """The full query's top ``k``, ranking only chunks that hold a rare enough term (module docs)."""
    found = sorted((n, t) for t in terms if (n := statistics.postings.get(t, 0)))  # rarest first
    if not found:
        return []
    weights = {t: idf(n, statistics.chunks) for n, t in found}
    driving: list[str] = []
    total = 0
    for n, term in found:
        if driving and total + n > DRIVING_POSTINGS:
            break
        driving.append(term)
        total += n
    common = [t for _, t in found[len(driving) :]]
    best = await rank(driving, common, weights, k)
    if not common:
        return best
    kth = best[-1].score if len(best) == k else 0.0
    if TERM_BOUND * sum(weights[t] for t in common) < kth:
        return best
    left_out: list[str] = []  # the commonest terms whose bound stays under the k-th score found
    bound = 0.0
    for term in reversed(common):
        bound += TERM_BOUND * weights[term]
        if bound >= kth:
            break
        left_out.append(term)
    driving = [t for _, t in found if t not in left_out]
    return await rank(driving, left_out, weights, k)
