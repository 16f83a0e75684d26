"""Model access: grants per team and model, the open and deny defaults, and the per-process cache."""

from __future__ import annotations

import asyncio

import pytest

from socle.errors import ConflictError, NotFoundError, PermissionDeniedError
from socle.governance.access import ModelAccess
from socle.storage.db import Database
from tests.governance.tenancy import make_tenant

pytestmark = pytest.mark.anyio


class Monotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_open_by_default_until_a_model_is_granted(database: Database) -> None:
    _, alice = await make_tenant(database, "research", member="alice")
    _, bob = await make_tenant(database, "sales", member="bob")
    access = ModelAccess(database, default="open", cache_s=60)
    assert await access.usable(alice.team_id, ["big", "small"]) == ["big", "small"]
    await access.grant(alice.team_id, "big")
    await access.grant(alice.team_id, "big")  # idempotent
    assert [g.model for g in await access.grants(team_id=alice.team_id)] == ["big"]
    assert await access.allows(alice.team_id, "big") and await access.allows(bob.team_id, "small")
    with pytest.raises(PermissionDeniedError, match="Team 'sales' may not use the model 'big'") as refused:
        await access.check(bob.team_id, "sales", "big")
    assert refused.value.code == "model_not_allowed" and refused.value.param == "model"
    assert await access.usable(bob.team_id, ["big", "small"]) == ["small"]

    with pytest.raises(ConflictError) as last:  # revoking the last grant would open it to everyone
        await access.revoke(alice.team_id, "big")
    assert last.value.code == "last_grant" and last.value.status_code == 409
    await access.grant(bob.team_id, "big")
    policy = await access.revoke(alice.team_id, "big")
    assert policy.restricted and policy.teams == {bob.team_id}
    assert not await access.allows(alice.team_id, "big")
    policy = await access.revoke(bob.team_id, "big", reopen=True)
    assert not policy.restricted and await access.allows(alice.team_id, "big")
    with pytest.raises(NotFoundError):
        await access.revoke(bob.team_id, "big")
    with pytest.raises(NotFoundError):
        await access.grant("no-such-team", "big")


async def test_deny_by_default(database: Database) -> None:
    _, alice = await make_tenant(database, "research", member="alice")
    access = ModelAccess(database, default="deny", cache_s=60)
    assert await access.usable(alice.team_id, ["big", "small"]) == []
    with pytest.raises(PermissionDeniedError):
        await access.check(alice.team_id, "research", "small")
    await access.grant(alice.team_id, "small")
    assert await access.usable(alice.team_id, ["big", "small"]) == ["small"]
    policy = await access.revoke(alice.team_id, "small")  # no reopen needed: nothing opens
    assert policy.restricted and not policy.teams
    assert not await access.allows(alice.team_id, "small")


async def test_a_revocation_reaches_another_replica_within_the_cache_time(
    database: Database, database_url: str
) -> None:
    """Two replicas (two connection pools) on one database; the second caches grants for 5 s."""
    _, alice = await make_tenant(database, "research", member="alice")
    _, bob = await make_tenant(database, "sales", member="bob")
    other = Database(database_url)
    clock = Monotonic()
    try:
        first = ModelAccess(database, cache_s=5)
        second = ModelAccess(other, cache_s=5, monotonic=clock)
        await first.grant(alice.team_id, "big")
        await first.grant(bob.team_id, "big")
        assert await second.allows(bob.team_id, "big")  # read now, cached from here on
        await first.revoke(bob.team_id, "big")
        assert not await first.allows(bob.team_id, "big")  # at once where it was made
        clock.now += 4.9
        assert await second.allows(bob.team_id, "big")  # still cached: the documented bound
        clock.now += 0.2
        assert not await second.allows(bob.team_id, "big")  # past governance_cache_s: refused
    finally:
        await other.close()


async def test_concurrent_revocations_never_open_a_model(database: Database) -> None:
    """Two teams hold the only grants; revoking both at once must leave the model closed (one refused)."""
    _, alice = await make_tenant(database, "research", member="alice")
    _, bob = await make_tenant(database, "sales", member="bob")
    access = ModelAccess(database, cache_s=0)
    await access.grant(alice.team_id, "big")
    await access.grant(bob.team_id, "big")
    results = await asyncio.gather(
        access.revoke(alice.team_id, "big"), access.revoke(bob.team_id, "big"), return_exceptions=True
    )
    assert sum(isinstance(r, ConflictError) for r in results) == 1, results
    assert (await access.policy("big")).restricted
