"""Single sign-on: OIDC bearer tokens from the organisation's identity provider, turned into principals.

A user sends the access token their identity provider (Keycloak, Azure AD, ...) issued, as
``Authorization: Bearer <jwt>``, on the same routes as API keys; :func:`looks_like_jwt` tells the two
apart. :class:`OIDCAuthenticator` checks the token (:mod:`socle.governance._jwt`: JWKS, signature,
``exp``/``nbf``/``iat``/``iss``/``aud``), maps its claims to teams and roles, provisions the user and
returns the same :class:`~socle.governance.identity.Principal` as the API-key path. See docs/sso.md.

Mapping
    ``[[oidc.rules]]`` say "when claim C holds value V, the user is a member of team T with role R".
    Claims are read by dotted path (``realm_access.roles``); a claim whose own name has dots (Azure AD
    and Auth0 namespaced claims) is matched first. Every matching rule applies, so one token may give
    several teams and several roles per team. Users no rule maps get ``default_team`` if one is set,
    else 403 (authenticated, but not allowed anywhere: the status RBAC uses for the same situation).

The identity provider owns SSO users' memberships
    On each new token, the user's team memberships in Socle are made equal to what the token maps to:
    roles given by the IdP appear, roles it no longer gives disappear. Bindings an administrator adds
    to an SSO user by hand are therefore overwritten at the next login; manage SSO users' access in
    the identity provider. Rules only bind to teams that exist: a rule naming an unknown team is
    skipped (and logged once per process), because creating teams from a claim would let whoever edits
    groups in the IdP create tenants (with no budget) in Socle. Role combinations that separation of
    duties forbids (``incompatible_roles``) get 403 rather than being half-applied.

Provisioning is race-free
    The user is found by ``principals.external_subject = iss + "|" + sub``, unique per organisation.
    The first login creates the principal (kind ``user``, name and e-mail from the token) inside a
    transaction that holds a database lock named after the subject (an advisory lock on PostgreSQL,
    the write lock on SQLite), and re-reads under it: two first requests at once, on one replica or
    several, create one principal. A login that changes nothing only reads. An e-mail another
    principal already has is not recorded (and logged): accounts are never linked by e-mail, which an
    IdP may let users choose.

Principals and keys
    An SSO principal has no API key; its ``key_id`` is ``"oidc:"`` + 21 characters derived from the
    subject, stable per user, so per-key usage, limits and budgets treat each SSO user as one virtual
    key (it fits the key-id columns and never equals a real key's ULID). ``allowed_models`` is
    ``None``: model access is the RBAC layer's business. A token that maps to several teams acts for
    the first by default; the ``X-Socle-Team`` header (a team name or id) picks another.

Caching
    A verified token's principal is remembered (LRU, ``cache_size`` tokens, by the token's sha256) for
    ``cache_ttl_s`` at most and never past its ``exp``: repeated requests with one token cost a hash
    and a dictionary lookup, no signature check and no database read. The price is that disabling an
    SSO user in Socle takes up to ``cache_ttl_s`` to apply to tokens already seen (the IdP disabling
    the user applies when its short-lived tokens expire). Concurrent requests with a new token share
    one verification. Failures are not cached.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import httpx
from sqlalchemy import bindparam, delete, select
from sqlalchemy.exc import IntegrityError

from socle.config import OIDCSettings
from socle.errors import AuthenticationError, ConfigError, PermissionDeniedError, StorageError
from socle.governance._jwt import (
    IdentityProviderUnavailable,
    KeySet,
    TokenVerifier,
    invalid_token,
    looks_like_jwt,
)
from socle.governance.identity import Principal
from socle.governance.rbac import conflicting_roles
from socle.storage.db import Database
from socle.storage.models import Base, OrganisationRow, PrincipalRow, TeamMemberRow, TeamRow
from socle.storage.types import new_id, utcnow

__all__ = [
    "IdentityProviderUnavailable",
    "OIDCAuthenticator",
    "TeamGrant",
    "claim_values",
    "external_subject",
    "looks_like_jwt",
    "map_claims",
    "sso_key_id",
]

log = logging.getLogger(__name__)

_SUBJECT_LENGTH = 255  # principals.external_subject
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")


# Claims -> teams and roles ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TeamGrant:
    """A team a token gives access to, and the roles it gives there."""

    team: str
    roles: frozenset[str]


def claim_values(claims: Mapping[str, Any], path: str) -> list[str]:
    """The values of a claim as strings, by dotted path; ``[]`` if absent.

    A literal key wins over a dotted path (``"https://example.org/roles"`` is one claim). Strings give
    themselves, lists their scalar items, numbers and booleans their JSON form; objects give nothing.
    """
    value: Any = claims.get(path)
    if value is None and "." in path:
        value = claims
        for part in path.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
    items = value if isinstance(value, list) else [value]
    return [_scalar(item) for item in items if item is not None and not isinstance(item, Mapping | list)]


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


def map_claims(claims: Mapping[str, Any], settings: OIDCSettings) -> list[TeamGrant]:
    """The teams and roles a token's claims give, by the rules, in the order teams first match;
    ``default_team`` (with ``default_role``) if no rule matches; ``[]`` if none and no default."""
    roles: dict[str, set[str]] = {}
    for rule in settings.rules:
        values = claim_values(claims, rule.claim)
        if values and (rule.value is None or rule.value in values):
            roles.setdefault(rule.team, set()).add(rule.role or settings.default_role)
    if not roles and settings.default_team is not None:
        roles[settings.default_team] = {settings.default_role}
    return [TeamGrant(team, frozenset(r)) for team, r in roles.items()]


def external_subject(issuer: str, subject: str) -> str:
    """What ``principals.external_subject`` holds for an SSO user: ``iss|sub``."""
    return f"{issuer}|{subject}"


def sso_key_id(subject: str) -> str:
    """The ``key_id`` of an SSO user's principals: ``oidc:`` + 21 base32 characters of the subject's
    sha256 (26 characters, the length of a key id; never a real key's ULID)."""
    digest = hashlib.sha256(subject.encode("utf-8")).digest()
    return "oidc:" + base64.b32encode(digest).decode("ascii")[:21].lower()


# Who a token is ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Identity:
    """A verified token's user, as one principal per team it gives, in grant order."""

    principals: tuple[Principal, ...]

    def acting_for(self, team: str | None) -> Principal:
        if not team:
            return self.principals[0]
        for principal in self.principals:
            if team in (principal.team_name, principal.team_id):
                return principal
        granted = ", ".join(p.team_name for p in self.principals)
        raise PermissionDeniedError(
            f"Your token does not give access to team {team[:200]!r} (X-Socle-Team); it gives: {granted}.",
            code="team_not_granted",
        )


@dataclass(frozen=True, slots=True)
class _Cached:
    identity: _Identity
    valid_until: float


@dataclass(frozen=True, slots=True)
class _Membership:
    team_id: str
    team_name: str
    roles: frozenset[str]


class OIDCAuthenticator:
    """Bearer JWT → :class:`Principal`, provisioning the user on first login (see the module docs).

    Build it with :meth:`start` (checks the configuration); :meth:`aclose` on shutdown. ``clock`` (wall
    seconds) and ``monotonic`` are injectable for tests, ``transport`` for the JWKS HTTP client.
    """

    def __init__(
        self,
        settings: OIDCSettings,
        db: Database,
        *,
        incompatible_roles: Sequence[Sequence[str]] = (),
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.keys = KeySet(
            url=settings.jwks_url,
            file=settings.jwks_file,
            cache_s=settings.jwks_cache_s,
            refetch_interval_s=settings.jwks_refetch_interval_s,
            timeout_s=settings.jwks_timeout_s,
            transport=transport,
            monotonic=monotonic,
        )
        self._verifier = TokenVerifier(
            self.keys,
            issuer=settings.issuer,
            audience=settings.audience,
            algorithms=settings.algorithms,
            leeway_s=settings.leeway_s,
            clock=clock,
        )
        self._directory = _Directory(db, settings.organisation, incompatible_roles)
        self._clock = clock
        self._cache: OrderedDict[bytes, _Cached] = OrderedDict()
        self._inflight: dict[bytes, asyncio.Task[_Identity]] = {}

    @classmethod
    async def start(
        cls,
        settings: OIDCSettings,
        db: Database,
        *,
        production: bool = False,
        incompatible_roles: Sequence[Sequence[str]] = (),
        known_roles: Sequence[str] | None = None,
    ) -> OIDCAuthenticator:
        """Check the configuration against the database and build the authenticator.

        Raises :class:`ConfigError` for an unknown organisation or role, an unreadable ``jwks_file``,
        or a plain-HTTP ``jwks_url`` in production (whoever can change the keys can forge any user).
        The identity provider itself is not contacted: keys are fetched on the first token.
        """
        if production and settings.jwks_url is not None and not settings.jwks_url.startswith("https://"):
            raise ConfigError("in production, oidc.jwks_url must be an https:// URL (or use jwks_file)")
        if known_roles is not None:
            roles = {settings.default_role, *(r.role for r in settings.rules if r.role)}
            unknown = sorted(roles - set(known_roles))
            if unknown:
                raise ConfigError(
                    f"oidc rules name unknown role(s) {unknown}; roles are: {', '.join(known_roles)}"
                )
        self = cls(settings, db, incompatible_roles=incompatible_roles)
        try:
            await self._directory.org_id(missing=ConfigError)
            if settings.jwks_file is not None:
                await self.keys.load()
        except IdentityProviderUnavailable as exc:
            await self.aclose()
            raise ConfigError(f"oidc.jwks_file is unusable: {exc.detail}") from exc
        except BaseException:
            await self.aclose()
            raise
        return self

    async def aclose(self) -> None:
        await self.keys.aclose()

    async def authenticate(self, token: str, *, team: str | None = None) -> Principal:
        """The principal a bearer JWT acts as, for ``team`` (name or id; default: its first team).

        Raises :class:`AuthenticationError` (401) for a token that is not valid,
        :class:`PermissionDeniedError` (403) for a valid one that gives no team (or not ``team``), and
        :class:`IdentityProviderUnavailable` (503) if the signing keys were never loadable.
        """
        identity = await self._identity(token)
        return identity.acting_for(team)

    async def memberships(self, token: str) -> tuple[Principal, ...]:
        """One principal per team the token gives, in grant order (the console's team switcher)."""
        return (await self._identity(token)).principals

    async def _identity(self, token: str) -> _Identity:
        digest = hashlib.sha256(token.encode()).digest()
        cached = self._cache.get(digest)
        if cached is not None:
            if cached.valid_until > self._clock():
                self._cache.move_to_end(digest)
                return cached.identity
            self._cache.pop(digest, None)
        task = self._inflight.get(digest)
        if task is None:
            task = asyncio.create_task(self._resolve(token, digest), name="socle-oidc-login")
            self._inflight[digest] = task
            task.add_done_callback(partial(self._settled, digest))
        return await asyncio.shield(task)

    def forget(self) -> None:
        """Drop every remembered token (tests; an operator's reload)."""
        self._cache.clear()

    def _settled(self, digest: bytes, task: asyncio.Task[_Identity]) -> None:
        self._inflight.pop(digest, None)
        if not task.cancelled():
            task.exception()  # retrieved: whoever awaited it has it; nobody else should log it

    async def _resolve(self, token: str, digest: bytes) -> _Identity:
        verified = await self._verifier.verify(token)
        claims = verified.claims
        settings = self.settings
        subject_values = claim_values(claims, settings.subject_claim)
        if not subject_values or not subject_values[0]:
            raise invalid_token(f"The token names no subject ('{settings.subject_claim}').")
        subject = external_subject(settings.issuer, subject_values[0])
        if len(subject) > _SUBJECT_LENGTH:
            raise invalid_token(f"The token's subject is longer than {_SUBJECT_LENGTH} characters.")
        grants = map_claims(claims, settings)
        if not grants:
            looked_at = ", ".join(sorted({f"'{r.claim}'" for r in settings.rules})) or "none"
            raise PermissionDeniedError(
                "Your identity provider account gives access to no Socle team: no rule matches the "
                f"token's claims (rules read {looked_at}) and no default team is set. Ask an "
                "administrator to add you to a mapped group.",
                code="no_team",
            )
        email = _first(claims, settings.email_claim)
        email = email[:320] if email and _EMAIL.fullmatch(email) else None
        name = (_first(claims, settings.name_claim) or email or subject_values[0])[:200]
        org_id, principal_id, memberships = await self._directory.provision(subject, name, email, grants)
        key_id = sso_key_id(subject)
        identity = _Identity(
            tuple(
                Principal(
                    key_id=key_id,
                    principal_id=principal_id,
                    org_id=org_id,
                    team_id=m.team_id,
                    team_name=m.team_name,
                    name=name,
                    kind="user",
                    roles=m.roles,
                    allowed_models=None,
                )
                for m in memberships
            )
        )
        valid_until = min(verified.expires_at, self._clock() + settings.cache_ttl_s)
        if settings.cache_size > 0 and settings.cache_ttl_s > 0:
            self._cache[digest] = _Cached(identity, valid_until)
            while len(self._cache) > settings.cache_size:
                self._cache.popitem(last=False)
        return identity


def _first(claims: Mapping[str, Any], path: str | None) -> str | None:
    if path is None:
        return None
    values = claim_values(claims, path)
    if not values:
        return None
    return values[0].strip() or None


# Provisioning ------------------------------------------------------------------------------------
class _Directory:
    """Finds SSO users by subject, creates them on first login and keeps their memberships in line
    with their tokens (see the module docs)."""

    def __init__(self, db: Database, organisation: str, incompatible_roles: Sequence[Sequence[str]]) -> None:
        self._db = db
        self._organisation = organisation
        self._incompatible = [tuple(pair) for pair in incompatible_roles]
        self._org_id: str | None = None
        self._warned: set[str] = set()
        orgs, teams, principals, members = (
            Base.metadata.tables[row.__tablename__]
            for row in (OrganisationRow, TeamRow, PrincipalRow, TeamMemberRow)
        )
        self._org_q = select(orgs.c.id).where(orgs.c.name == bindparam("name"))
        self._teams_q = select(teams.c.id, teams.c.name).where(
            teams.c.org_id == bindparam("org_id"), teams.c.name.in_(bindparam("names", expanding=True))
        )
        self._principal_q = (
            select(
                principals.c.id,
                principals.c.name,
                principals.c.email,
                principals.c.disabled_at,
                members.c.team_id,
                members.c.role,
            )
            .select_from(principals.outerjoin(members, members.c.principal_id == principals.c.id))
            .where(
                principals.c.org_id == bindparam("org_id"),
                principals.c.external_subject == bindparam("subject"),
            )
        )

    async def org_id(self, *, missing: type[ConfigError] | type[PermissionDeniedError]) -> str:
        if self._org_id is None:
            rows = await self._db.fetch_all(self._org_q, {"name": self._organisation})
            if not rows:
                raise missing(f"SSO is set up for organisation {self._organisation!r}, which does not exist.")
            self._org_id = str(rows[0].id)
        return self._org_id

    async def provision(
        self, subject: str, name: str, email: str | None, grants: Sequence[TeamGrant]
    ) -> tuple[str, str, list[_Membership]]:
        """The organisation id, principal id and memberships of an SSO user, written if they changed."""
        for attempt in (1, 2):
            org_id = await self.org_id(missing=PermissionDeniedError)
            memberships = await self._memberships(org_id, grants)
            desired = {(m.team_id, role) for m in memberships for role in m.roles}
            rows = await self._db.fetch_all(self._principal_q, {"org_id": org_id, "subject": subject})
            if rows and rows[0].disabled_at is not None:
                raise _disabled()
            if rows and _up_to_date(rows, name, email, desired):
                return org_id, str(rows[0].id), memberships
            try:
                principal_id = await self._write(org_id, subject, name, email, desired)
            except IntegrityError as exc:  # a team deleted meanwhile, or an e-mail taken meanwhile
                if attempt == 2:
                    raise StorageError(
                        "Your account could not be set up in Socle (a concurrent change); try again.",
                        detail=f"provisioning {subject!r}: {exc.orig}",
                    ) from exc
                continue
            return org_id, principal_id, memberships
        raise AssertionError("unreachable")

    async def _memberships(self, org_id: str, grants: Sequence[TeamGrant]) -> list[_Membership]:
        rows = await self._db.fetch_all(self._teams_q, {"org_id": org_id, "names": [g.team for g in grants]})
        ids = {str(row.name): str(row.id) for row in rows}
        for grant in grants:
            if grant.team not in ids and grant.team not in self._warned:
                self._warned.add(grant.team)
                log.warning("an oidc rule names team %r, which does not exist: rule skipped", grant.team)
        memberships = [_Membership(ids[g.team], g.team, g.roles) for g in grants if g.team in ids]
        if not memberships:
            named = ", ".join(repr(g.team) for g in grants)
            raise PermissionDeniedError(
                f"Your identity provider account maps to team(s) {named}, which do not exist in Socle. "
                "Ask an administrator to create them.",
                code="team_not_found",
            )
        pair = conflicting_roles((role for m in memberships for role in m.roles), self._incompatible)
        if pair is not None:
            raise PermissionDeniedError(
                f"Your identity provider account gives the roles {' and '.join(pair)}, which separation "
                "of duties forbids one person to hold together. Ask an administrator to fix your groups.",
                code="incompatible_roles",
            )
        return memberships

    async def _write(
        self, org_id: str, subject: str, name: str, email: str | None, desired: set[tuple[str, str]]
    ) -> str:
        now = utcnow()
        async with self._db.locked_session(f"socle.oidc:{org_id}:{subject}") as session:
            row = await session.scalar(
                select(PrincipalRow).where(
                    PrincipalRow.org_id == org_id, PrincipalRow.external_subject == subject
                )
            )
            if row is not None and row.disabled_at is not None:
                raise _disabled()
            principal_id = row.id if row is not None else new_id()
            if email is not None:
                taken = await session.scalar(
                    select(PrincipalRow.id).where(
                        PrincipalRow.org_id == org_id,
                        PrincipalRow.email == email,
                        PrincipalRow.id != principal_id,
                    )
                )
                if taken is not None:
                    log.warning(
                        "SSO user %s: e-mail already used by principal %s, not recorded", subject, taken
                    )
                    email = None
            if row is None:
                row = PrincipalRow(
                    id=principal_id,
                    org_id=org_id,
                    kind="user",
                    name=name,
                    email=email,
                    external_subject=subject,
                    created_at=now,
                )
                session.add(row)
                await session.flush()
                log.info("provisioned SSO user %s (%s) as principal %s", subject, name, principal_id)
            else:
                row.name, row.email = name, email
            current = {
                (t, r)
                for t, r in await session.execute(
                    select(TeamMemberRow.team_id, TeamMemberRow.role).where(
                        TeamMemberRow.principal_id == principal_id
                    )
                )
            }
            for team_id, role in current - desired:
                await session.execute(
                    delete(TeamMemberRow).where(
                        TeamMemberRow.principal_id == principal_id,
                        TeamMemberRow.team_id == team_id,
                        TeamMemberRow.role == role,
                    )
                )
            session.add_all(
                TeamMemberRow(team_id=team_id, principal_id=principal_id, role=role, created_at=now)
                for team_id, role in desired - current
            )
            if current != desired:
                log.info("SSO user %s: memberships set from the token (%d role(s))", subject, len(desired))
        return principal_id


def _up_to_date(rows: Sequence[Any], name: str, email: str | None, desired: set[tuple[str, str]]) -> bool:
    current = {(row.team_id, row.role) for row in rows if row.role is not None}
    return current == desired and rows[0].name == name and rows[0].email == email


def _disabled() -> AuthenticationError:
    return AuthenticationError("Your Socle account is disabled.", code="principal_disabled")
