"""SSO token verification with real keys and signatures: every way a token can be wrong is a 401 that
says why; key rotation through a served JWKS; the refetch rate limit; claim-mapping rules."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from socle.config import OIDCRule, OIDCSettings, load_settings
from socle.errors import AuthenticationError
from socle.governance._jwt import IdentityProviderUnavailable, KeySet, TokenVerifier
from socle.governance.identity import generate_api_key
from socle.governance.oidc import claim_values, looks_like_jwt, map_claims, sso_key_id
from socle.testing.oidc import FakeIdentityProvider, b64url

ISSUER = "https://sso.example.test/realms/acme"


class Monotonic:
    """A monotonic clock that tests move by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def idp() -> FakeIdentityProvider:
    """One RSA and one EC key, published; plus an RSA key the JWKS does not publish."""
    provider = FakeIdentityProvider(ISSUER, "socle")
    provider.add_key("RSA", kid="rsa-1")
    provider.add_key("EC", kid="ec-1")
    provider.add_key("RSA", kid="rogue", publish=False)
    return provider


@pytest.fixture
async def verifier(idp: FakeIdentityProvider, tmp_path: Path) -> AsyncIterator[TokenVerifier]:
    keys = KeySet(file=idp.write_jwks(tmp_path / "jwks.json"))
    yield TokenVerifier(keys, issuer=ISSUER, audience=["socle"], algorithms=["RS256", "ES256"], leeway_s=30)
    await keys.aclose()


def _tamper(token: str, **changes: Any) -> str:
    head, body, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return f"{head}.{b64url({**claims, **changes})}.{signature}"


def _hs256_with_public_key(idp: FakeIdentityProvider) -> str:
    """The classic algorithm-confusion forgery: HS256 keyed with the RSA public key (PEM)."""
    message = f"{b64url({'alg': 'HS256', 'kid': 'rsa-1'})}.{b64url(idp.claims('mallory'))}"
    secret = idp.keys["rsa-1"].public_pem()
    return f"{message}.{b64url(hmac.new(secret, message.encode(), hashlib.sha256).digest())}"


NOW = time.time()
BAD_TOKENS: dict[str, tuple[Callable[[FakeIdentityProvider], str], str, str]] = {
    "expired": (
        lambda p: p.token(iat=int(NOW) - 7200, exp=int(NOW) - 3600),
        "token_expired",
        "The token expired at ",
    ),
    "wrong audience": (lambda p: p.token(aud="account"), "invalid_audience", "another audience ('account')"),
    "wrong audience list": (
        lambda p: p.token(aud=["account", "other"]),
        "invalid_audience",
        "Socle accepts 'socle'",
    ),
    "no audience": (lambda p: p.token(aud=None), "invalid_token", "names no audience"),
    "wrong issuer": (
        lambda p: p.token(iss="https://evil.test/realms/acme"),
        "invalid_token",
        "not by the configured issuer",
    ),
    "not yet valid": (lambda p: p.token(nbf=int(NOW) + 3600), "token_not_yet_valid", "not valid before"),
    "issued in the future": (
        lambda p: p.token(iat=int(NOW) + 3600, exp=int(NOW) + 7200),
        "token_not_yet_valid",
        "issued in the future",
    ),
    "no expiry": (lambda p: p.token(exp=None), "invalid_token", "no expiry ('exp')"),
    "exp not a number": (lambda p: p.token(exp="tomorrow"), "invalid_token", "'exp' claim is not a number"),
    "unknown kid": (lambda p: p.token(kid="rogue"), "invalid_token", "unknown 'kid'"),
    "tampered payload": (
        lambda p: _tamper(p.token("alice"), sub="admin"),
        "invalid_signature",
        "signature is invalid",
    ),
    "signed by another key": (
        lambda p: p.sign({"alg": "RS256", "kid": "rsa-1"}, p.claims(), kid="rogue"),
        "invalid_signature",
        "signature is invalid",
    ),
    "alg none": (
        lambda p: f"{b64url({'alg': 'none', 'kid': 'rsa-1'})}.{b64url(p.claims())}.",
        "invalid_token",
        "Unsigned tokens (alg 'none') are never accepted",
    ),
    "alg None capitalised": (
        lambda p: f"{b64url({'alg': 'None'})}.{b64url(p.claims())}.",
        "invalid_token",
        "Unsigned tokens",
    ),
    "HS256 with the public key": (_hs256_with_public_key, "invalid_token", "shared secret (HS256)"),
    "algorithm not accepted": (
        lambda p: p.sign({"alg": "RS384", "kid": "rsa-1"}, p.claims()),
        "invalid_token",
        "algorithm 'RS384' is not accepted",
    ),
    "algorithm does not fit the key": (
        lambda p: p.sign({"alg": "ES256", "kid": "rsa-1"}, p.claims(), kid="ec-1"),
        "invalid_token",
        "does not fit its signing key (RSA RS256)",
    ),
    "header not JSON": (lambda p: "bm90IGpzb24." + p.token().split(".", 1)[1], "invalid_token", "Malformed"),
    "header not an object": (
        lambda p: b64url(b"[1]") + "." + p.token().split(".", 1)[1],
        "invalid_token",
        "header is not a JSON object",
    ),
    "header without alg": (
        lambda p: b64url({"kid": "rsa-1"}) + "." + p.token().split(".", 1)[1],
        "invalid_token",
        "names no algorithm",
    ),
    "critical extension": (
        lambda p: p.sign({"alg": "RS256", "kid": "rsa-1", "crit": ["exp"], "exp": 1}, p.claims()),
        "invalid_token",
        "critical JWS extensions",
    ),
    "payload not JSON": (
        lambda p: p.token().split(".")[0] + ".bm90IGpzb24." + p.token().split(".")[2],
        "invalid_signature",
        "signature is invalid",
    ),
    "signature not base64url": (
        lambda p: p.token().rsplit(".", 1)[0] + ".a",
        "invalid_token",
        "signature is not base64url",
    ),
    "too long": (lambda p: p.token(padding="x" * 20_000), "invalid_token", "longer than 16384 characters"),
}


