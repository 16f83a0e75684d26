"""The scale-out store: PostgreSQL BM25 over a postings table, and pgvector.

Keyword search ranks by BM25 with SQLite FTS5's formula and constants (:mod:`socle.knowledge.stores._bm25`),
so both stores give a chunk the same score. Terms are analysed in Python exactly as on SQLite
(:mod:`socle.knowledge.analysis`); PostgreSQL's own parsers and dictionaries never see the text.
``kb_index_postings`` holds one row per distinct term of each chunk (primary key ``(term, key)``),
``kb_index_search`` each chunk's collection and document ids and length, and triggers keep the
document frequencies (``kb_index_terms``), chunk count and total length (``kb_index_stats``) exact
(migration 0013 says more). A search reads the statistics of its terms, then runs one statement:

1. the *partial* score of every chunk in scope holding a driving term (the postings of those terms,
   one index-only range each, with the chunk's length; joined to the chunk's ids for the access
   filter, before ranking);
2. the k-th best partial score is a floor for the k-th best full score (terms only add), so only the
   chunks whose partial score plus the most the other terms could add reaches that floor are kept;
3. those few get the other terms' counts by primary-key probes, and the best k by full score are
   returned.

This is the exact top k among chunks holding a driving term, as :func:`~socle.knowledge.stores._bm25.top_k`
requires, which picks the driving terms and checks that nothing else could enter.

``kb_index_vectors`` holds each chunk's embedding as a pgvector ``vector``, stored inline (migration
0012). Vector search is exact (a scan of the rows in scope, ordered by cosine distance): an HNSW index
filtered afterwards would lose recall under narrow access scopes, and pgvector 0.6 has no filtered
index scans.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from socle.knowledge.analysis import index_terms, query_terms
from socle.knowledge.stores._bm25 import K1, SCOPE_TOKENS, TERM_BOUND, B, Statistics, top_k
from socle.knowledge.stores.base import Chunk, ChunkInput, ChunkTableStore, Scope, Scored

__all__ = ["PostgresStore", "vector_literal"]


_LOCK = 5_031_013  # the counters' advisory lock (migration 0013): writers take it first


def _term_score(tf: str, length: str) -> str:
    """BM25's per-term factor in SQL, for a term frequency and a chunk length column."""
    return f"{tf} * {K1 + 1} / ({tf} + {K1} * ({1 - B} + {B} * {length} / :average))"


_STATISTICS = text(
    "SELECT NULL AS term, chunks AS n, length FROM kb_index_stats "
    "UNION ALL SELECT term, postings, NULL FROM kb_index_terms WHERE term = ANY(CAST(:terms AS text[]))"
)


def vector_literal(vector: Sequence[float]) -> str:
    return "[" + ",".join(f"{float(x):.7g}" for x in vector) + "]"


