"""Team guardrail policies as data that admins manage (``/v1/admin/teams/{team}/guardrails``).

The settings' policies (``[guardrails.policies]``, ``[guardrails.teams]``) remain the default: a team
without a stored policy gets the one the settings give it. Storing a policy for a team overrides that.
Every change adds a version (1, 2, 3... per team, table ``guardrail_policies``) and keeps the earlier
ones; going back to the settings' policy is itself a version (with no policy). The recorded version of
a stored policy is its version number, as the admin API returned it.

Cache: each process reads a team's current version at most every ``governance_cache_s`` seconds (like
model access and team classifications); a change applies at once in the process that made it and
within ``governance_cache_s`` on every other replica.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.exc import IntegrityError

from socle.config import GuardPolicy
from socle.errors import ConflictError
from socle.governance.guardrails.policy import check_policy
from socle.storage.db import Database
from socle.storage.models import GuardrailPolicyRow
from socle.storage.types import utcnow

__all__ = ["PolicyStore", "StoredPolicy"]


@dataclass(frozen=True, slots=True)
class StoredPolicy:
    """One version of a team's policy; ``policy`` None: back to the settings' policy."""

    team_id: str
    version: int
    name: str
    policy: GuardPolicy | None
    created_by: str
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "object": "guardrail_policy_version",
            "team_id": self.team_id,
            "version": self.version,
            "name": self.name,
            "policy": None if self.policy is None else _content(self.policy),
            "created_by": self.created_by,
            "created_at": self.created_at,
        }


def _content(policy: GuardPolicy) -> dict[str, Any]:
    """A policy as stored and shown: without ``version`` (the store numbers versions)."""
    return policy.model_dump(mode="json", exclude={"version"})


def _stored(row: Any) -> StoredPolicy:
    policy = None
    if row.policy is not None:
        policy = GuardPolicy.model_validate({**row.policy, "version": row.version})
    return StoredPolicy(row.team_id, row.version, row.name, policy, row.created_by, row.created_at)


_COLUMNS = (
    GuardrailPolicyRow.team_id,
    GuardrailPolicyRow.version,
    GuardrailPolicyRow.name,
    GuardrailPolicyRow.policy,
    GuardrailPolicyRow.created_by,
    GuardrailPolicyRow.created_at,
)


class PolicyStore:
    """Versions of teams' policies in the database, and a per-process cache of the current ones."""

    def __init__(
        self, db: Database, *, cache_s: float = 5.0, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._db = db
        self._cache_s = cache_s
        self._monotonic = monotonic
        self._cache: dict[str, tuple[StoredPolicy | None, float]] = {}
        self._latest = (
            select(*_COLUMNS)
            .where(GuardrailPolicyRow.team_id == bindparam("team_id"))
            .order_by(GuardrailPolicyRow.version.desc())
            .limit(1)
        )

    async def current(self, team_id: str) -> StoredPolicy | None:
        """The team's latest version (cached), or None if it never had one."""
        now = self._monotonic()
        cached = self._cache.get(team_id)
        if cached is not None and now - cached[1] < self._cache_s:
            return cached[0]
        rows = await self._db.fetch_all(self._latest, {"team_id": team_id})
        latest = _stored(rows[0]) if rows else None
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[team_id] = (latest, now)
        return latest

    async def history(self, team_id: str) -> list[StoredPolicy]:
        """Every version of the team's policy, newest first."""
        statement = (
            select(*_COLUMNS)
            .where(GuardrailPolicyRow.team_id == team_id)
            .order_by(GuardrailPolicyRow.version.desc())
        )
        async with self._db.read() as conn:
            return [_stored(row) for row in await conn.execute(statement)]

    async def put(self, team_id: str, name: str, policy: GuardPolicy | None, actor: str) -> StoredPolicy:
        """Store the next version of the team's policy (None: back to the settings' policy). The policy
        is checked first (400 ``invalid_guardrail_policy``); two concurrent changes of one team: the
        second gets 409 and may retry."""
        if policy is not None:
            check_policy(policy)
        content = None if policy is None else _content(policy)
        try:
            async with self._db.session() as session:
                top = await session.scalar(
                    select(func.max(GuardrailPolicyRow.version)).where(GuardrailPolicyRow.team_id == team_id)
                )
                row = GuardrailPolicyRow(
                    team_id=team_id,
                    version=(top or 0) + 1,
                    name=name,
                    policy=content,
                    created_by=actor,
                    created_at=utcnow(),
                )
                session.add(row)
                await session.flush()
                stored = _stored(row)
        except IntegrityError as exc:
            raise ConflictError(
                "The team's guardrail policy changed at the same time; read it again and retry.",
                code="guardrail_policy_conflict",
            ) from exc
        self._cache[team_id] = (stored, self._monotonic())
        return stored

    def forget(self, team_id: str | None = None) -> None:
        """Drop cached policies (all, or one team's)."""
        if team_id is None:
            self._cache.clear()
        else:
            self._cache.pop(team_id, None)
