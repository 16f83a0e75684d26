"""``/v1/conversations``: the caller's chat history (the console keeps it; any client may).

A conversation belongs to the principal who created it, whatever team they act for: nobody else sees
it (404), administrators included. The console creates one at the first question, appends the
question (``POST .../messages``, ``role: user``) before asking and the answer (``role: assistant``,
with its ``model``, ``request_id`` and ``citations``) once it is complete or stopped. Texts are sealed
at rest (:mod:`socle.assistant.sealing`). Deletions are ``admin.change`` audit entries (which
conversation, or how many; never a title or a text).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from socle.assistant.conversations import Conversations
from socle.gateway.admin_audit import AdminAudit
from socle.gateway.deps import ServicesDep, require
from socle.gateway.responses import JSONBytes
from socle.governance.identity import Principal

__all__ = ["router"]

router = APIRouter(prefix="/v1/conversations", tags=["Conversations"])
Owner = Annotated[Principal, Depends(require("chat.history"))]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConversationIn(_Body):
    title: str | None = Field(
        default=None, max_length=1000, description="Shown in the history (200 chars kept)."
    )
    model: str | None = Field(default=None, max_length=200, description="The model last used.")


class MessageIn(_Body):
    role: Literal["user", "assistant"]
    content: str = Field(max_length=500_000)
    model: str | None = Field(default=None, max_length=200)
    request_id: str | None = Field(default=None, max_length=64, description="The answer's request id.")
    citations: list[dict[str, Any]] | None = Field(
        default=None,
        max_length=100,
        description="The answer's `citations`, as the chat completion gave them.",
    )


async def _store(services: ServicesDep) -> Conversations:
    assert services.conversations is not None
    return services.conversations


Store = Annotated[Conversations, Depends(_store)]


@router.get("", summary="The caller's conversations, most recent first")
async def list_conversations(
    owner: Owner, store: Store, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> Response:
    items, more = await store.recent(owner.principal_id, limit=limit)
    return JSONBytes({"object": "list", "data": [c.to_dict() for c in items], "has_more": more})


@router.post("", status_code=201, summary="Start a conversation")
async def create_conversation(owner: Owner, store: Store, body: ConversationIn) -> Response:
    record = await store.create(owner.principal_id, owner.team_id, title=body.title, model=body.model)
    return JSONBytes(record.to_dict(), status_code=201)


@router.delete("", summary="Delete all of the caller's conversations")
async def delete_conversations(owner: Owner, store: Store, audit: AdminAudit) -> Response:
    deleted = await store.delete_all(owner.principal_id)
    if deleted:
        await audit("conversation.delete_all", "conversation", owner.principal_id, after={"deleted": deleted})
    return JSONBytes({"object": "conversation.deleted", "deleted": deleted})


@router.get("/{conversation_id}", summary="One conversation with its messages")
async def get_conversation(owner: Owner, store: Store, conversation_id: str) -> Response:
    return JSONBytes((await store.get(owner.principal_id, conversation_id)).to_dict())


@router.patch("/{conversation_id}", summary="Rename a conversation (or set its model)")
async def update_conversation(
    owner: Owner, store: Store, conversation_id: str, body: ConversationIn
) -> Response:
    record = await store.update(owner.principal_id, conversation_id, title=body.title, model=body.model)
    return JSONBytes(record.to_dict())


@router.delete("/{conversation_id}", summary="Delete a conversation")
async def delete_conversation(
    owner: Owner, store: Store, audit: AdminAudit, conversation_id: str
) -> Response:
    await store.delete(owner.principal_id, conversation_id)
    await audit("conversation.delete", "conversation", conversation_id)
    return JSONBytes({"id": conversation_id, "object": "conversation.deleted", "deleted": True})


@router.post("/{conversation_id}/messages", status_code=201, summary="Append a message to a conversation")
async def add_message(owner: Owner, store: Store, conversation_id: str, body: MessageIn) -> Response:
    message = await store.add_message(
        owner.principal_id,
        conversation_id,
        role=body.role,
        content=body.content,
        model=body.model,
        request_id=body.request_id,
        citations=body.citations,
    )
    return JSONBytes(message.to_dict(), status_code=201)
