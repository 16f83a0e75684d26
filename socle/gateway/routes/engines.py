"""``GET /v1/admin/engines``: every configured engine as the router sees it, for operators (``admin``).

What runs where and whether it answers: kind, residency zone, the model it serves (``sha256:`` of the
model file, or the upstream model), the public models whose pools include it, health, load, and the
last failure seen. Nothing secret: an upstream's key and URL stay in the configuration.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from starlette.responses import Response

from socle.engines.router import Router, Slot
from socle.gateway.deps import ServicesDep, require
from socle.gateway.responses import listing
from socle.governance.identity import Principal

__all__ = ["engine_status", "router"]

router = APIRouter(prefix="/v1/admin", tags=["Administration"])
Admin = Annotated[Principal, Depends(require("admin"))]


@router.get("/engines", summary="Engines: kind, zone, model, pools served, health and load")
async def list_engines(caller: Admin, services: ServicesDep) -> Response:
    return listing(engine_status(services.router))


def engine_status(engines: Router) -> list[dict[str, Any]]:
    """One dict per engine, in configuration order."""
    served: dict[str, list[str]] = {name: [] for name in engines.slots}
    for pool in engines.pools.values():
        for slot in pool.slots:
            served[slot.name].append(pool.name)
    return [_engine(slot, served[name]) for name, slot in engines.slots.items()]


def _engine(slot: Slot, models: list[str]) -> dict[str, Any]:
    config = slot.engine.config
    return {
        "object": "engine",
        "name": slot.name,
        "kind": config.kind,
        "zone": config.zone,
        "model_ref": slot.engine.model_id,
        "capabilities": sorted(slot.engine.capabilities),
        "models": models,
        "healthy": slot.healthy,
        "detail": slot.detail,
        "in_flight": slot.in_flight,
        "capacity": slot.capacity,
        "concurrency": config.concurrency,
        "checked_at": slot.checked_at,
        "last_error": slot.last_error or None,
        "last_error_at": slot.last_error_at,
    }
