"""The ingestion worker: takes queued documents one at a time, parses, chunks, embeds and indexes them.

It runs as a task in the gateway's lifespan (``knowledge.worker``; any number of replicas may run one):

1. **Claim** the oldest queued document (or one whose worker stopped reporting for ``lease_s``: a
   crashed process), with a conditional UPDATE that only one worker can win.
2. **Parse and chunk** it in a separate process (:mod:`socle.knowledge._parsing`) under a memory cap
   and a timeout: a bad file ends as the document's error status (``needs_ocr``, ``encrypted``,
   ``corrupt``...), a crashing parser only costs the child process.
3. **Embed** its chunks in batches through the router, reporting progress (which also renews the lease).
4. **Swap** its chunks in one transaction, only if the document is still this version and still claimed
   by this worker: a document re-uploaded or deleted meanwhile is not overwritten with stale chunks.

After a restart, documents that were ``processing`` are taken over once their lease runs out, and
queued ones simply wait their turn: ingestion resumes. After ``max_attempts`` interrupted attempts a
document fails (``failed``) instead of taking the worker down again. Nothing a document does stops the
loop: every error ends as that document's status, and database outages are waited out.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import multiprocessing
import os
import socket
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures.process import BrokenProcessPool
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, or_, select, update

from socle.config import KnowledgeSettings
from socle.errors import SocleError, StorageError
from socle.knowledge._parsing import Parsed, ParseFailure, limit_memory, parse_document
from socle.knowledge.catalog import PROCESSING, QUEUED, READY
from socle.knowledge.stores.base import ChunkInput, KnowledgeStore
from socle.storage.db import Database
from socle.storage.models import KnowledgeDocumentRow, KnowledgeUploadRow
from socle.storage.types import new_id, utcnow

__all__ = ["Embed", "IngestionWorker"]

log = logging.getLogger(__name__)

Embed = Callable[[list[str]], Awaitable[list[list[float]]]]
_DOC = KnowledgeDocumentRow
_FAILED = "failed"


class IngestionWorker:
    """One document at a time, until stopped. :meth:`wake` makes it look for work at once."""

    def __init__(
        self, db: Database, store: KnowledgeStore, embed: Embed, settings: KnowledgeSettings
    ) -> None:
        self._db = db
        self._store = store
        self._embed = embed
        self._settings = settings
        self.worker_id = f"{socket.gethostname()[:40]}:{os.getpid()}:{new_id()[-6:]}"
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None

    def start(self) -> None:
        if self._task is None:
            self._process_pool().submit(os.getpid)  # start the parsing process now, not at the first upload
            self._task = asyncio.create_task(self._run(), name="knowledge-ingestion")

    def wake(self) -> None:
        self._wakeup.set()

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._stop_pool()

    # The loop -------------------------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            try:
                worked = await self.run_once()
            except StorageError as exc:
                log.warning("ingestion paused, the database is unavailable: %s", exc.detail or exc)
                worked = False
            except Exception:  # noqa: BLE001 - a bug in one step must not stop ingestion for good
                log.exception("ingestion step failed unexpectedly")
                worked = False
            if worked:
                continue
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), self._settings.poll_interval_s)
            except TimeoutError:
                pass

    async def run_once(self) -> bool:
        """Process the next document, if any; ``False`` when there was none (or it must wait)."""
        claimed = await self._claim()
        if claimed is None:
            return False
        document_id, version = claimed
        try:
            await self._process(document_id, version)
        except StorageError:
            raise  # the lease runs out and the document is taken over later
        except SocleError as exc:  # the embedding engine failed or is missing: try again later
            log.warning("ingestion of document %s deferred: %s", document_id, exc.message)
            await self._release(document_id, version, f"Waiting to retry: {exc.message}")
            return False
        except Exception as exc:  # noqa: BLE001 - the document fails, the worker goes on
            log.exception("ingestion of document %s failed", document_id)
            await self._fail(
                document_id, version, _FAILED, f"Ingestion failed unexpectedly ({type(exc).__name__})."
            )
        return True

    # Steps ----------------------------------------------------------------------------------------
    async def _claim(self) -> tuple[str, int] | None:
        now = utcnow()
        stale = now - timedelta(seconds=self._settings.lease_s)
        claimable = or_(_DOC.status == QUEUED, (_DOC.status == PROCESSING) & (_DOC.claimed_at < stale))
        rows = await self._db.fetch_all(
            select(_DOC.id, _DOC.version, _DOC.attempts, _DOC.error)
            .where(claimable)
            .order_by(_DOC.updated_at)
            .limit(5)
        )
        for row in rows:
            document_id, version, attempts = row.id, row.version, row.attempts
            if attempts >= self._settings.max_attempts:
                last = (
                    f" Last error: {row.error}" if row.error else " The process stopped while working on it."
                )
                await self._fail(
                    document_id,
                    version,
                    _FAILED,
                    f"Ingestion was given up after {attempts} attempts.{last}",
                    claimed=False,
                )
                continue
            async with self._db.connect() as connection:
                result = await connection.execute(
                    update(_DOC)
                    .where(_DOC.id == document_id, _DOC.version == version, claimable)
                    .values(
                        status=PROCESSING,
                        claimed_by=self.worker_id,
                        claimed_at=now,
                        attempts=_DOC.attempts + 1,
                        progress=0.0,
                        updated_at=now,
                    )
                )
            if result.rowcount == 1:
                return document_id, version
        return None

    async def _process(self, document_id: str, version: int) -> None:
        async with self._db.read() as connection:  # not fetch_all: a large upload must not block the loop
            row = (
                await connection.execute(
                    select(KnowledgeUploadRow.content, _DOC.filename, _DOC.collection_id)
                    .join(_DOC, _DOC.id == KnowledgeUploadRow.document_id)
                    .where(_DOC.id == document_id)
                )
            ).first()
        if row is None:
            await self._fail(
                document_id, version, _FAILED, "The uploaded content is missing; upload it again."
            )
            return
        collection_id = row.collection_id
        outcome = await self._parse(bytes(row.content), row.filename)
        del row
        if isinstance(outcome, ParseFailure):
            await self._fail(document_id, version, outcome.status, outcome.message)
            return
        await self._progress(document_id, version, 0.2)
        vectors = await self._embed_chunks(document_id, version, outcome)
        chunks = [
            ChunkInput(
                ordinal=d.ordinal,
                text=d.text,
                embedding=v,
                title=d.title,
                section_path=d.section_path,
                page_start=d.page_start,
                page_end=d.page_end,
                token_count=d.token_count,
            )
            for d, v in zip(outcome.chunks, vectors, strict=True)
        ]
        await self._swap(document_id, version, collection_id, outcome, chunks)

    async def _parse(self, content: bytes, filename: str) -> Parsed | ParseFailure:
        settings = self._settings
        loop = asyncio.get_running_loop()
        pool = self._process_pool()
        future = loop.run_in_executor(
            pool,
            parse_document,
            content,
            filename,
            settings.chunk_max_tokens,
            settings.chunk_overlap_tokens,
            settings.max_upload_bytes,
        )
        try:
            return await asyncio.wait_for(future, settings.parse_timeout_s)
        except TimeoutError:
            self._stop_pool(kill=True)
            return ParseFailure(
                "too_large",
                f"{filename}: parsing took longer than {settings.parse_timeout_s:g} s and was stopped",
            )
        except BrokenProcessPool:
            self._stop_pool(kill=True)
            return ParseFailure(
                "corrupt", f"{filename}: the parser crashed or ran out of memory on this file"
            )

    async def _embed_chunks(self, document_id: str, version: int, parsed: Parsed) -> list[list[float]]:
        prefix = self._settings.passage_prefix
        texts = [prefix + _indexed_text(d.title, d.section_path, d.text) for d in parsed.chunks]
        vectors: list[list[float]] = []
        batch = self._settings.embed_batch
        for start in range(0, len(texts), batch):
            vectors.extend(await self._embed(texts[start : start + batch]))
            done = min(len(texts), start + batch)
            if done < len(texts):
                await self._progress(document_id, version, 0.2 + 0.75 * done / len(texts))
        return vectors

    async def _swap(
        self, document_id: str, version: int, collection_id: str, parsed: Parsed, chunks: Sequence[ChunkInput]
    ) -> None:
        now = utcnow()
        async with self._db.connect() as connection:
            result = await connection.execute(
                update(_DOC)
                .where(_DOC.id == document_id, _DOC.version == version, _DOC.claimed_by == self.worker_id)
                .values(
                    status=READY,
                    error=None,
                    progress=1.0,
                    title=parsed.title[:1000] or None,
                    mime=parsed.mime[:200],
                    pages=parsed.pages,
                    chunk_count=len(chunks),
                    meta=_json_safe(parsed.metadata) or None,
                    indexed_at=now,
                    updated_at=now,
                    claimed_by=None,
                    claimed_at=None,
                )
            )
            if result.rowcount != 1:  # deleted, re-uploaded or taken over meanwhile: keep what is there
                log.info("document %s changed during ingestion; its stale chunks were discarded", document_id)
                return
            await self._store.replace_document(document_id, collection_id, chunks, connection=connection)
            await connection.execute(
                delete(KnowledgeUploadRow).where(KnowledgeUploadRow.document_id == document_id)
            )

    async def _release(self, document_id: str, version: int, message: str) -> None:
        """Put a claimed document back in the queue (it keeps its attempt count)."""
        async with self._db.connect() as connection:
            await connection.execute(
                update(_DOC)
                .where(_DOC.id == document_id, _DOC.version == version, _DOC.claimed_by == self.worker_id)
                .values(
                    status=QUEUED, error=message[:2000], claimed_by=None, claimed_at=None, updated_at=utcnow()
                )
            )

    async def _progress(self, document_id: str, version: int, progress: float) -> None:
        async with self._db.connect() as connection:
            await connection.execute(
                update(_DOC)
                .where(_DOC.id == document_id, _DOC.version == version, _DOC.claimed_by == self.worker_id)
                .values(progress=progress, claimed_at=utcnow())
            )

    async def _fail(
        self, document_id: str, version: int, status: str, message: str, *, claimed: bool = True
    ) -> None:
        conditions = [_DOC.id == document_id, _DOC.version == version]
        if claimed:
            conditions.append(_DOC.claimed_by == self.worker_id)
        async with self._db.connect() as connection:
            result = await connection.execute(
                update(_DOC)
                .where(*conditions)
                .values(
                    status=status,
                    error=message[:2000],
                    progress=1.0,
                    claimed_by=None,
                    claimed_at=None,
                    updated_at=utcnow(),
                )
            )
            if result.rowcount == 1:
                await connection.execute(
                    delete(KnowledgeUploadRow).where(KnowledgeUploadRow.document_id == document_id)
                )
        log.info("document %s: %s (%s)", document_id, status, message)

    # The parsing process --------------------------------------------------------------------------
    def _process_pool(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._pool is None:
            self._pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=limit_memory,
                initargs=(self._settings.parse_memory_bytes,),
            )
        return self._pool

    def _stop_pool(self, *, kill: bool = False) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if kill:  # a hung parse cannot be cancelled; its process is ended (private but stable attribute)
            processes: dict[int, Any] = getattr(pool, "_processes", None) or {}
            for process in processes.values():
                process.kill()
        pool.shutdown(wait=not kill, cancel_futures=True)


def _indexed_text(title: str | None, section_path: Sequence[str], text: str) -> str:
    return ChunkInput(0, text, (), title=title, section_path=tuple(section_path)).indexed_text


def _json_safe(value: Any) -> Any:
    """Parser metadata, reduced to what JSON can hold."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
