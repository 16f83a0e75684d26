"""The knowledge API: collections, documents (multipart upload, re-upload, delete), chunks, search, answers.

Every route declares ``knowledge.read`` or ``knowledge.write``; on top of that, each collection's and
document's access list decides (:mod:`socle.knowledge.access`): what the caller may not see is a 404,
what they may see but not change a 403. Uploads answer 202 with the queued documents; ingestion goes
on in the background (poll the document, or use ``socle kb ingest --wait``).

Audit: each change (collection created, updated, deleted; document uploaded, re-uploaded, deleted) is
an ``admin.change`` entry through :data:`~socle.gateway.admin_audit.AdminAudit`, with the object's
state before and after as the API shows it, minus anything read from the document's content (title,
parser metadata); searches and answers are ``knowledge.request`` entries (:mod:`socle.gateway.rag`);
refusals are ``access.denied`` entries (the catalog's sink).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, File, Form, Query, UploadFile
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from starlette.responses import Response

from socle.errors import BadRequestError
from socle.gateway.admin_audit import AdminAudit
from socle.gateway.deps import NewCall, ServicesDep, check_action, require
from socle.gateway.rag import knowledge_chat, knowledge_search, require_knowledge
from socle.gateway.responses import JSONBytes, listing
from socle.governance.identity import Principal
from socle.governance.rbac import allowed
from socle.knowledge.access import AccessEntry, can_manage, can_read, can_write
from socle.knowledge.catalog import CollectionRecord, DocumentRecord
from socle.knowledge.retrieve import Method
from socle.knowledge.service import Knowledge
from socle.protocol import ChatCompletionRequest, ChatMessage, KnowledgeOptions

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["Knowledge"])

Reader = Annotated[Principal, Depends(require("knowledge.read"))]
Writer = Annotated[Principal, Depends(require("knowledge.write"))]
Classification = Literal["public", "internal", "confidential", "secret"]
_ENTRIES = TypeAdapter(list[AccessEntry])


async def get_knowledge(services: ServicesDep) -> Knowledge:
    return require_knowledge(services)


KnowledgeDep = Annotated[Knowledge, Depends(get_knowledge)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CollectionIn(_Body):
    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._ -]*$")
    description: str | None = Field(default=None, max_length=2000)
    classification: Classification = "internal"
    org_read: bool = Field(default=False, description="Everyone in the organisation may read it.")
    access: list[AccessEntry] | None = Field(default=None, description="Default: the owning team, write.")
    team_id: str | None = Field(default=None, description="Owning team; default: the caller's (admins only).")


class CollectionPatch(_Body):
    description: str | None = Field(default=None, max_length=2000)
    classification: Classification | None = None
    org_read: bool | None = None
    access: list[AccessEntry] | None = None


class SearchIn(_Body):
    query: str = Field(min_length=1, max_length=4000)
    collections: list[str] | None = Field(default=None, description="Collection ids; default: all readable.")
    k: int = Field(default=10, ge=1, le=200)
    method: Method = "hybrid"
    filters: SearchFilters | None = None


class SearchFilters(_Body):
    document_ids: list[str] | None = Field(default=None, max_length=1000)


class AnswerIn(_Body):
    question: str = Field(min_length=1, max_length=4000)
    collections: list[str] = Field(min_length=1, max_length=100)
    model: str | None = Field(default=None, description="Chat model; default: knowledge.answer_model.")
    k: int | None = Field(default=None, ge=1, le=50)
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    seed: int | None = None


SearchIn.model_rebuild()


def _collection_dict(
    record: CollectionRecord, counts: dict[str, int] | None = None, principal: Principal | None = None
) -> dict[str, Any]:
    data = record.to_dict()
    if counts is not None:
        data["documents"] = counts
    if principal is not None:  # what the caller may do here, so clients (the console) offer only that
        view, writer = record.view, allowed(principal.roles, "knowledge.write")
        checks = (("read", can_read, True), ("write", can_write, writer), ("manage", can_manage, writer))
        data["permissions"] = [name for name, check, action in checks if action and check(view, principal)]
    return data


def _document_state(document: DocumentRecord) -> dict[str, Any]:
    """A document as the audit log keeps it: what the API shows, minus what comes from its content."""
    data = document.to_dict()
    for name in ("title", "metadata", "error"):
        data.pop(name, None)
    return data


def _access_form(value: str | None) -> list[AccessEntry] | None:
    if value is None or not value.strip():
        return None
    try:
        return _ENTRIES.validate_python(orjson.loads(value))
    except (orjson.JSONDecodeError, ValidationError) as exc:
        raise BadRequestError(f"access must be a JSON list of access entries: {exc}", param="access") from exc


# Collections ------------------------------------------------------------------------------------------
@router.post("/collections", summary="Create a collection", status_code=201)
async def create_collection(
    body: CollectionIn, principal: Writer, audit: AdminAudit, knowledge: KnowledgeDep
) -> Response:
    record = await knowledge.catalog.create_collection(
        principal,
        body.name,
        description=body.description,
        classification=body.classification,
        org_read=body.org_read,
        access=body.access,
        team_id=body.team_id,
    )
    await audit("collection.create", "collection", record.id, team=record.team_id, after=record.to_dict())
    return JSONBytes(_collection_dict(record, principal=principal), status_code=201)


@router.get(
    "/collections",
    summary="List the collections one may read or manage, with document counts and one's permissions",
)
async def list_collections(principal: Reader, knowledge: KnowledgeDep) -> Response:
    catalog = knowledge.catalog
    records = await catalog.list_collections(principal)
    counts = await catalog.status_counts_by_collection([c.id for c in records])
    return listing([_collection_dict(c, counts[c.id], principal) for c in records])


@router.get(
    "/collections/{collection_id}", summary="Get a collection, its document counts and one's permissions"
)
async def get_collection(collection_id: str, principal: Reader, knowledge: KnowledgeDep) -> Response:
    catalog = knowledge.catalog
    record = await catalog.collection(principal, collection_id)
    return JSONBytes(_collection_dict(record, await catalog.status_counts(collection_id), principal))


@router.patch("/collections/{collection_id}", summary="Change a collection's settings or access list")
async def update_collection(
    collection_id: str, body: CollectionPatch, principal: Writer, audit: AdminAudit, knowledge: KnowledgeDep
) -> Response:
    changes = body.model_dump(exclude_unset=True)
    if "access" in changes:
        changes["access"] = body.access or []
    before = await knowledge.catalog.collection(principal, collection_id, "manage")
    record = await knowledge.catalog.update_collection(principal, collection_id, changes)
    await audit(
        "collection.update",
        "collection",
        record.id,
        team=record.team_id,
        before=before.to_dict(),
        after=record.to_dict(),
    )
    return JSONBytes(_collection_dict(record, principal=principal))


@router.delete("/collections/{collection_id}", summary="Delete a collection and its documents")
async def delete_collection(
    collection_id: str, principal: Writer, audit: AdminAudit, knowledge: KnowledgeDep
) -> Response:
    before = await knowledge.catalog.collection(principal, collection_id, "manage")
    await knowledge.catalog.delete_collection(principal, collection_id)
    await audit("collection.delete", "collection", before.id, team=before.team_id, before=before.to_dict())
    return JSONBytes({"id": collection_id, "object": "collection", "deleted": True})


# Documents --------------------------------------------------------------------------------------------
@router.post(
    "/collections/{collection_id}/documents",
    summary="Upload documents (multipart, field 'file', repeatable); ingestion runs in the background",
    status_code=202,
)
async def upload_documents(
    collection_id: str,
    principal: Writer,
    audit: AdminAudit,
    knowledge: KnowledgeDep,
    file: Annotated[list[UploadFile], File(description="One or more files.")],
    access: Annotated[str | None, Form(description="JSON access list narrowing the collection's.")] = None,
    classification: Annotated[Classification | None, Form()] = None,
) -> Response:
    entries = _access_form(access)
    collection = await knowledge.catalog.collection(principal, collection_id, "write")
    documents = []
    for upload in file:
        content = await upload.read()
        document, created = await knowledge.upload(
            principal,
            collection_id,
            upload.filename or "document",
            content,
            access=entries,
            classification=classification,
        )
        if created:  # the same content again changes nothing
            after = _document_state(document)
            await audit("document.upload", "document", document.id, team=collection.team_id, after=after)
        documents.append({**document.to_dict(), "duplicate": not created})
    return JSONBytes({"object": "list", "data": documents}, status_code=202)


@router.get("/collections/{collection_id}/documents", summary="List a collection's documents")
async def list_documents(
    collection_id: str,
    principal: Reader,
    knowledge: KnowledgeDep,
    status: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
    after: str | None = None,
) -> Response:
    documents = await knowledge.catalog.documents(
        principal, collection_id, status=status, limit=limit, after=after
    )
    return listing([d.to_dict() for d in documents])


@router.get("/collections/{collection_id}/documents/{document_id}", summary="Get a document and its status")
async def get_document(
    collection_id: str, document_id: str, principal: Reader, knowledge: KnowledgeDep
) -> Response:
    return JSONBytes((await knowledge.catalog.document(principal, collection_id, document_id)).to_dict())


@router.put(
    "/collections/{collection_id}/documents/{document_id}",
    summary="Re-upload a document (multipart, field 'file'); its chunks are swapped once ingested",
    status_code=202,
)
async def reupload_document(
    collection_id: str,
    document_id: str,
    principal: Writer,
    audit: AdminAudit,
    knowledge: KnowledgeDep,
    file: Annotated[UploadFile, File(description="The new version.")],
) -> Response:
    collection = await knowledge.catalog.collection(principal, collection_id, "write")
    before = await knowledge.catalog.document(principal, collection_id, document_id, "write")
    content = await file.read()
    document = await knowledge.reupload(
        principal, collection_id, document_id, file.filename or "document", content
    )
    if document.version != before.version:  # the same content again changes nothing
        await audit(
            "document.reupload",
            "document",
            document.id,
            team=collection.team_id,
            before=_document_state(before),
            after=_document_state(document),
        )
    return JSONBytes(document.to_dict(), status_code=202)


@router.delete(
    "/collections/{collection_id}/documents/{document_id}",
    summary="Delete a document (gone from search at once)",
)
async def delete_document(
    collection_id: str, document_id: str, principal: Writer, audit: AdminAudit, knowledge: KnowledgeDep
) -> Response:
    collection = await knowledge.catalog.collection(principal, collection_id, "write")
    before = await knowledge.catalog.document(principal, collection_id, document_id, "write")
    await knowledge.catalog.delete_document(principal, collection_id, document_id)
    state = _document_state(before)
    await audit("document.delete", "document", document_id, team=collection.team_id, before=state)
    return JSONBytes({"id": document_id, "object": "document", "deleted": True})


@router.get("/documents/{document_id}/chunks", summary="List a document's chunks")
async def document_chunks(
    document_id: str,
    principal: Reader,
    knowledge: KnowledgeDep,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    document = await knowledge.catalog.document(principal, None, document_id)
    chunks = await knowledge.store.document_chunks(document.id, offset=offset, limit=limit)
    return listing(
        [
            {
                "id": c.id,
                "object": "chunk",
                "document_id": c.document_id,
                "ordinal": c.ordinal,
                "text": c.text,
                "title": c.title,
                "section_path": list(c.section_path),
                "page_start": c.page_start,
                "page_end": c.page_end,
                "token_count": c.token_count,
            }
            for c in chunks
        ]
    )


# Search and answers ------------------------------------------------------------------------------------
@router.post("/search", summary="Search the collections one may read (bm25, dense or hybrid)")
async def search(body: SearchIn, principal: Reader, services: ServicesDep, call: NewCall) -> Response:
    hits = await knowledge_search(
        services,
        call,
        body.query,
        body.collections,
        k=body.k,
        method=body.method,
        documents=body.filters.document_ids if body.filters else None,
    )
    return JSONBytes({"object": "list", "method": body.method, "data": [h.to_dict() for h in hits]})


@router.post("/answer", summary="Answer a question from knowledge collections, with citations")
async def answer(
    body: AnswerIn, principal: Reader, services: ServicesDep, knowledge: KnowledgeDep, call: NewCall
) -> Response:
    await check_action(services, principal, "model.use", call.request_id, call.endpoint)
    request = ChatCompletionRequest(
        model=body.model or knowledge.settings.answer_model,
        messages=[ChatMessage(role="user", content=body.question)],
        max_tokens=body.max_tokens,
        temperature=body.temperature,
        seed=body.seed,
        knowledge=KnowledgeOptions(collections=body.collections, k=body.k),
    )
    result = await knowledge_chat(services, call, request)
    assert isinstance(result, dict)  # the request above does not stream
    extra = result["knowledge"]
    return JSONBytes(
        {
            "id": "answer-" + call.request_id,
            "object": "knowledge.answer",
            "model": result["model"],
            "answer": result["choices"][0]["message"]["content"],
            "citations": result["citations"],
            "removed_citations": extra["removed_citations"],
            "abstained": extra["abstained"],
            "classification": extra["classification"],
            "sources": extra["sources"],
            "usage": result["usage"],
        },
        headers={"x-socle-engine": call.engine_name},
    )
