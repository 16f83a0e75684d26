"""The store protocol: where chunks live and how they are searched, behind one narrow interface.

A store keeps the chunks of ready documents (table ``kb_chunks``, shared by every store) and its own
index of them: BM25 over FTS5 plus an in-memory vector matrix on SQLite, tsvector plus pgvector on
PostgreSQL. Both implementations pass one conformance suite (:mod:`socle.testing.knowledge_store`).

Access control happens *inside* each search: a :class:`Scope` names the collections the caller may
read and the documents they may not; both searches apply it before ranking, so a result outside it
can never be returned, and a caller's top k is the best k among what they may read (never a top k of
everything, filtered afterwards).

Writes take an optional connection, so that a caller can swap a document's chunks and update its row
in one transaction: a re-uploaded document's old chunks are searchable until the very moment the new
ones are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from socle.storage.db import Database
from socle.storage.models import KnowledgeChunkRow
from socle.storage.types import new_id

__all__ = ["Chunk", "ChunkInput", "ChunkTableStore", "KnowledgeStore", "Scope", "Scored"]


@dataclass(frozen=True, slots=True)
class ChunkInput:
    """A chunk to index: its text and where it comes from, and its embedding (unit length)."""

    ordinal: int
    text: str
    embedding: Sequence[float]
    title: str | None = None
    section_path: tuple[str, ...] = ()
    page_start: int | None = None
    page_end: int | None = None
    token_count: int = 0

    @property
    def indexed_text(self) -> str:
        """What keyword search indexes: the title and section path, then the text."""
        head = " ".join(p for p in (self.title, *self.section_path) if p)
        return f"{head}\n{self.text}" if head else self.text


@dataclass(frozen=True, slots=True)
class Chunk:
    """A stored chunk, as searches and listings return it."""

    key: int
    id: str
    document_id: str
    collection_id: str
    ordinal: int
    text: str
    title: str | None
    section_path: tuple[str, ...]
    page_start: int | None
    page_end: int | None
    token_count: int


@dataclass(frozen=True, slots=True)
class Scope:
    """What a search may return: chunks of ``collections``, except those of ``exclude_documents``, and
    (when set) only those of ``documents``."""

    collections: frozenset[str]
    exclude_documents: frozenset[str] = frozenset()
    documents: frozenset[str] | None = None

    @property
    def empty(self) -> bool:
        return not self.collections or (self.documents is not None and not self.documents)

    def allows(self, collection_id: str, document_id: str) -> bool:
        return (
            collection_id in self.collections
            and document_id not in self.exclude_documents
            and (self.documents is None or document_id in self.documents)
        )


@dataclass(frozen=True, slots=True)
class Scored:
    """One search result: a chunk's key (unique, never reused) and its score (higher is better)."""

    key: int
    score: float


@runtime_checkable
class KnowledgeStore(Protocol):
    """A chunk store with keyword and vector search. Implementations: SQLite, PostgreSQL."""

    async def start(self) -> None:
        """Load what searches need (the SQLite store loads its vectors)."""
        ...

    async def aclose(self) -> None: ...

    async def replace_document(
        self,
        document_id: str,
        collection_id: str,
        chunks: Sequence[ChunkInput],
        *,
        connection: AsyncConnection | None = None,
    ) -> list[Chunk]:
        """Swap the document's chunks for ``chunks`` (none: remove them), atomically."""
        ...

    async def keyword_search(self, query: str, scope: Scope, k: int) -> list[Scored]:
        """The best ``k`` chunks in ``scope`` for ``query`` by keywords (BM25-like score)."""
        ...

    async def vector_search(self, vector: Sequence[float], scope: Scope, k: int) -> list[Scored]:
        """The ``k`` chunks in ``scope`` nearest to ``vector`` (score: cosine similarity)."""
        ...

    async def chunks(self, keys: Sequence[int]) -> list[Chunk]:
        """The chunks with these keys, in the order asked (missing ones left out)."""
        ...

    async def document_chunks(self, document_id: str, *, offset: int = 0, limit: int = 1000) -> list[Chunk]:
        """A document's chunks in order."""
        ...


