"""Retention: records are deleted after their retention, daily sums after theirs (longer), in small
transactions, by a periodic task of the recorder."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from socle.config import UsageSettings
from socle.observability.usage import Pruned, UsageRecorder
from socle.storage.db import Database
from socle.storage.models import USAGE_DAILY_PRINCIPAL, USAGE_DAILY_TEAM, UsageRow
from tests.observability.test_usage import usage

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 6, 30, 12, tzinfo=UTC)


async def counts(db: Database) -> tuple[int, int, int]:
    async with db.read() as connection:
        return (
            int(await connection.scalar(select(func.count()).select_from(UsageRow)) or 0),
            int(await connection.scalar(select(func.count()).select_from(USAGE_DAILY_TEAM)) or 0),
            int(await connection.scalar(select(func.count()).select_from(USAGE_DAILY_PRINCIPAL)) or 0),
        )


async def test_records_and_sums_are_deleted_after_their_retention(database: Database) -> None:
    recorder = UsageRecorder(
        database, 3600, raw_retention=timedelta(days=10), rollup_retention=timedelta(days=100)
    )
    for days_ago in (200, 50, 11, 9, 0):  # five days, one row per day in each rollup table
        for _ in range(5):
            recorder.record(usage(created_at=NOW - timedelta(days=days_ago)))
    await recorder.flush()
    assert await counts(database) == (25, 5, 5)
    pruned = await recorder.prune(NOW, chunk=4)  # 15 expired records: four transactions
    assert pruned == Pruned(records=15, rollup_rows=2)  # the sums of 50 and 11 days ago are kept
    assert await counts(database) == (10, 4, 4)
    async with database.read() as connection:
        oldest = await connection.scalar(select(func.min(UsageRow.created_at)))
    assert oldest == NOW - timedelta(days=9)
    assert await recorder.prune(NOW) == Pruned(0, 0)
    await recorder.aclose()


async def test_the_recorder_prunes_periodically(database: Database) -> None:
    recorder = UsageRecorder.from_settings(
        database, UsageSettings(raw_retention_days=1, rollup_retention_days=1, prune_interval_s=0.05)
    )
    await recorder.start()
    try:
        recorder.record(usage(created_at=datetime.now(UTC) - timedelta(days=3)))
        recorder.record(usage())
        await recorder.flush()
        for _ in range(200):
            if await counts(database) == (1, 1, 1):
                break
            await asyncio.sleep(0.05)
        assert await counts(database) == (1, 1, 1)  # only today's record and sums are left
    finally:
        await recorder.aclose()


def test_sums_are_kept_at_least_as_long_as_records() -> None:
    with pytest.raises(ValueError, match="rollup_retention_days"):
        UsageSettings(raw_retention_days=30, rollup_retention_days=10)
    with pytest.raises(ValueError, match="rollup_retention_days"):
        UsageSettings(raw_retention_days=None, rollup_retention_days=10)
    assert UsageSettings(raw_retention_days=None, rollup_retention_days=None).raw_retention_days is None
