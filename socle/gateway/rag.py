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

Streaming (``stream=true``): the pipeline streams the answer as any chat (governed the same way, its
audit entry holding the model's own text, as without streaming), and :func:`_cited_events` checks the
markers in its text chunks as they pass (:class:`~socle.knowledge.answer.CitationStream`: the streamed
text is exactly the non-streamed answer's), then puts ``citations`` and ``knowledge`` on the chunk that
carries ``finish_reason``. The cite step stays after the pipeline, where it is without streaming, rather
than inside it: the wire chunks are its only interface.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

import orjson

from socle.config import Classification
from socle.errors import NotFoundError, SocleError
from socle.gateway.deps import check_action
from socle.gateway.pipeline import Call
from socle.gateway.services import Services
from socle.knowledge.access import higher_classification
from socle.knowledge.answer import (
    CitationStream,
    Cited,
    abstention,
    build_context,
    citation_dicts,
    relevant,
    resolve_citations,
)
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


class _Scope:
    streaming = False


@asynccontextmanager
async def audited_knowledge(
    services: Services,
    call: Call,
    query: str,
    collections: Sequence[str] | None,
    method: str | None = None,
) -> AsyncIterator[_Scope]:
    """Run one knowledge request and append its ``knowledge.request`` entry (see the module docs).

    A streamed answer is handed to the pipeline (``scope.streaming = True``): its stream appends the
    entry when it ends, with the tokens, so it is not written here."""
    services.audit.ensure_available()
    call.trace["collections"] = None if collections is None else list(collections)
    call.trace["query_hmac"] = services.audit.pseudonyms.text(query)
    call.trace["method"] = method
    scope = _Scope()
    try:
        yield scope
    except SocleError as exc:
        await services.pipeline.record_audit(call, exc.status_code, exc)
        raise
    if not scope.streaming:
        await services.pipeline.record_audit(call, 200, None)


def _raise_to_hits(call: Call, hits: Sequence[Hit]) -> None:
    if hits:
        level = higher_classification(*(h.classification for h in hits))
        call.raise_classification(cast(Classification, level), f"knowledge: {len(hits)} passages retrieved")


async def knowledge_chat(
    services: Services, call: Call, body: ChatCompletionRequest
) -> dict[str, Any] | AsyncIterator[bytes]:
    """A chat completion answered from the body's knowledge collections (see the module docs)."""
    knowledge = require_knowledge(services)
    options = body.knowledge
    assert options is not None
    question = next((m.text() for m in reversed(body.messages) if m.role == "user"), "")
    async with audited_knowledge(services, call, question, options.collections) as scope:
        await check_action(services, call.principal, "knowledge.read", call.request_id, call.endpoint)
        settings = knowledge.settings
        hits = await knowledge.retriever.search(
            call.principal, question, collections=options.collections, k=options.k or settings.answer_chunks
        )
        _raise_to_hits(call, hits)
        useful = relevant(hits, settings.min_similarity)
        if not useful:
            call.trace.update(abstained=True, retrieved_chunks=[], classification=call.classification)
            answer = _abstained(call, body, question)
            return _abstained_events(answer, body) if body.stream else answer
        context, sources = build_context(question, useful, settings.answer_context_tokens)
        trace_sources(call, sources)
        messages = [ChatMessage(role="system", content=context), *body.messages]
        grounded = body.model_copy(update={"messages": messages, "knowledge": None})
        result = await services.pipeline.chat(call, grounded)
        scope.streaming = not isinstance(result, dict)
    if not isinstance(result, dict):
        return _cited_events(result, call, sources)
    message = result["choices"][0]["message"]
    cited = resolve_citations(message["content"] or "", sources)
    message["content"] = cited.text
    result.update(_extension(call, cited, sources))
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


def _extension(call: Call, cited: Cited, sources: Sequence[Hit]) -> dict[str, Any]:
    """Socle's fields of a knowledge answer: the citations, and what the knowledge base did."""
    return {
        "citations": citation_dicts(cited),
        "knowledge": {
            "abstained": False,
            "removed_citations": cited.removed,
            "classification": call.classification,
            "sources": [h.to_dict() for h in sources],
        },
    }


async def _cited_events(
    events: AsyncIterator[bytes], call: Call, sources: Sequence[Hit]
) -> AsyncIterator[bytes]:
    """The pipeline's SSE events with their text's markers checked, and the citations on the final
    chunk (the one with ``finish_reason``), preceded by any text held back until then."""
    stream = CitationStream(sources)
    try:
        async for event in events:
            chunk = orjson.loads(event[6:]) if event.startswith(b"data: {") else None
            choices = chunk.get("choices") if chunk is not None else None
            if chunk is None or not choices:  # [DONE], an error event, the usage chunk
                yield event
                continue
            choice = choices[0]
            content = choice["delta"].get("content")
            if choice.get("finish_reason") is not None:
                rest = stream.close()
                if rest:
                    held = {**choice, "delta": {"content": rest}, "finish_reason": None}
                    yield _data({**chunk, "choices": [held]})
                yield _data({**chunk, **_extension(call, stream.cited(), sources)})
            elif content:
                text = stream.feed(content)
                if text:
                    choice["delta"]["content"] = text
                    yield _data(chunk)
            else:  # the first chunk (the role)
                yield event
    finally:  # closing the pipeline's stream settles and audits the call
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()


def _data(chunk: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


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


async def _abstained_events(answer: dict[str, Any], body: ChatCompletionRequest) -> AsyncIterator[bytes]:
    """The abstention as a stream: the role, the text, then the final chunk with the extension fields."""
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    base = {k: answer[k] for k in ("id", "created", "model", "system_fingerprint")}
    base["object"] = "chat.completion.chunk"
    if include_usage:
        base["usage"] = None
    text = answer["choices"][0]["message"]["content"]
    for delta, finish in (
        ({"role": "assistant", "content": ""}, None),
        ({"content": text}, None),
        ({}, "stop"),
    ):
        chunk = {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if finish is not None:
            chunk.update(citations=answer["citations"], knowledge=answer["knowledge"])
        yield _data(chunk)
    if include_usage:
        yield _data({**base, "choices": [], "usage": answer["usage"]})
    yield b"data: [DONE]\n\n"
