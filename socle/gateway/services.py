"""Everything a running gateway owns, built by the app's lifespan and closed with it.

Start-up order: data dir → database (migrations) → bootstrap admin key → engines (loaded and checked
concurrently; any failure refuses the start) → router and health checks → alerts → audit log (keys
checked against the log's) → audit retention schedule → usage recorder → quotas.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass

from socle import egress
from socle.assistant.conversations import Conversations
from socle.assistant.feedback import Feedback
from socle.assistant.sealing import Sealer
from socle.config import Settings
from socle.engines import build_engine
from socle.engines.base import Engine
from socle.engines.router import Router, Slot
from socle.gateway.auditing import AuditDecisionSink, AuditRefusalSink
from socle.gateway.pipeline import Pipeline
from socle.governance.access import ModelAccess
from socle.governance.alerts import Alerts, build_sinks
from socle.governance.audit.log import AuditLog
from socle.governance.audit.schedule import RetentionSchedule
from socle.governance.directory import Directory
from socle.governance.guardrails import Guard
from socle.governance.guardrails.store import PolicyStore
from socle.governance.identity import BootstrapResult, KeyStore, bootstrap
from socle.governance.oidc import OIDCAuthenticator
from socle.governance.quotas import Quotas
from socle.governance.rbac import ROLES
from socle.governance.residency import Residency
from socle.knowledge.service import Knowledge, router_embedder
from socle.observability.metrics import Metrics
from socle.observability.usage import UsageRecorder
from socle.storage.db import Database

__all__ = ["Services", "prepare_database", "start_engines"]

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    db: Database
    keys: KeyStore
    router: Router
    metrics: Metrics
    usage: UsageRecorder
    pipeline: Pipeline
    bootstrap: BootstrapResult
    alerts: Alerts
    quotas: Quotas
    """Budgets and rate limits: ``quotas.budgets`` and ``quotas.limits`` manage them."""
    directory: Directory
    """Organisations, teams, principals and role bindings, for the admin routes."""
    access: ModelAccess
    """Which teams may use which models (grants, cached for ``governance_cache_s``)."""
    audit: AuditLog
    """The tamper-evident audit log: ``await services.audit.record(event)`` (fail closed)."""
    _stack: AsyncExitStack
    residency: Residency
    """Residency policy, teams' classifications, and ``residency.sink``: where residency denials and
    egress refusals are reported (a logging :class:`DecisionSink` until the audit log replaces it)."""
    oidc: OIDCAuthenticator | None = None
    """Single sign-on (bearer JWTs), when ``settings.oidc`` is set."""
    guard: Guard | None = None
    """Guardrails (detectors and team policies), unless ``settings.guardrails.enabled`` is false."""
    knowledge: Knowledge | None = None
    """The knowledge base (collections, ingestion worker, search), unless ``knowledge.enabled`` is off."""
    retention: RetentionSchedule | None = None
    """Scheduled pruning of the audit log, unless ``audit.prune_interval_s`` is unset."""
    conversations: Conversations | None = None
    """Users' chat history (sealed at rest); always set once started."""
    feedback: Feedback | None = None
    """Users' ratings of their answers; always set once started."""

    @classmethod
    async def start(cls, settings: Settings) -> Services:
        async with AsyncExitStack() as stack:
            db, result = await prepare_database(settings)
            stack.push_async_callback(db.close)
            engines = await start_engines(settings.engines)
            for engine in engines:
                stack.push_async_callback(engine.aclose)
            metrics = Metrics()
            router = Router(
                engines,
                settings.models,
                retry_after_s=settings.retry_after_s,
                on_engine_change=lambda slot: _export_slot(metrics, slot),
            )
            for slot in router.slots.values():
                _export_slot(metrics, slot)
            router.start_health_checks(settings.health_check_interval_s)
            stack.push_async_callback(router.aclose)
            keys = KeyStore(db)
            stack.push_async_callback(keys.aclose)
            alerts = Alerts(db, build_sinks(settings.alerts))
            stack.push_async_callback(alerts.aclose)
            audit = await AuditLog.open(db, settings, alerts=alerts)
            stack.push_async_callback(audit.aclose)  # after the pipeline's users, before alerts and db
            retention = None
            if settings.audit.prune_interval_s is not None:
                retention = RetentionSchedule(
                    db, audit, interval_s=settings.audit.prune_interval_s, alerts=alerts
                )
                retention.start()
                stack.push_async_callback(retention.aclose)  # stops before the log closes
            oidc = None
            if settings.oidc is not None:
                oidc = await OIDCAuthenticator.start(
                    settings.oidc,
                    db,
                    production=settings.environment == "production",
                    incompatible_roles=settings.incompatible_roles,
                    known_roles=list(ROLES),
                )
                stack.push_async_callback(oidc.aclose)
            usage = UsageRecorder.from_settings(db, settings.usage)
            await usage.start()
            stack.push_async_callback(usage.aclose)
            access = ModelAccess(
                db, default=settings.model_access.default, cache_s=settings.governance_cache_s
            )
            knowledge = None
            if settings.knowledge.enabled:
                embed = router_embedder(router, settings.knowledge.embedding_model)
                knowledge = await Knowledge.start(db, embed, settings.knowledge)
                knowledge.catalog.sink = AuditRefusalSink(audit)  # refusals become access.denied entries
                stack.push_async_callback(knowledge.aclose)
            quotas = Quotas(db, settings, alerts=alerts)
            await quotas.start()
            stack.push_async_callback(quotas.aclose)  # before the database closes: settles what is pending
            residency = Residency(settings.residency, db, cache_s=settings.governance_cache_s)
            residency.sink = AuditDecisionSink(audit, asyncio.get_running_loop())
            egress_guard = egress.active_guard()
            if egress_guard is not None:  # refusals of the process-wide egress guard go to the same sink
                egress_guard.sink = residency
                stack.callback(setattr, egress_guard, "sink", None)
            guard = None
            if settings.guardrails.enabled:
                store = PolicyStore(db, cache_s=settings.governance_cache_s)
                guard = Guard(settings.guardrails, store=store)
            sealer = await asyncio.to_thread(Sealer.for_settings, settings)
            if guard is not None:
                await asyncio.to_thread(guard.warm_up)  # the NER model, once per process
            services = cls(
                settings=settings,
                db=db,
                keys=keys,
                router=router,
                metrics=metrics,
                usage=usage,
                pipeline=Pipeline(
                    settings, router, metrics, usage, quotas, access, guard, audit=audit, residency=residency
                ),
                bootstrap=result,
                alerts=alerts,
                directory=Directory(db, incompatible_roles=settings.incompatible_roles),
                quotas=quotas,
                access=access,
                residency=residency,
                audit=audit,
                _stack=stack.pop_all(),
                oidc=oidc,
                guard=guard,
                knowledge=knowledge,
                retention=retention,
                conversations=Conversations(db, sealer),
                feedback=Feedback(db, sealer, audit, metrics.feedback),
            )
        return services

    async def aclose(self) -> None:
        await self._stack.aclose()


async def prepare_database(settings: Settings) -> tuple[Database, BootstrapResult]:
    """Create the data dir, open the database, apply migrations and bootstrap the admin key."""
    settings.resolved_data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    db = Database(settings.sqlalchemy_url)
    try:
        await db.migrate()
        result = await bootstrap(db, settings)
    except BaseException:
        await db.close()
        raise
    return db, result


async def start_engines(configs: Sequence[object]) -> list[Engine]:
    """Build and start every engine concurrently; if one fails, close the others and raise."""
    engines = [build_engine(c) for c in configs]  # type: ignore[arg-type]
    results = await asyncio.gather(*(e.start() for e in engines), return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        await asyncio.gather(*(e.aclose() for e in engines), return_exceptions=True)
        raise failures[0]
    return engines


def _export_slot(metrics: Metrics, slot: Slot) -> None:
    metrics.engine_in_flight.labels(slot.name).set(slot.in_flight)
    metrics.engine_healthy.labels(slot.name).set(1 if slot.healthy else 0)
