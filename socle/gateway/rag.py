"""Knowledge-grounded chat: the pipeline's retrieve ─► build context ─► cite steps, around its chat step.

    retrieve (ACL pre-filtered, hybrid) ─► raise classification ─► relevant? ─no─► abstain
        ─yes─► context ([1]..[n] sources) ─► pipeline.chat (governed as any chat) ─► cite (check markers)

Used by ``POST /v1/chat/completions`` when the body has ``"knowledge": {"collections": [...]}`` and by
``POST /v1/answer``. The classification of the documents retrieved raises the request's classification
(:func:`raise_classification`) before any engine is chosen, so residency routing sees it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, cast

from socle.config import Classification
from socle.errors import NotFoundError, UnsupportedError
from socle.gateway.pipeline import Call
from socle.gateway.services import Services
from socle.governance.rbac import ensure_allowed
from socle.knowledge.access import higher_classification
from socle.knowledge.answer import abstention, build_context, citation_dicts, relevant, resolve_citations
from socle.knowledge.retrieve import Hit
from socle.knowledge.service import Knowledge
from socle.protocol import ChatCompletionRequest, ChatMessage

__all__ = ["knowledge_chat", "require_knowledge"]


def require_knowledge(services: Services) -> Knowledge:
    if services.knowledge is None:
        raise NotFoundError("The knowledge base is disabled on this gateway.", code="knowledge_disabled")
    return services.knowledge


def _trace_sources(call: Call, sources: Sequence[Hit]) -> None:
    """Name the passages given to the model in the call's audit entry (ids, titles, pages; no text)."""
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


async def knowledge_chat(services: Services, call: Call, body: ChatCompletionRequest) -> dict[str, Any]:
    """A chat completion answered from the body's knowledge collections (see the module docs)."""
    knowledge = require_knowledge(services)
    options = body.knowledge
    assert options is not None
    ensure_allowed(call.principal.roles, "knowledge.read")
    if body.stream:
        raise UnsupportedError(
            "stream is not supported with knowledge yet; send stream=false.", param="stream"
        )
    question = next((m.text() for m in reversed(body.messages) if m.role == "user"), "")
    settings = knowledge.settings
    hits = await knowledge.retriever.search(
        call.principal, question, collections=options.collections, k=options.k or settings.answer_chunks
    )
    if hits:
        level = higher_classification(*(h.classification for h in hits))
        call.raise_classification(cast(Classification, level), f"knowledge: {len(hits)} passages retrieved")
    useful = relevant(hits, settings.min_similarity)
    if not useful:
        return _abstained(call, body, question)
    context, sources = build_context(question, useful, settings.answer_context_tokens)
    _trace_sources(call, sources)
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