@pytest.mark.anyio
@pytest.mark.parametrize("case", list(BAD_TOKENS))
async def test_bad_tokens_are_refused_with_their_reason(
    case: str, idp: FakeIdentityProvider, verifier: TokenVerifier
) -> None:
    make, code, fragment = BAD_TOKENS[case]
    token = make(idp)
    assert looks_like_jwt(token) or case == "too long"
    with pytest.raises(AuthenticationError) as caught:
        await verifier.verify(token)
    assert caught.value.status_code == 401
    assert caught.value.code == code, caught.value.message
    assert fragment in caught.value.message
    assert caught.value.headers["WWW-Authenticate"].startswith("Bearer ")


@pytest.mark.anyio
async def test_valid_rsa_and_ec_tokens(idp: FakeIdentityProvider, verifier: TokenVerifier) -> None:
    for kid in ("rsa-1", "ec-1"):
        verified = await verifier.verify(idp.token("alice", kid=kid, aud=["account", "socle"]))
        assert verified.claims["sub"] == "alice" and verified.header["kid"] == kid
        assert verified.expires_at == verified.claims["exp"]


@pytest.mark.anyio
async def test_leeway_tolerates_small_clock_skew(idp: FakeIdentityProvider, verifier: TokenVerifier) -> None:
    now = int(time.time())
    await verifier.verify(idp.token(iat=now - 300, exp=now - 10, nbf=now + 10))
    with pytest.raises(AuthenticationError, match="expired"):
        await verifier.verify(idp.token(iat=now - 300, exp=now - 60))


@pytest.mark.anyio
async def test_short_rsa_keys_and_symmetric_jwks_keys_are_refused(tmp_path: Path) -> None:
    weak = FakeIdentityProvider(ISSUER)
    weak.add_key("RSA", kid="weak", rsa_bits=1024)
    jwks = weak.jwks()
    jwks["keys"].append({"kty": "oct", "kid": "hmac", "k": b64url(b"secret" * 8), "alg": "HS256"})
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks))
    keys = KeySet(file=path)
    verifier = TokenVerifier(keys, issuer=ISSUER, audience=["socle"], algorithms=["RS256"])
    with pytest.raises(AuthenticationError, match="too short"):
        await verifier.verify(weak.sign({"alg": "RS256", "kid": "weak"}, weak.claims()))
    message = f"{b64url({'alg': 'HS256', 'kid': 'hmac'})}.{b64url(weak.claims())}"
    forged = f"{message}.{b64url(hmac.new(b'secret' * 8, message.encode(), hashlib.sha256).digest())}"
    with pytest.raises(AuthenticationError, match="shared secret"):
        await verifier.verify(forged)


@pytest.mark.anyio
async def test_token_without_kid_uses_the_only_fitting_key(tmp_path: Path) -> None:
    provider = FakeIdentityProvider(ISSUER)
    provider.add_key("EC", kid="only")
    jwks = provider.jwks()
    del jwks["keys"][0]["kid"]
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks))
    keys = KeySet(file=path)
    verifier = TokenVerifier(keys, issuer=ISSUER, audience=["socle"], algorithms=["ES256"])
    token = provider.sign({"alg": "ES256", "typ": "JWT"}, provider.claims("bob"))
    assert (await verifier.verify(token)).claims["sub"] == "bob"


