"""The knowledge stores pass the one conformance suite, on SQLite and on PostgreSQL (pgserver)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from socle.knowledge.analysis import detect_language, fold, index_terms, query_terms, tokens
from socle.knowledge.stores import KnowledgeStore, build_store
from socle.knowledge.stores.base import Scope, Scored
from socle.knowledge.stores.postgres import tsvector_literal
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


def test_tsvector_literal_keeps_term_frequencies() -> None:
    assert tsvector_literal(["a", "b", "a"]) == "'a':1,3 'b':2"


@pytest.mark.anyio
async def test_sqlite_keyword_pruning_returns_the_full_rankings_top_k(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Driving the match by rare terms only (and, when the bound fails, a second query) gives exactly
    the scores of ranking every chunk that holds any query term, under random scopes and exclusions."""
    import socle.knowledge.stores.sqlite as sqlite_store

    db = Database(f"sqlite:///{tmp_path / 'kb.db'}")
    await db.migrate()
    try:
        rng = random.Random(11)
        vocabulary = [f"w{i}" for i in range(300)]
        weights = [1 / (i + 1) for i in range(300)]  # Zipf: a few very common terms, many rare ones
        store = build_store(db)
        collections = [await make_collection(db) for _ in range(3)]
        documents = []
        for c in collections:
            for _ in range(8):
                doc = await make_document(db, c)
                documents.append(doc)
                texts = [" ".join(rng.choices(vocabulary, weights, k=rng.randint(3, 40))) for _ in range(25)]
                await store.replace_document(doc, c, [chunk(t, ordinal=i) for i, t in enumerate(texts)])
        monkeypatch.setattr(sqlite_store, "_DRIVING_POSTINGS", 60)  # force the pruning at this size
        attempts: list[int] = []
        rank = sqlite_store._rank

        async def counted(*args: Any) -> list[Scored]:
            attempts.append(len(args[1]))
            return await rank(*args)

        monkeypatch.setattr(sqlite_store, "_rank", counted)
        second = 0
        for _ in range(150):
            scope = Scope(
                frozenset(rng.sample(collections, rng.randint(1, 3))), frozenset(rng.sample(documents, 4))
            )
            terms = list(dict.fromkeys(rng.choices(vocabulary, weights, k=rng.randint(1, 8))))
            k = rng.choice([1, 5, 10, 30])
            attempts.clear()
            async with db.read() as connection:
                pruned = await sqlite_store._ranked(connection, terms, scope, k)
                full = await rank(connection, terms, [], scope, k)
            second += len(attempts) == 2
            assert [round(s.score, 9) for s in pruned] == [round(s.score, 9) for s in full]
            last = round(full[-1].score, 9) if full else 0.0  # above the last score, ties aside: same chunks
            assert {s.key for s in pruned if round(s.score, 9) > last} == {
                s.key for s in full if round(s.score, 9) > last
            }
        assert second >= 5  # the second query ran too, not only the first
    finally:
        await db.close()


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
        assert len(await store.keyword_search("text", scope, 3)) == 3
        await store.aclose()
    finally:
        await db.close()
