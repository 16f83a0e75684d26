"""The conformance suite every knowledge store must pass (SQLite and PostgreSQL alike).

Use it by subclassing in a test module and providing two fixtures::

    class TestMyStore(KnowledgeStoreConformance):
        @pytest.fixture
        def database(self) -> Database: ...              # a migrated database
        @pytest.fixture
        def make_store(self, database) -> StoreFactory: ...  # async () -> started store

Every test runs against real tables: it creates an organisation, a team, collections and document
rows with :func:`make_collection` and :func:`make_document`, then writes chunks through the store.
"""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable, Sequence

import pytest
from sqlalchemy import delete, select

from socle.knowledge.stores.base import ChunkInput, KnowledgeStore, Scope
from socle.storage.db import Database
from socle.storage.models import (
    KnowledgeCollectionRow,
    KnowledgeDocumentRow,
    OrganisationRow,
    TeamRow,
)
from socle.storage.types import new_id, utcnow

__all__ = ["KnowledgeStoreConformance", "StoreFactory", "chunk", "make_collection", "make_document", "unit"]

StoreFactory = Callable[[], Awaitable[KnowledgeStore]]
DIM = 8


def unit(*values: float) -> list[float]:
    """A unit vector of :data:`DIM` dimensions starting with ``values``."""
    padded = [*values, *([0.0] * (DIM - len(values)))][:DIM]
    norm = math.sqrt(sum(v * v for v in padded)) or 1.0
    return [v / norm for v in padded]


def chunk(text: str, vector: Sequence[float] | None = None, ordinal: int = 0, **fields: object) -> ChunkInput:
    return ChunkInput(ordinal=ordinal, text=text, embedding=list(vector or unit(1.0)), **fields)  # type: ignore[arg-type]


async def make_collection(db: Database, name: str | None = None) -> str:
    """A collection (in a new organisation and team); returns its id."""
    now = utcnow()
    async with db.session() as session:
        org = OrganisationRow(id=new_id(), name=f"org-{new_id()}", created_at=now)
        team = TeamRow(id=new_id(), org_id=org.id, name="team", created_at=now)
        collection = KnowledgeCollectionRow(
            id=new_id(),
            org_id=org.id,
            team_id=team.id,
            name=name or f"collection-{new_id()}",
            classification="internal",
            org_read=False,
            access=[],
            created_by=new_id(),
            created_at=now,
            updated_at=now,
        )
        session.add(org)
        await session.flush()
        session.add(team)
        await session.flush()
        session.add(collection)
    return collection.id


async def make_document(db: Database, collection_id: str, filename: str = "doc.txt") -> str:
    now = utcnow()
    row = KnowledgeDocumentRow(
        id=new_id(),
        collection_id=collection_id,
        filename=filename,
        size_bytes=1,
        content_sha256=new_id(),
        version=1,
        status="ready",
        progress=1.0,
        chunk_count=0,
        created_by=new_id(),
        created_at=now,
        updated_at=now,
        attempts=0,
    )
    async with db.session() as session:
        session.add(row)
    return row.id


