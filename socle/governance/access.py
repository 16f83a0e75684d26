"""Model access: which teams may use which public models, as data that admins manage.

Grants
    A grant (table ``model_grants``) lets one team use one public model (its canonical name; aliases
    follow it). A model that has at least one grant is *restricted*: only the granted teams may use it.
    A model without any grant follows ``model_access.default``:

    * ``open`` (the embedded default, so that a fresh install works out of the box): every team may use
      it. Granting a model to a first team therefore closes it to the others.
    * ``deny``: nobody may use it until it is granted (deny by default, for production).

    Revoking the last grant of a model under ``open`` would open it to every team again; that is
    refused unless the caller says so (``reopen=True``), so a revocation never widens access by
    accident.

    Admission also intersects with the key's own ``allowed_models``: a request must pass both. Roles do
    not bypass grants: under ``deny``, an admin's own team needs grants too.

Where it is enforced
    In the pipeline's admission (403 ``model_not_allowed``, naming the model), and in ``GET /v1/models``,
    which lists only the models the caller may use (clients such as the console's model picker rely on
    it).

Cache
    Each process reads all grants in one query and reuses them for at most ``governance_cache_s``
    seconds (default 5). A grant or revocation applies at once in the process that made it and within
    ``governance_cache_s`` on every other replica; set it to 0 to read grants on every request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from socle.errors import ConflictError, NotFoundError, PermissionDeniedError
from socle.storage.db import Database
from socle.storage.models import ModelGrantRow, TeamRow
from socle.storage.types import utcnow

__all__ = ["AccessDefault", "ModelAccess", "ModelGrant", "ModelPolicy"]

AccessDefault = Literal["open", "deny"]


@dataclass(frozen=True, slots=True)
class ModelGrant:
    team_id: str
    model: str
    created_at: datetime

    def to_dict(self) -> dict[str, object]:
        return {
            "object": "model_grant",
            "team_id": self.team_id,
            "model": self.model,
            "created_at": self.created_at,
        }


@dataclass(frozen=True, slots=True)
class ModelPolicy:
    """Who may use one model: everyone (``restricted`` false under ``open``), nobody, or the teams
    granted."""

    model: str
    restricted: bool
    teams: frozenset[str]

    def allows(self, team_id: str) -> bool:
        return not self.restricted or team_id in self.teams

    def to_dict(self) -> dict[str, object]:
        return {
            "object": "model_access",
            "model": self.model,
            "restricted": self.restricted,
            "teams": sorted(self.teams),
        }


@dataclass(frozen=True, slots=True)
class _Snapshot:
    granted: dict[str, frozenset[str]]
    loaded: float


class ModelAccess:
    """The grants, their cached snapshot and the admission check."""

    def __init__(
        self,
        db: Database,
        *,
        default: AccessDefault = "open",
        cache_s: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self.default: AccessDefault = default
        self._cache_s = cache_s
        self._monotonic = monotonic
        self._snapshot: _Snapshot | None = None
        self._lock = asyncio.Lock()

    # Checks -----------------------------------------------------------------------------------------
    async def policy(self, model: str) -> ModelPolicy:
        """Who may use ``model`` (a canonical public name), as this process currently knows it."""
        teams = (await self._current()).granted.get(model)
        if teams:
            return ModelPolicy(model, True, teams)
        return ModelPolicy(model, self.default == "deny", frozenset())

    async def allows(self, team_id: str, model: str) -> bool:
        return (await self.policy(model)).allows(team_id)

    async def check(self, team_id: str, team_name: str, model: str) -> None:
        """Raise 403 ``model_not_allowed`` unless the team may use ``model``."""
        if not await self.allows(team_id, model):
            raise PermissionDeniedError(
                f"Team {team_name!r} may not use the model {model!r}: ask an admin for access "
                f"(socle models grant --team {team_name} {model}).",
                code="model_not_allowed",
                param="model",
            )

    async def usable(self, team_id: str, models: Iterable[str]) -> list[str]:
        """The ``models`` the team may use, in their order."""
        snapshot = await self._current()
        deny = self.default == "deny"
        return [m for m in models if (team_id in g if (g := snapshot.granted.get(m)) else not deny)]

    def invalidate(self) -> None:
        """Forget the cached grants: the next check reads them again."""
        self._snapshot = None

    # Administration ---------------------------------------------------------------------------------
    async def grant(self, team_id: str, model: str) -> ModelGrant:
        """Let a team use a model (idempotent: granting twice keeps the first grant)."""
        try:
            async with self._db.session() as session:
                if await session.get(TeamRow, team_id) is None:
                    raise NotFoundError(f"No team {team_id!r}.", code="team_not_found")
                row = await session.get(ModelGrantRow, (team_id, model))
                if row is None:
                    row = ModelGrantRow(team_id=team_id, model=model, created_at=utcnow())
                    session.add(row)
                    await session.flush()
                grant = ModelGrant(row.team_id, row.model, row.created_at)
        except IntegrityError:  # a concurrent grant of the same pair won: the grant exists
            grant = (await self.grants(team_id=team_id, model=model))[0]
        self.invalidate()
        return grant

    async def revoke(self, team_id: str, model: str, *, reopen: bool = False) -> ModelPolicy:
        """Take a model away from a team; returns the model's policy afterwards.

        Under ``open``, revoking the model's last grant would open it to every team: refused with 409
        ``last_grant`` unless ``reopen``.
        """
        async with self._db.session() as session:
            # Lock the model's grants: concurrent revocations cannot both remove "the last but one".
            teams = set(
                await session.scalars(
                    select(ModelGrantRow.team_id).where(ModelGrantRow.model == model).with_for_update()
                )
            )
            if team_id not in teams:
                raise NotFoundError(f"The team has no grant for {model!r}.", code="grant_not_found")
            if self.default == "open" and teams == {team_id} and not reopen:
                raise ConflictError(
                    f"This is the last grant of {model!r}: without grants the model is open to every "
                    "team (model_access.default = open). Grant it to another team first, or pass "
                    "reopen=true to open it to all.",
                    code="last_grant",
                )
            await session.execute(
                delete(ModelGrantRow).where(ModelGrantRow.team_id == team_id, ModelGrantRow.model == model)
            )
        self.invalidate()
        return await self.policy(model)

    async def grants(self, *, team_id: str | None = None, model: str | None = None) -> list[ModelGrant]:
        query = select(ModelGrantRow).order_by(ModelGrantRow.model, ModelGrantRow.team_id)
        if team_id is not None:
            query = query.where(ModelGrantRow.team_id == team_id)
        if model is not None:
            query = query.where(ModelGrantRow.model == model)
        async with self._db.session() as session:
            return [ModelGrant(r.team_id, r.model, r.created_at) for r in await session.scalars(query)]

    # Cache ------------------------------------------------------------------------------------------
    async def _current(self) -> _Snapshot:
        snapshot = self._snapshot
        if snapshot is not None and self._monotonic() - snapshot.loaded < self._cache_s:
            return snapshot
        async with self._lock:
            snapshot = self._snapshot
            if snapshot is not None and self._monotonic() - snapshot.loaded < self._cache_s:
                return snapshot
            rows = await self._db.fetch_all(select(ModelGrantRow.model, ModelGrantRow.team_id))
            granted: dict[str, set[str]] = {}
            for row in rows:
                granted.setdefault(row.model, set()).add(row.team_id)
            snapshot = _Snapshot({m: frozenset(t) for m, t in granted.items()}, self._monotonic())
            self._snapshot = snapshot
            return snapshot
