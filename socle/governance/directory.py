"""The directory: organisations, teams, principals (users and service accounts) and role bindings.

Every change here is an administrative act; routes check who may do it (RBAC) before calling.
Bindings are checked for separation of duties across *all* teams of a principal: an auditor in one
team cannot be an admin in another. Listings hand out frozen records, never ORM rows.

Organisations scope the rest: a team and a principal belong to one organisation, and a principal is
bound only to teams of its own. Methods that take ``org_id`` look only inside that organisation;
``None`` means every organisation (platform admins). A team is named by id or by name; a name held by
teams of several organisations is refused as ambiguous (name the organisation, or use the id).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from socle.errors import BadRequestError, ConflictError, NotFoundError
from socle.governance.rbac import check_compatible
from socle.storage.db import Database
from socle.storage.models import (
    ApiKeyRow,
    BudgetRow,
    ModelGrantRow,
    OrganisationRow,
    PrincipalRow,
    RateLimitRow,
    TeamMemberRow,
    TeamRow,
)
from socle.storage.types import utcnow

__all__ = ["Binding", "Directory", "OrganisationRecord", "PrincipalRecord", "TeamRecord"]


@dataclass(frozen=True, slots=True)
class OrganisationRecord:
    id: str
    name: str
    created_at: datetime


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


def _org(row: OrganisationRow) -> OrganisationRecord:
    return OrganisationRecord(row.id, row.name, row.created_at)


def _team(row: TeamRow) -> TeamRecord:
    return TeamRecord(row.id, row.org_id, row.name, row.created_at, row.classification)


def _principal(row: PrincipalRow) -> PrincipalRecord:
    return PrincipalRecord(row.id, row.org_id, row.kind, row.name, row.email, row.created_at, row.disabled_at)


def _in_org(query: Any, column: Any, org_id: str | None) -> Any:
    return query if org_id is None else query.where(column == org_id)


class Directory:
    def __init__(self, db: Database, *, incompatible_roles: Sequence[Sequence[str]]) -> None:
        self._db = db
        self._incompatible = incompatible_roles

    # Organisations ----------------------------------------------------------------------------------
    async def create_org(self, name: str) -> OrganisationRecord:
        try:
            async with self._db.session() as session:
                row = OrganisationRow(name=name)
                session.add(row)
                await session.flush()
                return _org(row)
        except IntegrityError as exc:
            raise ConflictError(f"An organisation named {name!r} already exists.", param="name") from exc

    async def list_orgs(self) -> list[OrganisationRecord]:
        async with self._db.session() as session:
            return [
                _org(r) for r in await session.scalars(select(OrganisationRow).order_by(OrganisationRow.name))
            ]

    async def get_org(self, ref: str) -> OrganisationRecord:
        """An organisation by id or by name."""
        async with self._db.session() as session:
            row = await session.scalar(
                select(OrganisationRow).where((OrganisationRow.id == ref) | (OrganisationRow.name == ref))
            )
            if row is None:
                raise NotFoundError(f"No organisation {ref!r}.", code="organisation_not_found")
            return _org(row)

    async def rename_org(self, ref: str, name: str) -> OrganisationRecord:
        org = await self.get_org(ref)
        await self._rename(OrganisationRow, org.id, name, f"An organisation named {name!r} already exists.")
        return replace(org, name=name)

    async def delete_org(self, ref: str) -> OrganisationRecord:
        """Delete an organisation that holds no team and no principal (refused with 409 otherwise),
        with its budgets."""
        org = await self.get_org(ref)
        async with self._db.session() as session:
            teams = await session.scalar(select(func.count()).where(TeamRow.org_id == org.id))
            principals = await session.scalar(select(func.count()).where(PrincipalRow.org_id == org.id))
            if teams or principals:
                raise ConflictError(
                    f"Organisation {org.name!r} still has {teams} team(s) and {principals} principal(s); "
                    "delete its teams and move or delete its principals first.",
                    code="organisation_in_use",
                )
            await session.execute(
                delete(BudgetRow).where(BudgetRow.scope == "organisation", BudgetRow.scope_id == org.id)
            )
            await session.execute(delete(OrganisationRow).where(OrganisationRow.id == org.id))
        return org

    # Teams ------------------------------------------------------------------------------------------
    async def create_team(self, org_id: str, name: str, classification: str = "internal") -> TeamRecord:
        try:
            async with self._db.session() as session:
                if await session.get(OrganisationRow, org_id) is None:
                    raise NotFoundError(f"No organisation {org_id!r}.", code="organisation_not_found")
                row = TeamRow(org_id=org_id, name=name, classification=classification)
                session.add(row)
                await session.flush()
                return _team(row)
        except IntegrityError as exc:
            raise ConflictError(
                f"A team named {name!r} already exists in this organisation.", param="name"
            ) from exc

    async def list_teams(self, org_id: str | None) -> list[TeamRecord]:
        query = _in_org(select(TeamRow), TeamRow.org_id, org_id).order_by(TeamRow.name, TeamRow.org_id)
        async with self._db.session() as session:
            return [_team(r) for r in await session.scalars(query)]

    async def get_team(self, org_id: str | None, ref: str) -> TeamRecord:
        """A team by id or by name, in ``org_id`` (``None``: in any organisation)."""
        query = _in_org(select(TeamRow), TeamRow.org_id, org_id)
        async with self._db.session() as session:
            row = await session.get(TeamRow, ref)
            if row is not None and org_id in (None, row.org_id):
                return _team(row)
            rows = list(await session.scalars(query.where(TeamRow.name == ref).limit(2)))
        if not rows:
            raise NotFoundError(f"No team {ref!r}.", code="team_not_found")
        if len(rows) > 1:
            raise BadRequestError(
                f"Several organisations have a team named {ref!r}: use the team's id.", code="ambiguous_team"
            )
        return _team(rows[0])

    async def rename_team(self, org_id: str | None, ref: str, name: str) -> TeamRecord:
        team = await self.get_team(org_id, ref)
        await self._rename(
            TeamRow, team.id, name, f"A team named {name!r} already exists in its organisation."
        )
        return replace(team, name=name)

    async def _rename(
        self, table: type[OrganisationRow | TeamRow], row_id: str, name: str, taken: str
    ) -> None:
        try:
            async with self._db.session() as session:
                await session.execute(update(table).where(table.id == row_id).values(name=name))
        except IntegrityError as exc:
            raise ConflictError(taken, param="name") from exc

    async def set_classification(self, org_id: str | None, ref: str, classification: str) -> TeamRecord:
        """Change a team's default data classification (the caller validated the value)."""
        team = await self.get_team(org_id, ref)
        async with self._db.session() as session:
            await session.execute(
                update(TeamRow).where(TeamRow.id == team.id).values(classification=classification)
            )
        return replace(team, classification=classification)

    async def delete_team(self, org_id: str | None, ref: str) -> TeamRecord:
        """Delete a team without API keys (409 otherwise), with its role bindings, model grants and
        budgets and rate limits (cascaded or deleted here)."""
        team = await self.get_team(org_id, ref)
        async with self._db.session() as session:
            keys = await session.scalar(select(ApiKeyRow.id).where(ApiKeyRow.team_id == team.id).limit(1))
            if keys is not None:
                raise ConflictError(
                    f"Team {team.name!r} still has API keys (revoked ones too, which the usage records "
                    "name); it cannot be deleted.",
                    code="team_in_use",
                )
            await session.execute(delete(TeamMemberRow).where(TeamMemberRow.team_id == team.id))
            await session.execute(delete(ModelGrantRow).where(ModelGrantRow.team_id == team.id))
            await session.execute(
                delete(BudgetRow).where(BudgetRow.scope == "team", BudgetRow.scope_id == team.id)
            )
            await session.execute(
                delete(RateLimitRow).where(
                    ((RateLimitRow.scope == "team") & (RateLimitRow.scope_id == team.id))
                    | ((RateLimitRow.scope == "team_model") & RateLimitRow.scope_id.startswith(team.id + ":"))
                )
            )
            await session.execute(delete(TeamRow).where(TeamRow.id == team.id))
        return team

    # Principals -------------------------------------------------------------------------------------
    async def create_principal(
        self, org_id: str, kind: str, name: str, email: str | None = None
    ) -> PrincipalRecord:
        if kind not in ("user", "service"):
            raise BadRequestError("kind must be 'user' or 'service'.", param="kind")
        try:
            async with self._db.session() as session:
                if await session.get(OrganisationRow, org_id) is None:
                    raise NotFoundError(f"No organisation {org_id!r}.", code="organisation_not_found")
                row = PrincipalRow(org_id=org_id, kind=kind, name=name, email=email)
                session.add(row)
                await session.flush()
                return _principal(row)
        except IntegrityError as exc:
            raise ConflictError(f"A principal with e-mail {email!r} already exists.", param="email") from exc

    async def list_principals(self, org_id: str | None, kind: str | None = None) -> list[PrincipalRecord]:
        query = _in_org(select(PrincipalRow), PrincipalRow.org_id, org_id)
        if kind is not None:
            query = query.where(PrincipalRow.kind == kind)
        async with self._db.session() as session:
            return [_principal(r) for r in await session.scalars(query.order_by(PrincipalRow.created_at))]

    async def principals_by_id(self, ids: Collection[str]) -> dict[str, PrincipalRecord]:
        """The principals among ``ids`` (missing ones are left out), to name them in listings."""
        if not ids:
            return {}
        query = select(PrincipalRow).where(PrincipalRow.id.in_(sorted(set(ids))))
        async with self._db.session() as session:
            return {r.id: _principal(r) for r in await session.scalars(query)}

    async def get_principal(self, org_id: str | None, principal_id: str) -> PrincipalRecord:
        async with self._db.session() as session:
            return _principal(await _principal_row(session, org_id, principal_id))

    async def update_principal(
        self,
        org_id: str | None,
        principal_id: str,
        *,
        name: str | None = None,
        email: str | None = None,
        enabled: bool | None = None,
    ) -> PrincipalRecord:
        """Rename, change the e-mail, or disable (``enabled=False``) or enable a principal. Disabling
        turns every key it holds off at the next request."""
        try:
            async with self._db.session() as session:
                row = await _principal_row(session, org_id, principal_id, for_update=True)
                if name is not None:
                    row.name = name
                if email is not None:
                    row.email = email or None
                if enabled is False:
                    row.disabled_at = row.disabled_at or utcnow()
                elif enabled:
                    row.disabled_at = None
                await session.flush()
                return _principal(row)
        except IntegrityError as exc:
            raise ConflictError(f"A principal with e-mail {email!r} already exists.", param="email") from exc

    async def disable_principal(self, org_id: str | None, principal_id: str) -> PrincipalRecord:
        """Disable a principal: every key it holds stops working at the next request."""
        return await self.update_principal(org_id, principal_id, enabled=False)

    # Bindings ---------------------------------------------------------------------------------------
    async def bind(self, org_id: str | None, team_id: str, principal_id: str, role: str) -> Binding:
        async with self._db.session() as session:
            principal = await _principal_row(session, org_id, principal_id)
            team = await session.get(TeamRow, team_id)
            if team is None or org_id not in (None, team.org_id):
                raise NotFoundError(f"No team {team_id!r}.", code="team_not_found")
            if team.org_id != principal.org_id:
                raise BadRequestError(
                    f"Principal {principal.name!r} and team {team.name!r} are in different organisations.",
                    code="other_organisation",
                )
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

    async def member_counts(self) -> dict[str, int]:
        """How many distinct principals hold a role in each team (teams without any are left out)."""
        query = select(TeamMemberRow.team_id, func.count(func.distinct(TeamMemberRow.principal_id))).group_by(
            TeamMemberRow.team_id
        )
        async with self._db.session() as session:
            return {team_id: count for team_id, count in (await session.execute(query)).all()}

    async def bindings(self, *, team_id: str | None = None, principal_id: str | None = None) -> list[Binding]:
        query = select(TeamMemberRow)
        if team_id is not None:
            query = query.where(TeamMemberRow.team_id == team_id)
        if principal_id is not None:
            query = query.where(TeamMemberRow.principal_id == principal_id)
        async with self._db.session() as session:
            rows = await session.scalars(query.order_by(TeamMemberRow.team_id, TeamMemberRow.principal_id))
            return [Binding(r.team_id, r.principal_id, r.role) for r in rows]


async def _principal_row(
    session: AsyncSession, org_id: str | None, principal_id: str, *, for_update: bool = False
) -> PrincipalRow:
    row = await session.get(PrincipalRow, principal_id, with_for_update=for_update)
    if row is None or org_id not in (None, row.org_id):
        raise NotFoundError(f"No principal {principal_id!r}.", code="principal_not_found")
    return row
