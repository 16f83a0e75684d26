"""Knowledge-grounded chat: the pipeline's retrieve ─► build context ─► cite steps, around its chat step.

    retrieve (ACL pre-filtered, hybrid) ─► raise classification ─► relevant? ─no─► abstain
        ─yes─► context ([1]..[n] sources) ─► pipeline.chat (governed as any chat) ─► cite (check markers)

Used by ``POST /v1/chat/completions`` when the body has ``"knowledge": {"collections": [...]}`` and by
``POST /v1/answer``. The classification of the documents retrieved raises the request's classification
(:func:`raise_classification`) before any engine is chosen, so residency routing sees it.

Audit: every knowledge request (these two, and ``POST /v1/search``) runs inside
:func:`audited_knowledge`, which refuses at once (503) while the audit log cannot be written and
ends with one ``knowledge.request`` entry (collections asked for, HMAC of the query, chunks returned or
given to the model, status), written by the pipeline's :meth:`~socle.gateway.pipeline.Pipeline.record_audit`
before the response goes out: if it cannot be written, the client gets 503 instead. A refusal that is
already on the record (RBAC through :func:`~socle.gateway.deps.check_action`, a collection outside the
caller's access lists through the catalog's sink, a residency or budget denial in the pipeline) is not
recorded twice.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

from socle.config import Classification
from socle.errors import NotFoundError, SocleError, UnsupportedError
from socle.gateway.deps import check_action
from socle.gateway.pipeline import Call
from socle.gateway.services import Services
from socle.knowledge.access import higher_classification
from socle.knowledge.answer import abstention, build_context, citation_dicts, relevant, resolve_citations
from socle.knowledge.retrieve import Hit
from socle.knowledge.service import Knowledge
from socle.protocol import ChatCompletionRequest, ChatMessage

__all__ = ["audited_knowledge", "knowledge_chat", "knowledge_search", "require_knowledge", "trace_sources"]


def require_knowledge(services: Services) -> Knowledge:
    if services.knowledge is None:
        raise NotFoundError("The knowledge base is disabled on this gateway.", code="knowledge_disabled")
    return services.knowledge


def trace_sources(call: Call, sources: Sequence[Hit]) -> None:
    """Name the passages returned or given to the model in the call's audit entry (ids, titles, pages;
    no text)."""
    call.trace["retrieved_chunks"] = [
        {
            "chunk_id": hit.chunk.id,
            "document_id": hit.chunk.document_id,
            "collection_id": hit.chunk.collection_id,
            "title": hit.chunk.title or hit.document.title,
            "page_start": hit.chunk.page_start,
            "page_end": hit.chunk.page_end,
        }
        for hit in sources
    ]


@asynccontextmanager
async def audited_knowledge(
    services: Services,
    call: Call,
    query: str,
    collections: Sequence[str] | None,
    method: str | None = None,
) -> AsyncIterator[None]:
    """Run one knowledge request and append its ``knowledge.request`` entry (see the module docs)."""
    services.audit.ensure_available()
    call.trace["collections"] = None if collections is None else list(collections)
    call.trace["query_hmac"] = services.audit.pseudonyms.text(query)
    call.trace["method"] = method
    try:
        yield
    except SocleError as exc:
        await services.pipeline.record_audit(call, exc.status_code, exc)
        raise
    await services.pipeline.record_audit(call, 200, None)


def _raise_to_hits(call: Call, hits: Sequence[Hit]) -> None:
    if hits:
        level = higher_classification(*(h.classification for h in hits))
        call.raise_classification(cast(Classification, level), f"knowledge: {len(hits)} passages retrieved")


async def knowledge_chat(services: Services, call: Call, body: ChatCompletionRequest) -> dict[str, Any]:
    """A chat completion answered from the body's knowledge collections (see the module docs)."""
    knowledge = require_knowledge(services)
    options = body.knowledge
    assert options is not None
    question = next((m.text() for m in reversed(body.messages) if m.role == "user"), "")
    async with audited_knowledge(services, call, question, options.collections):
        await check_action(services, call.principal, "knowledge.read", call.request_id, call.endpoint)
        if body.stream:
            raise UnsupportedError(
                "stream is not supported with knowledge yet; send stream=false.", param="stream"
            )
        settings = knowledge.settings
        hits = await knowledge.retriever.search(
            call.principal, question, collections=options.collections, k=options.k or settings.answer_chunks
        )
        _raise_to_hits(call, hits)
        useful = relevant(hits, settings.min_similarity)
        if not useful:
            call.trace.update(abstained=True, retrieved_chunks=[], classification=call.classification)
            return _abstained(call, body, question)
        context, sources = build_context(question, useful, settings.answer_context_tokens)
        trace_sources(call, sources)
        messages = [ChatMessage(role="system", content=context), *body.messages]
        grounded = body.model_copy(update={"messages": messages, "knowledge": None})
        result = await services.pipeline.chat(call, grounded)
    assert isinstance(result, dict)
    message = result["choices"][0]["message"]
    cited = resolve_citations(message["content"] or "", sources)
    message["content"] = cited.text
    result["citations"] = citation_dicts(cited)
    result["knowledge"] = {
        "abstained": False,
        "removed_citations": cited.removed,
        "classification": call.classification,
        "sources": [h.to_dict() for h in sources],
    }
    return result


async def knowledge_search(
    services: Services, call: Call, query: str, collections: Sequence[str] | None, **options: Any
) -> list[Hit]:
    """A search (``POST /v1/search``), audited: ``options`` are :meth:`Retriever.search`'s."""
    knowledge = require_knowledge(services)
    async with audited_knowledge(services, call, query, collections, options.get("method", "hybrid")):
        hits = await knowledge.retriever.search(call.principal, query, collections=collections, **options)
        trace_sources(call, hits)
        _raise_to_hits(call, hits)
        call.trace["classification"] = call.classification
    return hits


def _abstained(call: Call, body: ChatCompletionRequest, question: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-" + call.request_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.model,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": abstention(question), "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        "citations": [],
        "knowledge": {
            "abstained": True,
            "removed_citations": 0,
            "classification": call.classification,
            "sources": [],
        },
    }
