"""Single sign-on in a real browser: the console signs in through the authorisation code flow with PKCE
against a test identity provider on loopback (socle/testing/oidc_provider.py), lands signed in as the
approved user with the team the provider's groups map to, and the gateway accepts the token."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from socle.config import ConsoleSettings, OIDCRule, OIDCSettings, load_settings
from socle.testing.oidc_provider import OIDCTestProvider
from socle.testing.server import RunningServer, free_port, run_server
from tests.conftest import ADMIN_KEY, fake_engines
from tests.console.conftest import docs_screenshot

CLIENT = "socle-console"


@pytest.fixture(scope="module")
def sso(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, OIDCTestProvider]]:
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    user = {
        "sub": "u-marie",
        "preferred_username": "marie.curie",
        "email": "marie@example.test",
        "groups": ["/lab"],
    }
    with OIDCTestProvider(CLIENT, origin + "/", user, origin=origin).serve() as idp:
        settings = load_settings(
            None,
            environ={},
            data_dir=tmp_path_factory.mktemp("sso") / "data",
            admin_key=ADMIN_KEY,
            port=port,
            oidc=OIDCSettings(
                issuer=idp.issuer,
                audience=["socle"],
                jwks_url=idp.jwks_url,
                rules=[OIDCRule(claim="groups", value="/lab", team="lab")],
            ),
            console=ConsoleSettings(
                default_language="en",
                oidc_client_id=CLIENT,
                oidc_authorization_endpoint=idp.authorization_endpoint,
                oidc_token_endpoint=idp.token_endpoint,
            ),
            **fake_engines(),
        )
        with run_server(settings) as server:
            created = httpx.post(
                server.api + "/admin/teams",
                json={"name": "lab"},
                headers={"authorization": f"Bearer {server.admin_key}"},
            )
            assert created.status_code == 201, created.text
            yield server, idp


def test_the_console_signs_in_through_the_identity_provider(
    page: Any, sso: tuple[RunningServer, OIDCTestProvider]
) -> None:
    server, idp = sso
    config = httpx.get(server.url + "/console/config.json").json()["sso"]
    assert config["client_id"] == CLIENT and config["token_endpoint"] == idp.token_endpoint
    policy = httpx.get(server.url + "/").headers["content-security-policy"]
    assert f"connect-src 'self' {idp.issuer}" in policy
    tokens: list[str] = []
    page.on(
        "response",
        lambda r: tokens.append(r.json()["access_token"]) if r.url == idp.token_endpoint and r.ok else None,
    )
    page.goto(server.url + "/#/chat")
    sign_in = page.get_by_role("button", name="Sign in with your organisation account")
    sign_in.wait_for()
    docs_screenshot(page, "chat-signin")
    sign_in.click()
    page.get_by_test_id("me-name").wait_for()
    assert page.get_by_test_id("me-name").inner_text() == "marie.curie"
    assert page.get_by_text("lab", exact=True).is_visible()
    assert page.url == server.url + "/#/chat"  # back where the sign-in started, no code in the address
    page.get_by_role("heading", name="Chat").wait_for()
    me = httpx.get(server.api + "/me", headers={"authorization": f"Bearer {tokens[0]}"}).json()
    assert me["auth"] == "sso" and me["name"] == "marie.curie" and me["team"]["name"] == "lab"
    assert page.evaluate("sessionStorage.getItem('socle.sso')") is None  # the verifier is gone


def test_a_refused_exchange_is_explained_on_the_login_page(
    page: Any, sso: tuple[RunningServer, OIDCTestProvider]
) -> None:
    server, _ = sso
    # A forged return: a code the provider never issued, with the state the console expects.
    page.goto(server.url + "/")
    page.evaluate(
        "sessionStorage.setItem('socle.sso', "
        "JSON.stringify({verifier: 'x'.repeat(50), state: 's', hash: ''}))"
    )
    page.goto(server.url + "/?code=forged&state=s")
    page.get_by_role("alert").wait_for()
    assert "unknown, used or expired code" in page.get_by_role("alert").inner_text()
    page.get_by_role("button", name="Sign in with your organisation account").wait_for()
