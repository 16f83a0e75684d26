"""Retrieval: keyword (BM25), dense (embeddings) or hybrid search over what the caller may read.

Hybrid search runs both searches on the same access scope (each applies it inside its query, see
:mod:`socle.knowledge.stores.base`), takes ``candidates`` results from each and fuses them by weighted
reciprocal rank fusion: a chunk's score is the sum over the rankings it appears in of
``weight / (rrf_k + rank)``. The keyword ranking weighs 1. When the query is in a language the
embedding model knows (``embedding_languages``; the default MiniLM knows English), the dense ranking
weighs ``dense_weight`` with ``rrf_k``; otherwise ``foreign_dense_weight`` with ``foreign_rrf_k``,
a small constant that lets the dense ranking reorder only the keyword ranking's first results. On the
French Service-Public set MiniLM alone scores far below BM25, and plain RRF made hybrid worse than BM25
alone; the foreign values were chosen by cross-validation on half the questions
(``bench/fusion.py``, docs/benchmarks.md).

Fusion keys are chunk keys, unique across the whole index and never reused, so
two different passages can never merge into one (unlike keys made of a document name and a position,
or of a text hash). An optional cross-encoder (:mod:`socle.knowledge.rerank`) then reorders the fused
list.

Each hit carries what the caller needs to show and cite it: the chunk text, document id, file name,
title, pages, its score, and the cosine similarity to the query when the dense search found it (which
:mod:`socle.knowledge.answer` uses to decide whether anything relevant was found at all).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from socle.config import KnowledgeSettings
from socle.governance.identity import Principal
from socle.knowledge.access import higher_classification
from socle.knowledge.analysis import detect_language, tokens
from socle.knowledge.catalog import Catalog, CollectionRecord, DocumentRecord
from socle.knowledge.stores.base import Chunk, KnowledgeStore, Scope, Scored

__all__ = ["Hit", "Method", "Reranker", "Retriever", "rrf"]

Method = Literal["bm25", "dense", "hybrid"]
Embed = Callable[[list[str]], Awaitable[list[list[float]]]]
Reranker = Callable[[str, list[str]], Awaitable[list[float]]]


@dataclass(frozen=True, slots=True)
class Hit:
    chunk: Chunk
    score: float
    document: DocumentRecord
    collection: CollectionRecord
    similarity: float | None
    """Cosine similarity to the query, when the dense search returned this chunk."""
    keyword_rank: int | None
    """1-based rank in the keyword search, when it returned this chunk."""

    @property
    def classification(self) -> str:
        return higher_classification(self.collection.classification, self.document.classification)

    def to_dict(self) -> dict[str, Any]:
        chunk = self.chunk
        return {
            "chunk_id": chunk.id,
            "score": self.score,
            "text": chunk.text,
            "document_id": chunk.document_id,
            "collection_id": chunk.collection_id,
            "filename": self.document.filename,
            "title": chunk.title or self.document.title,
            "section_path": list(chunk.section_path),
            "page_start": chunk.page_start,
            "page_end": chunk.page_end,
            "ordinal": chunk.ordinal,
            "classification": self.classification,
        }


def rrf(
    rankings: Sequence[Sequence[Scored]], k: int = 60, weights: Sequence[float] | None = None
) -> list[Scored]:
    """Weighted reciprocal rank fusion of rankings of chunk keys: a chunk scores the sum over rankings of
    ``weight / (k + rank)``; best fused score first (ties: lower key)."""
    fused: dict[int, float] = {}
    for ranking, weight in zip(rankings, weights or [1.0] * len(rankings), strict=True):
        for rank, scored in enumerate(ranking, start=1):
            fused[scored.key] = fused.get(scored.key, 0.0) + weight / (k + rank)
    return [Scored(key, score) for key, score in sorted(fused.items(), key=lambda item: (-item[1], item[0]))]


class Retriever:
    """Searches the store within the caller's access scope (see the module docs)."""

    def __init__(
        self,
        catalog: Catalog,
        store: KnowledgeStore,
        embed: Embed,
        settings: KnowledgeSettings,
        reranker: Reranker | None = None,
    ) -> None:
        self.catalog = catalog
        self.store = store
        self._embed = embed
        self._settings = settings
        self._reranker = reranker

    async def search(
        self,
        principal: Principal,
        query: str,
        *,
        collections: Sequence[str] | None = None,
        k: int = 10,
        method: Method = "hybrid",
        documents: Sequence[str] | None = None,
    ) -> list[Hit]:
        scope, readable = await self.catalog.scope(principal, collections, documents)
        return await self.search_scope(query, scope, readable, k=k, method=method)

    async def search_scope(
        self,
        query: str,
        scope: Scope,
        collections: dict[str, CollectionRecord],
        *,
        k: int,
        method: Method = "hybrid",
    ) -> list[Hit]:
        """Search an already resolved scope (``collections``: its collections by id)."""
        if scope.empty or not query.strip() or k <= 0:
            return []
        depth = max(k, self._settings.candidates) if method == "hybrid" else k
        keyword: list[Scored] = []
        dense: list[Scored] = []
        if method == "bm25":
            keyword = await self.store.keyword_search(query, scope, depth)
        elif method == "dense":
            dense = await self._dense(query, scope, depth)
        else:
            keyword, dense = await asyncio.gather(
                self.store.keyword_search(query, scope, depth), self._dense(query, scope, depth)
            )
        if method == "bm25":
            ranked = keyword
        elif method == "dense":
            ranked = dense
        else:
            rrf_k, weight = self.fusion(query)
            ranked = rrf([keyword, dense], rrf_k, [1.0, weight])
            if self._reranker is not None:
                ranked = await self._rerank(query, ranked[: self._settings.candidates])
        return await self._hits(ranked[:k], keyword, dense, collections)

    def fusion(self, query: str) -> tuple[int, float]:
        """The RRF constant and the dense ranking's weight for this query: ``rrf_k`` and
        ``dense_weight`` in a language the embedding model knows (``embedding_languages``),
        ``foreign_rrf_k`` and ``foreign_dense_weight`` otherwise (an English-only model on French text
        is a weak signal: it may reorder the keyword ranking's first results, not pull in others)."""
        settings = self._settings
        if detect_language(tokens(query)) in settings.embedding_languages:
            return settings.rrf_k, settings.dense_weight
        return settings.foreign_rrf_k, settings.foreign_dense_weight

    async def _dense(self, query: str, scope: Scope, k: int) -> list[Scored]:
        vector = (await self._embed([self._settings.query_prefix + query]))[0]
        return await self.store.vector_search(vector, scope, k)

    async def _rerank(self, query: str, ranked: list[Scored]) -> list[Scored]:
        assert self._reranker is not None
        chunks = await self.store.chunks([s.key for s in ranked])
        scores = await self._reranker(query, [c.text for c in chunks])
        order = sorted(zip(chunks, scores, strict=True), key=lambda pair: -pair[1])
        return [Scored(c.key, s) for c, s in order]

    async def _hits(
        self,
        ranked: list[Scored],
        keyword: list[Scored],
        dense: list[Scored],
        collections: dict[str, CollectionRecord],
    ) -> list[Hit]:
        chunks = {c.key: c for c in await self.store.chunks([s.key for s in ranked])}
        documents = await self.catalog.describe([c.document_id for c in chunks.values()])
        similarity = {s.key: s.score for s in dense}
        keyword_rank = {s.key: rank for rank, s in enumerate(keyword, start=1)}
        hits = []
        for scored in ranked:
            chunk = chunks.get(scored.key)
            document = documents.get(chunk.document_id) if chunk is not None else None
            if chunk is None or document is None:  # deleted between the search and now
                continue
            hits.append(
                Hit(
                    chunk,
                    scored.score,
                    document,
                    collections[chunk.collection_id],
                    similarity.get(scored.key),
                    keyword_rank.get(scored.key),
                )
            )
        return hits
