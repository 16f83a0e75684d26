"""Rate limits: sliding-window counters in the database (SQLite, PostgreSQL) and in Redis.

The Redis variants need a ``redis-server`` binary (Debian package ``redis-server``) and the ``redis``
Python package; they are skipped, saying so, when either is missing (CI machines may lack them).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from socle.config import Settings
from socle.errors import BadRequestError, BudgetExceededError, NotFoundError, RateLimitError, StorageError
from socle.governance.identity import Principal
from socle.governance.money import Spend
from socle.governance.quotas import Quotas, Worst
from socle.governance.ratelimits import WINDOW_MS, RateLimitStore, RedisCounters, retry_after_ms
from socle.storage.db import Database
from socle.storage.types import new_id
from tests.governance.tenancy import Clock, make_tenant, redis_missing, redis_server

pytestmark = pytest.mark.anyio

NO_REDIS = redis_missing()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(
    params=["database", pytest.param("redis", marks=pytest.mark.skipif(bool(NO_REDIS), reason=str(NO_REDIS)))]
)
def counters(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def clock() -> Clock:
    return Clock()  # 23:00:00.000, the start of a minute


def _settings(tmp_path: Path, **values: Any) -> Settings:
    return Settings(data_dir=tmp_path, governance_cache_s=60, **values)


@pytest.fixture
async def make_quotas(
    request: pytest.FixtureRequest, counters: str, database: Database, clock: Clock, tmp_path: Path
) -> AsyncIterator[Any]:
    made: list[Quotas] = []
    prefix = f"socle-test-{new_id()}:"

    def make(db: Database = database, **values: Any) -> Quotas:
        backend = None
        if counters == "redis":
            backend = RedisCounters(request.getfixturevalue("redis_url"), prefix=prefix)
        quotas = Quotas(db, _settings(tmp_path, **values), clock=clock, counters=backend)
        made.append(quotas)
        return quotas

    yield make
    for quotas in made:
        await quotas.aclose()


@pytest.fixture
async def alice(database: Database) -> Principal:
    return (await make_tenant(database, "research", member="alice"))[1]


def worst(tokens: int = 10, nano: int = 0) -> Any:
    return lambda: Worst(tokens, 0, nano)


def test_retry_after_is_when_the_sliding_minute_leaves_room() -> None:
    assert retry_after_ms(10, 0, 5, 1, 0) == 0
    assert retry_after_ms(3, 0, 3, 1, 0) == 80_000  # next minute, once 1/3 of it has passed
    assert retry_after_ms(3, 3, 0, 1, 0) == 20_000  # the previous minute weighs 3 → 2 after 20 s
    assert retry_after_ms(3, 3, 0, 1, 30_000) == 0
    assert retry_after_ms(10, 0, 10, 1, 59_000) == 1000 + 6000
    assert retry_after_ms(10, 0, 0, 11, 0) is None  # never: larger than the limit
    assert retry_after_ms(1000, 0, 800, 300, 0) == WINDOW_MS + 7500  # 800 × 7/8 + 300 = 1000


async def test_manage_limits(make_quotas: Any, alice: Principal) -> None:
    limits = make_quotas().limits
    team = await limits.create_limit("team", alice.team_id, requests_per_minute=60)
    model = await limits.create_limit("model", "fake-chat", tokens_per_minute=10_000)
    assert [x.id for x in await limits.list_limits()] == [team.id, model.id]
    assert [x.id for x in await limits.list_limits(scope="model")] == [model.id]
    with pytest.raises(BadRequestError):
        await limits.create_limit("team", alice.team_id, requests_per_minute=1)
    with pytest.raises(NotFoundError):
        await limits.create_limit("key", "01NOSUCHKEY00000000000000", requests_per_minute=1)
    with pytest.raises(BadRequestError):
        await limits.create_limit("galaxy", "x", requests_per_minute=1)
    with pytest.raises(BadRequestError):
        await limits.create_limit("key", alice.key_id, requests_per_minute=0)
    with pytest.raises(BadRequestError):
        await limits.create_limit("key", alice.key_id)
    changed = await limits.update_limit(team.id, tokens_per_minute=500, requests_per_minute=None)
    assert (changed.requests_per_minute, changed.tokens_per_minute) == (None, 500)
    await limits.delete_limit(model.id)
    with pytest.raises(NotFoundError):
        await limits.get_limit(model.id)
    assert changed.to_dict()["tokens_per_minute"] == 500


async def test_requests_per_minute_slide(make_quotas: Any, alice: Principal, clock: Clock) -> None:
    quotas = make_quotas()
    await quotas.limits.create_limit("team", alice.team_id, requests_per_minute=3)
    for _ in range(3):
        assert await quotas.admit(alice, "m", worst()) is not None
    with pytest.raises(RateLimitError) as refused:
        await quotas.admit(alice, "m", worst())
    error = refused.value
    assert (error.status_code, error.code, error.headers["Retry-After"]) == (429, "rate_limit_exceeded", "80")
    assert error.message.startswith("Rate limit reached for requests per minute on team research: 3/3.")
    clock.advance(seconds=79)
    with pytest.raises(RateLimitError):  # the previous minute still weighs 3 × 41/60 > 2
        await quotas.admit(alice, "m", worst())
    clock.advance(seconds=1)
    assert await quotas.admit(alice, "m", worst()) is not None  # 3 × 40/60 + 1 = 3
    with pytest.raises(RateLimitError):
        await quotas.admit(alice, "m", worst())
    assert await quotas.counters.usage(f"team:{alice.team_id}", int(clock().timestamp() * 1000)) == (3, 30)


async def test_tokens_per_minute_count_the_worst_case_then_the_real_use(
    make_quotas: Any, alice: Principal
) -> None:
    quotas = make_quotas()
    await quotas.limits.create_limit("key", alice.key_id, tokens_per_minute=1000)
    first = await quotas.admit(alice, "m", worst(600))
    with pytest.raises(RateLimitError) as refused:
        await quotas.admit(alice, "m", worst(600))
    assert f"tokens per minute on key {alice.key_id}: 600/1000, this request may use up to 600" in (
        refused.value.message
    )
    assert "Retry-After" in refused.value.headers
    assert first is not None
    await quotas.finish(first, Spend(100, 0))  # 500 tokens given back
    second = await quotas.admit(alice, "m", worst(600))
    assert second is not None
    await quotas.finish(second, None)  # failed: all 600 given back
    assert await quotas.admit(alice, "m", worst(900)) is not None
    with pytest.raises(RateLimitError, match="Request too large for tokens per minute"):
        await quotas.admit(alice, "m", worst(1001))


async def test_defaults_and_model_limits(make_quotas: Any, database: Database, alice: Principal) -> None:
    quotas = make_quotas(default_key_rpm=2)
    _, bob = await make_tenant(database, "sales", member="bob")
    await quotas.limits.create_limit("model", "big", requests_per_minute=1)
    for _ in range(2):
        assert await quotas.admit(alice, "small", worst()) is not None
    with pytest.raises(RateLimitError, match=f"on key {alice.key_id}"):
        await quotas.admit(alice, "small", worst())
    assert await quotas.admit(bob, "big", worst()) is not None  # bob's key has its own default bucket
    with pytest.raises(RateLimitError, match="requests per minute on model big: 1/1"):
        await quotas.admit(bob, "big", worst())
    await quotas.limits.create_limit("key", alice.key_id, requests_per_minute=5)
    with pytest.raises(RateLimitError):  # this process caches the configuration until invalidated
        await quotas.admit(alice, "small", worst())
    quotas.invalidate()
    assert await quotas.admit(alice, "small", worst()) is not None


async def test_a_budget_refusal_takes_no_rate_limit_count(make_quotas: Any, alice: Principal) -> None:
    quotas = make_quotas()
    await quotas.limits.create_limit("team", alice.team_id, requests_per_minute=2, tokens_per_minute=100)
    await quotas.budgets.create_budget("team", alice.team_id, "daily", limit_tokens=25)
    for _ in range(3):
        with pytest.raises(BudgetExceededError):
            await quotas.admit(alice, "m", worst(30))
    assert await quotas.admit(alice, "m", worst(10)) is not None
    assert await quotas.admit(alice, "m", worst(10)) is not None
    with pytest.raises(RateLimitError, match="requests per minute"):
        await quotas.admit(alice, "m", worst(1))


async def test_concurrent_requests_from_two_replicas(
    make_quotas: Any, database_url: str, alice: Principal
) -> None:
    """RPM 10, 30 concurrent requests split across two replicas: exactly 10 pass."""
    other = Database(database_url)
    try:
        replicas = [make_quotas(), make_quotas(other)]
        await replicas[0].limits.create_limit("key", alice.key_id, requests_per_minute=10)

        async def attempt(index: int) -> bool:
            try:
                hold = await replicas[index % 2].admit(alice, "m", worst())
            except RateLimitError as exc:
                assert int(exc.headers["Retry-After"]) >= 1
                return False
            assert hold is not None
            return True

        assert sum(await asyncio.gather(*(attempt(i) for i in range(30)))) == 10
    finally:
        await other.close()


async def test_unreachable_counters_fail_closed_unless_configured_open(
    database: Database, alice: Principal, tmp_path: Path, clock: Clock
) -> None:
    if NO_REDIS:
        pytest.skip(NO_REDIS)
    await RateLimitStore(database).create_limit("key", alice.key_id, requests_per_minute=5)
    for fail_open in (False, True):
        dead = RedisCounters(f"unix://{tmp_path}/nobody-listens.sock", timeout_s=0.5)
        quotas = Quotas(database, _settings(tmp_path, budget_fail_open=fail_open), clock=clock, counters=dead)
        try:
            if fail_open:
                assert await quotas.admit(alice, "m", worst()) is None
            else:
                with pytest.raises(StorageError, match="rate-limit store is unavailable"):
                    await quotas.admit(alice, "m", worst())
        finally:
            await quotas.aclose()


async def test_an_unreachable_database_fails_closed_unless_configured_open(
    tmp_path: Path, clock: Clock
) -> None:
    dead = Database("postgresql://postgres@/socle?host=" + str(tmp_path / "no-such-socket-dir"))
    principal = Principal(
        key_id="k", principal_id="p", org_id="o", team_id="t", team_name="t", name="n", kind="user",
        roles=frozenset(), allowed_models=None,
    )  # fmt: skip
    try:
        closed = Quotas(dead, _settings(tmp_path), clock=clock)
        with pytest.raises(StorageError):
            await closed.admit(principal, "m", worst())
        await closed.aclose()
        opened = Quotas(dead, _settings(tmp_path, budget_fail_open=True), clock=clock)
        assert await opened.admit(principal, "m", worst()) is None
        await opened.aclose()
    finally:
        await dead.close()


async def test_team_and_model_limits(make_quotas: Any, database: Database, alice: Principal) -> None:
    """A team_model limit counts one team's requests to one model only, and the 429 names both."""
    quotas = make_quotas()
    _, bob = await make_tenant(database, "sales", member="bob")
    _, carol = await make_tenant(database, "research-2", member="carol")
    limits = quotas.limits
    limit = await limits.create_limit("team_model", f"{alice.team_id}:big", requests_per_minute=2)
    assert (await limits.list_limits(scope="team_model"))[0].scope_id == f"{alice.team_id}:big"
    with pytest.raises(NotFoundError):
        await limits.create_limit("team_model", "01NOSUCHTEAM0000000000000:big", requests_per_minute=1)
    with pytest.raises(BadRequestError, match="<team id>:<model>"):
        await limits.create_limit("team_model", alice.team_id, requests_per_minute=1)
    for _ in range(2):
        assert await quotas.admit(alice, "big", worst()) is not None
    with pytest.raises(RateLimitError, match="requests per minute on team research on model big: 2/2") as hit:
        await quotas.admit(alice, "big", worst())
    assert hit.value.code == "rate_limit_exceeded" and int(hit.value.headers["Retry-After"]) >= 1
    assert await quotas.admit(alice, "small", worst()) is None  # another model: no limit applies
    assert await quotas.admit(bob, "big", worst()) is None  # another team: no limit applies
    assert await quotas.admit(carol, "big", worst()) is None
    await limits.update_limit(limit.id, requests_per_minute=None, tokens_per_minute=1000)
    quotas.invalidate()
    assert await quotas.admit(alice, "big", worst(900)) is not None
    with pytest.raises(RateLimitError, match="tokens per minute on team research on model big"):
        await quotas.admit(alice, "big", worst(200))


async def test_team_and_model_limit_under_concurrency_across_replicas(
    make_quotas: Any, database: Database, database_url: str, alice: Principal
) -> None:
    """RPM 7 for (team, model), 24 concurrent requests from two keys of the team on two replicas:
    exactly 7 pass; requests to another model are not counted."""
    _, other_key = await make_tenant(database, "ops", member="dave")
    teammate = replace(other_key, team_id=alice.team_id, team_name=alice.team_name)
    other = Database(database_url)
    try:
        replicas = [make_quotas(), make_quotas(other)]
        await replicas[0].limits.create_limit("team_model", f"{alice.team_id}:big", requests_per_minute=7)

        async def attempt(index: int) -> bool:
            who = alice if index % 3 else teammate
            try:
                await replicas[index % 2].admit(who, "big" if index < 24 else "small", worst())
            except RateLimitError:
                return False
            return True

        results = await asyncio.gather(*(attempt(i) for i in range(30)))
        assert sum(results[:24]) == 7 and all(results[24:])
    finally:
        await other.close()
