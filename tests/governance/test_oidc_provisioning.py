"""SSO users provisioned from their tokens, on SQLite and PostgreSQL: first login, memberships kept in
line with the token, concurrent first logins, the token cache, and the configuration checks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from socle.config import OIDCRule, OIDCSettings, Settings
from socle.errors import AuthenticationError, ConfigError, PermissionDeniedError
from socle.governance.identity import bootstrap
from socle.governance.oidc import OIDCAuthenticator, external_subject, sso_key_id
from socle.governance.rbac import ROLES
from socle.storage.db import Database
from socle.storage.models import PrincipalRow, TeamMemberRow, TeamRow
from socle.storage.types import new_id, utcnow
from socle.testing.oidc import FakeIdentityProvider

pytestmark = pytest.mark.anyio

ISSUER = "https://sso.example.test/realms/acme"
RULES = [
    OIDCRule(claim="groups", value="/research", team="research"),
    OIDCRule(claim="groups", value="/ops", team="ops"),
    OIDCRule(claim="groups", value="/ops/leads", team="ops", role="team-admin"),
    OIDCRule(claim="realm_access.roles", value="socle-admin", team="admin", role="admin"),
    OIDCRule(claim="realm_access.roles", value="socle-auditor", team="admin", role="auditor"),
    OIDCRule(claim="groups", value="/ghosts", team="ghosts"),
]


@pytest.fixture(scope="module")
def idp() -> FakeIdentityProvider:
    provider = FakeIdentityProvider(ISSUER, "socle")
    provider.add_key("EC", kid="k1")
    return provider


@pytest.fixture
async def org(database: Database, tmp_path: Path) -> Database:
    """The default organisation (from bootstrap) with teams research and ops besides admin."""
    await bootstrap(database, Settings(data_dir=tmp_path / "data"))
    async with database.session() as session:
        org_id = await session.scalar(select(TeamRow.org_id).where(TeamRow.name == "admin"))
        assert org_id is not None
        session.add_all(
            TeamRow(id=new_id(), org_id=org_id, name=n, created_at=utcnow()) for n in ("research", "ops")
        )
    return database


@pytest.fixture
def oidc_settings(idp: FakeIdentityProvider, tmp_path: Path) -> Callable[..., OIDCSettings]:
    def make(**overrides: Any) -> OIDCSettings:
        values: dict[str, Any] = {
            "issuer": ISSUER,
            "audience": "socle",
            "jwks_file": idp.write_jwks(tmp_path / "jwks.json"),
            "algorithms": ["ES256"],
            "rules": RULES,
        }
        return OIDCSettings(**{**values, **overrides})

    return make


@pytest.fixture
async def sso(org: Database, oidc_settings: Callable[..., OIDCSettings]) -> AsyncIterator[OIDCAuthenticator]:
    authenticator = await OIDCAuthenticator.start(
        oidc_settings(), org, incompatible_roles=[("auditor", "admin")], known_roles=list(ROLES)
    )
    yield authenticator
    await authenticator.aclose()


async def _memberships(db: Database, subject: str) -> set[tuple[str, str]]:
    async with db.session() as session:
        rows = await session.execute(
            select(TeamRow.name, TeamMemberRow.role)
            .join(TeamMemberRow, TeamMemberRow.team_id == TeamRow.id)
            .join(PrincipalRow, PrincipalRow.id == TeamMemberRow.principal_id)
            .where(PrincipalRow.external_subject == subject)
        )
        return {(team, role) for team, role in rows}


async def _principals(db: Database, subject: str) -> list[PrincipalRow]:
    async with db.session() as session:
        return list(
            (
                await session.scalars(select(PrincipalRow).where(PrincipalRow.external_subject == subject))
            ).all()
        )


async def test_first_login_provisions_the_user(
    org: Database, sso: OIDCAuthenticator, idp: FakeIdentityProvider
) -> None:
    token = idp.token("u-42", preferred_username="alice", email="alice@example.test", groups=["/research"])
    principal = await sso.authenticate(token)
    subject = external_subject(ISSUER, "u-42")
    [row] = await _principals(org, subject)
    assert (row.kind, row.name, row.email, row.id) == (
        "user",
        "alice",
        "alice@example.test",
        principal.principal_id,
    )
    assert await _memberships(org, subject) == {("research", "member")}
    assert principal.team_name == "research" and principal.roles == {"member"}
    assert principal.kind == "user" and principal.name == "alice" and principal.allowed_models is None
    assert principal.key_id == sso_key_id(subject) and principal.org_id == row.org_id


async def test_memberships_follow_the_token(
    org: Database, sso: OIDCAuthenticator, idp: FakeIdentityProvider
) -> None:
    subject = external_subject(ISSUER, "bob")
    first = await sso.authenticate(
        idp.token("bob", groups=["/research", "/ops", "/ops/leads"], realm_access={"roles": ["socle-admin"]})
    )
    assert await _memberships(org, subject) == {
        ("research", "member"),
        ("ops", "member"),
        ("ops", "team-admin"),
        ("admin", "admin"),
    }
    assert first.team_name == "research"  # the first rule that matched
    # Next login: the IdP moved bob out of research and took his admin role away.
    token = idp.token("bob", preferred_username="Bob B.", groups=["/ops"])
    principal = await sso.authenticate(token)
    assert await _memberships(org, subject) == {("ops", "member")}
    assert principal.principal_id == first.principal_id and principal.team_name == "ops"
    [row] = await _principals(org, subject)
    assert row.name == "Bob B."
    assert (await sso.authenticate(token, team="ops")).roles == {"member"}
    ops_id = principal.team_id
    assert (await sso.authenticate(token, team=ops_id)).team_name == "ops"
    with pytest.raises(PermissionDeniedError, match="does not give access to team 'research'") as caught:
        await sso.authenticate(token, team="research")
    assert caught.value.code == "team_not_granted"


async def test_unmapped_users_and_unknown_teams_get_403(
    org: Database,
    sso: OIDCAuthenticator,
    idp: FakeIdentityProvider,
    oidc_settings: Callable[..., OIDCSettings],
) -> None:
    with pytest.raises(PermissionDeniedError, match="no rule matches") as caught:
        await sso.authenticate(idp.token("carol", groups=["/sales"]))
    assert caught.value.code == "no_team" and caught.value.status_code == 403
    with pytest.raises(PermissionDeniedError, match="'ghosts', which do not exist") as caught:
        await sso.authenticate(idp.token("carol", groups=["/ghosts"]))
    assert caught.value.code == "team_not_found"
    assert await _principals(org, external_subject(ISSUER, "carol")) == []  # nothing written
    # A rule naming an unknown team is skipped when others match.
    await sso.authenticate(idp.token("carol", groups=["/ghosts", "/ops"]))
    assert await _memberships(org, external_subject(ISSUER, "carol")) == {("ops", "member")}
    with pytest.raises(PermissionDeniedError, match="separation of duties") as caught:
        await sso.authenticate(idp.token("dave", realm_access={"roles": ["socle-admin", "socle-auditor"]}))
    assert caught.value.code == "incompatible_roles"

    guests = await OIDCAuthenticator.start(oidc_settings(rules=[], default_team="research"), org)
    principal = await guests.authenticate(idp.token("erin"))
    assert (principal.team_name, principal.roles) == ("research", {"member"})
    await guests.aclose()


async def test_disabled_users_are_refused_once_their_cached_token_expires_from_the_cache(
    org: Database, sso: OIDCAuthenticator, idp: FakeIdentityProvider
) -> None:
    token = idp.token("frank", groups=["/research"])
    await sso.authenticate(token)
    async with org.session() as session:
        row = await session.scalar(
            select(PrincipalRow).where(PrincipalRow.external_subject == external_subject(ISSUER, "frank"))
        )
        assert row is not None
        row.disabled_at = utcnow()
    await sso.authenticate(token)  # remembered for cache_ttl_s: no database read
    with pytest.raises(AuthenticationError, match="disabled") as caught:
        await sso.authenticate(idp.token("frank", groups=["/research"]))  # a new token is checked
    assert caught.value.code == "principal_disabled"
    sso.forget()
    with pytest.raises(AuthenticationError, match="disabled"):
        await sso.authenticate(token)


async def test_a_known_token_costs_no_database_read(
    org: Database, sso: OIDCAuthenticator, idp: FakeIdentityProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[object] = []
    fetch_all = org.fetch_all

    async def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[0])
        return await fetch_all(*args, **kwargs)

    monkeypatch.setattr(org, "fetch_all", counting)
    token = idp.token("gina", groups=["/research", "/ops"])
    await sso.authenticate(token)
    reads = len(calls)
    assert reads > 0
    for team in (None, "ops", "research"):
        await sso.authenticate(token, team=team)
    assert len(calls) == reads
    await sso.authenticate(idp.token("gina", groups=["/research", "/ops"]))  # same user, new token
    assert len(calls) > reads


async def test_expired_cache_entries_are_checked_again(
    org: Database, oidc_settings: Callable[..., OIDCSettings], idp: FakeIdentityProvider
) -> None:
    now = [1_900_000_000.0]
    sso = OIDCAuthenticator(oidc_settings(cache_ttl_s=60), org, clock=lambda: now[0])
    token = idp.token("hugo", groups=["/research"], now=now[0], lifetime_s=300)
    await sso.authenticate(token)
    now[0] += 61  # past cache_ttl_s: verified again (still valid)
    await sso.authenticate(token)
    now[0] += 300  # past exp
    with pytest.raises(AuthenticationError, match="expired") as caught:
        await sso.authenticate(token)
    assert caught.value.code == "token_expired"
    await sso.aclose()


async def test_concurrent_first_logins_provision_one_principal(
    database_url: str, org: Database, oidc_settings: Callable[..., OIDCSettings], idp: FakeIdentityProvider
) -> None:
    """Two replicas (own database pools), each receiving several first requests at once."""
    replicas = []
    for _ in range(2):
        db = Database(database_url)
        replicas.append((db, await OIDCAuthenticator.start(oidc_settings(), db)))
    try:
        for user in ("ivy", "jack", "kim"):
            tokens = [idp.token(user, groups=["/research", "/ops"]) for _ in range(6)]
            principals = await asyncio.gather(
                *(replicas[i % 2][1].authenticate(token) for i, token in enumerate(tokens))
            )
            assert len({p.principal_id for p in principals}) == 1
            assert len(await _principals(org, external_subject(ISSUER, user))) == 1
            assert await _memberships(org, external_subject(ISSUER, user)) == {
                ("research", "member"),
                ("ops", "member"),
            }
    finally:
        for db, authenticator in replicas:
            await authenticator.aclose()
            await db.close()


async def test_concurrent_requests_with_one_new_token_share_one_login(
    org: Database, sso: OIDCAuthenticator, idp: FakeIdentityProvider
) -> None:
    token = idp.token("lea", groups=["/ops"])
    principals = await asyncio.gather(*(sso.authenticate(token) for _ in range(20)))
    assert len({p.principal_id for p in principals}) == 1
    bad = idp.token("lea", aud="account")
    results = await asyncio.gather(*(sso.authenticate(bad) for _ in range(5)), return_exceptions=True)
    assert all(isinstance(r, AuthenticationError) for r in results)


async def test_accounts_are_never_linked_by_email(
    org: Database, sso: OIDCAuthenticator, idp: FakeIdentityProvider
) -> None:
    async with org.session() as session:
        org_id = await session.scalar(select(TeamRow.org_id).where(TeamRow.name == "admin"))
        assert org_id is not None
        session.add(
            PrincipalRow(id=new_id(), org_id=org_id, kind="user", name="mia", email="mia@example.test")
        )
    principal = await sso.authenticate(idp.token("mia-sso", email="mia@example.test", groups=["/ops"]))
    [row] = await _principals(org, external_subject(ISSUER, "mia-sso"))
    assert row.email is None and row.id == principal.principal_id
    async with org.session() as session:
        assert (
            await session.scalar(
                select(func.count()).select_from(PrincipalRow).where(PrincipalRow.name == "mia")
            )
            == 1
        )


async def test_start_refuses_bad_configurations(
    org: Database, oidc_settings: Callable[..., OIDCSettings], tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="unknown role"):
        await OIDCAuthenticator.start(
            oidc_settings(rules=[OIDCRule(claim="groups", team="ops", role="superuser")]),
            org,
            known_roles=list(ROLES),
        )
    with pytest.raises(ConfigError, match="organisation 'acme', which does not exist"):
        await OIDCAuthenticator.start(oidc_settings(organisation="acme"), org)
    missing = tmp_path / "missing.json"
    with pytest.raises(ConfigError, match="jwks_file is unusable"):
        await OIDCAuthenticator.start(oidc_settings(jwks_file=missing), org)
    (tmp_path / "empty.json").write_text('{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}')
    with pytest.raises(ConfigError, match="no signing key"):
        await OIDCAuthenticator.start(oidc_settings(jwks_file=tmp_path / "empty.json"), org)
    insecure = oidc_settings(jwks_file=None, jwks_url="http://sso.internal/certs")
    with pytest.raises(ConfigError, match="https"):
        await OIDCAuthenticator.start(insecure, org, production=True)
