"""The test identity provider speaks the authorisation code flow with PKCE as a real one does: the
code goes to the registered redirect URI with the state, and only the right verifier, client and
redirect URI get a token, once; the token verifies against its JWKS."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest

from socle.testing.oidc_provider import OIDCTestProvider, s256

CLIENT = "socle-console"
REDIRECT = "http://127.0.0.1:9/"


@pytest.fixture
def idp() -> Iterator[OIDCTestProvider]:
    provider = OIDCTestProvider(
        CLIENT, REDIRECT, {"sub": "u-42", "preferred_username": "marie"}, origin="http://app"
    )
    with provider.serve() as running:
        yield running


def _code(idp: OIDCTestProvider, verifier: str, **overrides: str) -> httpx.Response:
    params = {
        "response_type": "code",
        "client_id": CLIENT,
        "redirect_uri": REDIRECT,
        "scope": "openid",
        "state": "st-1",
        "code_challenge": s256(verifier),
        "code_challenge_method": "S256",
        **overrides,
    }
    return httpx.get(idp.authorization_endpoint, params=params, follow_redirects=False)


def _exchange(idp: OIDCTestProvider, code: str, verifier: str, **overrides: str) -> httpx.Response:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "client_id": CLIENT,
        "code_verifier": verifier,
        **overrides,
    }
    return httpx.post(idp.token_endpoint, data=form, headers={"origin": "http://app"})


def test_the_right_verifier_gets_a_signed_token_once(idp: OIDCTestProvider) -> None:
    verifier = secrets.token_urlsafe(48)
    redirect = _code(idp, verifier)
    assert redirect.status_code == 302
    location = urlsplit(redirect.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    query = parse_qs(location.query)
    assert query["state"] == ["st-1"]
    answer = _exchange(idp, query["code"][0], verifier)
    assert answer.status_code == 200, answer.text
    assert answer.headers["access-control-allow-origin"] == "http://app"
    token = answer.json()["access_token"]
    key = jwt.PyJWKClient(idp.jwks_url).get_signing_key_from_jwt(token)
    claims = jwt.decode(token, key.key, algorithms=["RS256"], audience="socle", issuer=idp.issuer)
    assert claims["sub"] == "u-42" and claims["preferred_username"] == "marie"
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    again = _exchange(idp, query["code"][0], verifier)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_a_wrong_verifier_client_or_redirect_is_refused(idp: OIDCTestProvider) -> None:
    verifier = secrets.token_urlsafe(48)
    for overrides in (
        {"code_verifier": secrets.token_urlsafe(48)},
        {"code_verifier": verifier[:-1] + ("A" if verifier[-1] != "A" else "B")},
        {"client_id": "someone-else"},
        {"redirect_uri": "http://127.0.0.1:9/evil"},
    ):
        code = parse_qs(urlsplit(_code(idp, verifier).headers["location"]).query)["code"][0]
        refused = _exchange(idp, code, verifier, **overrides)
        assert refused.status_code == 400, overrides
        assert refused.json()["error"] in ("invalid_grant", "invalid_client"), overrides
        assert _exchange(idp, code, verifier).status_code == 400  # a refused code is spent too


def test_authorisation_requests_need_pkce_and_the_registered_client(idp: OIDCTestProvider) -> None:
    verifier = secrets.token_urlsafe(48)
    assert _code(idp, verifier, code_challenge_method="plain").status_code == 400
    assert _code(idp, verifier, client_id="other").json()["error"] == "invalid_client"
    assert _code(idp, verifier, redirect_uri="http://evil.test/").status_code == 400
    assert _code(idp, verifier, response_type="token").status_code == 400
