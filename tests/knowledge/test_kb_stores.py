"""The knowledge stores pass the one conformance suite, on SQLite and on PostgreSQL (pgserver)."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

from socle.knowledge.analysis import detect_language, fold, index_terms, query_terms, tokens
from socle.knowledge.stores import KnowledgeStore, build_store
from socle.knowledge.stores.base import Scope, Scored
from socle.storage.db import Database
from socle.testing.knowledge_store import (
    KnowledgeStoreConformance,
    StoreFactory,
    chunk,
    make_collection,
    make_document,
    unit,
)


class TestStores(KnowledgeStoreConformance):
    @pytest.fixture
    async def make_store(self, database: Database) -> AsyncIterator[StoreFactory]:
        stores: list[KnowledgeStore] = []

        async def make() -> KnowledgeStore:
            store = build_store(database)
            await store.start()
            stores.append(store)
            return store

        yield make
        for store in stores:
            await store.aclose()


def test_the_database_picks_the_store() -> None:
    assert type(build_store(Database("sqlite:///x.db"))).__name__ == "SQLiteStore"
    assert type(build_store(Database("postgresql://u@localhost/x"))).__name__ == "PostgresStore"


def test_analysis_folds_stems_and_drops_stop_words() -> None:
    assert fold("Électricité À Noël") == "electricite a noel"
    assert tokens("l'État, c'est_moi!") == ["l", "etat", "c", "est", "moi"]
    assert detect_language(tokens("Les enfants de la ville sont dans le parc")) == "fr"
    assert detect_language(tokens("The children of the city are in the park")) == "en"
    assert index_terms("Les allocations familiales") == ["alloc", "familial"]
    assert index_terms("The proteins were running") == ["protein", "run"]
    assert set(query_terms("allocation running")) >= {"alloc", "run"}
    assert query_terms("the of le la") == []


Indexed = dict[int, tuple[str, str, list[str]]]


def bm25_reference(chunks: Indexed, terms: list[str], scope: Scope) -> dict[int, float]:
    """BM25 by the book (FTS5's constants, idf and lengths: terms plus two scope tokens), by brute force
    over every chunk: ``chunks`` maps a key to its collection, document and index terms."""
    n = len(chunks)
    average = sum(len(t) + 2 for _, _, t in chunks.values()) / n
    postings = Counter(term for _, _, t in chunks.values() for term in set(t))
    idf = {t: max(math.log((n - postings[t] + 0.5) / (postings[t] + 0.5)), 0.0) or 1e-6 for t in terms}
    scores = {}
    for key, (collection, document, chunk_terms) in chunks.items():
        counts = Counter(chunk_terms)
        if not scope.allows(collection, document) or not any(counts[t] for t in terms):
            continue
        length = len(chunk_terms) + 2
        scores[key] = sum(
            idf[t] * counts[t] * 2.2 / (counts[t] + 1.2 * (0.25 + 0.75 * length / average))
            for t in terms
            if counts[t]
        )
    return scores


@pytest.mark.anyio
async def test_keyword_search_is_exact_bm25_with_pruning(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On both stores: driving the search by rare terms only (and, when the bound fails, a second
    search) gives exactly BM25's top k computed by brute force over every chunk, under random scopes
    and exclusions. Both stores therefore give the same scores."""
    import socle.knowledge.stores._bm25 as bm25
    import socle.knowledge.stores.postgres as postgres_store
    import socle.knowledge.stores.sqlite as sqlite_store

    rng = random.Random(11)
    vocabulary = [f"w{i}" for i in range(300)]
    weights = [1 / (i + 1) for i in range(300)]  # Zipf: a few very common terms, many rare ones
    store = build_store(database)
    collections = [await make_collection(database) for _ in range(3)]
    documents = []
    indexed: Indexed = {}
    for c in collections:
        for _ in range(8):
            doc = await make_document(database, c)
            documents.append(doc)
            texts = [" ".join(rng.choices(vocabulary, weights, k=rng.randint(3, 40))) for _ in range(25)]
            stored = await store.replace_document(doc, c, [chunk(t, ordinal=i) for i, t in enumerate(texts)])
            indexed.update({s.key: (c, doc, index_terms(t)) for s, t in zip(stored, texts, strict=True)})
    # a replaced and a deleted document: the statistics must forget their chunks
    gone = documents[0]
    await store.replace_document(gone, collections[0], [])
    indexed = {key: v for key, v in indexed.items() if v[1] != gone}
    swapped = documents[1]
    text = "w1 w2 w2 w250 w299"
    stored = await store.replace_document(swapped, collections[0], [chunk(text)])
    indexed = {key: v for key, v in indexed.items() if v[1] != swapped}
    indexed[stored[0].key] = (collections[0], swapped, index_terms(text))

    monkeypatch.setattr(bm25, "DRIVING_POSTINGS", 60)  # force the pruning at this size
    ranks: list[int] = []
    top_k = bm25.top_k

    async def counted(statistics: Any, terms: Any, k: int, rank: Any) -> list[Scored]:
        async def spy(*args: Any) -> list[Scored]:
            ranks.append(1)
            return await rank(*args)

        return await top_k(statistics, terms, k, spy)

    monkeypatch.setattr(sqlite_store, "top_k", counted)
    monkeypatch.setattr(postgres_store, "top_k", counted)
    second = 0
    for _ in range(150):
        scope = Scope(
            frozenset(rng.sample(collections, rng.randint(1, 3))), frozenset(rng.sample(documents, 4))
        )
        terms = list(dict.fromkeys(rng.choices(vocabulary, weights, k=rng.randint(1, 8))))
        k = rng.choice([1, 5, 10, 30])
        ranks.clear()
        found = await store.keyword_search(" ".join(terms), scope, k)
        second += len(ranks) == 2
        expected = bm25_reference(indexed, terms, scope)
        best = sorted(expected.values(), reverse=True)[:k]
        assert [round(s.score, 9) for s in found] == [round(v, 9) for v in best]
        assert all(abs(expected[s.key] - s.score) < 1e-9 for s in found)
    assert second >= 5  # the second search ran too, not only the first


@pytest.mark.anyio
async def test_migration_0012_moves_embeddings_and_back(database_url: str) -> None:
    """PostgreSQL: embeddings move to ``kb_index_vectors`` and back on downgrade, searches unchanged."""
    from alembic import command
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    from socle.storage.dialects import sync_url
    from socle.storage.migrations import alembic_config

    db = Database(database_url)
    await db.migrate()
    try:
        store = build_store(db)
        await store.start()
        collection = await make_collection(db)
        doc = await make_document(db, collection)
        vectors = [unit(1.0), unit(0.0, 1.0), unit(0.6, 0.8)]
        await store.replace_document(
            doc, collection, [chunk(f"text {i}", v, i) for i, v in enumerate(vectors)]
        )
        scope = Scope(frozenset({collection}))
        before = await store.vector_search(unit(0.0, 1.0), scope, 3)
        keyword = await store.keyword_search("text 1", scope, 3)
        engine = create_engine(sync_url(database_url), poolclass=NullPool)
        try:
            with engine.connect() as connection, connection.begin():
                command.downgrade(alembic_config(connection), "0011")
            if db.backend == "postgresql":
                async with db.read() as connection:
                    rows = await connection.execute(
                        text("SELECT count(*) FROM kb_index_search WHERE embedding IS NOT NULL")
                    )
                    assert rows.scalar_one() == 3
            with engine.connect() as connection, connection.begin():
                command.upgrade(alembic_config(connection), "head")
        finally:
            engine.dispose()
        assert await store.vector_search(unit(0.0, 1.0), scope, 3) == before
        assert await store.keyword_search("text 1", scope, 3) == keyword  # 0013 down and up: same BM25
        await store.aclose()
    finally:
        await db.close()
