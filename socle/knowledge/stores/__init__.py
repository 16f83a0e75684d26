"""Knowledge stores: one protocol (:mod:`.base`), two implementations chosen by the database.

:func:`build_store` picks the SQLite store or the PostgreSQL one for a :class:`Database`; both keep
chunks in ``kb_chunks`` and their own index in ``kb_index_*`` tables built by migration 0007.
"""

from __future__ import annotations

from socle.knowledge.stores.base import Chunk, ChunkInput, KnowledgeStore, Scope, Scored
from socle.storage.db import Database

__all__ = ["Chunk", "ChunkInput", "KnowledgeStore", "Scope", "Scored", "build_store"]


def build_store(db: Database) -> KnowledgeStore:
    """The store for ``db``'s backend (not started: ``await store.start()``)."""
    if db.backend == "postgresql":
        from socle.knowledge.stores.postgres import PostgresStore

        return PostgresStore(db)
    from socle.knowledge.stores.sqlite import SQLiteStore

    return SQLiteStore(db)
