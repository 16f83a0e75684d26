"""Liveness, readiness and Prometheus metrics (unauthenticated, as probes and scrapers expect)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from sqlalchemy.exc import SQLAlchemyError
from starlette.responses import Response

from socle.gateway.deps import ServicesDep, public
from socle.gateway.responses import JSONBytes
from socle.observability.metrics import CONTENT_TYPE

__all__ = ["router"]

router = APIRouter(tags=["Operations"], dependencies=[Depends(public)])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> Response:
    return JSONBytes({"status": "ok"})


@router.get("/readyz", summary="Readiness: the database answers and every model has a healthy engine")
async def readyz(services: ServicesDep) -> Response:
    checks: dict[str, str] = {}
    try:
        await services.db.ping()
        checks["database"] = "ok"
    except (SQLAlchemyError, OSError) as exc:
        checks["database"] = f"error: {exc.__class__.__name__}"
    for pool in services.router.pools.values():
        healthy = [s.name for s in pool.slots if s.healthy]
        checks[f"model:{pool.name}"] = "ok" if healthy else "no healthy engine"
    ready = all(v == "ok" for v in checks.values())
    return JSONBytes(
        {"status": "ready" if ready else "not ready", "checks": checks}, status_code=200 if ready else 503
    )


@router.get("/metrics", summary="Prometheus metrics")
async def metrics(services: ServicesDep) -> Response:
    services.metrics.usage_dropped.set(services.usage.dropped)
    return Response(services.metrics.render(), media_type=CONTENT_TYPE)
