"""The scale-out store: PostgreSQL full-text search and pgvector, one row per chunk in each index.

``kb_index_search`` holds each chunk's terms as a ``tsvector`` (GIN index) and ``kb_index_vectors`` its
embedding as a pgvector ``vector``, each next to the chunk's collection and document ids, so that each
search is one statement over one table with the scope in its ``WHERE``: PostgreSQL ranks only what the
caller may read. Two tables rather than one: together, a row passed the 2 kB TOAST target and every
embedding was read out of line (migration 0012 says more).

Terms are analysed in Python exactly as on SQLite (:mod:`socle.knowledge.analysis`) and written as a
``tsvector`` literal with positions, and queries as a ``tsquery`` literal: PostgreSQL's own parsers
and dictionaries never see the text, so both stores index the same terms. Ranking is ``ts_rank``
(term frequency, length-normalised), not BM25. Vector search is exact (a scan of the rows in scope,
ordered by cosine distance): an HNSW index filtered afterwards would lose recall under narrow access
scopes, and pgvector 0.6 has no filtered index scans.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Float, cast, column, func, literal, select, table, text
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import UserDefinedType

from socle.knowledge.analysis import index_terms, query_terms
from socle.knowledge.stores.base import Chunk, ChunkInput, ChunkTableStore, Scope, Scored, chunk_filter

__all__ = ["PostgresStore", "tsquery_literal", "tsvector_literal", "vector_literal"]


class _PgType(UserDefinedType[Any]):
    cache_ok = True

    def __init__(self, name: str) -> None:
        self.name = name

    def get_col_spec(self, **kw: Any) -> str:
        return self.name


_TSQUERY = _PgType("tsquery")
_VECTOR = _PgType("vector")
_SEARCH = table(
    "kb_index_search", column("key"), column("collection_id"), column("document_id"), column("terms")
)
_VECTORS = table(
    "kb_index_vectors", column("key"), column("collection_id"), column("document_id"), column("embedding")
)
_MAX_POSITION = 16383  # tsvector positions stop there
_MAX_POSITIONS_PER_TERM = 255


def tsvector_literal(terms: Sequence[str]) -> str:
    """``'term':1,5 'other':2 ...``: the terms with their positions, so ``ts_rank`` counts them."""
    positions: dict[str, list[int]] = defaultdict(list)
    for position, term in enumerate(terms[:_MAX_POSITION], start=1):
        if len(positions[term]) < _MAX_POSITIONS_PER_TERM:
            positions[term].append(position)
    return " ".join(f"'{t}':{','.join(map(str, p))}" for t, p in positions.items())


def tsquery_literal(query: str) -> str | None:
    terms = query_terms(query)
    return " | ".join(f"'{t}'" for t in terms) if terms else None


def vector_literal(vector: Sequence[float]) -> str:
    return "[" + ",".join(f"{float(x):.7g}" for x in vector) + "]"


class PostgresStore(ChunkTableStore):
    """:class:`~socle.knowledge.stores.base.KnowledgeStore` on PostgreSQL (full-text search + pgvector)."""

    async def _index(self, connection: AsyncConnection, chunks: list[tuple[Chunk, ChunkInput]]) -> None:
        await connection.execute(
            text(
                "INSERT INTO kb_index_search (key, collection_id, document_id, terms) "
                "VALUES (:key, :collection_id, :document_id, CAST(:terms AS tsvector))"
            ),
            [
                {
                    "key": s.key,
                    "collection_id": s.collection_id,
                    "document_id": s.document_id,
                    "terms": tsvector_literal(index_terms(c.indexed_text)),
                }
                for s, c in chunks
            ],
        )
        await connection.execute(
            text(
                "INSERT INTO kb_index_vectors (key, collection_id, document_id, embedding) "
                "VALUES (:key, :collection_id, :document_id, CAST(:embedding AS vector))"
            ),
            [
                {
                    "key": s.key,
                    "collection_id": s.collection_id,
                    "document_id": s.document_id,
                    "embedding": vector_literal(c.embedding),
                }
                for s, c in chunks
            ],
        )

    async def keyword_search(self, query: str, scope: Scope, k: int) -> list[Scored]:
        tsquery = tsquery_literal(query)
        if tsquery is None or scope.empty or k <= 0:
            return []
        q = cast(literal(tsquery), _TSQUERY)
        score = func.ts_rank(_SEARCH.c.terms, q, 1, type_=Float)
        statement = (
            select(_SEARCH.c.key, score.label("score"))
            .where(_SEARCH.c.terms.op("@@")(q))
            .where(chunk_filter(scope, _SEARCH.c.collection_id, _SEARCH.c.document_id))
            .order_by(score.desc(), _SEARCH.c.key)
            .limit(k)
        )
        rows = await self._db.fetch_all(statement)
        return [Scored(int(r.key), float(r.score)) for r in rows]

    async def vector_search(self, vector: Sequence[float], scope: Scope, k: int) -> list[Scored]:
        if scope.empty or k <= 0:
            return []
        distance = _VECTORS.c.embedding.op("<=>", return_type=Float)(
            cast(literal(vector_literal(vector)), _VECTOR)
        )
        statement = (
            select(_VECTORS.c.key, (1 - distance).label("score"))
            .where(chunk_filter(scope, _VECTORS.c.collection_id, _VECTORS.c.document_id))
            .order_by(distance, _VECTORS.c.key)
            .limit(k)
        )
        rows = await self._db.fetch_all(statement)
        return [Scored(int(r.key), float(r.score)) for r in rows]
