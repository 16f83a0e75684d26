"""The knowledge base as the gateway holds it: catalog, store, retriever and ingestion worker, started
and closed together (:meth:`Knowledge.start` in the lifespan, :meth:`Knowledge.aclose` at shutdown).

Embeddings go through the engine router (``knowledge.embedding_model`` names a public embeddings
model): the same engines, failover and health checks as the API's ``/v1/embeddings``, and no second copy
of the model in memory.
"""

from __future__ import annotations

from collections.abc import Sequence

from socle.config import KnowledgeSettings
from socle.engines.base import Engine
from socle.engines.router import Router
from socle.governance.identity import Principal
from socle.knowledge.access import AccessEntry
from socle.knowledge.catalog import Catalog, DocumentRecord
from socle.knowledge.jobs import Embed, IngestionWorker
from socle.knowledge.rerank import CrossEncoderReranker
from socle.knowledge.retrieve import Retriever
from socle.knowledge.stores import KnowledgeStore, build_store
from socle.storage.db import Database

__all__ = ["Knowledge", "router_embedder"]


def router_embedder(router: Router, model: str) -> Embed:
    """Embed texts with the public model ``model`` through the router."""

    async def embed(texts: list[str]) -> list[list[float]]:
        pool = router.resolve(model)

        async def run(engine: Engine) -> list[list[float]]:
            return (await engine.embed(pool.name, texts)).vectors

        vectors, _ = await router.call(pool, "embeddings", run)
        return vectors

    return embed


class Knowledge:
    def __init__(
        self,
        settings: KnowledgeSettings,
        catalog: Catalog,
        store: KnowledgeStore,
        retriever: Retriever,
        worker: IngestionWorker | None,
        reranker: CrossEncoderReranker | None = None,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.store = store
        self.retriever = retriever
        self.worker = worker
        self.reranker = reranker

    @classmethod
    async def start(cls, db: Database, embed: Embed, settings: KnowledgeSettings) -> Knowledge:
        store = build_store(db)
        await store.start()
        reranker = None
        if settings.reranker_path is not None and settings.reranker_sha256 is not None:
            reranker = CrossEncoderReranker(settings.reranker_path, settings.reranker_sha256)
            await reranker.start()
        catalog = Catalog(db)
        retriever = Retriever(catalog, store, embed, settings, reranker)
        worker = IngestionWorker(db, store, embed, settings) if settings.worker else None
        if worker is not None:
            worker.start()
        return cls(settings, catalog, store, retriever, worker, reranker)

    async def aclose(self) -> None:
        if self.worker is not None:
            await self.worker.aclose()
        await self.store.aclose()

    async def upload(
        self,
        principal: Principal,
        collection_id: str,
        filename: str,
        content: bytes,
        *,
        access: Sequence[AccessEntry] | None = None,
        classification: str | None = None,
    ) -> tuple[DocumentRecord, bool]:
        """Queue a document for ingestion (``False``: the same content is already in the collection)."""
        document, created = await self.catalog.add_document(
            principal, collection_id, filename, content, access=access, classification=classification
        )
        if created:
            self.wake()
        return document, created

    async def reupload(
        self, principal: Principal, collection_id: str, document_id: str, filename: str, content: bytes
    ) -> DocumentRecord:
        document = await self.catalog.replace_content(
            principal, collection_id, document_id, filename, content
        )
        self.wake()
        return document

    def wake(self) -> None:
        if self.worker is not None:
            self.worker.wake()
