"""Daily rollups: always equal to the sums of the records, across batches, retries, processes and
migrations; percentiles estimated from their histograms."""

from __future__ import annotations

import asyncio
import random
import sys
import textwrap
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import Table, insert, select

from socle.observability.rollups import LATENCY_BOUNDS_MS, SUM_COLUMNS, Sums, bucket_of, percentile
from socle.observability.usage import UsageRecord, UsageRecorder
from socle.storage import migrations
from socle.storage.db import Database
from socle.storage.models import USAGE_DAILY_PRINCIPAL, USAGE_DAILY_TEAM, UsageRow
from tests.observability.test_usage import usage

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]

TEAM_KEYS = ("day", "team_id", "model", "engine", "zone")
PRINCIPAL_KEYS = ("day", "team_id", "principal_id", "model", "engine", "zone")


def random_records(count: int, seed: int = 7) -> list[UsageRecord]:
    rng = random.Random(seed)
    start = datetime(2026, 3, 1, tzinfo=UTC)
    return [
        usage(
            team_id=rng.choice(["team-a", "team-b"]),
            principal_id=rng.choice(["ann", "bob", "cid"]),
            model=rng.choice(["chat", "code"]),
            engine=rng.choice(["e1", "e2"]),
            prompt_tokens=rng.randint(0, 500),
            completion_tokens=rng.randint(0, 500),
            cost_eur=Decimal(rng.randint(0, 10**6)).scaleb(-9),
            latency_ms=rng.lognormvariate(6, 1.5),
            ttft_ms=rng.choice([None, rng.uniform(1, 100)]),
            status_code=rng.choice([200, 200, 200, 429, 502]),
            created_at=start + timedelta(seconds=rng.uniform(0, 4 * 86400)),  # four UTC days
        )
        for _ in range(count)
    ]


async def raw_sums(db: Database, keys: tuple[str, ...]) -> dict[tuple[Any, ...], Sums]:
    """The sums computed from the records themselves, in Python."""
    async with db.read() as connection:
        rows = (await connection.execute(select(UsageRow.__table__))).mappings().all()
    sums: dict[tuple[Any, ...], Sums] = defaultdict(Sums)
    for row in rows:
        values = {**row, "day": row["created_at"].date(), "cost_nano_eur": int(row["cost_eur"].scaleb(9))}
        sums[tuple(values[k] for k in keys)].add(values)
    return dict(sums)


async def rollup_sums(db: Database, table: Table, keys: tuple[str, ...]) -> dict[tuple[Any, ...], Sums]:
    columns = [table.c[c] for c in (*SUM_COLUMNS, "latency_ms_max")]
    async with db.read() as connection:
        rows = (await connection.execute(select(*(table.c[k] for k in keys), *columns))).all()
    return {tuple(row[: len(keys)]): Sums.of(row[len(keys) :]) for row in rows}


def assert_same(expected: dict[tuple[Any, ...], Sums], found: dict[tuple[Any, ...], Sums]) -> None:
    assert found.keys() == expected.keys()
    for key, sums in expected.items():
        got = found[key]
        assert got.latency_ms_sum == pytest.approx(sums.latency_ms_sum)
        assert got.ttft_ms_sum == pytest.approx(sums.ttft_ms_sum)
        got.latency_ms_sum, got.ttft_ms_sum = sums.latency_ms_sum, sums.ttft_ms_sum
        assert got == sums, key


async def assert_rollups_agree(db: Database) -> None:
    assert_same(await raw_sums(db, TEAM_KEYS), await rollup_sums(db, USAGE_DAILY_TEAM, TEAM_KEYS))
    assert_same(
        await raw_sums(db, PRINCIPAL_KEYS), await rollup_sums(db, USAGE_DAILY_PRINCIPAL, PRINCIPAL_KEYS)
    )


