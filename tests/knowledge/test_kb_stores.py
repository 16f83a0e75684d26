"""The knowledge stores pass the one conformance suite, on SQLite and on PostgreSQL (pgserver)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from socle.knowledge.analysis import detect_language, fold, index_terms, query_terms, tokens
from socle.knowledge.stores import KnowledgeStore, build_store
from socle.knowledge.stores.postgres import tsvector_literal
from socle.storage.db import Database
from socle.testing.knowledge_store import KnowledgeStoreConformance, StoreFactory


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
