"""The embedded store: SQLite FTS5 (BM25) for keywords and an in-memory matrix for vectors.

Keyword search runs FTS5's ``bm25()`` over analysed terms (:mod:`socle.knowledge.analysis`: French and
English stemming, accents folded). Each FTS row also holds *scope tokens* (its collection and document
ids) in a column of weight zero, and the query requires them: the access filter is applied inside the
full-text index, so FTS5 ranks only the chunks the caller may read, and a narrow scope is also a fast
one.

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
from sqlalchemy import column, func, literal_column, select, table, text
from sqlalchemy.ext.asyncio import AsyncConnection

from socle.knowledge.analysis import index_terms, query_terms
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
    """The FTS5 query: any of the query's terms (each quoted: terms are letters and digits), within the
    scope's collections (and documents), minus its excluded documents. The scope is part of the match,
    so FTS5 ranks only chunks the caller may read."""
    terms = query_terms(query)
    if not terms or scope.empty:
        return None
    match = "(" + " OR ".join(f'"{t}"' for t in terms) + ") AND " + _any("c", scope.collections)
    if scope.documents is not None:
        match += " AND " + _any("d", scope.documents)
    if scope.exclude_documents:
        match += " NOT " + _any("d", scope.exclude_documents)
    return match


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
        match = fts_query(query, scope)
        if match is None or k <= 0:
            return []
        rank = func.bm25(literal_column("kb_index_fts"), 1.0, 0.0)  # scope tokens weigh nothing
        statement = (
            select(_FTS.c.rowid.label("key"), rank.label("rank"))
            .where(text("kb_index_fts MATCH :match").bindparams(match=match))
            .order_by(rank)
            .limit(k)
        )
        async with (
            self._db.read() as connection
        ):  # on aiosqlite's thread: a long match must not block the loop
            rows = (await connection.execute(statement)).all()
        return [Scored(int(r.key), -float(r.rank)) for r in rows]

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