# The served JWKS: rotation, rate limit, outages ---------------------------------------------------
@pytest.fixture
def served() -> Iterator[tuple[FakeIdentityProvider, str]]:
    provider = FakeIdentityProvider(ISSUER)
    provider.add_key("EC", kid="k1")
    with provider.serve() as url:
        yield provider, url


@pytest.fixture
async def url_verifier(
    served: tuple[FakeIdentityProvider, str],
) -> AsyncIterator[tuple[TokenVerifier, Monotonic]]:
    monotonic = Monotonic()
    keys = KeySet(url=served[1], cache_s=300, refetch_interval_s=30, monotonic=monotonic)
    yield TokenVerifier(keys, issuer=ISSUER, audience=["socle"], algorithms=["ES256"]), monotonic
    await keys.aclose()


@pytest.mark.anyio
async def test_key_rotation_is_picked_up_by_a_refetch(
    served: tuple[FakeIdentityProvider, str], url_verifier: tuple[TokenVerifier, Monotonic]
) -> None:
    provider, _ = served
    verifier, monotonic = url_verifier
    await verifier.verify(provider.token(kid="k1"))
    assert provider.jwks_requests == 1
    monotonic.now += 31  # past the refetch interval, well within the cache lifetime
    provider.add_key("EC", kid="k2")
    provider.retire("k1")
    await verifier.verify(provider.token(kid="k2"))
    assert provider.jwks_requests == 2
    for _ in range(5):  # known keys: no more fetches
        await verifier.verify(provider.token(kid="k2"))
    assert provider.jwks_requests == 2
    with pytest.raises(AuthenticationError, match="unknown 'kid'"):
        await verifier.verify(provider.token(kid="k1"))  # retired, and refetching is rate-limited


@pytest.mark.anyio
async def test_a_flood_of_unknown_kids_cannot_hammer_the_identity_provider(
    served: tuple[FakeIdentityProvider, str], url_verifier: tuple[TokenVerifier, Monotonic]
) -> None:
    provider, _ = served
    verifier, monotonic = url_verifier
    await verifier.verify(provider.token(kid="k1"))

    async def bogus(i: int) -> None:
        token = provider.sign({"alg": "ES256", "kid": f"bogus-{i}"}, provider.claims(), kid="k1")
        with pytest.raises(AuthenticationError, match="unknown 'kid'"):
            await verifier.verify(token)

    await asyncio.gather(*(bogus(i) for i in range(50)))
    assert provider.jwks_requests == 1  # the last load was less than refetch_interval_s ago
    monotonic.now += 31
    await asyncio.gather(*(bogus(i) for i in range(50)))
    assert provider.jwks_requests == 2  # one refetch for the whole burst
    provider.add_key("EC", kid="new")
    with pytest.raises(AuthenticationError, match="unknown 'kid'"):
        await verifier.verify(provider.token(kid="new"))  # rotation seen at the next allowed refetch
    monotonic.now += 31
    await verifier.verify(provider.token(kid="new"))
    assert provider.jwks_requests == 3


@pytest.mark.anyio
async def test_keys_are_reloaded_when_stale_and_kept_if_the_provider_is_down() -> None:
    provider = FakeIdentityProvider(ISSUER)
    provider.add_key("EC", kid="k1")
    monotonic = Monotonic()
    with provider.serve() as url:
        keys = KeySet(url=url, cache_s=300, refetch_interval_s=30, monotonic=monotonic)
        verifier = TokenVerifier(keys, issuer=ISSUER, audience=["socle"], algorithms=["ES256"])
        await verifier.verify(provider.token())
        monotonic.now += 301
        await verifier.verify(provider.token())
        assert provider.jwks_requests == 2
    monotonic.now += 301  # the provider is gone: the stale keys still verify
    await verifier.verify(provider.token())
    assert keys.loads == 3
    await verifier.verify(provider.token())
    assert keys.loads == 3  # and the failed reload is not retried before the interval
    await keys.aclose()


@pytest.mark.anyio
async def test_unreachable_provider_is_503_and_is_not_hammered(idp: FakeIdentityProvider) -> None:
    with FakeIdentityProvider().serve() as url:
        pass  # a port that was just closed: connection refused
    monotonic = Monotonic()
    keys = KeySet(url=url, refetch_interval_s=30, timeout_s=2, monotonic=monotonic)
    verifier = TokenVerifier(keys, issuer=ISSUER, audience=["socle"], algorithms=["RS256"])
    for _ in range(3):
        with pytest.raises(IdentityProviderUnavailable) as caught:
            await verifier.verify(idp.token())
        assert caught.value.status_code == 503 and "cannot be loaded" in caught.value.message
        assert caught.value.headers["Retry-After"] == "30"
        assert caught.value.detail is None or url in caught.value.detail
    assert keys.loads == 1
    await keys.aclose()


