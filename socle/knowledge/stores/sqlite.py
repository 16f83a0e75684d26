"""The embedded store: SQLite FTS5 (BM25) for keywords and an in-memory matrix for vectors.

Keyword search runs FTS5's ``bm25()`` over analysed terms (:mod:`socle.knowledge.analysis`: French and
English stemming, accents folded). Each FTS row also holds *scope tokens* (its collection and document
ids) in a column of weight zero, and the query requires them: the access filter is applied inside the
full-text index, so FTS5 ranks only the chunks the caller may read, and a narrow scope is also a fast
one. Documents excluded by their own access lists are removed by the same statement's ``WHERE``
(``rowid NOT IN`` their chunk keys), still before ranking: as FTS5 phrases, dozens of them made every
ranked row slower.

**Exact top k without ranking every match** (:func:`socle.knowledge.stores._bm25.top_k`, shared with
the PostgreSQL store). ``bm25()`` costs a few microseconds per matching row, and a long query's OR of
terms matches a large part of the corpus (a SciFact query: about half of 100,000 chunks, ~110 ms). The
rarer terms *drive* the match (a chunk must contain one of them), while the common terms stay in the
expression (``AND (common OR scope)``, true for every chunk in scope) so that FTS5 still counts them
in each candidate's score: each candidate gets exactly the score the full query gives it, as ``top_k``
requires. Document frequencies come from one ``count(*)`` per term (what ``bm25()`` itself does to
compute idf). Measured in docs/benchmarks.md: about a quarter of the time of ranking every match, the
same results.

Vectors live in ``kb_index_vectors`` (float32 blobs) and, for searching, in a :class:`VectorMatrix`
in memory. Every process keeps its matrix current by a generation counter that triggers bump on each
insert or delete of an embedding: a search first reads the counter (microseconds), and when it moved,
loads the new rows (keys only grow: SQLite AUTOINCREMENT) and, if rows also disappeared, drops them.
A deleted document is therefore gone from the next search, in every process.

Why a numpy matrix rather than sqlite-vec: the standard ``sqlite3`` module here cannot load extensions,
and a second SQLite driver on the same file only to run the same exact scan is not worth it (the
measured search time over 100,000 chunks is in docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
from sqlalchemy import ColumnElement, column, func, literal_column, select, table, text, true
from sqlalchemy.ext.asyncio import AsyncConnection

from socle.knowledge.analysis import index_terms, query_terms
from socle.knowledge.stores._bm25 import Statistics, top_k
from socle.knowledge.stores._matrix import VectorMatrix
from socle.knowledge.stores.base import Chunk, ChunkInput, ChunkTableStore, Scope, Scored
from socle.storage.db import Database
from socle.storage.models import KnowledgeChunkRow

__all__ = ["SQLiteStore", "fts_query"]

_C = KnowledgeChunkRow
_FTS = table("kb_index_fts", column("rowid"), column("terms"))
_VECTORS = table(
    "kb_index_vectors", column("key"), column("collection_id"), column("document_id"), column("embedding")
)
_GENERATION = text("SELECT generation FROM kb_index_state WHERE id = 1")


def _token(kind: str, ident: str) -> str:
    """A scope token: ``c`` or ``d`` and a collection or document id (ULIDs: letters and digits)."""
    return kind + "".join(ch for ch in ident.lower() if ch.isalnum())


def _any(kind: str, idents: frozenset[str]) -> str:
    return "scope : (" + " OR ".join(f'"{_token(kind, i)}"' for i in sorted(idents)) + ")"


def fts_query(query: str, scope: Scope) -> str | None:
    """The FTS5 query of plain ranking: any of the query's terms (each quoted: terms are letters and
    digits), within the scope's collections and documents. The scope is part of the match, so FTS5
    ranks only chunks the caller may read (excluded documents are left out by :func:`_excluded`)."""
    terms = query_terms(query)
    if not terms or scope.empty:
        return None
    return _match(terms, [], scope)


def _match(driving: Sequence[str], scoring: Sequence[str], scope: Scope) -> str:
    """Chunks in scope holding a ``driving`` term; the ``scoring`` terms are in the expression (true for
    every chunk in scope) only so that ``bm25()`` counts them."""
    collections = _any("c", scope.collections)
    match = "(" + " OR ".join(f'"{t}"' for t in driving) + ") AND " + collections
    if scope.documents is not None:
        match += " AND " + _any("d", scope.documents)
    if scoring:
        match += " AND (" + " OR ".join(f'"{t}"' for t in scoring) + " OR " + collections + ")"
    return match


def _excluded(scope: Scope) -> ColumnElement[bool]:
    """Leave out the chunks of the documents whose own access lists exclude the caller."""
    if not scope.exclude_documents:
        return true()
    keys = select(_C.key).where(_C.document_id.in_(sorted(scope.exclude_documents)))
    return _FTS.c.rowid.not_in(keys)


async def _statistics(connection: AsyncConnection, terms: Sequence[str]) -> Statistics:
    """The number of indexed chunks and, per term, how many hold it: one statement, one snapshot
    (FTS5 computes the lengths itself)."""
    probes = ", ".join(
        f"(SELECT count(*) FROM kb_index_fts WHERE kb_index_fts MATCH :t{i})" for i in range(len(terms))
    )
    statement = text(f"SELECT (SELECT count(*) FROM kb_index_fts_docsize), {probes}")
    row = (await connection.execute(statement, {f"t{i}": f'"{t}"' for i, t in enumerate(terms)})).one()
    return Statistics(int(row[0]), 0, {t: int(n) for t, n in zip(terms, row[1:], strict=True)})


async def _rank(
    connection: AsyncConnection, driving: Sequence[str], scoring: Sequence[str], scope: Scope, k: int
) -> list[Scored]:
    rank = func.bm25(literal_column("kb_index_fts"), 1.0, 0.0)  # scope tokens weigh nothing
    statement = (
        select(_FTS.c.rowid.label("key"), rank.label("rank"))
        .where(text("kb_index_fts MATCH :match").bindparams(match=_match(driving, scoring, scope)))
        .where(_excluded(scope))
        .order_by(rank)
        .limit(k)
    )
    rows = (await connection.execute(statement)).all()
    return [Scored(int(r.key), -float(r.rank)) for r in rows]


async def _ranked(connection: AsyncConnection, terms: Sequence[str], scope: Scope, k: int) -> list[Scored]:
    """The full query's top ``k`` (:func:`socle.knowledge.stores._bm25.top_k`)."""

    async def rank(driving: Sequence[str], scoring: Sequence[str], _: object, k: int) -> list[Scored]:
        return await _rank(connection, driving, scoring, scope, k)

    return await top_k(await _statistics(connection, terms), terms, k, rank)


