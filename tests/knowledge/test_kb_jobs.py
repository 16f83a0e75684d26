"""The ingestion worker on SQLite and PostgreSQL: resume, leases, attempts, races with re-upload, delete."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from socle.config import KnowledgeSettings
from socle.errors import EngineUnavailableError
from socle.governance.identity import Principal
from socle.knowledge.catalog import Catalog
from socle.knowledge.jobs import IngestionWorker
from socle.knowledge.stores import KnowledgeStore, Scope, build_store
from socle.storage.db import Database
from socle.storage.models import KnowledgeDocumentRow, KnowledgeUploadRow
from socle.storage.types import utcnow
from socle.testing.server import run_server
from tests.conftest import ADMIN_KEY
from tests.governance.tenancy import make_tenant
from tests.knowledge.kbhelpers import Client, server_settings

pytestmark = pytest.mark.anyio
SETTINGS = KnowledgeSettings(max_attempts=2, lease_s=30)


async def embed(texts: list[str]) -> list[list[float]]:
    return [[1.0, float(len(t) % 7), 0.5] for t in texts]


@dataclass
class Env:
    db: Database
    store: KnowledgeStore
    catalog: Catalog
    principal: Principal
    collection: str

    def worker(self, embed_function=embed) -> IngestionWorker:  # type: ignore[no-untyped-def]
        return IngestionWorker(self.db, self.store, embed_function, SETTINGS)

    async def status(self, document_id: str) -> KnowledgeDocumentRow:
        async with self.db.session() as session:
            row = await session.get(KnowledgeDocumentRow, document_id)
            assert row is not None
            return row

    async def found(self, word: str) -> set[str]:
        hits = await self.store.keyword_search(word, Scope(frozenset({self.collection})), 10)
        return {c.document_id for c in await self.store.chunks([h.key for h in hits])}


@pytest.fixture
async def env(database: Database) -> AsyncIterator[Env]:
    _, principal = await make_tenant(database)
    store = build_store(database)
    await store.start()
    catalog = Catalog(database)
    collection = await catalog.create_collection(principal, "jobs")
    yield Env(database, store, catalog, principal, collection.id)
    await store.aclose()


async def test_documents_are_ingested_one_at_a_time(env: Env) -> None:
    worker = env.worker()
    try:
        one, _ = await env.catalog.add_document(env.principal, env.collection, "a.md", b"# A\n\nalpha text")
        two, _ = await env.catalog.add_document(env.principal, env.collection, "b.txt", b"beta text")
        assert await worker.run_once() is True
        assert (await env.status(one.id)).status == "ready" and (await env.status(two.id)).status == "queued"
        assert await worker.run_once() is True and await worker.run_once() is False
        row = await env.status(two.id)
        assert (row.status, row.progress, row.chunk_count, row.claimed_by) == ("ready", 1.0, 1, None)
        assert await env.found("alpha") == {one.id}
        async with env.db.session() as session:  # the uploaded bytes are not kept once ingested
            assert (await session.scalars(select(KnowledgeUploadRow.document_id))).all() == []
    finally:
        await worker.aclose()


async def test_a_dead_workers_document_is_taken_over_after_its_lease(env: Env) -> None:
    doc, _ = await env.catalog.add_document(env.principal, env.collection, "a.txt", b"orphaned text")
    fresh, _ = await env.catalog.add_document(env.principal, env.collection, "b.txt", b"busy text")
    now = utcnow()
    async with env.db.session() as session:
        for document_id, claimed_at in ((doc.id, now - timedelta(hours=1)), (fresh.id, now)):
            await session.execute(
                update(KnowledgeDocumentRow)
                .where(KnowledgeDocumentRow.id == document_id)
                .values(status="processing", claimed_by="dead:1", claimed_at=claimed_at, attempts=1)
            )
    worker = env.worker()
    try:
        assert await worker.run_once() is True
        assert (await env.status(doc.id)).status == "ready"
        assert await worker.run_once() is False  # the other one is still leased to a live worker
        assert (await env.status(fresh.id)).claimed_by == "dead:1"
    finally:
        await worker.aclose()


async def test_a_document_interrupted_too_often_fails_instead_of_looping(env: Env) -> None:
    doc, _ = await env.catalog.add_document(env.principal, env.collection, "a.txt", b"poison text")
    async with env.db.session() as session:
        await session.execute(
            update(KnowledgeDocumentRow)
            .where(KnowledgeDocumentRow.id == doc.id)
            .values(
                status="processing", claimed_by="dead:1", claimed_at=utcnow() - timedelta(hours=1), attempts=2
            )
        )
    worker = env.worker()
    try:
        assert await worker.run_once() is False
        row = await env.status(doc.id)
        assert row.status == "failed" and "after 2 attempts" in (row.error or "")
    finally:
        await worker.aclose()


async def test_a_reupload_or_delete_during_ingestion_discards_the_stale_chunks(env: Env) -> None:
    worker = env.worker()
    try:
        doc, _ = await env.catalog.add_document(env.principal, env.collection, "v.txt", b"first aardvark")
        claimed = await worker._claim()
        assert claimed == (doc.id, 1)
        await env.catalog.replace_content(env.principal, env.collection, doc.id, "v.txt", b"second zebra")
        await worker._process(*claimed)  # finishes version 1 after version 2 arrived
        assert await env.found("aardvark") == set()
        assert await worker.run_once() is True
        assert await env.found("zebra") == {doc.id} and (await env.status(doc.id)).version == 2

        gone, _ = await env.catalog.add_document(env.principal, env.collection, "g.txt", b"ghost text")
        claimed = await worker._claim()
        assert claimed is not None
        await env.catalog.delete_document(env.principal, env.collection, gone.id)
        await worker._process(*claimed)
        assert await env.found("ghost") == set()
    finally:
        await worker.aclose()


async def test_embedding_outages_requeue_then_fail(env: Env) -> None:
    async def unavailable(texts: list[str]) -> list[list[float]]:
        raise EngineUnavailableError("no embedding engine is healthy")

    worker = env.worker(unavailable)
    try:
        doc, _ = await env.catalog.add_document(env.principal, env.collection, "a.txt", b"some text")
        assert await worker.run_once() is False
        row = await env.status(doc.id)
        assert row.status == "queued" and "no embedding engine" in (row.error or "")
        await worker.run_once()
        await worker.run_once()
        row = await env.status(doc.id)
        assert row.status == "failed" and row.attempts == 2 and "no embedding engine" in (row.error or "")
    finally:
        await worker.aclose()


def test_ingestion_resumes_after_a_restart(tmp_path: Path) -> None:
    """Uploaded to a server whose worker is off, then ingested by the next start on the same data."""

    with run_server(server_settings(tmp_path / "data", worker=False)) as server:
        client = Client(server, ADMIN_KEY)
        collection = client.collection("restart")["id"]
        doc = client.upload(collection, {"r.txt": b"resumed after restart"})[0]
        assert client.wait(collection, doc["id"], until=("queued",))["status"] == "queued"
        client.close()
    with run_server(server_settings(tmp_path / "data", worker=True)) as server:
        client = Client(server, ADMIN_KEY)
        assert client.wait(collection, doc["id"])["status"] == "ready"
        assert client.search("resumed", collections=[collection], method="bm25")
        client.close()
