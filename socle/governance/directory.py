"""The directory: teams, principals (users and service accounts) and role bindings.

Every change here is an administrative act; routes check who may do it (RBAC) before calling.
Bindings are checked for separation of duties across *all* teams of a principal: an auditor in one
team cannot be an admin in another. Listings hand out frozen records, never ORM rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from socle.errors import BadRequestError, NotFoundError
from socle.governance.rbac import check_compatible
from socle.storage.db import Database
from socle.storage.models import ApiKeyRow, PrincipalRow, TeamMemberRow, TeamRow
from socle.storage.types import utcnow

__all__ = ["Binding", "Directory", "PrincipalRecord", "TeamRecord"]


@dataclass(frozen=True, slots=True)
class TeamRecord:
    id: str
    org_id: str
    name: str
    created_at: datetime
    classification: str
    """Default data classification of the team's requests (see socle.governance.residency)."""


@dataclass(frozen=True, slots=True)
class PrincipalRecord:
    id: str
    org_id: str
    kind: str
    name: str
    email: str | None
    created_at: datetime
    disabled_at: datetime | None


@dataclass(frozen=True, slots=True)
class Binding:
    team_id: str
    principal_id: str
    role: str


def _team(row: TeamRow) -> TeamRecord:
    return TeamRecord(row.id, row.org_id, row.name, row.created_at, row.classification)


def _principal(row: PrincipalRow) -> PrincipalRecord:
    return PrincipalRecord(row.id, row.org_id, row.kind, row.name, row.email, row.created_at, row.disabled_at)


class Directory:
    def __init__(self, db: Database, *, incompatible_roles: Sequence[Sequence[str]]) -> None:
        self._db = db
        self._incompatible = incompatible_roles

    # Teams ------------------------------------------------------------------------------------------
    async def create_team(self, org_id: str, name: str, classification: str = "internal") -> TeamRecord:
        try:
            async with self._db.session() as session:
                row = TeamRow(org_id=org_id, name=name, classification=classification)
                session.add(row)
                await session.flush()
                return _team(row)
        except IntegrityError as exc:
            raise BadRequestError(
                f"A team named {name!r} already exists.", code="conflict", param="name"
            ) from exc

    async def list_teams(self, org_id: str) -> list[TeamRecord]:
        async with self._db.session() as session:
            rows = await session.scalars(
                select(TeamRow).where(TeamRow.org_id == org_id).order_by(TeamRow.name)
            )
            return [_team(r) for r in rows]

    async def get_team(self, org_id: str, ref: str) -> TeamRecord:
        """A team by id or by name."""
        async with self._db.session() as session:
            row = await session.scalar(
                select(TeamRow).where(TeamRow.org_id == org_id, (TeamRow.id == ref) | (TeamRow.name == ref))
            )
            if row is None:
                raise NotFoundError(f"No team {ref!r}.", code="team_not_found")
            return _team(row)

    async def set_classification(self, org_id: str, ref: str, classification: str) -> TeamRecord:
        """Change a team's default data classification (the caller validated the value)."""
        team = await self.get_team(org_id, ref)
        async with self._db.session() as session:
            await session.execute(
                update(TeamRow).where(TeamRow.id == team.id).values(classification=classification)
            )
        return replace(team, classification=classification)

    async def delete_team(self, org_id: str, ref: str) -> None:
        team = await self.get_team(org_id, ref)
        async with self._db.session() as session:
            keys = await session.scalar(select(ApiKeyRow.id).where(ApiKeyRow.team_id == team.id).limit(1))
            if keys is not None:
                raise BadRequestError(
                    f"Team {team.name!r} still has API keys; revoke them and delete the keys' team later.",
                    code="team_in_use",
                )
            await session.execute(delete(TeamMemberRow).where(TeamMemberRow.team_id == team.id))
            await session.execute(delete(TeamRow).where(TeamRow.id == team.id))

    # Principals -------------------------------------------------------------------------------------
    async def create_principal(
        self, org_id: str, kind: str, name: str, email: str | None = None
    ) -> PrincipalRecord:
        if kind not in ("user", "service"):
            raise BadRequestError("kind must be 'user' or 'service'.", param="kind")
        try:
            async with self._db.session() as session:
                row = PrincipalRow(org_id=org_id, kind=kind, name=name, email=email)
                session.add(row)
                await session.flush()
                return _principal(row)
        except IntegrityError as exc:
            raise BadRequestError(
                f"A principal with e-mail {email!r} already exists.", code="conflict"
            ) from exc

    async def list_principals(self, org_id: str, kind: str | None = None) -> list[PrincipalRecord]:
        query = select(PrincipalRow).where(PrincipalRow.org_id == org_id)
        if kind is not None:
            query = query.where(PrincipalRow.kind == kind)
        async with self._db.session() as session:
            return [_principal(r) for r in await session.scalars(query.order_by(PrincipalRow.created_at))]

    async def get_principal(self, org_id: str, principal_id: str) -> PrincipalRecord:
        async with self._db.session() as session:
            row = await session.get(PrincipalRow, principal_id)
            if row is None or row.org_id != org_id:
                raise NotFoundError(f"No principal {principal_id!r}.", code="principal_not_found")
            return _principal(row)

    async def disable_principal(self, org_id: str, principal_id: str) -> PrincipalRecord:
        """Disable a principal: every key it holds stops working at the next request."""
        async with self._db.session() as session:
            row = await session.get(PrincipalRow, principal_id)
            if row is None or row.org_id != org_id:
                raise NotFoundError(f"No principal {principal_id!r}.", code="principal_not_found")
            row.disabled_at = row.disabled_at or utcnow()
            return _principal(row)

    # Bindings ---------------------------------------------------------------------------------------
    async def bind(self, org_id: str, team_id: str, principal_id: str, role: str) -> Binding:
        await self.get_principal(org_id, principal_id)
        async with self._db.session() as session:
            team = await session.get(TeamRow, team_id)
            if team is None or team.org_id != org_id:
                raise NotFoundError(f"No team {team_id!r}.", code="team_not_found")
            held = await session.scalars(
                select(TeamMemberRow.role).where(TeamMemberRow.principal_id == principal_id)
            )
            check_compatible({*held, role}, self._incompatible)
            exists = await session.get(TeamMemberRow, (team_id, principal_id, role))
            if exists is None:
                session.add(TeamMemberRow(team_id=team_id, principal_id=principal_id, role=role))
        return Binding(team_id, principal_id, role)

    async def unbind(self, team_id: str, principal_id: str, role: str) -> None:
        async with self._db.session() as session:
            result = await session.execute(
                delete(TeamMemberRow).where(
                    TeamMemberRow.team_id == team_id,
                    TeamMemberRow.principal_id == principal_id,
                    TeamMemberRow.role == role,
                )
            )
            if not getattr(result, "rowcount", 0):
                raise NotFoundError("No such role binding.", code="binding_not_found")

    async def bindings(self, *, team_id: str | None = None, principal_id: str | None = None) -> list[Binding]:
        query = select(TeamMemberRow)
        if team_id is not None:
            query = query.where(TeamMemberRow.team_id == team_id)
        if principal_id is not None:
            query = query.where(TeamMemberRow.principal_id == principal_id)
        async with self._db.session() as session:
            rows = await session.scalars(query.order_by(TeamMemberRow.team_id, TeamMemberRow.principal_id))
            return [Binding(r.team_id, r.principal_id, r.role) for r in rows]