# Shared by the implementations ----------------------------------------------------------------------
_C = KnowledgeChunkRow


def chunk_from_row(row: object) -> Chunk:
    return Chunk(
        key=int(row.key),  # type: ignore[attr-defined]
        id=row.id,  # type: ignore[attr-defined]
        document_id=row.document_id,  # type: ignore[attr-defined]
        collection_id=row.collection_id,  # type: ignore[attr-defined]
        ordinal=row.ordinal,  # type: ignore[attr-defined]
        text=row.text,  # type: ignore[attr-defined]
        title=row.title,  # type: ignore[attr-defined]
        section_path=tuple(row.section_path or ()),  # type: ignore[attr-defined]
        page_start=row.page_start,  # type: ignore[attr-defined]
        page_end=row.page_end,  # type: ignore[attr-defined]
        token_count=row.token_count,  # type: ignore[attr-defined]
    )


CHUNK_COLUMNS = (
    _C.key,
    _C.id,
    _C.document_id,
    _C.collection_id,
    _C.ordinal,
    _C.text,
    _C.title,
    _C.section_path,
    _C.page_start,
    _C.page_end,
    _C.token_count,
)


class ChunkTableStore:
    """What both stores share: the ``kb_chunks`` rows, atomic swaps and reads. Subclasses add their
    index rows (:meth:`_index`) and the two searches."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    async def replace_document(
        self,
        document_id: str,
        collection_id: str,
        chunks: Sequence[ChunkInput],
        *,
        connection: AsyncConnection | None = None,
    ) -> list[Chunk]:
        if connection is None:
            async with self._db.connect() as own:
                return await self._replace(own, document_id, collection_id, chunks)
        return await self._replace(connection, document_id, collection_id, chunks)

    async def _replace(
        self, connection: AsyncConnection, document_id: str, collection_id: str, chunks: Sequence[ChunkInput]
    ) -> list[Chunk]:
        """Delete the document's chunk rows (their index rows go with them: cascade or trigger), insert
        the new ones, then their index rows."""
        await connection.execute(delete(_C).where(_C.document_id == document_id))
        if not chunks:
            return []
        rows = [
            {
                "id": new_id(),
                "document_id": document_id,
                "collection_id": collection_id,
                "ordinal": c.ordinal,
                "text": c.text,
                "title": c.title,
                "section_path": list(c.section_path) or None,
                "page_start": c.page_start,
                "page_end": c.page_end,
                "token_count": c.token_count,
            }
            for c in chunks
        ]
        await connection.execute(insert(_C), rows)
        result = await connection.execute(
            select(*CHUNK_COLUMNS).where(_C.document_id == document_id).order_by(_C.key)
        )
        stored = [chunk_from_row(r) for r in result]
        await self._index(connection, list(zip(stored, chunks, strict=True)))
        return stored

    async def _index(self, connection: AsyncConnection, chunks: list[tuple[Chunk, ChunkInput]]) -> None:
        raise NotImplementedError

    async def chunks(self, keys: Sequence[int]) -> list[Chunk]:
        if not keys:
            return []
        async with self._db.read() as connection:
            result = await connection.execute(select(*CHUNK_COLUMNS).where(_C.key.in_(list(keys))))
        found = {int(r.key): chunk_from_row(r) for r in result}
        return [found[k] for k in keys if k in found]

    async def document_chunks(self, document_id: str, *, offset: int = 0, limit: int = 1000) -> list[Chunk]:
        async with self._db.read() as connection:
            result = await connection.execute(
                select(*CHUNK_COLUMNS)
                .where(_C.document_id == document_id)
                .order_by(_C.ordinal, _C.key)
                .offset(offset)
                .limit(limit)
            )
        return [chunk_from_row(r) for r in result]
