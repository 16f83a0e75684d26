"""Chat history: each user's conversations and their messages, kept server-side, sealed at rest.

The console appends the messages of each exchange (``POST /v1/conversations/{id}/messages``): the
question before it asks, the answer (or what was produced before Stop) after. Chat completions stay
stateless and OpenAI-compatible; a client that wants no history simply does not write one.

Every operation names its owner (a principal id): a conversation of someone else does not exist for
the caller (:class:`~socle.errors.NotFoundError`), whatever their roles. Titles, message texts and
citations are sealed (:mod:`socle.assistant.sealing`), bound to their row's id.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import delete, func, select, update

from socle.assistant.sealing import Sealer
from socle.errors import NotFoundError
from socle.storage.db import Database
from socle.storage.models import ConversationMessageRow, ConversationRow
from socle.storage.types import new_id, utcnow

__all__ = ["ConversationRecord", "Conversations", "MessageRecord", "Role"]

Role = Literal["user", "assistant"]
_TITLE_CHARS = 200


@dataclass(frozen=True, slots=True)
class MessageRecord:
    id: str
    conversation_id: str
    role: str
    content: str
    model: str | None
    request_id: str | None
    citations: list[dict[str, Any]] | None
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "conversation.message",
            "conversation_id": self.conversation_id,
            "role": self.role,
            "content": self.content,
            "model": self.model,
            "request_id": self.request_id,
            "citations": self.citations,
            "created_at": self.created_at,
        }


@dataclass(frozen=True, slots=True)
class ConversationRecord:
    id: str
    team_id: str
    title: str
    model: str | None
    created_at: datetime
    updated_at: datetime
    message_count: int = 0
    messages: list[MessageRecord] | None = field(default=None)

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "object": "conversation",
            "title": self.title,
            "model": self.model,
            "team_id": self.team_id,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "message_count": self.message_count,
        }
        if self.messages is not None:
            body["messages"] = [m.to_dict() for m in self.messages]
        return body


class Conversations:
    """The conversations store (see the module docs)."""

    def __init__(self, db: Database, sealer: Sealer) -> None:
        self._db = db
        self._sealer = sealer

    async def create(
        self, owner: str, team_id: str, *, title: str | None = None, model: str | None = None
    ) -> ConversationRecord:
        now = utcnow()
        row_id = new_id()
        text = _title(title)
        async with self._db.session() as session:
            session.add(
                ConversationRow(
                    id=row_id,
                    principal_id=owner,
                    team_id=team_id,
                    title=self._sealer.seal(row_id, {"title": text}),
                    model=model,
                    created_at=now,
                    updated_at=now,
                )
            )
        return ConversationRecord(row_id, team_id, text, model, now, now)

    async def recent(self, owner: str, *, limit: int = 50) -> tuple[list[ConversationRecord], bool]:
        """The owner's conversations, most recently updated first; and whether there are more."""
        counts = (
            select(ConversationMessageRow.conversation_id, func.count().label("n"))
            .group_by(ConversationMessageRow.conversation_id)
            .subquery()
        )
        query = (
            select(ConversationRow, func.coalesce(counts.c.n, 0))
            .outerjoin(counts, counts.c.conversation_id == ConversationRow.id)
            .where(ConversationRow.principal_id == owner)
            .order_by(ConversationRow.updated_at.desc(), ConversationRow.id.desc())
            .limit(limit + 1)
        )
        async with self._db.session() as session:
            rows = (await session.execute(query)).all()
        return [self._record(row, count) for row, count in rows[:limit]], len(rows) > limit

    async def get(self, owner: str, conversation_id: str) -> ConversationRecord:
        """The conversation with its messages, oldest first."""
        async with self._db.session() as session:
            row = await self._owned(session, owner, conversation_id)
            messages = (
                await session.scalars(
                    select(ConversationMessageRow)
                    .where(ConversationMessageRow.conversation_id == conversation_id)
                    .order_by(ConversationMessageRow.id)
                )
            ).all()
        opened = [self._message(m) for m in messages]
        record = self._record(row, len(opened))
        return replace(record, messages=opened)

    async def update(
        self, owner: str, conversation_id: str, *, title: str | None = None, model: str | None = None
    ) -> ConversationRecord:
        async with self._db.session() as session:
            row = await self._owned(session, owner, conversation_id)
            if title is not None:
                row.title = self._sealer.seal(row.id, {"title": _title(title)})
            if model is not None:
                row.model = model
            row.updated_at = utcnow()
        return await self._summary(owner, conversation_id)

    async def delete(self, owner: str, conversation_id: str) -> None:
        async with self._db.session() as session:
            row = await self._owned(session, owner, conversation_id)
            await session.execute(
                delete(ConversationMessageRow).where(ConversationMessageRow.conversation_id == row.id)
            )
            await session.delete(row)

    async def delete_all(self, owner: str) -> int:
        """Delete every conversation of ``owner``; returns how many there were."""
        mine = select(ConversationRow.id).where(ConversationRow.principal_id == owner)
        async with self._db.session() as session:
            await session.execute(
                delete(ConversationMessageRow).where(ConversationMessageRow.conversation_id.in_(mine))
            )
            result = await session.execute(
                delete(ConversationRow).where(ConversationRow.principal_id == owner)
            )
        return int(getattr(result, "rowcount", 0) or 0)

    async def add_message(
        self,
        owner: str,
        conversation_id: str,
        *,
        role: Role,
        content: str,
        model: str | None = None,
        request_id: str | None = None,
        citations: list[dict[str, Any]] | None = None,
    ) -> MessageRecord:
        now = utcnow()
        message_id = new_id()
        sealed = self._sealer.seal(message_id, {"content": content, "citations": citations})
        async with self._db.session() as session:
            row = await self._owned(session, owner, conversation_id)
            session.add(
                ConversationMessageRow(
                    id=message_id,
                    conversation_id=row.id,
                    role=role,
                    model=model,
                    request_id=request_id,
                    sealed=sealed,
                    created_at=now,
                )
            )
            await session.execute(
                update(ConversationRow)
                .where(ConversationRow.id == row.id)
                .values(updated_at=now, model=model or row.model)
            )
        return MessageRecord(message_id, conversation_id, role, content, model, request_id, citations, now)

    # Internals ------------------------------------------------------------------------------------
    async def _owned(self, session: Any, owner: str, conversation_id: str) -> ConversationRow:
        row: ConversationRow | None = await session.scalar(
            select(ConversationRow).where(
                ConversationRow.id == conversation_id, ConversationRow.principal_id == owner
            )
        )
        if row is None:
            raise NotFoundError(
                f"There is no conversation {conversation_id!r} of yours.", code="conversation_not_found"
            )
        return row

    async def _summary(self, owner: str, conversation_id: str) -> ConversationRecord:
        record = await self.get(owner, conversation_id)
        return replace(record, messages=None)

    def _record(self, row: ConversationRow, count: int) -> ConversationRecord:
        title = str(self._sealer.open(row.id, row.title)["title"])
        return ConversationRecord(
            row.id, row.team_id, title, row.model, row.created_at, row.updated_at, count
        )

    def _message(self, row: ConversationMessageRow) -> MessageRecord:
        opened = self._sealer.open(row.id, row.sealed)
        return MessageRecord(
            row.id,
            row.conversation_id,
            row.role,
            str(opened["content"]),
            row.model,
            row.request_id,
            opened.get("citations"),
            row.created_at,
        )


def _title(title: str | None) -> str:
    text = " ".join((title or "").split())
    return text[:_TITLE_CHARS]
