"""``POST /v1/guardrails/check``: the findings in a text and what the caller's team policy would do.

Integrators scan a text before sending it; tests and benchmarks measure the detectors through the
product itself. Nothing is changed, blocked or recorded: the answer says what *would* happen. The
text itself is never echoed back, only offsets.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from socle.errors import UnsupportedError
from socle.gateway.deps import ServicesDep, require
from socle.gateway.responses import JSONBytes
from socle.governance.identity import Principal

__all__ = ["router"]

router = APIRouter(prefix="/v1/guardrails", tags=["Guardrails"])
Checker = Annotated[Principal, Depends(require("guardrails.check"))]


class CheckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(description="The text to scan.")
    stage: Literal["input", "context", "output"] = Field(
        default="input",
        description="Scan as a user message (input), as retrieved or tool content (context: indirect "
        "injection), or as a model answer (output).",
    )


@router.post("/check", summary="Scan a text: findings and the action of the caller's policy")
async def check(body: CheckIn, caller: Checker, services: ServicesDep) -> Response:
    guard = services.guard
    if guard is None:
        raise UnsupportedError("Guardrails are disabled on this gateway (guardrails.enabled = false).")
    state = await guard.start(caller.principal_id, caller.team_name, caller.team_id)
    if len(body.text) < 2000:
        verdict = guard.verdict(body.text, body.stage, state)
    else:
        verdict = await asyncio.to_thread(guard.verdict, body.text, body.stage, state)
    findings = [
        {
            **finding.to_dict(),
            "category": finding.category,
            "action": rule.action if rule is not None else "allow",
            "rule": rule.rule_name if rule is not None else None,
        }
        for finding, rule in zip(verdict.findings, verdict.rules, strict=True)
    ]
    return JSONBytes(
        {
            "action": verdict.action,
            "policy": state.policy_name,
            "policy_version": state.policy_version,
            "stage": body.stage,
            "ner": guard.ner_backends,
            "findings": findings,
        }
    )
