"""Who is calling: API keys, the principals they act for, and the first-start admin.

Keys
    A key is ``sk-socle-`` followed by 43 URL-safe characters (32 random bytes, 256 bits). The
    database stores its sha256 and a short prefix (``sk-socle-AbCd``) that lets people recognise
    their keys in listings; the key itself is shown once, when it is created.

Authentication is one indexed SELECT per request
    :meth:`KeyStore.authenticate` looks the key's hash up in the unique index of ``api_keys``, joined
    to the principal, the team and the principal's roles in that team, in one statement. There is no
    cache of positive answers, on purpose: a revoked key (or a disabled principal) is refused on the
    very next request, on every replica. The lookup runs without a transaction on PostgreSQL (one
    round trip) and costs microseconds on SQLite.

``last_used_at`` is written behind
    Writing on every request would turn each read into a write (lock contention on SQLite, WAL churn
    on PostgreSQL). A key's ``last_used_at`` is updated at most once per ``touch_interval_s`` (60 s),
    by a background task, batched across keys; the UPDATE itself only matches when the stored value
    is older than the interval, so replicas do not multiply the writes. Losing one of these writes
    (database down) costs nothing but precision, so failures are logged and forgotten.

First start
    :func:`bootstrap` creates the default organisation, team ``admin``, principal ``admin`` (role
    ``admin``) and an admin key when the database has no principal yet: ``SOCLE_ADMIN_KEY`` if it is
    set, else a new key written to ``<data_dir>/admin.key`` (mode 0600 from creation). Concurrent
    first starts are serialised by a database lock (see
    :meth:`socle.storage.db.Database.locked_session`), so exactly one of them creates the admin.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import os
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import and_, bindparam, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from socle.config import Settings
from socle.errors import AuthenticationError, BadRequestError, ConfigError, NotFoundError, StorageError
from socle.storage.db import Database
from socle.storage.models import ApiKeyRow, Base, OrganisationRow, PrincipalRow, TeamMemberRow, TeamRow
from socle.storage.types import new_id, utcnow

__all__ = [
    "ADMIN_KEY_FILE",
    "ADMIN_ROLE",
    "KEY_PREFIX",
    "ApiKeyRecord",
    "BootstrapResult",
    "KeyStore",
    "Principal",
    "bootstrap",
    "display_prefix",
    "generate_api_key",
    "hash_api_key",
]

log = logging.getLogger(__name__)

KEY_PREFIX = "sk-socle-"
ADMIN_KEY_FILE = "admin.key"
ADMIN_ROLE = "admin"
DEFAULT_ORGANISATION = "default"
ADMIN_TEAM = "admin"
ADMIN_PRINCIPAL = "admin"
BOOTSTRAP_LOCK = "socle.bootstrap"
_MAX_KEY_LENGTH = 512  # longer bearer tokens are refused before hashing
_MAX_TOUCH_MEMO = 100_000
_KEY_CHANGES = frozenset({"name", "expires_at", "allowed_models", "ip_allowlist"})


# Keys -------------------------------------------------------------------------------------------
def generate_api_key() -> str:
    """A new API key: ``sk-socle-`` + 32 random bytes, URL-safe base64 (52 characters in all)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    """The sha256 of a key, hex: what the database stores and looks keys up by.

    A fast hash is the right tool here, unlike for passwords. Slow, salted hashes (bcrypt, argon2)
    exist to make guessing *low-entropy* secrets expensive; a generated key has 256 random bits, so
    guessing it is hopeless at any hash speed, and sha256 keeps the per-request cost at a microsecond
    instead of the ~100 ms of CPU a password hash would add to every call. It is also unsalted on
    purpose: a deterministic hash is what lets one unique index find the key in one lookup. (An
    operator-chosen ``SOCLE_ADMIN_KEY`` may be weaker; in production it must be a generated key.)
    """
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def display_prefix(key: str) -> str:
    """The start of a key that listings show: ``sk-socle-`` + 4 characters, or less of a foreign key."""
    if key.startswith(KEY_PREFIX) and len(key) >= 40:
        return key[: len(KEY_PREFIX) + 4]
    return key[: min(4, len(key) // 4)] + "..."


# What the rest of Socle sees ------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """An authenticated caller: the key used, who holds it and the team it acts for."""

    key_id: str
    principal_id: str
    org_id: str
    team_id: str
    team_name: str
    name: str
    kind: str
    roles: frozenset[str]
    allowed_models: frozenset[str] | None
    """Public model names this key may use; ``None`` means every model."""

    @property
    def team(self) -> str:
        """The label metrics use for this caller (the team name: bounded, readable)."""
        return self.team_name


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiKeyRecord:
    """An API key as listings show it (never the key itself, which only its creator ever sees)."""

    id: str
    principal_id: str
    team_id: str
    name: str
    prefix: str
    allowed_models: frozenset[str] | None
    ip_allowlist: tuple[str, ...] | None
    expires_at: datetime | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def from_row(cls, row: ApiKeyRow) -> ApiKeyRecord:
        return cls(
            id=row.id,
            principal_id=row.principal_id,
            team_id=row.team_id,
            name=row.name,
            prefix=row.prefix,
            allowed_models=None if row.allowed_models is None else frozenset(row.allowed_models),
            ip_allowlist=None if row.ip_allowlist is None else tuple(row.ip_allowlist),
            expires_at=row.expires_at,
            created_at=row.created_at,
            last_used_at=row.last_used_at,
            revoked_at=row.revoked_at,
        )

    def active_at(self, when: datetime) -> bool:
        """Whether the key authenticates at ``when`` (not revoked, not expired)."""
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > when)


# The key store ------------------------------------------------------------------------------
class KeyStore:
    """Creates, revokes, lists and checks API keys.

    ``clock`` returns the current aware UTC time (tests move it). Call :meth:`aclose` on shutdown so
    that pending ``last_used_at`` writes finish.
    """

    def __init__(
        self,
        db: Database,
        *,
        touch_interval_s: float = 60.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._db = db
        self._clock = clock
        self._touch_interval = timedelta(seconds=touch_interval_s)
        self._touched: dict[str, datetime] = {}  # key id -> when this process last scheduled a write
        self._pending: dict[str, datetime] = {}  # key id -> last_used_at to write
        self._writer: asyncio.Task[None] | None = None
        # Core tables, not ORM entities: these statements run for every request, without ORM overhead.
        keys, principals, teams, members = (
            Base.metadata.tables[row.__tablename__]
            for row in (ApiKeyRow, PrincipalRow, TeamRow, TeamMemberRow)
        )
        self._lookup = (
            select(
                keys.c.id,
                keys.c.principal_id,
                keys.c.team_id,
                keys.c.allowed_models,
                keys.c.ip_allowlist,
                keys.c.expires_at,
                keys.c.revoked_at,
                keys.c.last_used_at,
                principals.c.org_id,
                principals.c.name,
                principals.c.kind,
                principals.c.disabled_at,
                teams.c.name.label("team_name"),
                members.c.role,
            )
            .select_from(
                keys.join(principals, principals.c.id == keys.c.principal_id)
                .join(teams, teams.c.id == keys.c.team_id)
                .outerjoin(
                    members,
                    and_(members.c.team_id == keys.c.team_id, members.c.principal_id == keys.c.principal_id),
                )
            )
            .where(keys.c.hash == bindparam("hash"))
        )
        self._touch = (
            update(keys)
            .where(
                keys.c.id == bindparam("key_id"),
                or_(keys.c.last_used_at.is_(None), keys.c.last_used_at < bindparam("older_than")),
            )
            .values(last_used_at=bindparam("used_at"))
        )

    # Authentication ---------------------------------------------------------------------------
    async def authenticate(self, raw_key: str, *, client_ip: str | None = None) -> Principal:
        """The principal a key acts for; raises :class:`AuthenticationError` saying why if none."""
        if not raw_key or len(raw_key) > _MAX_KEY_LENGTH:
            raise AuthenticationError("Invalid API key.")
        rows = await self._db.fetch_all(self._lookup, {"hash": hash_api_key(raw_key)})
        if not rows:
            raise AuthenticationError("Invalid API key: no such key.")
        row = rows[0]
        now = self._clock()
        if row.revoked_at is not None:
            raise AuthenticationError(
                f"This API key was revoked on {row.revoked_at:%Y-%m-%d %H:%M} UTC.", code="api_key_revoked"
            )
        if row.expires_at is not None and row.expires_at <= now:
            raise AuthenticationError(
                f"This API key expired on {row.expires_at:%Y-%m-%d %H:%M} UTC.", code="api_key_expired"
            )
        if row.disabled_at is not None:
            raise AuthenticationError(
                "The principal this API key belongs to is disabled.", code="principal_disabled"
            )
        if row.ip_allowlist is not None and not _ip_allowed(client_ip, row.ip_allowlist):
            raise AuthenticationError(
                f"This API key may not be used from {client_ip or 'an unknown address'}.",
                code="ip_not_allowed",
            )
        self._schedule_touch(row.id, row.last_used_at, now)
        return Principal(
            key_id=row.id,
            principal_id=row.principal_id,
            org_id=row.org_id,
            team_id=row.team_id,
            team_name=row.team_name,
            name=row.name,
            kind=row.kind,
            roles=frozenset(r.role for r in rows if r.role is not None),
            allowed_models=None if row.allowed_models is None else frozenset(row.allowed_models),
        )

    def _schedule_touch(self, key_id: str, last_used_at: datetime | None, now: datetime) -> None:
        if last_used_at is not None and now - last_used_at < self._touch_interval:
            return
        scheduled = self._touched.get(key_id)
        if scheduled is not None and timedelta(0) <= now - scheduled < self._touch_interval:
            return
        if len(self._touched) >= _MAX_TOUCH_MEMO:
            self._touched = {k: t for k, t in self._touched.items() if now - t < self._touch_interval}
        self._touched[key_id] = now
        self._pending[key_id] = now
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_touches(), name="socle-keys-last-used")

    async def _write_touches(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, {}
            params = [
                {"key_id": key_id, "used_at": used_at, "older_than": used_at - self._touch_interval}
                for key_id, used_at in batch.items()
            ]
            try:
                async with self._db.connect() as connection:
                    await connection.execute(self._touch, params)
            except (StorageError, SQLAlchemyError) as exc:
                log.warning("could not record the last use of %d API key(s): %s", len(batch), exc)

    async def flush(self) -> None:
        """Wait until pending ``last_used_at`` writes are done."""
        if self._writer is not None:
            await self._writer

    async def aclose(self) -> None:
        """Finish pending writes; call on shutdown, before closing the database."""
        await self.flush()

    # Management -------------------------------------------------------------------------------
    async def create_key(
        self,
        principal_id: str,
        team_id: str,
        name: str,
        *,
        expires_at: datetime | None = None,
        allowed_models: Iterable[str] | None = None,
        ip_allowlist: Iterable[str] | None = None,
    ) -> tuple[str, ApiKeyRecord]:
        """Create a key for a principal acting in one of its teams: the key (shown once) and its record.

        Raises :class:`NotFoundError` for an unknown principal or team and :class:`BadRequestError`
        if the principal is disabled or not a member of the team, or an argument is invalid.
        """
        raw = generate_api_key()
        async with self._db.session() as session:
            row = await _insert_key(
                session,
                raw,
                principal_id,
                team_id,
                name,
                now=self._clock(),
                expires_at=expires_at,
                allowed_models=allowed_models,
                ip_allowlist=ip_allowlist,
            )
        return raw, ApiKeyRecord.from_row(row)

    async def revoke_key(self, key_id: str) -> ApiKeyRecord:
        """Revoke a key: refused from the next request on. Revoking twice keeps the first date."""
        async with self._db.session() as session:
            row = await session.get(ApiKeyRow, key_id, with_for_update=True)
            if row is None:
                raise NotFoundError(f"No API key with id {key_id!r}.", code="api_key_not_found")
            if row.revoked_at is None:
                row.revoked_at = self._clock()
            return ApiKeyRecord.from_row(row)

    async def get_key(self, key_id: str) -> ApiKeyRecord:
        async with self._db.session() as session:
            row = await session.get(ApiKeyRow, key_id)
            if row is None:
                raise NotFoundError(f"No API key with id {key_id!r}.", code="api_key_not_found")
            return ApiKeyRecord.from_row(row)

    async def update_key(self, key_id: str, changes: Mapping[str, Any]) -> ApiKeyRecord:
        """Change a key's ``name``, ``expires_at``, ``allowed_models`` or ``ip_allowlist`` (``None``
        lifts a restriction). Applies from the next request on every replica (keys are not cached)."""
        unknown = set(changes) - _KEY_CHANGES
        if unknown:
            raise BadRequestError(f"Cannot change {', '.join(sorted(unknown))} of a key.")
        async with self._db.session() as session:
            row = await session.get(ApiKeyRow, key_id, with_for_update=True)
            if row is None:
                raise NotFoundError(f"No API key with id {key_id!r}.", code="api_key_not_found")
            name = changes.get("name", row.name)
            expires_at = changes.get("expires_at", row.expires_at)
            allowed = changes.get("allowed_models", row.allowed_models)
            networks = changes.get("ip_allowlist", row.ip_allowlist)
            allowed = None if allowed is None else sorted(set(allowed))
            networks = None if networks is None else list(dict.fromkeys(networks))
            _check_key_options(
                name, self._clock(), expires_at if "expires_at" in changes else None, allowed, networks
            )
            row.name, row.expires_at, row.allowed_models, row.ip_allowlist = (
                name,
                expires_at,
                allowed,
                networks,
            )
            return ApiKeyRecord.from_row(row)

    async def list_keys(
        self,
        *,
        principal_id: str | None = None,
        team_id: str | None = None,
        include_revoked: bool = True,
    ) -> list[ApiKeyRecord]:
        """Keys, oldest first, optionally only one principal's or one team's, optionally only unrevoked."""
        query = select(ApiKeyRow).order_by(ApiKeyRow.id)
        if principal_id is not None:
            query = query.where(ApiKeyRow.principal_id == principal_id)
        if team_id is not None:
            query = query.where(ApiKeyRow.team_id == team_id)
        if not include_revoked:
            query = query.where(ApiKeyRow.revoked_at.is_(None))
        async with self._db.session() as session:
            rows = (await session.scalars(query)).all()
            return [ApiKeyRecord.from_row(row) for row in rows]


def _ip_allowed(client_ip: str | None, allowlist: Sequence[str]) -> bool:
    if client_ip is None:
        return False
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in ipaddress.ip_network(entry, strict=False) for entry in allowlist)


def _check_key_options(
    name: str,
    now: datetime,
    expires_at: datetime | None,
    allowed: list[str] | None,
    networks: list[str] | None,
) -> None:
    if not name.strip() or len(name) > 200:
        raise BadRequestError("A key name must have 1 to 200 characters.", param="name")
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise BadRequestError("expires_at must carry a timezone.", param="expires_at")
        if expires_at <= now:
            raise BadRequestError("expires_at is in the past.", param="expires_at")
    if allowed is not None and not allowed:
        raise BadRequestError(
            "allowed_models must name at least one model (or be omitted).", param="allowed_models"
        )
    for entry in networks or ():
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError as exc:
            raise BadRequestError(
                f"Invalid IP network {entry!r} in ip_allowlist.", param="ip_allowlist"
            ) from exc


async def _insert_key(
    session: AsyncSession,
    raw: str,
    principal_id: str,
    team_id: str,
    name: str,
    *,
    now: datetime,
    expires_at: datetime | None = None,
    allowed_models: Iterable[str] | None = None,
    ip_allowlist: Iterable[str] | None = None,
) -> ApiKeyRow:
    allowed = None if allowed_models is None else sorted(set(allowed_models))
    networks = None if ip_allowlist is None else list(dict.fromkeys(ip_allowlist))
    _check_key_options(name, now, expires_at, allowed, networks)
    principal = await session.get(PrincipalRow, principal_id)
    if principal is None:
        raise NotFoundError(f"No principal with id {principal_id!r}.", code="principal_not_found")
    team = await session.get(TeamRow, team_id)
    if team is None:
        raise NotFoundError(f"No team with id {team_id!r}.", code="team_not_found")
    if principal.disabled_at is not None:
        raise BadRequestError(f"Principal {principal.name!r} is disabled.", code="principal_disabled")
    member = await session.scalar(
        select(TeamMemberRow.role).where(
            TeamMemberRow.team_id == team_id, TeamMemberRow.principal_id == principal_id
        )
    )
    if member is None or team.org_id != principal.org_id:
        raise BadRequestError(
            f"Principal {principal.name!r} is not a member of team {team.name!r}.", code="not_a_member"
        )
    row = ApiKeyRow(
        id=new_id(),
        principal_id=principal_id,
        team_id=team_id,
        name=name,
        prefix=display_prefix(raw),
        hash=hash_api_key(raw),
        allowed_models=allowed,
        ip_allowlist=networks,
        expires_at=expires_at,
        created_at=now,
    )
    session.add(row)
    await session.flush()
    return row


# First start ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class BootstrapResult:
    """What :func:`bootstrap` did, and where the admin key is, for ``socle serve`` to print."""

    created: bool
    """This start created the default organisation, the admin team, principal and key."""
    key_file: Path | None = None
    """The generated admin key's file, if it exists (written by this start or an earlier one)."""
    from_settings: bool = False
    """``SOCLE_ADMIN_KEY`` is an admin key (added by this start or an earlier one)."""

    def describe(self) -> str:
        """Where the admin key is, in words."""
        places = []
        if self.from_settings:
            places.append("from SOCLE_ADMIN_KEY")
        if self.key_file is not None:
            places.append(
                f"in {self.key_file}" + (" (new, readable by this user only)" if self.created else "")
            )
        if not places:
            return "not shown: the database already had principals (use an existing admin key)"
        return "; ".join(places)


async def bootstrap(db: Database, settings: Settings) -> BootstrapResult:
    """Create the first admin on an empty database; else only add ``SOCLE_ADMIN_KEY`` if it is new."""
    key_file = settings.resolved_data_dir / ADMIN_KEY_FILE
    settings_key = settings.admin_key.get_secret_value() if settings.admin_key is not None else None
    async with db.locked_session(BOOTSTRAP_LOCK) as session:
        created = await session.scalar(select(PrincipalRow.id).limit(1)) is None
        if created:
            raw = settings_key or generate_api_key()
            await _create_admin(
                session, raw, "admin (SOCLE_ADMIN_KEY)" if settings_key else "admin (bootstrap)"
            )
            if settings_key is None:
                # Written before the transaction commits: a committed admin always has its key file.
                await asyncio.to_thread(_write_key_file, key_file, raw)
            log.info("created the default organisation and its admin")
        elif settings_key is not None:
            await _add_settings_key(session, settings_key)
    has_file = await asyncio.to_thread(key_file.is_file)
    return BootstrapResult(created, key_file if has_file else None, settings_key is not None)


async def _create_admin(session: AsyncSession, raw: str, key_name: str) -> None:
    now = utcnow()
    org = OrganisationRow(id=new_id(), name=DEFAULT_ORGANISATION, created_at=now)
    team = TeamRow(id=new_id(), org_id=org.id, name=ADMIN_TEAM, created_at=now)
    admin = PrincipalRow(id=new_id(), org_id=org.id, kind="user", name=ADMIN_PRINCIPAL, created_at=now)
    member = TeamMemberRow(team_id=team.id, principal_id=admin.id, role=ADMIN_ROLE, created_at=now)
    # Without relationship() the unit of work does not order inserts by foreign key: flush by level.
    for rows in ([org], [team, admin], [member]):
        session.add_all(rows)
        await session.flush()
    await _insert_key(session, raw, admin.id, team.id, key_name, now=now)


async def _add_settings_key(session: AsyncSession, raw: str) -> None:
    existing = await session.scalar(select(ApiKeyRow).where(ApiKeyRow.hash == hash_api_key(raw)))
    if existing is not None:
        if existing.revoked_at is not None:
            log.warning("SOCLE_ADMIN_KEY is set but that key was revoked; it stays revoked")
        return
    admin: Any = (
        await session.execute(
            select(TeamMemberRow.principal_id, TeamMemberRow.team_id)
            .join(TeamRow, TeamRow.id == TeamMemberRow.team_id)
            .where(TeamMemberRow.role == ADMIN_ROLE)
            .order_by((TeamRow.name == ADMIN_TEAM).desc(), TeamMemberRow.created_at)
            .limit(1)
        )
    ).first()
    if admin is None:
        raise ConfigError("SOCLE_ADMIN_KEY is set but the database has no admin to give it to.")
    await _insert_key(
        session, raw, admin.principal_id, admin.team_id, "admin (SOCLE_ADMIN_KEY)", now=utcnow()
    )
    log.info("added SOCLE_ADMIN_KEY as an admin key")


def _write_key_file(path: Path, key: str) -> None:
    """Write ``key`` to ``path``, created with mode 0600 (never readable by others, not even briefly)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as file:
            file.write(key + "\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"cannot write the admin key to {path}: {exc}") from exc