class PostgresStore(ChunkTableStore):
    """:class:`~socle.knowledge.stores.base.KnowledgeStore` on PostgreSQL (full-text search + pgvector)."""

    async def _index(self, connection: AsyncConnection, chunks: list[tuple[Chunk, ChunkInput]]) -> None:
        await connection.execute(text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": _LOCK})
        counts = [(s, Counter(index_terms(c.indexed_text))) for s, c in chunks]
        lengths = {s.key: sum(terms.values()) + SCOPE_TOKENS for s, terms in counts}
        await connection.execute(
            text(
                "INSERT INTO kb_index_search (key, collection_id, document_id, length) "
                "SELECT * FROM unnest(CAST(:keys AS bigint[]), CAST(:collections AS text[]), "
                "CAST(:documents AS text[]), CAST(:lengths AS integer[]))"
            ),
            {
                "keys": [s.key for s, _ in counts],
                "collections": [s.collection_id for s, _ in counts],
                "documents": [s.document_id for s, _ in counts],
                "lengths": list(lengths.values()),
            },
        )
        postings = [(term, s.key, tf, lengths[s.key]) for s, terms in counts for term, tf in terms.items()]
        await connection.execute(
            text(
                "INSERT INTO kb_index_postings (term, key, tf, length) SELECT * FROM unnest("
                "CAST(:terms AS text[]), CAST(:keys AS bigint[]), CAST(:tfs AS integer[]), "
                "CAST(:lengths AS integer[]))"
            ),
            {
                "terms": [p[0] for p in postings],
                "keys": [p[1] for p in postings],
                "tfs": [p[2] for p in postings],
                "lengths": [p[3] for p in postings],
            },
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
        terms = query_terms(query)
        if not terms or scope.empty or k <= 0:
            return []
        async with self._db.read() as connection, _custom_plans(connection):
            rows = (await connection.execute(_STATISTICS, {"terms": list(terms)})).all()
            chunks, length = next((int(r.n), int(r.length)) for r in rows if r.term is None)
            statistics = Statistics(chunks, length, {r.term: int(r.n) for r in rows if r.term is not None})

            async def rank(
                driving: Sequence[str], scoring: Sequence[str], idf: dict[str, float], k: int
            ) -> list[Scored]:
                return await _rank(connection, driving, scoring, idf, statistics, scope, k)

            return await top_k(statistics, terms, k, rank)

    async def vector_search(self, vector: Sequence[float], scope: Scope, k: int) -> list[Scored]:
        if scope.empty or k <= 0:
            return []
        rows = await self._db.fetch_all(
            _NEAREST, {"vector": vector_literal(vector), "k": k, **_scope_params(scope)}
        )
        return [Scored(int(r.key), float(r.score)) for r in rows]


def _in_scope(table: str) -> str:
    """The access scope on ``table``'s collection and document ids, as SQL taking the parameters of
    :func:`_scope_params`. Excluded documents are a ``NOT IN`` subquery, which PostgreSQL hashes:
    ``<> ALL`` of an array compares each row with every excluded id (60 of them tripled the keyword
    search's time over 100,000 chunks)."""
    return (
        f"{table}.collection_id = ANY(CAST(:collections AS text[]))"
        f" AND {table}.document_id NOT IN (SELECT unnest(CAST(:excluded AS text[])))"
        f" AND (CAST(:documents AS text[]) IS NULL OR {table}.document_id = ANY(CAST(:documents AS text[])))"
    )


def _scope_params(scope: Scope) -> dict[str, list[str] | None]:
    return {
        "collections": sorted(scope.collections),
        "excluded": sorted(scope.exclude_documents),
        "documents": None if scope.documents is None else sorted(scope.documents),
    }


_NEAREST = text(
    "SELECT v.key, 1 - (v.embedding <=> CAST(:vector AS vector)) AS score FROM kb_index_vectors v"
    f" WHERE {_in_scope('v')} ORDER BY v.embedding <=> CAST(:vector AS vector), v.key LIMIT :k"
)

_RANK = text(
    "WITH partial AS ("
    f" SELECT p.key, p.length, sum(q.idf * {_term_score('p.tf', 'p.length')}) AS score"
    " FROM unnest(CAST(:driving AS text[]), CAST(:driving_idf AS float8[])) AS q (term, idf)"
    " JOIN kb_index_postings p ON p.term = q.term"
    " GROUP BY p.key, p.length),"
    " scoped AS (SELECT c.key, c.length, c.score FROM partial c JOIN kb_index_search s ON s.key = c.key"
    f" WHERE {_in_scope('s')}),"
    " floor AS (SELECT coalesce((SELECT score FROM scoped ORDER BY score DESC"
    " OFFSET :floor_rank LIMIT 1), 0) AS score)"
    " SELECT c.key, c.score + coalesce(o.score, 0) AS score FROM scoped c CROSS JOIN floor f"
    " LEFT JOIN LATERAL ("
    f"  SELECT sum(q.idf * {_term_score('p.tf', 'p.length')}) AS score"
    "  FROM unnest(CAST(:scoring AS text[]), CAST(:scoring_idf AS float8[])) AS q (term, idf)"
    "  JOIN kb_index_postings p ON p.term = q.term AND p.key = c.key) o ON true"
    " WHERE c.score + :bound >= f.score"
    " ORDER BY 2 DESC, c.key LIMIT :k"
)
"""The top k among chunks holding a driving term (module docs); the access filter joins the partial
scores to ``kb_index_search`` (an index-only scan of the collections' rows)."""


@asynccontextmanager
async def _custom_plans(connection: AsyncConnection) -> AsyncIterator[None]:
    """Plan the search's statements for their actual arrays. After five executions of a prepared
    statement PostgreSQL may switch to a generic plan, which cannot know how many terms or collections
    the arrays hold: over 5,000 chunks it tripled the keyword search's time (6 to 16 ms)."""
    await connection.execute(text("SET plan_cache_mode = force_custom_plan"))
    try:
        yield
    finally:
        await connection.execute(text("RESET plan_cache_mode"))


async def _rank(
    connection: AsyncConnection,
    driving: Sequence[str],
    scoring: Sequence[str],
    idf: dict[str, float],
    statistics: Statistics,
    scope: Scope,
    k: int,
) -> list[Scored]:
    """The exact top ``k`` among chunks in ``scope`` holding a ``driving`` term (module docs)."""
    rows = await connection.execute(
        _RANK,
        {
            "driving": list(driving),
            "driving_idf": [idf[t] for t in driving],
            "scoring": list(scoring),
            "scoring_idf": [idf[t] for t in scoring],
            "bound": TERM_BOUND * sum(idf[t] for t in scoring),
            "average": statistics.average_length,
            "k": k,
            "floor_rank": k - 1,
            **_scope_params(scope),
        },
    )
    return [Scored(int(r.key), float(r.score)) for r in rows]
