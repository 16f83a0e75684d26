"""Scheduled retention on SQLite and PostgreSQL: pruning in steps, each audited, leaving a log that
verifies; replicas sharing the database prune one at a time (lease), and two prunes racing without it
still leave a verifiable log; a failure raises an alert and the schedule carries on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from socle.config import Settings
from socle.governance.alerts import Alerts
from socle.governance.audit.log import AuditLog
from socle.governance.audit.reader import AuditReader, EventFilter
from socle.governance.audit.retention import prune
from socle.governance.audit.schedule import RetentionSchedule
from socle.storage.db import Database
from socle.storage.dialects import sync_url
from socle.storage.types import utcnow
from tests.gateway.audit_support import ddl
from tests.governance.audit.test_log import _settings, check, sql
from tests.governance.audit.test_proofs_retention import _fill

pytestmark = pytest.mark.anyio


def _later() -> datetime:
    """200 days from now: every entry written by the test is past the 183-day retention."""
    return utcnow() + timedelta(days=200)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return _settings(tmp_path, checkpoint_every=100)


@pytest.fixture
async def audit(database: Database, settings: Settings) -> AsyncIterator[AuditLog]:
    log = await AuditLog.open(database, settings)
    yield log
    await log.aclose()


async def _until(check: Callable[[], Awaitable[object]]) -> None:
    """Wait (20 s at most) until ``check()`` gives something true."""
    for _ in range(400):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("timed out")


async def _prunes(database: Database) -> list[dict[str, object]]:
    return [e.content() for e in await AuditReader(database).events(EventFilter(type="audit.prune"))]


async def test_scheduled_pruning_goes_in_audited_steps_and_the_log_verifies(
    database: Database, database_url: str, audit: AuditLog
) -> None:
    await _fill(audit, 350)
    now = RetentionSchedule(database, audit, interval_s=3600, max_entries=100)
    assert await now.run_once() == []  # nothing is older than the retention yet
    schedule = RetentionSchedule(database, audit, interval_s=3600, clock=_later, max_entries=100)
    results = await schedule.run_once()
    assert [(r.previous_pruned_size, r.pruned_size) for r in results] == [(0, 100), (100, 200), (200, 300)]
    assert await schedule.run_once() == []  # no checkpoint past 300 yet
    prunes = await _prunes(database)
    assert [p["data"]["pruned_size"] for p in prunes] == [100, 200, 300]  # type: ignore[index]
    assert {p["actor"] for p in prunes} == {"system"}
    await _fill(audit, 60, start=350)
    await audit.checkpoint(force=True)
    report = check(database_url)
    assert report.ok, report.problems
    assert (report.pruned_size, report.size) == (300, 413)  # 350 + 3 prune entries + 60


async def test_replicas_prune_one_at_a_time(
    database: Database, database_url: str, audit: AuditLog, settings: Settings
) -> None:
    """Two replicas (own connections, own writers) share one database: the lease lets one prune while
    the other skips; racing on a timer, exactly one prunes, and the log verifies."""
    await _fill(audit, 350)
    other_db = Database(database_url)
    other = await AuditLog.open(other_db, settings)
    try:
        first = RetentionSchedule(database, audit, interval_s=3600, clock=_later, max_entries=100)
        second = RetentionSchedule(other_db, other, interval_s=3600, clock=_later, max_entries=100)
        assert await first._take_lease()
        assert await second.run_once() == []  # prunable, but the lease is taken
        assert not await second._take_lease()
        await first._release_lease()
        outcomes = await asyncio.gather(first.run_once(), second.run_once())
        assert sorted(len(o) for o in outcomes) == [0, 3]
        await asyncio.gather(_fill(audit, 30, start=353), _fill(other, 30, start=383))
    finally:
        await other.aclose()
        await other_db.close()
    assert [p["data"]["pruned_size"] for p in await _prunes(database)] == [100, 200, 300]  # type: ignore[index]
    report = check(database_url)
    assert report.ok, report.problems
    assert (report.pruned_size, report.size) == (300, 413)


async def test_an_expired_lease_is_taken_over(database: Database, database_url: str, audit: AuditLog) -> None:
    await _fill(audit, 150)
    crashed = RetentionSchedule(database, audit, interval_s=3600, clock=_later, owner="crashed")
    assert await crashed._take_lease()
    survivor = RetentionSchedule(database, audit, interval_s=3600, clock=_later)
    assert await survivor.run_once() == []
    sql(database_url, "UPDATE audit_head SET prune_lease_until = '2000-01-01 00:00:00'", keep_triggers=True)
    assert [r.pruned_size for r in await survivor.run_once()] == [100]
    assert check(database_url).ok


async def test_two_prunes_racing_without_the_lease_prune_once(
    database: Database, database_url: str, audit: AuditLog, settings: Settings
) -> None:
    """The lease only saves work: a prune commits only if the pruned size is still the one it read."""
    await _fill(audit, 350)
    other_db = Database(database_url)
    other = await AuditLog.open(other_db, settings)
    try:
        later = _later()
        results = await asyncio.gather(
            prune(database, audit, actor="a", now=later), prune(other_db, other, actor="b", now=later)
        )
    finally:
        await other.aclose()
        await other_db.close()
    assert sorted(r.pruned_size if r else 0 for r in results) == [0, 300]
    assert len(await _prunes(database)) == 1
    report = check(database_url)
    assert report.ok, report.problems


async def test_a_failure_is_alerted_and_the_schedule_carries_on(
    database: Database, database_url: str, audit: AuditLog
) -> None:
    await _fill(audit, 150)
    alerts = Alerts(database, [])
    schedule = RetentionSchedule(database, audit, interval_s=0.05, alerts=alerts, clock=_later)
    ddl(sync_url(database_url), "ALTER TABLE audit_checkpoints RENAME TO audit_checkpoints_away")
    try:
        schedule.start()
        await _until(lambda: alerts.list(kind="audit.prune_failed"))
    finally:
        ddl(sync_url(database_url), "ALTER TABLE audit_checkpoints_away RENAME TO audit_checkpoints")
    try:
        await _until(lambda: _prunes(database))  # the next ticks succeed
    finally:
        await schedule.aclose()
        await alerts.aclose()
    [alert] = await alerts.list(kind="audit.prune_failed")
    assert alert["subject"] == "audit" and "failed" in alert["message"]
    report = check(database_url)
    assert report.ok and report.pruned_size == 100, report.problems