class KnowledgeStoreConformance:
    """Behaviour every :class:`~socle.knowledge.stores.base.KnowledgeStore` must have."""

    pytestmark = pytest.mark.anyio

    @pytest.fixture
    async def store(self, make_store: StoreFactory) -> KnowledgeStore:
        return await make_store()

    async def _corpus(self, db: Database, store: KnowledgeStore) -> dict[str, str]:
        collection = await make_collection(db)
        docs = {}
        texts = {
            "family": "Les allocations familiales sont versées par la caisse chaque mois.",
            "power-en": "Electricity prices are rising across Europe this winter.",
            "power-fr": "Le prix de l'électricité augmente fortement en hiver.",
            "runner": "She runs every morning before work.",
        }
        for i, (name, text) in enumerate(texts.items()):
            docs[name] = await make_document(db, collection, f"{name}.txt")
            await store.replace_document(docs[name], collection, [chunk(text, unit(*([0.0] * i), 1.0))])
        docs["collection"] = collection
        return docs

    async def _names(self, store: KnowledgeStore, docs: dict[str, str], keys: Sequence[int]) -> list[str]:
        by_id = {v: k for k, v in docs.items()}
        return [by_id[c.document_id] for c in await store.chunks(keys)]

    # Keyword search --------------------------------------------------------------------------------
    async def test_keyword_search_stems_french_and_english(
        self, database: Database, store: KnowledgeStore
    ) -> None:
        docs = await self._corpus(database, store)
        scope = Scope(frozenset({docs["collection"]}))
        hits = await store.keyword_search("allocation familiale", scope, 10)
        assert await self._names(store, docs, [h.key for h in hits]) == ["family"]
        hits = await store.keyword_search("running", scope, 10)
        assert await self._names(store, docs, [h.key for h in hits]) == ["runner"]

    async def test_keyword_search_folds_accents(self, database: Database, store: KnowledgeStore) -> None:
        docs = await self._corpus(database, store)
        scope = Scope(frozenset({docs["collection"]}))
        for query in ("electricite", "ÉLECTRICITÉ", "l'électricité"):
            hits = await store.keyword_search(query, scope, 10)
            assert (await self._names(store, docs, [h.key for h in hits]))[:1] == ["power-fr"], query

    async def test_keyword_scores_rank_better_matches_first(
        self, database: Database, store: KnowledgeStore
    ) -> None:
        collection = await make_collection(database)
        one = await make_document(database, collection)
        two = await make_document(database, collection)
        await store.replace_document(one, collection, [chunk("budget meeting notes about travel")])
        await store.replace_document(two, collection, [chunk("budget budget travel budget and travel costs")])
        hits = await store.keyword_search("travel budget", Scope(frozenset({collection})), 10)
        assert [c.document_id for c in await store.chunks([h.key for h in hits])] == [two, one]
        assert hits[0].score > hits[1].score

    async def test_queries_without_terms_find_nothing(
        self, database: Database, store: KnowledgeStore
    ) -> None:
        docs = await self._corpus(database, store)
        scope = Scope(frozenset({docs["collection"]}))
        for query in ("", "   ", "the of and", "le la les", '"*:()^-', "OR AND NOT NEAR"):
            hits = await store.keyword_search(query, scope, 10)
            assert all(isinstance(h.key, int) for h in hits)
        assert await store.keyword_search("", scope, 10) == []
        assert await store.keyword_search("the of and", scope, 10) == []

    # Vector search ---------------------------------------------------------------------------------
    async def test_vector_search_orders_by_cosine_similarity(
        self, database: Database, store: KnowledgeStore
    ) -> None:
        collection = await make_collection(database)
        doc = await make_document(database, collection)
        vectors = [unit(1, 0), unit(1, 1), unit(0, 1), unit(-1, 0)]
        stored = await store.replace_document(
            doc, collection, [chunk(f"c{i}", v, i) for i, v in enumerate(vectors)]
        )
        hits = await store.vector_search(unit(1, 0.1), Scope(frozenset({collection})), 3)
        assert [h.key for h in hits] == [stored[0].key, stored[1].key, stored[2].key]
        assert hits[0].score == pytest.approx(0.995, abs=0.01)
        assert hits[0].score >= hits[1].score >= hits[2].score
        assert len(await store.vector_search(unit(1), Scope(frozenset({collection})), 10)) == 4

    # Scope ------------------------------------------------------------------------------------------
    async def test_scope_applies_inside_both_searches(
        self, database: Database, store: KnowledgeStore
    ) -> None:
        mine, theirs = await make_collection(database), await make_collection(database)
        kept, hidden, other = (
            await make_document(database, mine),
            await make_document(database, mine),
            await make_document(database, theirs),
        )
        # The hidden and other documents match best; the scope must still leave them out of a top 1.
        await store.replace_document(kept, mine, [chunk("quarterly report", unit(0, 1))])
        await store.replace_document(hidden, mine, [chunk("quarterly report report report", unit(1, 0))])
        await store.replace_document(other, theirs, [chunk("quarterly report report", unit(1, 0.01))])
        scope = Scope(frozenset({mine}), exclude_documents=frozenset({hidden}))
        for hits in (
            await store.keyword_search("quarterly report", scope, 1),
            await store.vector_search(unit(1, 0), scope, 1),
        ):
            assert [c.document_id for c in await store.chunks([h.key for h in hits])] == [kept]
        only = Scope(frozenset({mine, theirs}), documents=frozenset({other}))
        hits = await store.vector_search(unit(0, 1), only, 5)
        assert {c.document_id for c in await store.chunks([h.key for h in hits])} == {other}
        for empty in (Scope(frozenset()), Scope(frozenset({mine}), documents=frozenset())):
            assert await store.keyword_search("report", empty, 5) == []
            assert await store.vector_search(unit(1), empty, 5) == []

    # Writes -----------------------------------------------------------------------------------------
    async def test_replacing_swaps_chunks_and_never_reuses_keys(
        self, database: Database, store: KnowledgeStore
    ) -> None:
        collection = await make_collection(database)
        doc = await make_document(database, collection)
        scope = Scope(frozenset({collection}))
        first = await store.replace_document(
            doc, collection, [chunk("alpha version", unit(1)), chunk("beta", unit(0, 1), 1)]
        )
        second = await store.replace_document(doc, collection, [chunk("gamma version", unit(1))])
        assert {c.key for c in first}.isdisjoint({c.key for c in second})
        assert len({c.id for c in first} | {c.id for c in second}) == 3
        assert await store.keyword_search("alpha", scope, 5) == []
        assert [h.key for h in await store.keyword_search("version", scope, 5)] == [second[0].key]
        assert [h.key for h in await store.vector_search(unit(1), scope, 5)] == [second[0].key]
        assert await store.chunks([first[0].key]) == []
        await store.replace_document(doc, collection, [])
        assert await store.keyword_search("gamma", scope, 5) == []
        assert await store.vector_search(unit(1), scope, 5) == []

    async def test_a_rolled_back_swap_leaves_the_old_chunks(
        self, database: Database, store: KnowledgeStore
    ) -> None:
        collection = await make_collection(database)
        doc = await make_document(database, collection)
        old = await store.replace_document(doc, collection, [chunk("original text", unit(1))])
        with pytest.raises(RuntimeError):
            async with database.connect() as connection:
                await store.replace_document(
                    doc, collection, [chunk("replacement", unit(0, 1))], connection=connection
                )
                raise RuntimeError("abort")
        scope = Scope(frozenset({collection}))
        assert [h.key for h in await store.keyword_search("original", scope, 5)] == [old[0].key]
        assert await store.keyword_search("replacement", scope, 5) == []
        assert [h.key for h in await store.vector_search(unit(0, 1), scope, 5)] == [old[0].key]

    async def test_deleting_documents_removes_them_from_search(
        self, database: Database, store: KnowledgeStore
    ) -> None:
        docs = await self._corpus(database, store)
        scope = Scope(frozenset({docs["collection"]}))
        assert len(await store.vector_search(unit(1), scope, 10)) == 4
        async with database.session() as session:  # as deleting a document or its collection does
            await session.execute(
                delete(KnowledgeDocumentRow).where(KnowledgeDocumentRow.id == docs["family"])
            )
        assert await store.keyword_search("allocations", scope, 10) == []
        assert len(await store.vector_search(unit(1), scope, 10)) == 3

    async def test_other_store_instances_see_every_change(
        self, database: Database, make_store: StoreFactory
    ) -> None:
        """Another process (replica) with its own store sees writes and deletions at its next search."""
        writer, reader = await make_store(), await make_store()
        collection = await make_collection(database)
        doc = await make_document(database, collection)
        scope = Scope(frozenset({collection}))
        assert await reader.vector_search(unit(1), scope, 5) == []
        stored = await writer.replace_document(doc, collection, [chunk("shared", unit(1))])
        assert [h.key for h in await reader.vector_search(unit(1), scope, 5)] == [stored[0].key]
        await writer.replace_document(doc, collection, [])
        assert await reader.vector_search(unit(1), scope, 5) == []
        assert await reader.keyword_search("shared", scope, 5) == []

    # Reading ----------------------------------------------------------------------------------------
    async def test_chunks_keep_their_metadata_and_order(
        self, database: Database, store: KnowledgeStore
    ) -> None:
        collection = await make_collection(database)
        doc = await make_document(database, collection)
        inputs = [
            chunk(
                f"part {i}",
                unit(1),
                i,
                title="Guide",
                section_path=("Chapter 1", f"Section {i}"),
                page_start=i + 1,
                page_end=i + 2,
                token_count=7,
            )
            for i in range(5)
        ]
        stored = await store.replace_document(doc, collection, inputs)
        listed = await store.document_chunks(doc)
        assert [c.ordinal for c in listed] == [0, 1, 2, 3, 4]
        assert listed[2].section_path == ("Chapter 1", "Section 2")
        assert (listed[2].page_start, listed[2].page_end, listed[2].title) == (3, 4, "Guide")
        assert listed[2].token_count == 7 and listed[2].collection_id == collection
        assert [c.ordinal for c in await store.document_chunks(doc, offset=1, limit=2)] == [1, 2]
        keys = [stored[3].key, stored[0].key, 10**12]
        assert [c.ordinal for c in await store.chunks(keys)] == [3, 0]

    async def test_many_chunks_and_random_scopes_match_brute_force(
        self, database: Database, store: KnowledgeStore
    ) -> None:
        rng = random.Random(7)
        collections = [await make_collection(database) for _ in range(3)]
        vectors: dict[int, tuple[str, str, list[float]]] = {}
        for c in collections:
            for _ in range(4):
                doc = await make_document(database, c)
                inputs = [
                    chunk(f"text {rng.random()}", unit(*[rng.gauss(0, 1) for _ in range(DIM)]), i)
                    for i in range(5)
                ]
                for s, ci in zip(await store.replace_document(doc, c, inputs), inputs, strict=True):
                    vectors[s.key] = (c, doc, list(ci.embedding))
        for _ in range(20):
            allowed = frozenset(rng.sample(collections, rng.randint(1, 3)))
            excluded = frozenset(rng.sample(sorted({d for _, d, _ in vectors.values()}), 3))
            scope = Scope(allowed, excluded)
            query = unit(*[rng.gauss(0, 1) for _ in range(DIM)])
            expected = sorted(
                (k for k, (c, d, _) in vectors.items() if scope.allows(c, d)),
                key=lambda k: -sum(a * b for a, b in zip(vectors[k][2], query, strict=True)),
            )[:7]
            assert [h.key for h in await store.vector_search(query, scope, 7)] == expected
        async with database.read() as connection:
            assert (await connection.execute(select(KnowledgeDocumentRow.id))).all()
