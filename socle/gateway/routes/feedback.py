"""Feedback on answers: ``POST /v1/feedback`` (the user who got the answer) and
``GET /v1/admin/feedback`` (administrators; see :mod:`socle.assistant.feedback`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from socle.assistant.feedback import Feedback, FeedbackFilter, Rating
from socle.gateway.deps import ServicesDep, require
from socle.gateway.responses import JSONBytes
from socle.governance.identity import Principal

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["Feedback"])


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(min_length=1, max_length=64, description="The rated answer's request id.")
    rating: Rating
    comment: str | None = Field(default=None, max_length=4000)


async def _store(services: ServicesDep) -> Feedback:
    assert services.feedback is not None
    return services.feedback


Store = Annotated[Feedback, Depends(_store)]


@router.post("/feedback", summary="Rate one of your answers (up or down, optional comment)")
async def give_feedback(
    body: FeedbackIn,
    store: Store,
    request: Request,
    caller: Annotated[Principal, Depends(require("model.use"))],
) -> Response:
    result = await store.give(
        caller, body.request_id, body.rating, body.comment, own_request_id=request.state.request_id
    )
    return JSONBytes(result)


@router.get("/admin/feedback", summary="Users' ratings of answers, newest first (administrators)")
async def list_feedback(
    store: Store,
    _: Annotated[Principal, Depends(require("admin"))],
    rating: Rating | None = None,
    model: str | None = None,
    team: Annotated[str | None, Query(description="Team id or name")] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> Response:
    where = FeedbackFilter(rating=rating, model=model, team=team, since=since, until=until)
    page = await store.search(where, limit=limit, cursor=cursor)
    return JSONBytes(
        {
            "object": "list",
            "data": page.items,
            "totals": page.totals,
            "has_more": page.next_cursor is not None,
            "next_cursor": page.next_cursor,
        }
    )