async def test_rollups_equal_the_sums_of_the_records(database: Database) -> None:
    recorder = UsageRecorder(database, 3600, max_batch=37)  # many batches, each adding to shared rows
    records = random_records(1000)
    for record in records:
        recorder.record(record)
    recorder.record(records[5])  # a retried record: skipped in the records and in the rollups
    await recorder.aclose()
    assert recorder.written == 1001 and recorder.dropped == 0
    team = await rollup_sums(database, USAGE_DAILY_TEAM, TEAM_KEYS)
    assert sum(s.requests for s in team.values()) == 1000
    assert len(team) == 4 * 2 * 2 * 2  # days × teams × models × engines: rows were shared by batches
    assert {key[0] for key in team} == {date(2026, 3, d) for d in (1, 2, 3, 4)}
    await assert_rollups_agree(database)


async def test_a_batch_refused_by_the_database_adds_nothing_to_the_rollups(database: Database) -> None:
    recorder = UsageRecorder(database, 3600)
    for record in (usage(), usage(created_at=datetime(2026, 1, 1)), usage()):  # the naive date is refused
        recorder.record(record)
    await recorder.aclose()
    assert (recorder.written, recorder.dropped) == (2, 1)
    await assert_rollups_agree(database)


WRITER = textwrap.dedent(
    """
    import asyncio, sys, time
    from socle.observability.usage import UsageRecorder
    from socle.storage.db import Database
    from tests.observability.test_rollups import random_records

    async def main(url, seed, start_at):
        db = Database(url)
        recorder = UsageRecorder(db, 3600, max_batch=20)
        records = random_records(1500, seed)
        await asyncio.sleep(max(0.0, start_at - time.time()))
        for record in records:
            recorder.record(record)
            if recorder.pending >= 20:
                await recorder.flush()
        await recorder.aclose()
        await db.close()
        assert recorder.written == 1500 and recorder.dropped == 0, (recorder.written, recorder.dropped)

    asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))
    """
)


async def test_two_processes_adding_to_the_same_rows_lose_no_increment(
    database: Database, database_url: str
) -> None:
    start_at = datetime.now(UTC).timestamp() + 3  # both start writing at once, after their imports
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", WRITER, database_url, str(seed), str(start_at), cwd=ROOT
        )
        for seed in (1, 2)
    ]
    codes = [await p.wait() for p in processes]
    assert codes == [0, 0]
    team = await rollup_sums(database, USAGE_DAILY_TEAM, TEAM_KEYS)
    assert sum(s.requests for s in team.values()) == 3000
    await assert_rollups_agree(database)


async def test_the_migration_sums_the_records_written_before_it(database_url: str) -> None:
    script = ScriptDirectory.from_config(migrations.alembic_config())
    mine = next(r for r in script.walk_revisions() if r.module.__file__.endswith("_usage_rollups.py"))
    before = mine.down_revision
    assert isinstance(before, str)
    await asyncio.to_thread(migrations.upgrade, database_url, before)
    db = Database(database_url)
    try:
        rows = [r.to_row() for r in random_records(300)]
        async with db.connect() as connection:
            await connection.execute(insert(UsageRow), rows)
        await db.migrate()
        await assert_rollups_agree(db)
    finally:
        await db.close()


def test_buckets_and_percentiles() -> None:
    assert [bucket_of(x) for x in (0.0, 1.0, 1.01, 1.4142, 2.0, 2.01)] == [0, 0, 1, 1, 2, 3]
    assert bucket_of(10**9) == len(LATENCY_BOUNDS_MS)  # the open last bucket
    rng = random.Random(3)
    latencies = sorted(rng.lognormvariate(7, 1) for _ in range(20_000))
    histogram = [0] * (len(LATENCY_BOUNDS_MS) + 1)
    for latency in latencies:
        histogram[bucket_of(latency)] += 1
    for q in (0.5, 0.95, 0.99):
        true = latencies[int(q * len(latencies)) - 1]
        estimate = percentile(histogram, q, max_ms=latencies[-1])
        assert estimate is not None
        assert true / 2**0.5 <= estimate <= true * 2**0.5  # same bucket: within a factor √2
        assert estimate == pytest.approx(true, rel=0.1)  # and, interpolated, much closer in practice
    assert percentile([0] * 40, 0.95) is None
    only_slow = [0] * 39 + [3]
    assert percentile(only_slow, 0.95, max_ms=900_000.0) == 900_000.0
    assert percentile([5] + [0] * 39, 1.0, max_ms=0.5) == 0.5  # never above the largest latency
