"""The OpenAI-compatible endpoints. Routes stay short: the pipeline does the work."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends
from starlette.responses import Response, StreamingResponse

from socle.gateway.deps import Authenticated, NewCall, ServicesDep, require
from socle.gateway.rag import knowledge_chat
from socle.gateway.responses import JSONBytes, listing
from socle.protocol import ChatCompletionRequest, CompletionRequest, EmbeddingRequest

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["OpenAI-compatible"])

_SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def _respond(result: dict[str, Any] | AsyncIterator[bytes], engine: str) -> Response:
    headers = {"x-socle-engine": engine}
    if isinstance(result, dict):
        return JSONBytes(result, headers=headers)
    return StreamingResponse(result, media_type="text/event-stream", headers={**_SSE_HEADERS, **headers})


@router.get(
    "/models", summary="List the models this key may use", dependencies=[Depends(require("model.list"))]
)
async def list_models(services: ServicesDep, principal: Authenticated) -> Response:
    """Only the models the caller may use: its key's ``allowed_models`` and its team's model access."""
    created = int(time.time())
    data = []
    pools = services.router.pools
    for name in await services.access.usable(principal.team_id, pools):
        pool = pools[name]
        if principal.allowed_models is not None and not {pool.name, *pool.aliases} & principal.allowed_models:
            continue
        data.append(
            {
                "id": pool.name,
                "object": "model",
                "created": created,
                "owned_by": "socle",
                "aliases": list(pool.aliases),
                "capabilities": sorted(pool.capabilities),
                "engines": [
                    {"name": s.name, "zone": s.engine.config.zone, "healthy": s.healthy} for s in pool.slots
                ],
            }
        )
    return listing(data)


@router.post(
    "/chat/completions",
    dependencies=[Depends(require("model.use"))],
    summary="Create a chat completion (streamed with stream=true)",
)
async def chat_completions(body: ChatCompletionRequest, services: ServicesDep, call: NewCall) -> Response:
    if body.knowledge is not None:  # Socle's extension: answer from knowledge collections, with citations
        return _respond(await knowledge_chat(services, call, body), call.engine_name)
    result = await services.pipeline.chat(call, body)
    return _respond(result, call.engine_name)


@router.post(
    "/completions",
    dependencies=[Depends(require("model.use"))],
    summary="Create a text completion (streamed with stream=true)",
)
async def completions(body: CompletionRequest, services: ServicesDep, call: NewCall) -> Response:
    result = await services.pipeline.completion(call, body)
    return _respond(result, call.engine_name)


@router.post(
    "/embeddings",
    dependencies=[Depends(require("model.use"))],
    summary="Create embeddings for a text or a list of texts",
)
async def embeddings(body: EmbeddingRequest, services: ServicesDep, call: NewCall) -> Response:
    result = await services.pipeline.embeddings(call, body)
    return _respond(result, call.engine_name)