class SQLiteStore(ChunkTableStore):
    """:class:`~socle.knowledge.stores.base.KnowledgeStore` on SQLite (FTS5 + in-memory vectors)."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self._matrix = VectorMatrix()
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        await self._refresh()

    async def aclose(self) -> None:
        self._matrix = VectorMatrix()

    async def _index(self, connection: AsyncConnection, chunks: list[tuple[Chunk, ChunkInput]]) -> None:
        await connection.execute(
            text("INSERT INTO kb_index_fts (rowid, terms, scope) VALUES (:key, :terms, :scope)"),
            [
                {
                    "key": s.key,
                    "terms": " ".join(index_terms(c.indexed_text)),
                    "scope": f"{_token('c', s.collection_id)} {_token('d', s.document_id)}",
                }
                for s, c in chunks
            ],
        )
        await connection.execute(
            text(
                "INSERT INTO kb_index_vectors (key, collection_id, document_id, embedding) "
                "VALUES (:key, :collection_id, :document_id, :embedding)"
            ),
            [
                {
                    "key": s.key,
                    "collection_id": s.collection_id,
                    "document_id": s.document_id,
                    "embedding": np.asarray(c.embedding, dtype=np.float32).tobytes(),
                }
                for s, c in chunks
            ],
        )

    # Searches -----------------------------------------------------------------------------------------
    async def keyword_search(self, query: str, scope: Scope, k: int) -> list[Scored]:
        terms = query_terms(query)
        if not terms or scope.empty or k <= 0:
            return []
        async with self._db.read() as connection:  # on aiosqlite's thread: never blocks the loop
            return await _ranked(connection, terms, scope, k)

    async def vector_search(self, vector: Sequence[float], scope: Scope, k: int) -> list[Scored]:
        if scope.empty or k <= 0:
            return []
        await self._refresh()
        return await asyncio.to_thread(self._matrix.search, vector, scope, k)

    # The in-memory matrix ---------------------------------------------------------------------------
    async def _refresh(self) -> None:
        """Bring the matrix up to date with the database if the generation moved."""
        if (await self._db.fetch_all(_GENERATION))[0][0] == self._matrix.generation:
            return
        async with self._lock:
            async with self._db.read() as connection:
                generation = (await connection.execute(_GENERATION)).scalar_one()
                if generation == self._matrix.generation:
                    return
                matrix = self._matrix
                new_rows = await connection.execute(
                    select(
                        _VECTORS.c.key, _VECTORS.c.collection_id, _VECTORS.c.document_id, _VECTORS.c.embedding
                    )
                    .where(_VECTORS.c.key > matrix.max_key)
                    .order_by(_VECTORS.c.key)
                )
                matrix.add([(int(r[0]), r[1], r[2], r[3]) for r in new_rows])
                count = (await connection.execute(select(func.count()).select_from(_VECTORS))).scalar_one()
                if count != matrix.live_count:
                    keys = await connection.execute(select(_VECTORS.c.key))
                    matrix.retain(int(r[0]) for r in keys)
                matrix.generation = generation