# Shapes, claims and rules -------------------------------------------------------------------------
def test_jwts_and_api_keys_are_told_apart(idp: FakeIdentityProvider) -> None:
    assert looks_like_jwt(idp.token())
    assert looks_like_jwt("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.")  # unsigned: still a JWT, refused later
    assert not looks_like_jwt(generate_api_key())
    assert not looks_like_jwt("a.b")
    assert not looks_like_jwt("a.b.c.d")
    assert not looks_like_jwt("a+b.c.d")


def test_claim_values_follow_dotted_paths() -> None:
    claims = {
        "sub": "u1",
        "groups": ["/research", "/ops/oncall"],
        "realm_access": {"roles": ["socle-admin", "offline_access"]},
        "resource_access": {"socle": {"roles": ["member"]}},
        "https://example.org/roles": ["editor"],
        "email_verified": True,
        "level": 3,
        "nested": {"object": {"x": 1}},
    }
    assert claim_values(claims, "groups") == ["/research", "/ops/oncall"]
    assert claim_values(claims, "realm_access.roles") == ["socle-admin", "offline_access"]
    assert claim_values(claims, "resource_access.socle.roles") == ["member"]
    assert claim_values(claims, "https://example.org/roles") == ["editor"]
    assert claim_values(claims, "email_verified") == ["true"]
    assert claim_values(claims, "level") == ["3"]
    assert claim_values(claims, "nested.object") == []
    assert claim_values(claims, "missing.path") == []
    assert claim_values(claims, "sub.deeper") == []


def test_rules_map_claims_to_teams_and_roles() -> None:
    settings = OIDCSettings(
        issuer=ISSUER,
        audience="socle",
        jwks_url="https://sso.example.test/certs",
        rules=[
            OIDCRule(claim="groups", value="/research", team="research"),
            OIDCRule(claim="groups", value="/research/leads", team="research", role="team-admin"),
            OIDCRule(claim="realm_access.roles", value="socle-admin", team="admin", role="admin"),
            OIDCRule(claim="department", team="everyone", role="service"),
        ],
    )
    assert settings.audience == ["socle"]
    claims = {"groups": ["/research/leads", "/research"], "realm_access": {"roles": ["socle-admin"]}}
    assert [(g.team, sorted(g.roles)) for g in map_claims(claims, settings)] == [
        ("research", ["member", "team-admin"]),
        ("admin", ["admin"]),
    ]
    assert [g.team for g in map_claims({"department": "R&D"}, settings)] == ["everyone"]
    assert map_claims({"groups": ["/sales"]}, settings) == []
    with_default = settings.model_copy(update={"default_team": "guests", "default_role": "service"})
    assert [(g.team, set(g.roles)) for g in map_claims({}, with_default)] == [("guests", {"service"})]


def test_settings_refuse_unsafe_or_incomplete_configurations() -> None:
    base: dict[str, Any] = {"issuer": ISSUER, "audience": ["socle"], "jwks_url": "https://x.test/certs"}
    OIDCSettings(**base)
    for bad in (
        {"algorithms": ["HS256"]},
        {"algorithms": ["none"]},
        {"algorithms": []},
        {"audience": []},
        {"jwks_url": None},
        {"jwks_file": "/etc/jwks.json"},
        {"jwks_url": "ftp://x.test/certs"},
        {"leeway_s": 3600},
    ):
        with pytest.raises(ValidationError):
            OIDCSettings(**{**base, **bad})


def test_sso_key_ids_fit_the_key_id_column() -> None:
    key_id = sso_key_id(f"{ISSUER}|alice")
    assert key_id.startswith("oidc:") and len(key_id) == 26
    assert key_id == sso_key_id(f"{ISSUER}|alice") != sso_key_id(f"{ISSUER}|bob")


# docs/sso.md cannot rot -----------------------------------------------------------------------------
DOCS = Path(__file__).resolve().parents[2] / "docs" / "sso.md"


def test_the_documented_configuration_loads(tmp_path: Path) -> None:
    text = DOCS.read_text()
    [example] = re.findall(r"```toml\n(.*?)```", text, flags=re.S)
    path = tmp_path / "socle.toml"
    path.write_text(example)
    settings = load_settings(path, environ={}, data_dir=tmp_path)
    assert settings.oidc is not None and settings.oidc.audience == ["socle"]
    claims = {"groups": ["/research", "/research/leads"], "realm_access": {"roles": ["socle-admin"]}}
    assert [(g.team, sorted(g.roles)) for g in map_claims(claims, settings.oidc)] == [
        ("research", ["member", "team-admin"]),
        ("admin", ["admin"]),
    ]


def test_every_setting_is_documented() -> None:
    text = DOCS.read_text()
    for model in (OIDCSettings, OIDCRule):
        for name in model.model_fields:
            assert f"| `{name}` |" in text, f"docs/sso.md does not document {model.__name__}.{name}"
