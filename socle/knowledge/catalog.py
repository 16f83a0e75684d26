"""Collections and documents: their rows, who may see and change them, and uploads waiting for ingestion.

Every method takes the calling :class:`~socle.governance.identity.Principal` and checks access itself
(:mod:`socle.knowledge.access`): a collection or document the caller may not see is *not found* (404,
so ids reveal nothing), one they may see but not change is *forbidden* (403). Every refusal is logged
on the ``socle.knowledge.access`` logger and handed to :attr:`Catalog.sink` (a :class:`RefusalSink`;
the gateway's records it in the audit log as ``access.denied``, and fails closed if it cannot) before
the error is raised.

Uploads: the bytes are stored with the document row in one transaction (``kb_uploads``) and the
document is ``queued``; the ingestion worker (:mod:`socle.knowledge.jobs`) takes it from there. The
same content uploaded again to a collection is not stored twice (content sha256, unique per
collection): the existing document is returned. Re-uploading a document queues its new version; its
current chunks stay searchable until the new ones replace them, in one transaction.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from socle.errors import BadRequestError, NotFoundError, PermissionDeniedError, SocleError
from socle.governance.identity import Principal
from socle.knowledge.access import (
    AccessEntry,
    CollectionAccess,
    can_manage,
    can_read,
    can_write,
    classification_rank,
    document_allows,
    entries_from_json,
    entries_to_json,
)
from socle.knowledge.stores.base import Scope
from socle.storage.db import Database
from socle.storage.models import (
    KnowledgeCollectionRow,
    KnowledgeDocumentRow,
    KnowledgeUploadRow,
    TeamRow,
)
from socle.storage.types import new_id, utcnow

__all__ = [
    "PENDING",
    "PROCESSING",
    "QUEUED",
    "READY",
    "Catalog",
    "CollectionRecord",
    "DocumentRecord",
    "LoggingRefusalSink",
    "Refusal",
    "RefusalSink",
]

access_log = logging.getLogger("socle.knowledge.access")

QUEUED, PROCESSING, READY = "queued", "processing", "ready"
PENDING = frozenset({QUEUED, PROCESSING})
Need = Literal["read", "write", "manage"]
_COL = KnowledgeCollectionRow
_DOC = KnowledgeDocumentRow


@dataclass(frozen=True, slots=True)
class CollectionRecord:
    id: str
    org_id: str
    team_id: str
    name: str
    description: str | None
    classification: str
    org_read: bool
    access: tuple[AccessEntry, ...]
    created_by: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: KnowledgeCollectionRow) -> CollectionRecord:
        return cls(
            row.id,
            row.org_id,
            row.team_id,
            row.name,
            row.description,
            row.classification,
            row.org_read,
            entries_from_json(row.access),
            row.created_by,
            row.created_at,
            row.updated_at,
        )

    @property
    def view(self) -> CollectionAccess:
        return CollectionAccess(
            self.id, self.org_id, self.team_id, self.org_read, self.access, self.created_by
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "collection",
            "name": self.name,
            "description": self.description,
            "team_id": self.team_id,
            "classification": self.classification,
            "org_read": self.org_read,
            "access": entries_to_json(self.access),
            "created_by": self.created_by,
            "created_at": int(self.created_at.timestamp()),
            "updated_at": int(self.updated_at.timestamp()),
        }


@dataclass(frozen=True, slots=True)
class DocumentRecord:
    id: str
    collection_id: str
    filename: str
    title: str | None
    mime: str | None
    size_bytes: int
    content_sha256: str
    version: int
    status: str
    error: str | None
    progress: float
    pages: int | None
    chunk_count: int
    access: tuple[AccessEntry, ...] | None
    classification: str | None
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    indexed_at: datetime | None

    @classmethod
    def from_row(cls, row: KnowledgeDocumentRow) -> DocumentRecord:
        return cls(
            row.id,
            row.collection_id,
            row.filename,
            row.title,
            row.mime,
            row.size_bytes,
            row.content_sha256,
            row.version,
            row.status,
            row.error,
            row.progress,
            row.pages,
            row.chunk_count,
            None if row.access is None else entries_from_json(row.access),
            row.classification,
            dict(row.meta or {}),
            row.created_at,
            row.updated_at,
            row.indexed_at,
        )

    @property
    def searchable(self) -> bool:
        """Whether some version of the document is in the index (a re-upload may be pending)."""
        return self.indexed_at is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "document",
            "collection_id": self.collection_id,
            "filename": self.filename,
            "title": self.title,
            "mime": self.mime,
            "size_bytes": self.size_bytes,
            "sha256": self.content_sha256,
            "version": self.version,
            "status": self.status,
            "error": self.error,
            "progress": round(self.progress, 3),
            "pages": self.pages,
            "chunk_count": self.chunk_count,
            "access": None if self.access is None else entries_to_json(self.access),
            "classification": self.classification,
            "metadata": self.metadata,
            "created_at": int(self.created_at.timestamp()),
            "updated_at": int(self.updated_at.timestamp()),
            "indexed_at": int(self.indexed_at.timestamp()) if self.indexed_at else None,
        }


@dataclass(frozen=True, slots=True)
class Refusal:
    """The catalog refused ``principal`` access to an object; ``error`` is what the caller gets."""

    principal: Principal
    object_type: str
    """``collection``, ``document`` or ``team``."""
    object_id: str
    need: str
    """What was asked: ``read``, ``write``, ``manage``."""
    error: SocleError


class RefusalSink(Protocol):
    """Where refusals go before their error is raised. Returns whether the refusal was recorded in the
    audit log (the error is then marked ``audited``); may raise, e.g. 503 if it cannot be recorded."""

    async def knowledge_refused(self, refusal: Refusal) -> bool: ...


class LoggingRefusalSink:
    """The default sink: the ``socle.knowledge.access`` log line is all (tools, tests)."""

    async def knowledge_refused(self, refusal: Refusal) -> bool:
        return False


class Catalog:
    """Collections, documents and pending uploads, with access checks."""

    def __init__(self, db: Database, sink: RefusalSink | None = None) -> None:
        self._db = db
        self.sink: RefusalSink = sink or LoggingRefusalSink()
        """Where refusals are reported (see the module docs); the gateway sets its audit sink."""

    async def _refuse(
        self, principal: Principal, what: str, object_id: str, need: str, *, found: bool
    ) -> None:
        """Report and raise a refusal: 404 if the caller may not know the object (``found`` false), else
        403. Call it outside any write transaction: the sink writes to the audit log."""
        error: SocleError
        if found:
            error = PermissionDeniedError(
                f"You may not {need} {what} {object_id!r}.", code="knowledge_access_denied"
            )
        else:
            error = NotFoundError(
                f"No {what} {object_id!r} (or you may not see it).", code=f"{what}_not_found"
            )
        await self._deny(Refusal(principal, what, object_id, need, error))

    async def _deny(self, refusal: Refusal) -> None:
        principal = refusal.principal
        access_log.warning(
            "knowledge access refused: principal=%s team=%s %s=%s need=%s",
            principal.principal_id,
            principal.team_id,
            refusal.object_type,
            refusal.object_id,
            refusal.need,
        )
        refusal.error.audited = await self.sink.knowledge_refused(refusal)
        raise refusal.error

    # Collections ----------------------------------------------------------------------------------
    async def create_collection(
        self,
        principal: Principal,
        name: str,
        *,
        description: str | None = None,
        classification: str = "internal",
        org_read: bool = False,
        access: Sequence[AccessEntry] | None = None,
        team_id: str | None = None,
    ) -> CollectionRecord:
        """A new collection owned by the caller's team (an admin may name another team)."""
        classification_rank(classification)
        owner = team_id or principal.team_id
        if owner != principal.team_id:
            await self._check_owner(principal, owner)
        entries = (
            list(access) if access is not None else [AccessEntry(kind="team", id=owner, permission="write")]
        )
        now = utcnow()
        try:
            async with self._db.session() as session:
                row = _COL(
                    id=new_id(),
                    org_id=principal.org_id,
                    team_id=owner,
                    name=name,
                    description=description,
                    classification=classification,
                    org_read=org_read,
                    access=entries_to_json(entries),
                    created_by=principal.principal_id,
                    created_at=now,
                    updated_at=now,
                )
                session.add(row)
                await session.flush()
                return CollectionRecord.from_row(row)
        except IntegrityError as exc:
            raise BadRequestError(
                f"A collection named {name!r} already exists.", code="conflict", param="name"
            ) from exc

    async def _check_owner(self, principal: Principal, owner: str) -> None:
        """Only an admin may create a collection for another team, and only one of its organisation."""
        if "admin" not in principal.roles:
            error = PermissionDeniedError(
                "Only an admin may create a collection for another team.", param="team_id"
            )
            await self._deny(Refusal(principal, "team", owner, "write", error))
        async with self._db.read() as connection:
            org = await connection.scalar(select(TeamRow.org_id).where(TeamRow.id == owner))
        if org != principal.org_id:
            missing = NotFoundError(f"No team {owner!r}.", code="team_not_found", param="team_id")
            if org is None:
                raise missing
            await self._deny(Refusal(principal, "team", owner, "write", missing))

    async def list_collections(self, principal: Principal) -> list[CollectionRecord]:
        """The collections the caller may read or manage."""
        return [
            c
            for c in await self._org_collections(principal.org_id)
            if can_read(c.view, principal) or can_manage(c.view, principal)
        ]

    async def collection(
        self, principal: Principal, collection_id: str, need: Need = "read"
    ) -> CollectionRecord:
        record = await self._load_collection(collection_id)
        if record is None or not _visible(record, principal):
            await self._refuse(principal, "collection", collection_id, need, found=False)
        assert record is not None
        await self._require(principal, record, need)
        return record

    async def _load_collection(self, collection_id: str) -> CollectionRecord | None:
        async with self._db.read() as connection:
            row = (await connection.execute(select(_COL).where(_COL.id == collection_id))).first()
        return CollectionRecord.from_row(row) if row is not None else None  # type: ignore[arg-type]

    async def _require(self, principal: Principal, record: CollectionRecord, need: Need) -> None:
        """403 unless ``principal`` may ``need`` the (visible) collection."""
        if not {"read": can_read, "write": can_write, "manage": can_manage}[need](record.view, principal):
            await self._refuse(principal, "collection", record.id, need, found=True)

    async def update_collection(
        self, principal: Principal, collection_id: str, changes: dict[str, Any]
    ) -> CollectionRecord:
        """Change ``description``, ``classification``, ``org_read`` or ``access`` (managers only)."""
        await self.collection(principal, collection_id, "manage")
        values: dict[str, Any] = {"updated_at": utcnow()}
        for name in ("description", "org_read"):
            if name in changes:
                values[name] = changes[name]
        if "classification" in changes:
            classification_rank(changes["classification"])
            values["classification"] = changes["classification"]
        if "access" in changes:
            values["access"] = entries_to_json(changes["access"])
        async with self._db.session() as session:
            await session.execute(update(_COL).where(_COL.id == collection_id).values(**values))
        access_log.info(
            "collection %s changed by %s: %s", collection_id, principal.principal_id, sorted(values)
        )
        return await self.collection(principal, collection_id, "manage")

    async def delete_collection(self, principal: Principal, collection_id: str) -> None:
        """Delete a collection with its documents and chunks (gone from search at once)."""
        await self.collection(principal, collection_id, "manage")
        async with self._db.session() as session:
            await session.execute(delete(_COL).where(_COL.id == collection_id))

    async def status_counts(self, collection_id: str) -> dict[str, int]:
        async with self._db.read() as connection:
            rows = await connection.execute(
                select(_DOC.status, func.count())
                .where(_DOC.collection_id == collection_id)
                .group_by(_DOC.status)
            )
            return {status: int(count) for status, count in rows}

    async def status_counts_by_collection(self, collection_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """Document counts by status of several collections in one query (collections listing)."""
        counts: dict[str, dict[str, int]] = {i: {} for i in collection_ids}
        if not counts:
            return counts
        async with self._db.read() as connection:
            rows = await connection.execute(
                select(_DOC.collection_id, _DOC.status, func.count())
                .where(_DOC.collection_id.in_(list(counts)))
                .group_by(_DOC.collection_id, _DOC.status)
            )
            for collection_id, status, count in rows:
                counts[collection_id][status] = int(count)
        return counts

    async def _org_collections(self, org_id: str) -> list[CollectionRecord]:
        async with self._db.read() as connection:
            rows = await connection.execute(select(_COL).where(_COL.org_id == org_id).order_by(_COL.name))
            return [CollectionRecord.from_row(r) for r in rows]  # type: ignore[arg-type]

    # Documents -------------------------------------------------------------------------------------
    async def add_document(
        self,
        principal: Principal,
        collection_id: str,
        filename: str,
        content: bytes,
        *,
        access: Sequence[AccessEntry] | None = None,
        classification: str | None = None,
    ) -> tuple[DocumentRecord, bool]:
        """Queue an upload; returns the document and whether it is new (``False``: same content exists)."""
        collection = await self.collection(principal, collection_id, "write")
        self._check_classification(collection, classification)
        sha = hashlib.sha256(content).hexdigest()
        now = utcnow()
        async with self._db.session() as session:
            existing = await session.scalar(
                select(_DOC).where(_DOC.collection_id == collection_id, _DOC.content_sha256 == sha)
            )
            if existing is not None:
                return DocumentRecord.from_row(existing), False
            row = _DOC(
                id=new_id(),
                collection_id=collection_id,
                filename=_clean_filename(filename),
                size_bytes=len(content),
                content_sha256=sha,
                version=1,
                status=QUEUED,
                progress=0.0,
                chunk_count=0,
                access=None if access is None else entries_to_json(access),
                classification=classification,
                created_by=principal.principal_id,
                created_at=now,
                updated_at=now,
                attempts=0,
            )
            session.add(row)
            await session.flush()
            session.add(KnowledgeUploadRow(document_id=row.id, content=content, created_at=now))
            return DocumentRecord.from_row(row), True

    async def replace_content(
        self, principal: Principal, collection_id: str, document_id: str, filename: str, content: bytes
    ) -> DocumentRecord:
        """Queue a new version of a document (its current chunks stay searchable meanwhile)."""
        await self.collection(principal, collection_id, "write")
        current = await self.document(principal, collection_id, document_id)
        sha = hashlib.sha256(content).hexdigest()
        if sha == current.content_sha256:
            return current
        now = utcnow()
        try:
            async with self._db.session() as session:
                await session.execute(
                    update(_DOC)
                    .where(_DOC.id == document_id)
                    .values(
                        filename=_clean_filename(filename),
                        size_bytes=len(content),
                        content_sha256=sha,
                        version=_DOC.version + 1,
                        status=QUEUED,
                        error=None,
                        progress=0.0,
                        attempts=0,
                        claimed_by=None,
                        claimed_at=None,
                        updated_at=now,
                    )
                )
                await session.execute(
                    delete(KnowledgeUploadRow).where(KnowledgeUploadRow.document_id == document_id)
                )
                session.add(KnowledgeUploadRow(document_id=document_id, content=content, created_at=now))
        except IntegrityError as exc:
            raise BadRequestError(
                "Another document of this collection has exactly this content.", code="duplicate_document"
            ) from exc
        return await self.document(principal, collection_id, document_id)

    async def documents(
        self,
        principal: Principal,
        collection_id: str,
        *,
        status: str | None = None,
        limit: int = 1000,
        after: str | None = None,
    ) -> list[DocumentRecord]:
        collection = await self.collection(principal, collection_id, "read")
        manager = can_manage(collection.view, principal)
        statement = select(_DOC).where(_DOC.collection_id == collection_id).order_by(_DOC.id).limit(limit)
        if status is not None:
            statement = statement.where(_DOC.status == status)
        if after is not None:
            statement = statement.where(_DOC.id > after)
        async with self._db.read() as connection:
            rows = [DocumentRecord.from_row(r) for r in await connection.execute(statement)]  # type: ignore[arg-type]
        return [d for d in rows if manager or document_allows(d.access, principal, collection.team_id)]

    async def document(
        self, principal: Principal, collection_id: str | None, document_id: str, need: Need = "read"
    ) -> DocumentRecord:
        """A document the caller may see (``collection_id``: the collection it must be in, if given)."""
        async with self._db.read() as connection:
            row = (await connection.execute(select(_DOC).where(_DOC.id == document_id))).first()
        if row is None or (collection_id is not None and row.collection_id != collection_id):
            await self._refuse(principal, "document", document_id, need, found=False)
        assert row is not None
        record = DocumentRecord.from_row(row)  # type: ignore[arg-type]
        collection = await self._load_collection(record.collection_id)
        if collection is None or not _visible(collection, principal):
            await self._refuse(principal, "document", document_id, need, found=False)
        assert collection is not None
        await self._require(principal, collection, need)
        if not (
            can_manage(collection.view, principal)
            or document_allows(record.access, principal, collection.team_id)
        ):
            await self._refuse(principal, "document", document_id, need, found=False)
        return record

    async def delete_document(self, principal: Principal, collection_id: str, document_id: str) -> None:
        """Delete a document: its chunks leave the index in the same transaction."""
        await self.document(principal, collection_id, document_id, "write")
        async with self._db.session() as session:
            await session.execute(delete(_DOC).where(_DOC.id == document_id))

    # Search scope ---------------------------------------------------------------------------------
    async def scope(
        self,
        principal: Principal,
        collection_ids: Sequence[str] | None,
        documents: Sequence[str] | None = None,
    ) -> tuple[Scope, dict[str, CollectionRecord]]:
        """What ``principal`` may search: the readable collections among ``collection_ids`` (all readable
        ones if ``None``; an unreadable one named explicitly is a 404, or a 403 for its managers) minus
        the documents whose own access list leaves the caller out."""
        every = await self._org_collections(principal.org_id)
        readable = {c.id: c for c in every if can_read(c.view, principal)}
        manageable = {c.id for c in every if can_manage(c.view, principal)}
        if collection_ids is not None:
            for collection_id in collection_ids:
                if collection_id not in readable:  # a manager sees it exists (403), others do not (404)
                    await self._refuse(
                        principal, "collection", collection_id, "read", found=collection_id in manageable
                    )
            readable = {i: readable[i] for i in collection_ids}
        excluded: set[str] = set()
        if readable:
            async with self._db.read() as connection:
                narrowed = await connection.execute(
                    select(_DOC.id, _DOC.collection_id, _DOC.access).where(
                        _DOC.collection_id.in_(list(readable)), _DOC.access.is_not(None)
                    )
                )
                for doc_id, collection_id, access in narrowed:
                    team = readable[collection_id].team_id
                    if not document_allows(entries_from_json(access), principal, team):
                        excluded.add(doc_id)
        scope = Scope(
            frozenset(readable), frozenset(excluded), None if documents is None else frozenset(documents)
        )
        return scope, readable

    async def describe(self, document_ids: Sequence[str]) -> dict[str, DocumentRecord]:
        """Documents by id, for search hits (no access check: hits come from an access-checked scope)."""
        if not document_ids:
            return {}
        async with self._db.read() as connection:
            rows = await connection.execute(select(_DOC).where(_DOC.id.in_(list(set(document_ids)))))
            return {r.id: DocumentRecord.from_row(r) for r in rows}  # type: ignore[arg-type]

    @staticmethod
    def _check_classification(collection: CollectionRecord, classification: str | None) -> None:
        if classification is None:
            return
        if classification_rank(classification) < classification_rank(collection.classification):
            raise BadRequestError(
                f"A document may raise its collection's classification ({collection.classification}), "
                "not lower it.",
                param="classification",
            )


def _visible(record: CollectionRecord, principal: Principal) -> bool:
    return can_read(record.view, principal) or can_manage(record.view, principal)


def _clean_filename(filename: str) -> str:
    name = filename.replace("\\", "/").rsplit("/", 1)[-1].strip() or "document"
    return name[:500]
