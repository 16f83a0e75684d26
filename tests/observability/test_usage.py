"""The usage recorder: non-blocking records, batched writes, retries, and no silent loss."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from socle.observability.usage import UsageRecord, UsageRecorder, UsageTotals
from socle.storage.db import Database
from socle.storage.types import new_id
from socle.testing.postgres import PostgresServer

pytestmark = pytest.mark.anyio


def usage(**overrides: Any) -> UsageRecord:
    values: dict[str, Any] = {
        "request_id": "req-" + new_id(),
        "key_id": "key",
        "principal_id": "principal",
        "team_id": "team-a",
        "model": "fake-chat",
        "engine": "fake-a",
        "zone": "on-prem",
        "endpoint": "/v1/chat/completions",
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "cost_eur": Decimal("0.1"),
        "latency_ms": 12.5,
        "status_code": 200,
    }
    values.update(overrides)
    return UsageRecord(**values)


class InsertCounter:
    """Counts the INSERT statements a database executes (an executemany counts once)."""

    def __init__(self, db: Database) -> None:
        self.count = 0
        event.listen(db.engine.sync_engine, "before_execute", self._before)

    def _before(self, conn: Any, clause: Any, *args: Any) -> None:
        if str(clause).lstrip().upper().startswith("INSERT INTO USAGE_RECORDS"):
            self.count += 1


async def test_records_are_written_in_batches_and_flushed_on_close(database: Database) -> None:
    inserts = InsertCounter(database)
    recorder = UsageRecorder(database, 3600, max_batch=10)  # no timed flush during the test
    await recorder.start()
    for _ in range(25):
        recorder.record(usage())
    assert recorder.pending == 25 and inserts.count == 0  # record() only buffers
    await recorder.aclose()
    assert inserts.count == 3  # 10 + 10 + 5
    assert (recorder.written, recorder.dropped, recorder.pending) == (25, 0, 0)
    assert await recorder.totals() == UsageTotals(25, 250, 125, Decimal("2.5"))


async def test_the_writer_flushes_on_its_own(database: Database) -> None:
    recorder = UsageRecorder(database, 0.02)
    await recorder.start()
    try:
        recorder.record(usage())
        for _ in range(250):
            if recorder.written:
                break
            await asyncio.sleep(0.02)
        assert recorder.written == 1
        assert (await recorder.totals()).requests == 1
    finally:
        await recorder.aclose()


async def test_totals_by_team_and_period_with_exact_costs(database: Database) -> None:
    recorder = UsageRecorder(database, 3600)
    old = datetime.now(UTC) - timedelta(days=40)
    recorder.record(usage(cost_eur=Decimal("0.1"), created_at=old))
    recorder.record(usage(cost_eur=0.2))  # the gateway passes floats; stored as their decimal
    recorder.record(usage(cost_eur=Decimal("0.0000001234"), prompt_tokens=1))  # stored as 124 nano-euros
    recorder.record(usage(team_id="team-b", completion_tokens=7, ttft_ms=3.0))
    await recorder.aclose()
    assert await recorder.totals("team-a") == UsageTotals(3, 21, 15, Decimal("0.300000124"))
    assert await recorder.totals("team-a", since=old + timedelta(days=1)) == UsageTotals(
        2, 11, 10, Decimal("0.200000124")
    )
    assert await recorder.totals("team-b") == UsageTotals(1, 10, 7, Decimal("0.1"))
    assert (await recorder.totals()).requests == 4


async def test_a_record_written_twice_counts_once(database: Database) -> None:
    recorder = UsageRecorder(database, 3600)
    record = usage()
    recorder.record(record)
    await recorder.flush()
    recorder.record(record)  # e.g. a batch retried after an ambiguous failure
    await recorder.aclose()
    assert (await recorder.totals()).requests == 1


@pytest.mark.postgres
async def test_records_wait_while_the_database_is_unavailable(pg_server: PostgresServer) -> None:
    name = "socle_test_late_" + new_id().lower()
    db = Database(pg_server.url_for(name))  # that database does not exist yet
    recorder = UsageRecorder(db, 3600)
    try:
        for _ in range(3):
            recorder.record(usage())
        assert await recorder.flush() == 0
        assert (recorder.pending, recorder.dropped) == (3, 0)
        await asyncio.to_thread(pg_server.create_database, name)  # the database comes back
        await db.migrate()
        assert await recorder.flush() == 3
        await recorder.aclose()
        assert (await recorder.totals()).requests == 3
    finally:
        await db.close()
        await asyncio.to_thread(pg_server.drop_database, name)


async def test_a_refused_record_is_dropped_and_counted_not_the_batch(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = UsageRecorder(database, 3600)
    bad = usage(created_at=datetime(2026, 1, 1))  # naive: the database layer refuses it
    for record in (usage(), bad, usage()):
        recorder.record(record)
    with caplog.at_level(logging.ERROR):
        await recorder.aclose()
    assert (recorder.written, recorder.dropped) == (2, 1)
    assert bad.request_id in caplog.text
    assert (await recorder.totals()).requests == 2


async def test_the_buffer_is_bounded_and_overflow_is_counted(database: Database) -> None:
    recorder = UsageRecorder(database, 3600, max_buffer=5)
    for _ in range(7):
        recorder.record(usage())
    assert (recorder.pending, recorder.dropped) == (5, 2)
    await recorder.aclose()
    recorder.record(usage())  # after close: counted, not written
    assert (recorder.written, recorder.dropped) == (5, 3)


async def test_what_cannot_be_written_at_shutdown_is_counted(tmp_path: Path) -> None:
    db = Database(f"postgresql://postgres@/socle?host={tmp_path / 'no-server-here'}")
    recorder = UsageRecorder(db, 3600)
    await recorder.start()
    recorder.record(usage())
    await recorder.aclose()
    await db.close()
    assert (recorder.written, recorder.dropped, recorder.pending) == (0, 1, 0)
