"""Scheduled retention: the server prunes the audit log every ``audit.prune_interval_s``, one replica at once.

Each tick first looks, reading only, whether anything is old enough to go (:func:`prune_boundary`);
most ticks stop there. Otherwise the process takes the **pruning lease** on the head row (a conditional
``UPDATE`` of ``prune_lease_owner`` / ``prune_lease_until``: exactly one replica gets it, the others
skip this tick), prunes in steps of at most ``max_entries`` entries (each step one short transaction
with its own ``audit.prune`` entry, see :mod:`socle.governance.audit.retention`), renewing the lease
between steps, and gives the lease back. A replica that dies while pruning loses the lease after
:data:`LEASE`; the lease only saves duplicated work: correctness never rests on it, since each step
commits only if the head's pruned size is still the one it started from.

A failure (the database is away, the log does not match its checkpoint...) is logged and raises an
``audit.prune_failed`` alert (once per hour across replicas); the task carries on at the next tick and
never takes the server down.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import or_, update

from socle.governance.alerts import Alert, Alerts
from socle.governance.audit.log import AuditLog
from socle.governance.audit.retention import PruneResult, prune, prune_boundary
from socle.governance.audit.store import HEAD
from socle.storage.db import Database
from socle.storage.types import utcnow

__all__ = ["LEASE", "RetentionSchedule", "process_name"]

log = logging.getLogger("socle.audit")

LEASE = timedelta(minutes=15)
"""How long a pruning lease lasts without renewal (each step renews it)."""
_STEP = 100_000
_ACTOR = "system"


def process_name() -> str:
    """A name for this process, unique among replicas: host, pid and a random suffix."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"[:64]


class RetentionSchedule:
    """Prunes the log on a timer (see the module docs). :meth:`start` in the lifespan, :meth:`aclose` at
    shutdown; :meth:`run_once` prunes now (tests, and each tick)."""

    def __init__(
        self,
        db: Database,
        audit: AuditLog,
        *,
        interval_s: float,
        alerts: Alerts | None = None,
        clock: Callable[[], datetime] = utcnow,
        owner: str | None = None,
        max_entries: int = _STEP,
    ) -> None:
        self._db = db
        self._audit = audit
        self._alerts = alerts
        self.interval_s = interval_s
        self.clock = clock
        """The time retention counts from (tests move it forward)."""
        self.owner = owner or process_name()
        self._max_entries = max_entries
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="socle-audit-retention")

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def run_once(self) -> list[PruneResult]:
        """Prune everything the retention allows, if this process gets the lease; what was pruned."""
        days = self._audit.settings.retention_days
        _, boundary = await prune_boundary(self._db, self.clock() - timedelta(days=days))
        if boundary is None or not await self._take_lease():
            return []
        results: list[PruneResult] = []
        try:
            while True:
                result = await prune(
                    self._db, self._audit, actor=_ACTOR, now=self.clock(), max_entries=self._max_entries
                )
                if result is None:
                    break
                results.append(result)
                log.info(
                    "audit retention: pruned entries %d to %d",
                    result.previous_pruned_size,
                    result.pruned_size - 1,
                )
                if not await self._take_lease():  # renewed; lost only if a step outlasted the lease
                    break
        finally:
            await self._release_lease()
        return results

    # Lease ------------------------------------------------------------------------------------------
    async def _take_lease(self) -> bool:
        """Take (or renew) the lease unless another process holds an unexpired one; whether we hold it."""
        now = utcnow()  # real time, whatever the retention clock says
        async with self._db.connect() as connection:
            result = await connection.execute(
                update(HEAD)
                .where(
                    HEAD.c.id == 1,
                    or_(
                        HEAD.c.prune_lease_until.is_(None),
                        HEAD.c.prune_lease_until < now,
                        HEAD.c.prune_lease_owner == self.owner,
                    ),
                )
                .values(prune_lease_owner=self.owner, prune_lease_until=now + LEASE)
            )
        return result.rowcount == 1

    async def _release_lease(self) -> None:
        try:
            async with self._db.connect() as connection:
                await connection.execute(
                    update(HEAD)
                    .where(HEAD.c.id == 1, HEAD.c.prune_lease_owner == self.owner)
                    .values(prune_lease_owner=None, prune_lease_until=None)
                )
        except Exception as exc:  # the lease runs out by itself
            log.warning("audit retention: cannot give the pruning lease back: %s", exc)

    # Timer ------------------------------------------------------------------------------------------
    async def _loop(self) -> None:
        await asyncio.sleep(self.interval_s * random.uniform(0.1, 1.0))  # spreads replicas' ticks
        while True:
            await self.tick()
            await asyncio.sleep(self.interval_s)

    async def tick(self) -> None:
        """One scheduled run: never raises (a failure is logged and alerted)."""
        if not self._audit.available:  # the log cannot be written: its own recovery comes first
            return
        try:
            await self.run_once()
        except Exception as exc:  # noqa: BLE001 - retention must not stop for good, nor take the server down
            log.exception("audit retention failed; retrying in %.0f s", self.interval_s)
            await self._alert(exc)

    async def _alert(self, exc: Exception) -> None:
        if self._alerts is None:
            return
        detail = str(getattr(exc, "detail", None) or exc).strip().splitlines()
        message = f"Scheduled audit pruning failed ({type(exc).__name__}: {detail[0] if detail else ''})."
        alert = Alert(
            kind="audit.prune_failed",
            subject="audit",
            threshold=0,
            period=utcnow().strftime("%Y-%m-%dT%H"),
            message=message[:500],
        )
        try:
            await self._alerts.emit(alert)
        except Exception as alert_exc:  # the database may be what failed: the log line says it
            log.error("cannot raise alert audit.prune_failed: %s", alert_exc)
