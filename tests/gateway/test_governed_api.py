"""Budgets and rate limits through the real API, under concurrency: one process on SQLite, two processes
sharing one PostgreSQL (issue 3, tests 9a, 9b and 9d). Engines are fakes with a price, so that each
answer costs a known, exact amount."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from socle.config import FakeEngineConfig, ModelRoute, Settings
from socle.governance.budgets import BudgetStore
from socle.governance.identity import bootstrap
from socle.governance.money import Spend
from socle.governance.ratelimits import RateLimitStore
from socle.storage.db import Database
from socle.storage.models import BudgetReservationRow
from socle.testing.postgres import PostgresServer
from socle.testing.process import SocleProcess
from socle.testing.server import RunningServer, run_server
from tests.conftest import ADMIN_KEY
from tests.governance.tenancy import make_tenant

REPLY = "un deux trois quatre cinq six"  # 6 tokens for the fake engine
PRICE = 1000.0  # EUR per million output tokens: 1,000,000 nano-euros per token
ANSWER_NANO = 6 * 1_000_000  # what one answer costs, exactly
BUDGET_ANSWERS = 50


def _engines(**extra: Any) -> dict[str, Any]:
    return {
        "engines": [
            FakeEngineConfig(name="meter", reply=REPLY, concurrency=1000, price_output_per_mtok=PRICE),
            FakeEngineConfig(
                name="slow-meter",
                reply=" ".join(["mot"] * 300),
                token_delay_s=0.02,
                price_output_per_mtok=PRICE,
            ),
            FakeEngineConfig(name="broken", fail=True, price_output_per_mtok=PRICE),
        ],
        "models": [
            ModelRoute(name="metered", engines=["meter"]),
            ModelRoute(name="slow-metered", engines=["slow-meter"]),
            ModelRoute(name="broken", engines=["broken"]),
        ],
        **extra,
    }


async def _prepare(
    url: str, data_dir: Path, *, budget_eur: str | None = None, rpm: int | None = None
) -> dict[str, str]:
    """Migrate, bootstrap the admin, then a team ``research`` with a key, a budget and/or a rate limit
    (written straight through the stores, as the admin API will)."""
    db = Database(url)
    try:
        await db.migrate()
        await bootstrap(db, Settings(data_dir=data_dir, admin_key=ADMIN_KEY))
        key, principal = await make_tenant(db, "research")
        out = {"key": key, "team_id": principal.team_id}
        if budget_eur is not None:
            budget = await BudgetStore(db).create_budget(
                "team", principal.team_id, "monthly", limit_eur=budget_eur
            )
            out["budget_id"] = budget.id
        if rpm is not None:
            await RateLimitStore(db).create_limit("team", principal.team_id, requests_per_minute=rpm)
        return out
    finally:
        await db.close()


async def _ledger(url: str, budget_id: str) -> tuple[Spend, Spend, dict[str, int]]:
    """The budget's spent and reserved amounts, and its reservations by state, read from the database.

    States are read first: a settlement changes both in one transaction (and answers do not wait for it),
    so counters read after "no reservation held" are the settled ones."""
    db = Database(url)
    try:
        async with db.read() as connection:
            rows = (
                await connection.execute(
                    select(BudgetReservationRow.state, func.count()).group_by(BudgetReservationRow.state)
                )
            ).all()
        status = await BudgetStore(db).budget_status(budget_id)
        return status.spent, status.reserved, {state: count for state, count in rows}
    finally:
        await db.close()


def _settled_ledger(url: str, budget_id: str) -> tuple[Spend, Spend, dict[str, int]]:
    """:func:`_ledger` once no reservation is held any more (answers do not wait for their settlement),
    or after 20 s."""
    deadline = time.monotonic() + 20
    while True:
        spent, reserved, states = asyncio.run(_ledger(url, budget_id))
        if "held" not in states or time.monotonic() > deadline:
            return spent, reserved, states
        time.sleep(0.05)


async def _storm(apis: list[str], key: str, count: int, **body: Any) -> list[httpx.Response]:
    """``count`` concurrent chat completions, spread over ``apis`` (one per replica)."""
    payload = {"model": "metered", "messages": [{"role": "user", "content": "Combien ?"}], **body}
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx.AsyncClient(
        timeout=60, limits=limits, headers={"authorization": f"Bearer {key}"}
    ) as client:
        return list(
            await asyncio.gather(
                *(client.post(apis[i % len(apis)] + "/chat/completions", json=payload) for i in range(count))
            )
        )


def _check_budget_storm(responses: list[httpx.Response]) -> int:
    statuses = Counter(r.status_code for r in responses)
    assert set(statuses) <= {200, 429}, statuses
    for refused in (r for r in responses if r.status_code == 429):
        error = refused.json()["error"]
        assert (error["type"], error["code"]) == ("insufficient_quota", "insufficient_quota")
        assert "the monthly budget of team research" in error["message"]
    for answered in (r for r in responses if r.status_code == 200):
        assert answered.json()["usage"]["completion_tokens"] == 6
    return statuses[200]


# 9b: one process, SQLite ---------------------------------------------------------------------------
@pytest.fixture
def sqlite_gateway(make_settings: Any, tmp_path: Path) -> Iterator[tuple[RunningServer, dict[str, str], str]]:
    url = f"sqlite:///{tmp_path / 'socle.db'}"
    tenant = asyncio.run(_prepare(url, tmp_path / "data", budget_eur=f"{BUDGET_ANSWERS * ANSWER_NANO / 1e9}"))
    with run_server(make_settings(database_url=url, **_engines())) as server:
        yield server, tenant, url


def test_budget_is_never_overspent_sqlite(sqlite_gateway: tuple[RunningServer, dict[str, str], str]) -> None:
    server, tenant, url = sqlite_gateway
    responses = asyncio.run(_storm([server.api], tenant["key"], 200, max_tokens=6))
    assert _check_budget_storm(responses) == BUDGET_ANSWERS  # reserved worst case == real cost: exactly 50
    spent, reserved, states = _settled_ledger(url, tenant["budget_id"])
    assert spent == Spend(BUDGET_ANSWERS * (2 + 6), BUDGET_ANSWERS * ANSWER_NANO)  # the engine's counts
    assert reserved == Spend(0, 0)
    assert states == {"settled": BUDGET_ANSWERS}


def test_failures_release_and_cut_streams_settle(
    sqlite_gateway: tuple[RunningServer, dict[str, str], str],
) -> None:
    server, tenant, url = sqlite_gateway
    headers = {"authorization": f"Bearer {tenant['key']}"}
    failed = httpx.post(
        server.api + "/chat/completions",
        json={"model": "broken", "messages": [{"role": "user", "content": "x"}], "max_tokens": 5},
        headers=headers,
    )
    assert failed.status_code == 503
    with httpx.stream(
        "POST",
        server.api + "/chat/completions",
        json={
            "model": "slow-metered",
            "messages": [{"role": "user", "content": "x"}],
            "stream": True,
            "max_tokens": 300,
        },
        headers=headers,
        timeout=30,
    ) as stream:
        received = 0
        for line in stream.iter_lines():
            received += line.startswith("data: ")
            if received >= 8:
                break  # the client goes away mid-answer
    spent, reserved, states = _settled_ledger(url, tenant["budget_id"])
    assert states == {"released": 1, "settled": 1}
    assert reserved == Spend(0, 0)
    assert 0 < spent.nano_eur < 300 * 1_000_000  # charged for what was streamed, not the whole worst case
    over = httpx.post(
        server.api + "/chat/completions",
        json={"model": "metered", "messages": [{"role": "user", "content": "x"}]},  # no max_tokens
        headers=headers,
    )
    assert over.status_code == 429 and "may cost up to 4.10 EUR" in over.json()["error"]["message"]


# 9a: two processes, one PostgreSQL -----------------------------------------------------------------
def _toml(path: Path, url: str, data_dir: Path) -> Path:
    lines = [
        f'database_url = "{url}"',
        f'admin_key = "{ADMIN_KEY}"',
        f'data_dir = "{data_dir}"',
        'log_level = "warning"',
        "",
        "[[engines]]",
        'kind = "fake"',
        'name = "meter"',
        f'reply = "{REPLY}"',
        "concurrency = 1000",
        f"price_output_per_mtok = {PRICE}",
        "",
        "[[models]]",
        'name = "metered"',
        'engines = ["meter"]',
        "",
        "[audit]",  # replicas share the audit log's keys (one signing key per log)
        f'key_dir = "{path.parent / "audit-keys"}"',
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.postgres
def test_budget_is_never_overspent_by_two_processes_on_postgresql(
    pg_server: PostgresServer, tmp_path: Path
) -> None:
    with pg_server.database() as url:
        tenant = asyncio.run(
            _prepare(url, tmp_path / "data", budget_eur=f"{BUDGET_ANSWERS * ANSWER_NANO / 1e9}")
        )
        with ExitStack() as stack:
            processes = [
                stack.enter_context(
                    SocleProcess(
                        ["serve", "--config", str(_toml(tmp_path / f"{i}.toml", url, tmp_path / f"d{i}"))]
                    )
                )
                for i in range(2)
            ]
            responses = asyncio.run(
                _storm([p.url + "/v1" for p in processes], tenant["key"], 200, max_tokens=6)
            )
        assert _check_budget_storm(responses) == BUDGET_ANSWERS
        spent, reserved, states = asyncio.run(_ledger(url, tenant["budget_id"]))
        assert spent.nano_eur == BUDGET_ANSWERS * ANSWER_NANO and reserved == Spend(0, 0)
        assert states == {"settled": BUDGET_ANSWERS}  # every reservation ended, none still held


# 9d: rate limits under concurrency, on both databases -------------------------------------------
def test_requests_per_minute_under_concurrency(make_settings: Any, database_url: str, tmp_path: Path) -> None:
    tenant = asyncio.run(_prepare(database_url, tmp_path / "data", rpm=10))
    with run_server(make_settings(database_url=database_url, **_engines())) as server:
        responses = asyncio.run(_storm([server.api], tenant["key"], 30, max_tokens=6))
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 10, 429: 20}
    for refused in (r for r in responses if r.status_code == 429):
        assert 1 <= int(refused.headers["retry-after"]) <= 120
        error = refused.json()["error"]
        assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
        assert error["message"].startswith(
            "Rate limit reached for requests per minute on team research: 10/10."
        )
