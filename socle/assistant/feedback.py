"""Feedback on answers: thumbs up or down, with an optional comment, by the user who got the answer.

A rating names the answer by its request id. Only the caller's own answers can be rated: the request
must have an ``inference.request`` or ``knowledge.request`` audit entry whose actor is the caller (the
entry is written before the answer is returned, so it is there as soon as the user can click);
otherwise it is a 404, as for a request that never existed. The rated request's model and team are
copied from that entry. One rating per request and user: rating again replaces it.

Each new or changed rating counts in ``socle_feedback_total{model, rating}`` (quality monitoring) and
is recorded in the audit log (``feedback``: the comment as an HMAC). Comments are sealed at rest.
Administrators list ratings with filters (``GET /v1/admin/feedback``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import orjson
from prometheus_client import Counter
from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.exc import IntegrityError

from socle.assistant.sealing import Sealer
from socle.errors import ConflictError, NotFoundError
from socle.governance.audit.events import FeedbackGiven
from socle.governance.audit.log import AuditLog
from socle.governance.audit.reader import EventFilter
from socle.governance.identity import Principal
from socle.storage.db import Database
from socle.storage.models import FeedbackRow, PrincipalRow, TeamRow
from socle.storage.types import new_id, utcnow

__all__ = ["Feedback", "FeedbackFilter", "FeedbackPage", "Rating"]

Rating = Literal["up", "down"]
_ANSWERS = ("inference.request", "knowledge.request")


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedbackFilter:
    rating: Rating | None = None
    model: str | None = None
    team: str | None = None
    """A team id or name."""
    since: datetime | None = None
    until: datetime | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        conditions: list[ColumnElement[bool]] = []
        if self.rating is not None:
            conditions.append(FeedbackRow.rating == self.rating)
        if self.model is not None:
            conditions.append(FeedbackRow.model == self.model)
        if self.team is not None:
            teams = select(TeamRow.id).where(or_(TeamRow.id == self.team, TeamRow.name == self.team))
            conditions.append(FeedbackRow.team_id.in_(teams))
        if self.since is not None:
            conditions.append(FeedbackRow.updated_at >= self.since)
        if self.until is not None:
            conditions.append(FeedbackRow.updated_at < self.until)
        return conditions


@dataclass(frozen=True, slots=True)
class FeedbackPage:
    items: list[dict[str, Any]]
    next_cursor: str | None
    totals: dict[str, int]


class Feedback:
    """Ratings of answers (see the module docs)."""

    def __init__(self, db: Database, sealer: Sealer, audit: AuditLog, counter: Counter) -> None:
        self._db = db
        self._sealer = sealer
        self._audit = audit
        self._counter = counter

    async def give(
        self, caller: Principal, request_id: str, rating: Rating, comment: str | None, *, own_request_id: str
    ) -> dict[str, Any]:
        """Store the caller's rating of their answer ``request_id`` (404 if it is not theirs)."""
        self._audit.ensure_available()
        model, team_id = await self._answer(caller.principal_id, request_id)
        comment = (comment or "").strip() or None
        previous = await self._save(caller.principal_id, request_id, team_id, model, rating, comment)
        if previous != rating:
            self._counter.labels(model, rating).inc()
        await self._audit.record(
            FeedbackGiven(
                actor=caller.principal_id,
                team=team_id,
                request_id=own_request_id,
                answer_request_id=request_id,
                model=model,
                rating=rating,
                comment_hmac=self._audit.pseudonyms.text(comment) if comment else None,
            )
        )
        return {
            "object": "feedback",
            "request_id": request_id,
            "rating": rating,
            "comment": comment,
            "model": model,
            "updated": previous is not None,
        }

    async def search(self, where: FeedbackFilter, *, limit: int, cursor: str | None) -> FeedbackPage:
        """Ratings matching ``where``, newest first, with the team's and the user's names."""
        query = (
            select(FeedbackRow, TeamRow.name, PrincipalRow.name)
            .outerjoin(TeamRow, TeamRow.id == FeedbackRow.team_id)
            .outerjoin(PrincipalRow, PrincipalRow.id == FeedbackRow.principal_id)
            .order_by(FeedbackRow.id.desc())
            .limit(limit + 1)
        )
        if cursor:
            query = query.where(FeedbackRow.id < cursor)
        conditions = where.conditions()
        query = query.where(*conditions)
        totals_query = (
            select(FeedbackRow.rating, func.count()).where(*conditions).group_by(FeedbackRow.rating)
        )
        async with self._db.session() as session:
            rows = (await session.execute(query)).all()
            totals = {"up": 0, "down": 0}
            totals.update({rating: int(n) for rating, n in (await session.execute(totals_query)).all()})
        items = [self._item(row, team, principal) for row, team, principal in rows[:limit]]
        more = len(rows) > limit
        return FeedbackPage(items, items[-1]["id"] if more and items else None, totals)

    # Internals ------------------------------------------------------------------------------------
    async def _answer(self, principal_id: str, request_id: str) -> tuple[str, str | None]:
        """The model and team of the caller's answer ``request_id``, from its audit entry."""
        entries = await self._audit.reader.events(EventFilter(request_id=request_id), limit=20)
        for entry in entries:
            content = orjson.loads(entry.entry)
            if content.get("type") in _ANSWERS and content.get("actor") == principal_id:
                return str(content["data"].get("model") or ""), content.get("team")
        raise NotFoundError(
            f"There is no answer {request_id!r} of yours to rate.",
            code="request_not_found",
            param="request_id",
        )

    async def _save(
        self,
        principal_id: str,
        request_id: str,
        team_id: str | None,
        model: str,
        rating: str,
        comment: str | None,
    ) -> str | None:
        """Insert or replace the rating; returns the previous rating, if any."""
        for _ in range(2):  # a concurrent first rating of the same answer: the second insert updates
            now = utcnow()
            try:
                async with self._db.session() as session:
                    row = await session.scalar(
                        select(FeedbackRow).where(
                            FeedbackRow.request_id == request_id, FeedbackRow.principal_id == principal_id
                        )
                    )
                    if row is None:
                        row_id = new_id()
                        session.add(
                            FeedbackRow(
                                id=row_id,
                                request_id=request_id,
                                principal_id=principal_id,
                                team_id=team_id,
                                model=model,
                                rating=rating,
                                comment=self._seal(row_id, comment),
                                created_at=now,
                                updated_at=now,
                            )
                        )
                        return None
                    previous = row.rating
                    row.rating = rating
                    row.comment = self._seal(row.id, comment)
                    row.updated_at = now
                    return previous
            except IntegrityError:
                continue
        raise ConflictError("The rating could not be saved; try again.", code="feedback_conflict")

    def _seal(self, row_id: str, comment: str | None) -> bytes | None:
        return None if comment is None else self._sealer.seal(row_id, {"comment": comment})

    def _item(self, row: FeedbackRow, team: str | None, principal: str | None) -> dict[str, Any]:
        comment = None if row.comment is None else self._sealer.open(row.id, row.comment)["comment"]
        return {
            "id": row.id,
            "object": "feedback",
            "request_id": row.request_id,
            "rating": row.rating,
            "comment": comment,
            "model": row.model,
            "team": {"id": row.team_id, "name": team},
            "principal": {"id": row.principal_id, "name": principal},
            "created_at": row.created_at,
            "updated_at": row.updated_at,
        }
