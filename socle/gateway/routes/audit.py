"""The audit API (``audit.read``: auditors and admins): per-answer traces with inclusion proofs, event
search, the latest signed checkpoint, and verification on demand.

Auditors read the whole organisation's trail (their role is organisation-level by function:
separation of duties keeps them from administering anything). Proofs are against the latest signed
checkpoint; a trace whose entries are newer than it makes the log sign one first, so that every trace
comes with a proof a client can check with the public key alone.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from starlette.responses import Response

from socle.errors import NotFoundError
from socle.gateway.deps import ServicesDep, require
from socle.gateway.responses import JSONBytes
from socle.governance.audit.checkpoint import Checkpoint, NoteVerifier
from socle.governance.audit.reader import EntryRecord, EventFilter
from socle.governance.identity import Principal

__all__ = ["router"]

router = APIRouter(prefix="/v1/audit", tags=["Audit"])
Auditor = Annotated[Principal, Depends(require("audit.read"))]


@router.get("/requests/{request_id}", summary="The full trace of one request, with inclusion proofs")
async def request_trace(request_id: str, caller: Auditor, services: ServicesDep) -> Response:
    audit = services.audit
    entries = await audit.reader.events(EventFilter(request_id=request_id), limit=100)
    if not entries:
        raise NotFoundError(f"No audit entry for request {request_id!r}.", code="request_not_found")
    latest = await audit.reader.latest_checkpoint()
    if latest is None or entries[-1].seq >= latest.size:
        await audit.checkpoint(force=True)
        latest = await audit.reader.latest_checkpoint()
    assert latest is not None
    signed = Checkpoint.open(latest.note, NoteVerifier(audit.verifier_key))
    items = []
    for entry in entries:
        proof = await audit.reader.inclusion_proof(entry.seq, signed.size)
        items.append({**entry.as_dict(), "inclusion_proof": [p.hex() for p in proof]})
    return JSONBytes(
        {
            "object": "audit.trace",
            "request_id": request_id,
            "trace": _trace(entries),
            "entries": items,
            "checkpoint": {"size": signed.size, "root_hash": signed.root_hash.hex(), "note": latest.note},
            "verifier_key": audit.verifier_key,
        }
    )


def _trace(entries: list[EntryRecord]) -> dict[str, Any]:
    """The request's story in one object: who, when, what answered, from which sources, under which
    decisions, at what cost (from its main entry)."""
    main = next(
        (e.content() for e in entries if e.content()["type"] in ("inference.request", "knowledge.request")),
        entries[0].content(),
    )
    data = main["data"]
    return {
        "type": main["type"],
        "time": main["time"],
        "principal": main["actor"],
        "team": main["team"],
        "key": data.get("key_id"),
        "model": data.get("model"),
        "model_ref": data.get("model_ref"),
        "engine": data.get("engine"),
        "zone": data.get("zone"),
        "policy_version": data.get("policy_version"),
        "classification": data.get("classification"),
        "sources": data.get("retrieved_chunks"),
        "guardrails": data.get("guardrails"),
        "routing": data.get("routing"),
        "prompt_hmac": data.get("prompt_hmac"),
        "response_hmac": data.get("response_hmac"),
        "tokens": {"prompt": data.get("prompt_tokens"), "completion": data.get("completion_tokens")},
        "cost_nano_eur": data.get("cost_nano_eur"),
        "status": data.get("status"),
        "reason": data.get("reason"),
        "collections": data.get("collections"),
        "query_hmac": data.get("query_hmac"),
    }


@router.get("/events", summary="Audit entries filtered by time, actor, team and type (paginated)")
async def events(
    caller: Auditor,
    services: ServicesDep,
    since: datetime | None = None,
    until: datetime | None = None,
    actor: Annotated[str | None, Query(description="Principal id (or anonymous, system, cli:...)")] = None,
    team: Annotated[str | None, Query(description="Team id or name")] = None,
    type: Annotated[str | None, Query(description="Event type, e.g. inference.request")] = None,  # noqa: A002
    request_id: str | None = None,
    after: Annotated[
        int | None, Query(ge=-1, description="Return entries after this seq (the cursor)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    team_id = None
    if team is not None:
        team_id = (await services.directory.get_team(caller.org_id, team)).id
    where = EventFilter(
        since=since, until=until, actor=actor, team_id=team_id, type=type, request_id=request_id
    )
    found = await services.audit.reader.events(where, after=after, limit=limit + 1)
    page = found[:limit]
    return JSONBytes(
        {
            "object": "list",
            "data": [e.as_dict() for e in page],
            "has_more": len(found) > limit,
            "next_after": page[-1].seq if page else after,
        }
    )


@router.get("/checkpoints/latest", summary="The latest signed checkpoint and the log's public key")
async def latest_checkpoint(caller: Auditor, services: ServicesDep) -> Response:
    latest = await services.audit.reader.latest_checkpoint()
    if latest is None:
        raise NotFoundError("The audit log has no checkpoint yet.", code="checkpoint_not_found")
    signed = Checkpoint.open(latest.note, NoteVerifier(services.audit.verifier_key))
    return JSONBytes(
        {
            "object": "audit.checkpoint",
            "origin": signed.origin,
            "size": signed.size,
            "root_hash": signed.root_hash.hex(),
            "note": latest.note,
            "verifier_key": services.audit.verifier_key,
        }
    )


@router.post("/verify", summary="Verify the whole log now (leaf hashes, tree, every checkpoint signature)")
async def verify_log(caller: Auditor, services: ServicesDep) -> Response:
    report = await services.audit.verify(services.settings.sqlalchemy_url)
    return JSONBytes({"object": "audit.verification", **report.as_dict()})
