"""The pipeline's quota step: worst-case estimates, prices, and budgets with rate limits in one hold."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from socle.config import FakeEngineConfig, LlamaCppEngineConfig, OpenAICompatEngineConfig, Settings
from socle.errors import StorageError
from socle.governance.money import Spend, cost_nano_eur
from socle.governance.quotas import Quotas, Worst, prompt_bound, worst_case
from socle.storage.db import Database
from socle.storage.models import BudgetReservationRow, RateLimitCounterRow
from tests.governance.tenancy import Clock, make_tenant

pytestmark = pytest.mark.anyio

LLAMA = LlamaCppEngineConfig(
    name="local", model_path="/m.gguf", sha256="0" * 64, n_ctx=2048, price_input_per_mtok=0.1
)
REMOTE = OpenAICompatEngineConfig(
    name="remote", zone="eu", base_url="http://x/v1", price_input_per_mtok=0.15, price_output_per_mtok=0.6
)


def test_prices_are_exact_nano_euros() -> None:
    assert cost_nano_eur(REMOTE, 1_000_000, 0) == 150_000_000  # 0.15 EUR
    assert cost_nano_eur(REMOTE, 3, 7) == 3 * 150 + 7 * 600
    odd = FakeEngineConfig(name="odd", price_output_per_mtok=0.0001)  # 0.1 nano-euro per token
    assert cost_nano_eur(odd, 0, 1) == 1  # rounded up, never down
    assert cost_nano_eur(odd, 0, 10) == 1


def test_the_prompt_bound_is_never_below_a_real_token_count() -> None:
    texts = ["Bonjour, je suis un moteur factice.", "日本語のテキスト", "🙂" * 10]
    bound = prompt_bound(texts, messages=3)
    assert bound == sum(len(t.encode()) for t in texts) + 3 * 8 + 64
    assert bound >= sum(len(t) for t in texts)  # at least one token per character, let alone per word


def test_the_worst_case_takes_the_largest_output_and_the_dearest_engine() -> None:
    assert worst_case([LLAMA, REMOTE], 100, 50, 4096) == Worst(100, 50, 100 * 150 + 50 * 600)
    assert worst_case([LLAMA], 100, None, 4096) == Worst(100, 2048, 100 * 100)  # n_ctx bounds llama.cpp
    assert worst_case([LLAMA, REMOTE], 100, None, 4096).output_tokens == 4096
    assert worst_case([LLAMA], 100, 99_999, 4096).output_tokens == 2048
    assert worst_case([REMOTE], 10, 0, 4096) == Worst(10, 0, 1500)  # embeddings


async def test_budgets_and_limits_are_held_together_and_settled_together(
    database: Database, tmp_path: Path
) -> None:
    _, alice = await make_tenant(database)
    quotas = Quotas(database, Settings(data_dir=tmp_path), clock=Clock())
    try:
        assert await quotas.admit(alice, "m", lambda: Worst(1, 1, 1)) is None  # nothing applies
        async with database.read() as connection:
            assert await connection.scalar(select(func.count()).select_from(RateLimitCounterRow)) == 0
        budget = await quotas.budgets.create_budget("team", alice.team_id, "monthly", limit_eur="0.001")
        await quotas.limits.create_limit("team", alice.team_id, tokens_per_minute=10_000)
        quotas.invalidate()
        hold = await quotas.admit(alice, "m", lambda: Worst(100, 400, 600_000), request_id="req_x")
        assert hold is not None and hold.reservation is not None and len(hold.taken) == 1
        status = await quotas.budgets.budget_status(budget.id)
        assert status.reserved == Spend(500, 600_000)
        await quotas.finish(hold, Spend(120, 150_000))
        await quotas.finish(hold, Spend(120, 150_000))  # once only
        status = await quotas.budgets.budget_status(budget.id)
        assert status.spent == Spend(120, 150_000) and status.reserved == Spend(0, 0)
        minute_usage = await quotas.counters.usage(f"team:{alice.team_id}", int(Clock()().timestamp() * 1000))
        assert minute_usage == (1, 120)  # the unused 380 tokens were given back to the minute
        async with database.read() as connection:
            request_ids = (await connection.scalars(select(BudgetReservationRow.request_id))).all()
        assert request_ids == ["req_x"]
    finally:
        await quotas.aclose()


async def test_a_failed_settlement_is_retried_in_the_background(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, alice = await make_tenant(database)
    quotas = Quotas(database, Settings(data_dir=tmp_path), clock=Clock())
    try:
        budget = await quotas.budgets.create_budget("team", alice.team_id, "daily", limit_tokens=1000)
        hold = await quotas.admit(alice, "m", lambda: Worst(10, 10, 0))
        assert hold is not None
        real = quotas.budgets.finish_in
        attempts: list[int] = []

        def flaky(*args: Any, **kwargs: Any) -> None:
            attempts.append(1)
            if len(attempts) == 1:
                raise StorageError("The database is unavailable; the request was refused.")
            real(*args, **kwargs)

        monkeypatch.setattr(quotas.budgets, "finish_in", flaky)
        await quotas.finish(hold, Spend(5, 0))  # returns at once: the answer is not held back
        assert (await quotas.budgets.budget_status(budget.id)).reserved == Spend(20, 0)
        await quotas.drain()
        status = await quotas.budgets.budget_status(budget.id)
        assert status.spent == Spend(5, 0) and status.reserved == Spend(0, 0) and len(attempts) == 2
    finally:
        await quotas.aclose()
