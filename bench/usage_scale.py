"""Usage queries at scale: 10 million usage records, queried through Socle's own report code, against the
same sums computed from the raw records (the implementation before rollups), in one run.

Steps, per database:

1. create the schema up to the revision before the usage rollups (Socle's migrations);
2. bulk-load N records (default 10,000,000 on SQLite; 1,000,000 on PostgreSQL from pgserver): 50 teams of
   10 users (500), 8 models on 11 engines, 90 days up to today; users' activity Zipf-like, model mix
   skewed, 2 % errors, log-normal latencies, 60 % streamed (with a time to first token). The load uses
   the bench's own fast path (executemany in one transaction with PRAGMAs for bulk loading on SQLite,
   COPY on PostgreSQL; secondary indexes built after the load), not the gateway's recorder;
3. migrate to head: the usage-rollups migration creates the ``created_at`` index and sums the existing
   records into the daily rollups (``usage_daily_team``, ``usage_daily_principal``), as it would on an
   upgraded installation; the run checks that the rollups count every record;
4. time each query (P50 and P95 over ``--repeat`` warm runs) through :mod:`socle.observability.reports`,
   which the API and the CLI call, then the same sums straight from ``usage_records`` (``--naive-repeat``
   runs; a GROUP BY over the period's records, as reports did before rollups; it computes no P95).

Usage::

    python bench/usage_scale.py [--records 10000000] [--pg-records 1000000] [--repeat 20] [--naive-repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from _common import machine_line

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from alembic.script import ScriptDirectory  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from socle.observability.reports import UsageFilter, list_records, usage_report  # noqa: E402
from socle.storage import migrations  # noqa: E402
from socle.storage.db import Database  # noqa: E402
from socle.storage.models import USAGE_DAILY_TEAM, UsageRow  # noqa: E402
from socle.testing.postgres import start_postgres  # noqa: E402

TEAMS, USERS_PER_TEAM, DAYS = 50, 10, 90
MODELS = [  # name, weight, engines, EUR per million tokens in and out, median latency (ms)
    ("assistant", 30, ["vllm-a", "vllm-b"], 0.2, 0.6, 900),
    ("coder", 20, ["coder-a", "coder-b"], 0.3, 0.9, 1500),
    ("small", 15, ["llamacpp-1", "llamacpp-2"], 0.0, 0.0, 300),
    ("embed", 10, ["minilm"], 0.01, 0.0, 30),
    ("large", 10, ["large"], 2.0, 6.0, 4000),
    ("vision", 7, ["vision"], 1.0, 3.0, 2500),
    ("fr-legal", 5, ["legal"], 0.5, 1.5, 1800),
    ("rerank", 3, ["rerank"], 0.05, 0.0, 60),
]
COLUMNS = [
    "id",
    "request_id",
    "key_id",
    "principal_id",
    "team_id",
    "model",
    "engine",
    "zone",
    "endpoint",
    "prompt_tokens",
    "completion_tokens",
    "cost_eur",
    "latency_ms",
    "ttft_ms",
    "status_code",
    "created_at",
]


def team_of(user: int) -> str:
    return f"team-{user // USERS_PER_TEAM:02d}"


def principal_of(user: int) -> str:
    return f"user-{user:03d}"


def generate(count: int, today: date, seed: int = 1) -> Iterator[tuple[Any, ...]]:
    """``count`` records over the DAYS days ending today, in time order, as SQLite stores them."""
    rng = random.Random(seed)
    users = list(range(TEAMS * USERS_PER_TEAM))
    user_weights = [1 / (rank + 1) ** 0.8 for rank in rng.sample(users, len(users))]
    model_weights = [m[1] for m in MODELS]
    first = today - timedelta(days=DAYS - 1)
    serial = 0
    for day_index in range(DAYS):
        day = first + timedelta(days=day_index)
        n = count // DAYS + (1 if day_index < count % DAYS else 0)
        seconds = sorted(rng.random() * 86400 for _ in range(n))
        who = rng.choices(users, user_weights, k=n)
        which = rng.choices(range(len(MODELS)), model_weights, k=n)
        midnight = datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
        prefix = day.isoformat()
        for second, user, m in zip(seconds, who, which, strict=True):
            name, _, engines, price_in, price_out, median = MODELS[m]
            engine = engines[serial % len(engines)]
            prompt = int(rng.lognormvariate(5.5, 1.0)) + 1
            completion = 0 if name in ("embed", "rerank") else int(rng.lognormvariate(4.5, 1.0))
            nano = int(prompt * price_in * 1000 + completion * price_out * 1000)
            latency = rng.lognormvariate(0, 0.6) * median
            streamed = completion and rng.random() < 0.6
            roll = rng.random()
            status = 500 if roll < 0.01 else 429 if roll < 0.02 else 200
            ms = int((midnight + second) * 1000)
            whole = int(second)
            stamp = (
                f"{prefix} {whole // 3600:02d}:{whole // 60 % 60:02d}:{whole % 60:02d}."
                f"{int((second - whole) * 1e6):06d}"
            )
            yield (
                f"{ms:011x}{serial:015x}",
                f"req_{serial:016x}",
                f"key-{user:03d}",
                principal_of(user),
                team_of(user),
                name,
                engine,
                "eu-cloud" if engine.endswith("-b") else "on-prem",
                "/v1/embeddings" if name == "embed" else "/v1/chat/completions",
                prompt,
                completion,
                nano / 1e9,
                round(latency, 3),
                round(latency * rng.uniform(0.05, 0.3), 3) if streamed else None,
                status,
                stamp,
            )
            serial += 1


def revision_before_rollups() -> str:
    script = ScriptDirectory.from_config(migrations.alembic_config())
    mine = next(r for r in script.walk_revisions() if str(r.module.__file__).endswith("_usage_rollups.py"))
    assert isinstance(mine.down_revision, str)
    return mine.down_revision


SECONDARY_INDEXES = {
    "ix_usage_records_team_id_created_at": "team_id, created_at",
    "ix_usage_records_principal_id_created_at": "principal_id, created_at",
}


def load_sqlite(path: Path, count: int, today: date) -> dict[str, float]:
    timings = {}
    started = time.perf_counter()
    connection = sqlite3.connect(path, isolation_level=None)
    # Bulk load only: no journal (the WAL would hold a second copy of every page), no fsync, a big cache.
    for pragma in ("journal_mode = OFF", "synchronous = OFF", "cache_size = -1000000", "temp_store = MEMORY"):
        connection.execute(f"PRAGMA {pragma}")
    for name in SECONDARY_INDEXES:
        connection.execute(f"DROP INDEX {name}")
    connection.execute("BEGIN")
    statement = f"INSERT INTO usage_records ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
    rows = generate(count, today)
    while chunk := [row for _, row in zip(range(200_000), rows, strict=False)]:
        connection.executemany(statement, chunk)
    connection.execute("COMMIT")
    timings["insert"] = time.perf_counter() - started
    started = time.perf_counter()
    for name, columns in SECONDARY_INDEXES.items():
        connection.execute(f"CREATE INDEX {name} ON usage_records ({columns})")
    connection.execute("ANALYZE")
    connection.execute("PRAGMA journal_mode = WAL")  # as Socle runs it
    connection.close()
    timings["indexes"] = time.perf_counter() - started
    return timings


def load_postgres(url: str, count: int, today: date) -> dict[str, float]:
    import psycopg

    timings = {}
    started = time.perf_counter()
    with psycopg.connect(
        url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
    ) as connection:
        for name in SECONDARY_INDEXES:
            connection.execute(f"DROP INDEX {name}")
        with (
            connection.cursor() as cursor,
            cursor.copy(f"COPY usage_records ({', '.join(COLUMNS)}) FROM STDIN") as copy,
        ):
            for row in generate(count, today):
                copy.write_row((*row[:-1], row[-1] + "+00"))
        timings["insert"] = time.perf_counter() - started
        started = time.perf_counter()
        for name, columns in SECONDARY_INDEXES.items():
            connection.execute(f"CREATE INDEX {name} ON usage_records ({columns})")
        connection.execute("VACUUM ANALYZE usage_records")
        timings["indexes"] = time.perf_counter() - started
    return timings


# Queries --------------------------------------------------------------------------------------------------
def naive_report(db: Database, where: UsageFilter, group_by: list[str]) -> Callable[[], Awaitable[Any]]:
    """The same sums from ``usage_records`` (what reports did before rollups; no P95)."""
    day = (
        func.to_char(func.timezone("UTC", UsageRow.created_at), "YYYY-MM-DD")
        if db.backend == "postgresql"
        else func.substr(UsageRow.created_at, 1, 10)
    )
    columns = {
        "day": day,
        "team": UsageRow.team_id,
        "model": UsageRow.model,
        "principal": UsageRow.principal_id,
    }
    keys = [columns[g].label(g) for g in group_by]
    first, end = where.days()
    query = select(
        *keys,
        func.count(),
        func.sum(func.cast(UsageRow.status_code >= 400, UsageRow.prompt_tokens.type)),
        func.sum(UsageRow.prompt_tokens),
        func.sum(UsageRow.completion_tokens),
        func.sum(UsageRow.cost_eur),
        func.sum(UsageRow.latency_ms),
        func.max(UsageRow.latency_ms),
    ).where(
        UsageRow.created_at >= datetime.combine(first, datetime.min.time(), UTC),
        UsageRow.created_at < datetime.combine(end, datetime.min.time(), UTC),
    )
    if where.team_id is not None:
        query = query.where(UsageRow.team_id == where.team_id)
    if where.principal_id is not None:
        query = query.where(UsageRow.principal_id == where.principal_id)
    query = query.group_by(*keys).order_by(*keys)

    async def run() -> list[Any]:
        async with db.read() as connection:
            return list((await connection.execute(query)).all())

    return run


def to_csv(lines: list[Any]) -> str:
    rows = [line.as_dict() for line in lines]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


async def timed(fn: Callable[[], Awaitable[Any]], repeat: int) -> tuple[float, float, Any]:
    result = await fn()  # warm-up (caches, statement compilation)
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = await fn()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    p95 = samples[min(len(samples) - 1, int(round(0.95 * len(samples))) - 1)]
    return statistics.median(samples), p95, result


async def run_queries(
    url: str, count: int, today: date, repeat: int, naive_repeat: int
) -> list[dict[str, Any]]:
    db = Database(url)
    try:
        async with db.read() as connection:
            summed = await connection.scalar(select(func.sum(USAGE_DAILY_TEAM.c.requests)))
        assert int(summed or 0) == count, f"the rollups count {summed} records, not {count}"
        month = {"since": today - timedelta(days=29), "until": today + timedelta(days=1)}
        one_day = {"since": today - timedelta(days=1), "until": today}
        busy = principal_of(0)
        async with db.read() as connection:  # the most active member
            busy = await connection.scalar(
                select(UsageRow.principal_id)
                .where(UsageRow.created_at >= datetime.combine(today, datetime.min.time(), UTC))
                .group_by(UsageRow.principal_id)
                .order_by(func.count().desc())
                .limit(1)
            )
        team = team_of(0)
        cursor = None
        for _ in range(9):
            cursor = (await list_records(db, UsageFilter(team_id=team), limit=100, cursor=cursor)).next_cursor
        member = UsageFilter(principal_id=busy, **month)
        team_month = UsageFilter(team_id=team, **month)
        cases: list[tuple[str, Callable[[], Awaitable[Any]], Callable[[], Awaitable[Any]] | None]] = [
            (
                "monthly summary by team (30 days)",
                lambda: usage_report(db, UsageFilter(**month), ["team"]),
                naive_report(db, UsageFilter(**month), ["team"]),
            ),
            (
                "daily series by team and model, with P95 (30 days)",
                _then(lambda: usage_report(db, UsageFilter(**month), ["day", "team", "model"]), _dicts),
                naive_report(db, UsageFilter(**month), ["day", "team", "model"]),
            ),
            (
                "daily series by team, with P95 (30 days)",
                _then(lambda: usage_report(db, UsageFilter(**month), ["day", "team"]), _dicts),
                naive_report(db, UsageFilter(**month), ["day", "team"]),
            ),
            (
                "one team's daily series by model, with P95 (30 days)",
                _then(lambda: usage_report(db, team_month, ["day", "model"]), _dicts),
                naive_report(db, team_month, ["day", "model"]),
            ),
            (
                "one member's usage per day and model (30 days)",
                _then(lambda: usage_report(db, member, ["day", "model"]), _dicts),
                naive_report(db, member, ["day", "model"]),
            ),
            (
                "one-day CSV export (per team, user and model)",
                _then(
                    lambda: usage_report(db, UsageFilter(**one_day), ["team", "principal", "model"]), to_csv
                ),
                naive_report(db, UsageFilter(**one_day), ["team", "principal", "model"]),
            ),
            (
                "raw records, one team, first page of 100",
                lambda: list_records(db, UsageFilter(team_id=team)),
                None,
            ),
            (
                "raw records, one team, 10th page (cursor)",
                lambda: list_records(db, UsageFilter(team_id=team), cursor=cursor),
                None,
            ),
            ("raw records, all teams, first page of 100", lambda: list_records(db, UsageFilter()), None),
        ]
        results = []
        for name, product, naive in cases:
            p50, p95, result = await timed(product, repeat)
            entry: dict[str, Any] = {"query": name, "p50": p50, "p95": p95, "rows": _size(result)}
            if naive is not None:
                entry["naive_p50"], entry["naive_p95"], _ = await timed(naive, naive_repeat)
            results.append(entry)
            print(_line(entry), flush=True)
        return results
    finally:
        await db.close()


def _then(fn: Callable[[], Awaitable[Any]], after: Callable[[Any], Any]) -> Callable[[], Awaitable[Any]]:
    async def run() -> Any:
        return after(await fn())

    return run


def _dicts(lines: list[Any]) -> list[dict[str, Any]]:
    return [line.as_dict() for line in lines]  # includes the P95 estimate of every line


def _size(result: Any) -> int:
    if isinstance(result, str):
        return result.count("\n") - 1
    return len(result.records) if hasattr(result, "records") else len(result)


def _line(entry: dict[str, Any]) -> str:
    text = f"  {entry['query']:<52} P50 {entry['p50']:8.1f} ms  P95 {entry['p95']:8.1f} ms"
    text += f"  ({entry['rows']} rows)"
    if "naive_p50" in entry:
        ratio = entry["naive_p50"] / entry["p50"]
        text += f"  | raw table P50 {entry['naive_p50']:9.1f} ms  ({ratio:,.0f}x slower)"
    return text


def bench(
    label: str, url: str, count: int, load: Callable[..., dict[str, float]], target: Any, args: Any
) -> None:
    today = datetime.now(UTC).date()
    print(f"\n{label}: {count:,} records", flush=True)
    migrations.upgrade(url, revision_before_rollups())
    timings = load(target, count, today)
    print(
        f"  bulk insert {timings['insert']:.0f} s, secondary indexes {timings['indexes']:.0f} s", flush=True
    )
    started = time.perf_counter()
    migrations.upgrade(url)  # the rollups migration sums the records loaded
    elapsed = time.perf_counter() - started
    print(f"  migration to head (created_at index, rollups built from the records) {elapsed:.0f} s")
    asyncio.run(run_queries(url, count, today, args.repeat, args.naive_repeat))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=10_000_000, help="SQLite records (0: skip SQLite)")
    parser.add_argument("--pg-records", type=int, default=1_000_000, help="PostgreSQL records (0: skip)")
    parser.add_argument("--repeat", type=int, default=20, help="timed runs of each product query")
    parser.add_argument("--naive-repeat", type=int, default=3, help="timed runs of each raw-table query")
    args = parser.parse_args()
    print(f"Usage queries at scale -- {machine_line()}")
    with tempfile.TemporaryDirectory(prefix="socle-usage-bench-") as tmp:
        if args.records:
            path = Path(tmp) / "usage.db"
            bench("SQLite", f"sqlite:///{path}", args.records, load_sqlite, path, args)
        if args.pg_records:
            with start_postgres(Path(tmp)) as server, server.database() as url:
                bench("PostgreSQL", url, args.pg_records, load_postgres, url, args)


if __name__ == "__main__":
    main()
