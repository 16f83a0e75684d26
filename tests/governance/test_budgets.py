"""Budgets on SQLite and PostgreSQL: management, reservation, settlement, release, periods, the sweeper."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from socle.errors import BadRequestError, BudgetExceededError, NotFoundError
from socle.governance.budgets import BudgetStore, period_bounds
from socle.governance.identity import Principal
from socle.governance.money import Spend, eur_to_nano, format_eur, nano_to_eur
from socle.storage.db import Database
from socle.storage.models import BudgetReservationItemRow, BudgetReservationRow
from tests.governance.tenancy import Clock, make_tenant

pytestmark = pytest.mark.anyio


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(database: Database, clock: Clock) -> BudgetStore:
    return BudgetStore(database, clock=clock, reservation_timeout_s=600, retention_s=3600)


@pytest.fixture
async def alice(database: Database) -> Principal:
    return (await make_tenant(database, "research", member="alice"))[1]


async def _states(db: Database) -> dict[str, int]:
    async with db.read() as connection:
        rows = (
            await connection.execute(
                select(BudgetReservationRow.state, func.count()).group_by(BudgetReservationRow.state)
            )
        ).all()
    return {state: count for state, count in rows}


def test_amounts_are_exact() -> None:
    assert eur_to_nano("50") == 50 * 10**9
    assert eur_to_nano(0.1) == 100_000_000  # read as written, not as the binary float
    assert eur_to_nano(Decimal("0.0000000001")) == 1  # rounded up to the next nano-euro
    assert nano_to_eur(1) == Decimal("0.000000001")
    assert format_eur(12_500_000_000) == "12.50 EUR"
    assert format_eur(135_000) == "0.000135 EUR"
    with pytest.raises(BadRequestError):
        eur_to_nano("lots")


def test_periods_are_utc_days_months_and_forever() -> None:
    when = datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert period_bounds("daily", when) == (
        datetime(2026, 12, 31, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )
    assert period_bounds("monthly", when) == (
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )
    assert period_bounds("total", when) == (datetime(1970, 1, 1, tzinfo=UTC), None)


async def test_manage_budgets(store: BudgetStore, alice: Principal) -> None:
    team = await store.create_budget("team", alice.team_id, "monthly", limit_eur="50")
    key = await store.create_budget("key", alice.key_id, "daily", limit_tokens=1000)
    assert team.limit_eur == Decimal(50) and team.limit_tokens is None
    assert [b.id for b in await store.list_budgets()] == [team.id, key.id]
    assert [b.id for b in await store.list_budgets(scope="key")] == [key.id]
    with pytest.raises(BadRequestError) as exists:
        await store.create_budget("team", alice.team_id, "monthly", limit_eur=10)
    assert exists.value.code == "budget_exists"
    with pytest.raises(NotFoundError):
        await store.create_budget("team", "01NOSUCHTEAM0000000000000", "daily", limit_eur=1)
    with pytest.raises(BadRequestError):
        await store.create_budget("galaxy", alice.team_id, "daily", limit_eur=1)
    with pytest.raises(BadRequestError):
        await store.create_budget("user", alice.principal_id, "weekly", limit_eur=1)
    with pytest.raises(BadRequestError):
        await store.create_budget("user", alice.principal_id, "daily")
    with pytest.raises(BadRequestError):
        await store.create_budget("user", alice.principal_id, "daily", limit_eur=-1)
    updated = await store.update_budget(team.id, limit_tokens=5, limit_eur=None)
    assert updated.limit_eur is None and updated.limit_tokens == 5
    with pytest.raises(BadRequestError):
        await store.update_budget(team.id, limit_tokens=None)
    await store.delete_budget(key.id)
    with pytest.raises(NotFoundError):
        await store.get_budget(key.id)
    with pytest.raises(NotFoundError):
        await store.delete_budget(key.id)
    assert updated.to_dict()["limit_eur"] is None


async def test_reserve_settle_release(store: BudgetStore, alice: Principal, database: Database) -> None:
    budget = await store.create_budget(
        "team", alice.team_id, "monthly", limit_eur="0.00001", limit_tokens=1000
    )
    first = await store.reserve(alice, Spend(300, 4000), request_id="req_1")
    second = await store.reserve(alice, Spend(300, 4000), request_id="req_2")
    assert first is not None and second is not None
    status = await store.budget_status(budget.id)
    assert status.reserved == Spend(600, 8000) and status.spent == Spend(0, 0)
    assert status.remaining_nano_eur == 2000 and status.remaining_tokens == 400
    await store.settle(first, Spend(120, 1500))
    await store.settle(first, Spend(120, 1500))  # once only
    await store.release(second)
    await store.release(second)
    status = await store.budget_status(budget.id)
    assert status.spent == Spend(120, 1500) and status.reserved == Spend(0, 0)
    assert status.to_dict()["spent_eur"] == "0.0000015"
    assert await _states(database) == {"settled": 1, "released": 1}
    assert await store.held_reservations() == 0


async def test_refused_when_any_budget_is_short_and_nothing_is_held(
    store: BudgetStore, alice: Principal, database: Database
) -> None:
    team = await store.create_budget("team", alice.team_id, "monthly", limit_eur=100)
    org = await store.create_budget("organisation", alice.org_id, "total", limit_eur=100)
    user = await store.create_budget("user", alice.principal_id, "daily", limit_tokens=500)
    key = await store.create_budget("key", alice.key_id, "daily", limit_tokens=50)
    held = await store.reserve(alice, Spend(40, 10))
    assert held is not None and {b for b, _ in held.counters} == {team.id, org.id, user.id, key.id}
    with pytest.raises(BudgetExceededError) as refused:
        await store.reserve(alice, Spend(40, 10))
    error = refused.value
    assert (error.status_code, error.code, error.error_type) == (
        429,
        "insufficient_quota",
        "insufficient_quota",
    )
    assert f"daily budget of key {alice.key_id}" in error.message and error.param == key.id
    assert "10 tokens left of 50" in error.message
    for budget in (team, org, user):  # all or none: the budgets that could admit it hold nothing more
        assert (await store.budget_status(budget.id)).reserved == Spend(40, 10)
    assert await _states(database) == {"held": 1}
    with pytest.raises(BudgetExceededError) as by_money:
        await store.reserve(alice, Spend(1, 200 * 10**9))
    assert "the monthly budget of team research has" in by_money.value.message  # the first by id
    assert "this request may cost up to 200.00 EUR" in by_money.value.message


async def test_a_changed_limit_applies_at_once(store: BudgetStore, alice: Principal) -> None:
    budget = await store.create_budget("user", alice.principal_id, "total", limit_tokens=100)
    assert await store.reserve(alice, Spend(80, 0)) is not None
    await store.update_budget(budget.id, limit_tokens=70)
    with pytest.raises(BudgetExceededError):
        await store.reserve(alice, Spend(1, 0))
    await store.update_budget(budget.id, limit_tokens=200)
    assert await store.reserve(alice, Spend(100, 0)) is not None


async def test_periods_reset_by_themselves(store: BudgetStore, alice: Principal, clock: Clock) -> None:
    daily = await store.create_budget("key", alice.key_id, "daily", limit_tokens=100)
    monthly = await store.create_budget("team", alice.team_id, "monthly", limit_tokens=250)
    total = await store.create_budget("organisation", alice.org_id, "total", limit_tokens=350)
    held = await store.reserve(alice, Spend(100, 0))  # 2026-03-31 23:00
    assert held is not None
    clock.advance(minutes=90)  # settled after midnight: charged to the day and month it was reserved in
    await store.settle(held, Spend(100, 0))
    assert (await store.budget_status(daily.id)).spent == Spend(0, 0)  # a new day, a new month
    assert (await store.budget_status(monthly.id)).spent == Spend(0, 0)
    assert (await store.budget_status(total.id)).spent == Spend(100, 0)
    for _ in range(2):  # two more days: daily resets, monthly accumulates
        assert (second := await store.reserve(alice, Spend(100, 0))) is not None
        await store.settle(second, Spend(100, 0))
        with pytest.raises(BudgetExceededError, match="daily budget of key"):
            await store.reserve(alice, Spend(1, 0))
        clock.advance(days=1)
    with pytest.raises(BudgetExceededError, match="monthly budget of team research"):
        await store.reserve(alice, Spend(100, 0))
    clock.advance(days=31)  # May: the month resets, the total does not
    assert (await store.budget_status(monthly.id)).period_start == datetime(2026, 5, 1, tzinfo=UTC)
    with pytest.raises(BudgetExceededError, match="total budget of organisation"):
        await store.reserve(alice, Spend(100, 0))
    assert await store.reserve(alice, Spend(50, 0)) is not None


async def test_sweeper_releases_what_dead_processes_held(
    store: BudgetStore, alice: Principal, clock: Clock, database: Database
) -> None:
    budget = await store.create_budget("team", alice.team_id, "daily", limit_tokens=100)
    lost = await store.reserve(alice, Spend(60, 0))  # its process "dies": never settled
    late = await store.reserve(alice, Spend(40, 0))
    assert lost is not None and late is not None
    assert await store.sweep() == 0
    clock.advance(seconds=601)
    assert await store.sweep() == 2
    assert (await store.budget_status(budget.id)).reserved == Spend(0, 0)
    assert await store.sweep() == 0  # twice is harmless
    await store.settle(late, Spend(30, 0))  # settled after it expired: charged, nothing released twice
    status = await store.budget_status(budget.id)
    assert status.spent == Spend(30, 0) and status.reserved == Spend(0, 0)
    assert await _states(database) == {"expired": 1, "settled": 1}
    clock.advance(seconds=3600)
    await store.sweep()  # finished reservations older than the retention are deleted, with their items
    assert await _states(database) == {}
    async with database.read() as connection:
        assert await connection.scalar(select(func.count()).select_from(BudgetReservationItemRow)) == 0


async def test_a_deleted_budget_no_longer_applies(store: BudgetStore, alice: Principal) -> None:
    budget = await store.create_budget("team", alice.team_id, "daily", limit_tokens=10)
    held = await store.reserve(alice, Spend(10, 0))
    assert held is not None
    stale = [budget]
    await store.delete_budget(budget.id)
    assert await store.reserve(alice, Spend(10, 0), budgets=stale) is None  # a stale cache is harmless
    await store.settle(held, Spend(5, 0))  # its counters are gone: nothing to charge, no error


@pytest.fixture
async def replicas(database_url: str, clock: Clock) -> AsyncIterator[list[BudgetStore]]:
    """Two stores on two engines (connection pools), like two gateway processes."""
    dbs = [Database(database_url) for _ in range(2)]
    try:
        yield [BudgetStore(db, clock=clock) for db in dbs]
    finally:
        for db in dbs:
            await db.close()


async def test_concurrent_reservations_never_overspend(
    database: Database, replicas: list[BudgetStore], alice: Principal
) -> None:
    """40 concurrent reservations from two replicas against a budget for 10: exactly 10 are admitted."""
    budget = await replicas[0].create_budget("team", alice.team_id, "monthly", limit_eur="0.000001")  # 1000

    async def attempt(index: int) -> bool:
        try:
            held = await replicas[index % 2].reserve(alice, Spend(1, 100), request_id=f"req_{index}")
        except BudgetExceededError:
            return False
        assert held is not None
        await asyncio.sleep(0)
        await replicas[(index + 1) % 2].settle(held, Spend(1, 100))
        return True

    results = await asyncio.gather(*(attempt(i) for i in range(40)))
    assert sum(results) == 10
    status = await replicas[1].budget_status(budget.id)
    assert status.spent == Spend(10, 1000) and status.reserved == Spend(0, 0)
    assert await _states(database) == {"settled": 10}
