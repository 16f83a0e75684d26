"""API keys, authentication and the first-start admin, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import stat
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select

from socle.config import Settings
from socle.errors import AuthenticationError, BadRequestError, NotFoundError, StorageError
from socle.governance.identity import (
    ADMIN_KEY_FILE,
    KEY_PREFIX,
    ApiKeyRecord,
    KeyStore,
    Principal,
    bootstrap,
    display_prefix,
    generate_api_key,
    hash_api_key,
)
from socle.storage.db import Database
from socle.storage.models import ApiKeyRow, PrincipalRow, TeamMemberRow, TeamRow

pytestmark = pytest.mark.anyio

SETTINGS_KEY = "sk-socle-" + "k" * 43


class Clock:
    """A clock that tests move by hand."""

    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@pytest.fixture
def settings(tmp_path: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        return Settings(data_dir=tmp_path / "data", **overrides)

    return make


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def store(database: Database, clock: Clock) -> AsyncIterator[KeyStore]:
    keys = KeyStore(database, clock=clock)
    yield keys
    await keys.aclose()


@pytest.fixture
async def admin(database: Database, settings: Callable[..., Settings]) -> Principal:
    """The bootstrap admin (its key comes from the settings)."""
    await bootstrap(database, settings(admin_key=SETTINGS_KEY))
    keys = KeyStore(database)
    principal = await keys.authenticate(SETTINGS_KEY)
    await keys.aclose()
    return principal


class StatementCounter:
    """Counts the statements starting with ``prefix`` that a database executes."""

    def __init__(self, db: Database, prefix: str) -> None:
        self.count = 0
        self._prefix = prefix
        event.listen(db.engine.sync_engine, "before_cursor_execute", self._before)

    def _before(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith(self._prefix):
            self.count += 1


# Keys -------------------------------------------------------------------------------------------
def test_generated_keys_carry_32_random_bytes() -> None:
    keys = {generate_api_key() for _ in range(100)}
    assert len(keys) == 100
    for key in keys:
        assert key.startswith(KEY_PREFIX)
        assert len(base64.urlsafe_b64decode(key[len(KEY_PREFIX) :] + "=")) >= 32
    key = keys.pop()
    assert hash_api_key(key) == hashlib.sha256(key.encode()).hexdigest()
    assert display_prefix(key) == key[:13]
    assert display_prefix("dev-admin-key") == "dev..."  # a foreign key shows little of itself


# Bootstrap ------------------------------------------------------------------------------------
async def test_first_start_creates_the_admin_and_writes_its_key_0600(
    database: Database, settings: Callable[..., Settings]
) -> None:
    config = settings()
    result = await bootstrap(database, config)
    key_file = config.resolved_data_dir / ADMIN_KEY_FILE
    assert result.created and result.key_file == key_file and not result.from_settings
    assert str(key_file) in result.describe()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text().strip()
    assert key.startswith(KEY_PREFIX) and len(base64.urlsafe_b64decode(key[len(KEY_PREFIX) :] + "=")) >= 32
    assert not list(key_file.parent.glob(".admin.key.*"))  # no temporary file left behind

    keys = KeyStore(database)
    principal = await keys.authenticate(key)
    await keys.aclose()
    assert (principal.name, principal.kind, principal.team, principal.roles) == (
        "admin",
        "user",
        "admin",
        {"admin"},
    )
    assert principal.allowed_models is None
    [record] = await keys.list_keys()
    assert record.prefix == key[:13] and record.id == principal.key_id


async def test_later_starts_change_nothing(database: Database, settings: Callable[..., Settings]) -> None:
    config = settings()
    await bootstrap(database, config)
    key = (config.resolved_data_dir / ADMIN_KEY_FILE).read_text()
    again = await bootstrap(database, config)
    assert not again.created and again.key_file is not None
    assert (config.resolved_data_dir / ADMIN_KEY_FILE).read_text() == key
    async with database.session() as session:
        assert await session.scalar(select(func.count()).select_from(PrincipalRow)) == 1
        assert await session.scalar(select(func.count()).select_from(ApiKeyRow)) == 1


async def test_the_admin_key_can_come_from_the_settings(
    database: Database, settings: Callable[..., Settings]
) -> None:
    config = settings(admin_key=SETTINGS_KEY)
    result = await bootstrap(database, config)
    assert result.created and result.from_settings and result.key_file is None
    assert result.describe() == "from SOCLE_ADMIN_KEY"
    assert not (config.resolved_data_dir / ADMIN_KEY_FILE).exists()
    keys = KeyStore(database)
    assert (await keys.authenticate(SETTINGS_KEY)).roles == {"admin"}
    await keys.aclose()


async def test_a_new_settings_key_is_added_on_a_later_start(
    database: Database, settings: Callable[..., Settings]
) -> None:
    await bootstrap(database, settings())
    for _ in range(2):
        result = await bootstrap(database, settings(admin_key=SETTINGS_KEY))
        assert not result.created and result.from_settings
    keys = KeyStore(database)
    principal = await keys.authenticate(SETTINGS_KEY)
    await keys.aclose()
    assert principal.name == "admin" and principal.roles == {"admin"}
    assert len(await keys.list_keys()) == 2  # the generated key and SOCLE_ADMIN_KEY, once


async def test_a_revoked_settings_key_stays_revoked(
    database: Database, settings: Callable[..., Settings]
) -> None:
    await bootstrap(database, settings(admin_key=SETTINGS_KEY))
    keys = KeyStore(database)
    [record] = await keys.list_keys()
    await keys.revoke_key(record.id)
    await bootstrap(database, settings(admin_key=SETTINGS_KEY))
    with pytest.raises(AuthenticationError, match="revoked"):
        await keys.authenticate(SETTINGS_KEY)
    await keys.aclose()


async def test_concurrent_first_starts_create_one_admin(
    database: Database, database_url: str, settings: Callable[..., Settings]
) -> None:
    config = settings()
    others = [Database(database_url) for _ in range(3)]  # as many replicas, each with its own pool
    try:
        results = await asyncio.gather(*(bootstrap(db, config) for db in [database, *others]))
    finally:
        await asyncio.gather(*(db.close() for db in others))
    assert sorted(r.created for r in results) == [False, False, False, True]
    async with database.session() as session:
        assert await session.scalar(select(func.count()).select_from(PrincipalRow)) == 1
        assert await session.scalar(select(func.count()).select_from(ApiKeyRow)) == 1
    keys = KeyStore(database)
    await keys.authenticate((config.resolved_data_dir / ADMIN_KEY_FILE).read_text().strip())
    await keys.aclose()


# Authentication -------------------------------------------------------------------------------
async def test_unknown_and_malformed_keys_are_refused(store: KeyStore, admin: Principal) -> None:
    for key in (generate_api_key(), "", "x" * 10_000):
        with pytest.raises(AuthenticationError) as caught:
            await store.authenticate(key)
        assert caught.value.status_code == 401


async def test_a_new_key_authenticates_as_its_principal_and_team(store: KeyStore, admin: Principal) -> None:
    key, record = await store.create_key(
        admin.principal_id, admin.team_id, "ci", allowed_models=["fake-chat", "fake-chat"]
    )
    assert isinstance(record, ApiKeyRecord) and record.prefix == key[:13]
    assert record.allowed_models == {"fake-chat"} and record.revoked_at is None
    principal = await store.authenticate(key)
    assert principal.key_id == record.id and principal.team_id == admin.team_id
    assert principal.org_id == admin.org_id and principal.allowed_models == {"fake-chat"}


async def test_revocation_takes_effect_on_the_next_request_on_every_replica(
    database: Database, database_url: str, store: KeyStore, admin: Principal, clock: Clock
) -> None:
    key, record = await store.create_key(admin.principal_id, admin.team_id, "to revoke")
    other_db = Database(database_url)  # another replica
    other = KeyStore(other_db)
    try:
        await other.authenticate(key)
        revoked = await store.revoke_key(record.id)
        assert revoked.revoked_at == clock.now
        for keys in (store, other):
            with pytest.raises(AuthenticationError, match="revoked") as caught:
                await keys.authenticate(key)
            assert caught.value.code == "api_key_revoked"
        clock.advance(hours=1)
        assert (await store.revoke_key(record.id)).revoked_at == revoked.revoked_at  # idempotent
    finally:
        await other.aclose()
        await other_db.close()
    with pytest.raises(NotFoundError):
        await store.revoke_key("no-such-key")


async def test_expired_keys_are_refused(store: KeyStore, admin: Principal, clock: Clock) -> None:
    key, _ = await store.create_key(
        admin.principal_id, admin.team_id, "short", expires_at=clock.now + timedelta(hours=1)
    )
    await store.authenticate(key)
    clock.advance(hours=1)
    with pytest.raises(AuthenticationError, match="expired") as caught:
        await store.authenticate(key)
    assert caught.value.code == "api_key_expired"
    with pytest.raises(BadRequestError):
        await store.create_key(
            admin.principal_id, admin.team_id, "past", expires_at=clock.now - timedelta(seconds=1)
        )


async def test_ip_allowlists(store: KeyStore, admin: Principal) -> None:
    key, _ = await store.create_key(
        admin.principal_id, admin.team_id, "office", ip_allowlist=["10.0.0.0/8", "::1"]
    )
    for ip in ("10.1.2.3", "::ffff:10.9.9.9", "::1"):
        await store.authenticate(key, client_ip=ip)
    for ip in ("192.168.1.1", None, "not-an-ip"):
        with pytest.raises(AuthenticationError) as caught:
            await store.authenticate(key, client_ip=ip)
        assert caught.value.code == "ip_not_allowed"
    with pytest.raises(BadRequestError):
        await store.create_key(admin.principal_id, admin.team_id, "bad", ip_allowlist=["10.0.0.0/33"])


async def test_a_disabled_principal_cannot_authenticate(
    database: Database, store: KeyStore, admin: Principal
) -> None:
    async with database.session() as session:
        row = await session.get(PrincipalRow, admin.principal_id)
        assert row is not None
        row.disabled_at = datetime.now(UTC)
    with pytest.raises(AuthenticationError, match="disabled"):
        await store.authenticate(SETTINGS_KEY)


async def test_keys_are_only_for_members_of_the_team(
    database: Database, store: KeyStore, admin: Principal
) -> None:
    async with database.session() as session:
        session.add(TeamRow(id="team-b", org_id=admin.org_id, name="research"))
    with pytest.raises(BadRequestError, match="not a member"):
        await store.create_key(admin.principal_id, "team-b", "nope")
    with pytest.raises(NotFoundError):
        await store.create_key("nobody", admin.team_id, "nope")
    with pytest.raises(NotFoundError):
        await store.create_key(admin.principal_id, "no-team", "nope")
    with pytest.raises(BadRequestError):
        await store.create_key(admin.principal_id, admin.team_id, "none", allowed_models=[])
    async with database.session() as session:
        session.add(TeamMemberRow(team_id="team-b", principal_id=admin.principal_id, role="member"))
    key, _ = await store.create_key(admin.principal_id, "team-b", "research")
    principal = await store.authenticate(key)
    assert (principal.team, principal.roles) == ("research", {"member"})


async def test_listing_keys(store: KeyStore, admin: Principal) -> None:
    _, first = await store.create_key(admin.principal_id, admin.team_id, "first")
    _, second = await store.create_key(admin.principal_id, admin.team_id, "second")
    await store.revoke_key(first.id)
    names = [k.name for k in await store.list_keys(principal_id=admin.principal_id)]
    assert names == ["admin (SOCLE_ADMIN_KEY)", "first", "second"]
    active = await store.list_keys(team_id=admin.team_id, include_revoked=False)
    assert [k.name for k in active] == ["admin (SOCLE_ADMIN_KEY)", "second"]
    assert await store.list_keys(team_id="no-team") == []


async def test_last_used_is_written_behind_at_most_once_a_minute(
    database: Database, store: KeyStore, admin: Principal, clock: Clock
) -> None:
    key, record = await store.create_key(admin.principal_id, admin.team_id, "busy")
    updates = StatementCounter(database, "UPDATE API_KEYS")

    async def last_used() -> datetime | None:
        [row] = [k for k in await store.list_keys() if k.id == record.id]
        return row.last_used_at

    for _ in range(20):
        await store.authenticate(key)
    await store.flush()
    assert await last_used() == clock.now
    first_use = clock.now

    clock.advance(seconds=30)
    for _ in range(20):
        await store.authenticate(key)
    await store.flush()
    assert await last_used() == first_use
    assert updates.count == 1

    clock.advance(seconds=31)
    await store.authenticate(key)
    await store.flush()
    assert await last_used() == clock.now
    assert updates.count == 2


async def test_a_failed_last_used_write_does_not_fail_requests(
    database: Database,
    store: KeyStore,
    admin: Principal,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key, _ = await store.create_key(admin.principal_id, admin.team_id, "k")
    monkeypatch.setattr(type(database), "connect", _failing_connect)
    await store.authenticate(key)
    await store.flush()
    assert "could not record the last use" in caplog.text


def _failing_connect(self: Database) -> Any:
    raise StorageError("The database is unavailable (test).")
