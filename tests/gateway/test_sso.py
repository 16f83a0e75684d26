"""SSO through the real API (uvicorn, real sockets, the official `openai` client), on SQLite and
PostgreSQL: a valid identity-provider token is served and provisions its user; every bad token is a
401 in OpenAI's error format that says why; key rotation through the served JWKS."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy import select

from socle.config import OIDCRule, OIDCSettings
from socle.governance.oidc import external_subject
from socle.storage.models import PrincipalRow, TeamMemberRow, TeamRow, UsageRow
from socle.storage.types import new_id, utcnow
from socle.testing.oidc import FakeIdentityProvider, b64url
from socle.testing.server import RunningServer, run_server
from tests.conftest import fake_engines

ISSUER = "https://sso.example.test/realms/acme"
CHAT = {"model": "fake-chat", "messages": [{"role": "user", "content": "Bonjour ?"}]}


@pytest.fixture
def idp() -> Iterator[tuple[FakeIdentityProvider, str]]:
    provider = FakeIdentityProvider(ISSUER, "socle")
    provider.add_key("RSA", kid="rsa-1")
    with provider.serve() as url:
        yield provider, url


async def _add_teams(server: RunningServer, *names: str) -> None:
    async with server.services.db.session() as session:
        org_id = await session.scalar(select(TeamRow.org_id).where(TeamRow.name == "admin"))
        session.add_all(TeamRow(id=new_id(), org_id=org_id, name=n, created_at=utcnow()) for n in names)


@pytest.fixture
def server(
    make_settings: Any, database_url: str, idp: tuple[FakeIdentityProvider, str]
) -> Iterator[RunningServer]:
    oidc = OIDCSettings(
        issuer=ISSUER,
        audience=["socle"],
        jwks_url=idp[1],
        jwks_refetch_interval_s=0,
        rules=[
            OIDCRule(claim="groups", value="/research", team="research"),
            OIDCRule(claim="groups", value="/ops", team="ops"),
            OIDCRule(claim="realm_access.roles", value="socle-auditor", team="ops", role="auditor"),
        ],
    )
    settings = make_settings(database_url=database_url, oidc=oidc, **fake_engines())
    with run_server(settings) as running:
        running.run(_add_teams(running, "research", "ops"))
        yield running


def _post(server: RunningServer, token: str, **headers: str) -> httpx.Response:
    return httpx.post(
        server.api + "/chat/completions", json=CHAT, headers={"authorization": f"Bearer {token}", **headers}
    )


def test_a_valid_token_is_served_and_provisions_its_user(
    server: RunningServer, idp: tuple[FakeIdentityProvider, str]
) -> None:
    provider, _ = idp
    token = provider.token("u-1", preferred_username="alice", groups=["/research", "/ops"])
    with openai.OpenAI(base_url=server.api, api_key=token, max_retries=0) as client:
        answer = client.chat.completions.create(**CHAT)
        assert answer.choices[0].message.content == "Bonjour, je suis un moteur factice."
        assert {m.id for m in client.models.list()} == {"fake-chat", "slow-chat"}
    assert _post(server, token, **{"x-socle-team": "ops"}).status_code == 200
    refused = _post(server, token, **{"x-socle-team": "admin"})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "team_not_granted"

    async def check() -> None:
        await server.services.usage.flush()
        async with server.services.db.session() as session:
            user = await session.scalar(
                select(PrincipalRow).where(PrincipalRow.external_subject == external_subject(ISSUER, "u-1"))
            )
            assert user is not None and (user.name, user.kind) == ("alice", "user")
            members = await session.execute(
                select(TeamRow.name, TeamMemberRow.role)
                .join(TeamMemberRow, TeamMemberRow.team_id == TeamRow.id)
                .where(TeamMemberRow.principal_id == user.id)
            )
            assert set(members) == {("research", "member"), ("ops", "member")}
            usage = await session.execute(
                select(TeamRow.name)
                .join(UsageRow, UsageRow.team_id == TeamRow.id)
                .where(UsageRow.principal_id == user.id)
            )
            assert sorted(name for (name,) in usage) == ["ops", "research"]

    server.run(check())
    # API keys keep working next to SSO.
    assert _post(server, server.admin_key).status_code == 200


def test_bad_tokens_get_401_with_their_reason(
    server: RunningServer, idp: tuple[FakeIdentityProvider, str]
) -> None:
    provider, _ = idp
    rogue = FakeIdentityProvider(ISSUER, "socle")
    rogue.add_key("RSA", kid="rsa-1")  # same kid, another key
    good = provider.token("bob", groups=["/research"])
    head, _, signature = good.split(".")
    cases = {
        "expired": (provider.token(exp=1_600_000_000, iat=1_599_990_000), "token_expired", "expired at 2020"),
        "wrong audience": (provider.token(aud="account"), "invalid_audience", "another audience"),
        "wrong issuer": (provider.token(iss="https://evil.test"), "invalid_token", "configured issuer"),
        "not yet valid": (provider.token(nbf=4_000_000_000), "token_not_yet_valid", "not valid before"),
        "unknown kid": (
            provider.sign({"alg": "RS256", "kid": "rotated-away"}, provider.claims()),
            "invalid_token",
            "unknown 'kid'",
        ),
        "forged by another key": (rogue.token("bob", groups=["/research"]), "invalid_signature", "invalid"),
        "tampered": (
            f"{head}.{b64url(provider.claims('admin'))}.{signature}",
            "invalid_signature",
            "altered",
        ),
        "alg none": (f"{b64url({'alg': 'none'})}.{b64url(provider.claims())}.", "invalid_token", "'none'"),
        "malformed": ("eyJhbGciOi.eyJzdWIi.abc", "invalid_token", "Malformed token"),
    }
    for case, (token, code, fragment) in cases.items():
        response = _post(server, token)
        assert response.status_code == 401, case
        error = response.json()["error"]
        assert error["type"] == "authentication_error" and error["code"] == code, (case, error)
        assert fragment in error["message"], (case, error["message"])
        assert response.headers["www-authenticate"].startswith("Bearer"), case
    no_team = _post(server, provider.token("carol", groups=["/sales"]))
    assert no_team.status_code == 403 and no_team.json()["error"]["code"] == "no_team"
    auditor = _post(server, provider.token("dan", realm_access={"roles": ["socle-auditor"]}))
    assert auditor.status_code == 403 and "model.use" in auditor.json()["error"]["message"]  # RBAC applies
    with openai.OpenAI(base_url=server.api, api_key=cases["expired"][0], max_retries=0) as client:
        with pytest.raises(openai.AuthenticationError, match="expired"):
            client.chat.completions.create(**CHAT)


def test_key_rotation_through_the_served_jwks(
    server: RunningServer, idp: tuple[FakeIdentityProvider, str]
) -> None:
    provider, _ = idp
    assert _post(server, provider.token("erin", groups=["/ops"])).status_code == 200
    fetches = provider.jwks_requests
    provider.add_key("EC", kid="ec-2")
    provider.retire("rsa-1")
    assert _post(server, provider.token("erin", kid="ec-2", groups=["/ops"])).status_code == 200
    assert provider.jwks_requests == fetches + 1


def test_jwt_without_sso_configured(make_settings: Any) -> None:
    provider = FakeIdentityProvider(ISSUER, "socle")
    provider.add_key("EC")
    with run_server(make_settings(**fake_engines())) as server:
        response = _post(server, provider.token())
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "sso_not_configured"
        assert "SSO is not configured" in response.json()["error"]["message"]
        assert _post(server, "sk-socle-nope").json()["error"]["message"] == "Invalid API key: no such key."
