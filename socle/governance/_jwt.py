"""Verifying a JWT against the identity provider's JSON Web Key Set (JWKS): keys, signature, claims.

Used by :mod:`socle.governance.oidc`; everything here raises :class:`~socle.errors.AuthenticationError`
(401) with a reason a person can act on, except an identity provider whose keys cannot be loaded at
all, which is the gateway's problem rather than the token's (503, :class:`IdentityProviderUnavailable`).

Parsing
    A compact JWS is three base64url segments. The header is read first because it names the
    algorithm and the key (``kid``); it is parsed here, strictly (base64url alphabet, JSON object),
    and so are the payload and the signature. The signature check itself is PyJWT's algorithm objects
    over ``cryptography`` (:class:`jwt.PyJWK`), never hand-written crypto.

Algorithm confusion
    The header's ``alg`` must be in the configured list, which can only hold asymmetric algorithms
    (``none`` and HS* are refused before any key is looked at: an HS256 token "signed" with a public
    key is the classic attack). The key must then fit the algorithm: RS*/PS* need an RSA key, ES256 a
    P-256 key and so on, and a key that declares its own ``alg`` is only used with it. Symmetric
    (``oct``) keys in a JWKS are ignored; RSA keys under 2048 bits are refused.

Keys are cached and reloaded
    The key set is loaded on first use (a URL with httpx, or a file), reloaded once it is older than
    ``jwks_cache_s``, and reloaded early when a token names a ``kid`` the set does not hold: that is
    how a rotation is noticed. Every load, whatever its cause, waits at least
    ``jwks_refetch_interval_s`` after the previous attempt, so a flood of tokens with made-up ``kid``
    values costs the identity provider at most one request per interval and replica. Concurrent loads
    are coalesced. A failed reload keeps the keys already known (and logs); only a gateway that never
    had keys answers 503.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import orjson

from socle import egress
from socle.errors import AuthenticationError, IdentityProviderUnavailable

if TYPE_CHECKING:  # PyJWT (and cryptography, ~50 ms) is imported on first use, not with the gateway
    from jwt import PyJWK

__all__ = [
    "MAX_TOKEN_LENGTH",
    "IdentityProviderUnavailable",
    "KeySet",
    "TokenVerifier",
    "VerifiedToken",
    "invalid_token",
    "looks_like_jwt",
]

log = logging.getLogger(__name__)

MAX_TOKEN_LENGTH = 16 * 1024
_MAX_JWKS_BYTES = 1024 * 1024
_MIN_RSA_BITS = 2048
_JWT_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_KEY_TYPES: dict[str, tuple[str, frozenset[str] | None]] = {
    **{f"{p}{n}": ("RSA", None) for p in ("RS", "PS") for n in ("256", "384", "512")},
    "ES256": ("EC", frozenset({"P-256"})),
    "ES384": ("EC", frozenset({"P-384"})),
    "ES512": ("EC", frozenset({"P-521"})),
    "EdDSA": ("OKP", frozenset({"Ed25519", "Ed448"})),
}
"""Accepted algorithm -> the key type (and curves) it verifies with."""


def invalid_token(message: str, code: str = "invalid_token") -> AuthenticationError:
    """A 401 for a bad token, with the ``WWW-Authenticate`` challenge of RFC 6750."""
    return AuthenticationError(
        message, code=code, headers={"WWW-Authenticate": 'Bearer realm="socle", error="invalid_token"'}
    )


def looks_like_jwt(token: str) -> bool:
    """Whether a bearer token has the shape of a JWT (three base64url segments) rather than an API key.

    Structural only, and cheap (API keys hold no dot); a token of this shape that is not a valid JWT
    gets a precise 401 from :meth:`TokenVerifier.verify` ("malformed token: ...") instead of "no such
    API key".
    """
    return _JWT_SHAPE.fullmatch(token) is not None


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    """A token whose signature and standard claims are valid."""

    header: dict[str, Any]
    claims: dict[str, Any]
    expires_at: float
    """``exp``, in seconds since the epoch."""


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _json_object(segment: str, what: str) -> dict[str, Any]:
    try:
        value = orjson.loads(_b64decode(segment))
    except (binascii.Error, ValueError) as exc:
        raise invalid_token(f"Malformed token: the {what} is not base64url-encoded JSON.") from exc
    if not isinstance(value, dict):
        raise invalid_token(f"Malformed token: the {what} is not a JSON object.")
    return value


def _utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _numeric_claim(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid_token(f"Malformed token: the '{name}' claim is not a number of seconds.")
    if not -1e11 < value < 1e11:
        raise invalid_token(f"Malformed token: the '{name}' claim is out of range.")
    return float(value)


def _key_fits(jwk: dict[str, Any], alg: str) -> bool:
    kty, curves = _KEY_TYPES[alg]
    if jwk.get("kty") != kty or jwk.get("alg", alg) != alg:
        return False
    return curves is None or jwk.get("crv") in curves


def _describe(jwk: dict[str, Any]) -> str:
    return " ".join(str(jwk[k]) for k in ("kty", "crv", "alg") if k in jwk)


class KeySet:
    """The identity provider's signing keys, loaded from a URL or a file and cached (see module docs).

    ``monotonic`` is injectable for tests. ``loads`` counts load attempts (tests and diagnostics).
    """

    def __init__(
        self,
        *,
        url: str | None = None,
        file: Path | None = None,
        cache_s: float = 300.0,
        refetch_interval_s: float = 10.0,
        timeout_s: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if (url is None) == (file is None):
            raise ValueError("KeySet needs exactly one of url and file")
        self._url = url
        self._file = file
        self._cache_s = cache_s
        self._interval = refetch_interval_s
        self._monotonic = monotonic
        self._client = (
            httpx.AsyncClient(timeout=timeout_s, transport=transport, follow_redirects=False)
            if url is not None
            else None
        )
        self._jwks: dict[str | None, list[dict[str, Any]]] = {}
        self._keys: dict[tuple[int, str], PyJWK] = {}  # (id of the JWK dict, alg) -> prepared key
        self._loaded_at: float | None = None
        self._attempted_at: float | None = None
        self._lock = asyncio.Lock()
        self.loads = 0

    @property
    def source(self) -> str:
        return self._url if self._url is not None else str(self._file)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def load(self) -> None:
        """Load the key set now; raises :class:`IdentityProviderUnavailable` on failure."""
        self.loads += 1
        self._attempted_at = self._monotonic()
        try:
            raw = await self._read()
            jwks = _parse_jwks(raw)
        except (OSError, httpx.HTTPError, ValueError) as exc:
            raise IdentityProviderUnavailable(
                "The identity provider's signing keys (JWKS) cannot be loaded; tokens cannot be checked "
                "now. Try again later.",
                detail=f"{self.source}: {type(exc).__name__}: {exc}",
                headers=self._retry_after(),
            ) from exc
        self._jwks, self._keys = jwks, {}
        self._loaded_at = self._attempted_at
        log.info("loaded %d signing key(s) from %s", sum(map(len, jwks.values())), self.source)

    async def key(self, kid: str | None, alg: str) -> PyJWK:
        """The key that verifies a token with this ``kid`` and ``alg``; raises 401 if there is none."""
        now = self._monotonic()
        if self._loaded_at is None or now - self._loaded_at >= self._cache_s:
            await self._reload(now)
        if kid is None:
            return self._only_key(alg)
        if kid not in self._jwks:
            await self._reload(now)  # a rotation, or a bogus kid: rate-limited either way
        candidates = self._jwks.get(kid)
        if candidates is None:
            raise invalid_token(
                f"The token is signed with key '{kid[:100]}', which the identity provider does not "
                "publish (unknown 'kid')."
            )
        for jwk in candidates:
            if _key_fits(jwk, alg):
                return self._prepared(jwk, alg)
        raise invalid_token(
            f"The token's algorithm {alg} does not fit its signing key ({_describe(candidates[0])})."
        )

    def _only_key(self, alg: str) -> PyJWK:
        fitting = [jwk for jwks in self._jwks.values() for jwk in jwks if _key_fits(jwk, alg)]
        if len(fitting) != 1:
            raise invalid_token(
                "The token names no signing key ('kid'), and "
                + ("no published key fits its algorithm." if not fitting else "several keys could fit.")
            )
        return self._prepared(fitting[0], alg)

    async def _reload(self, now: float) -> None:
        """Load the set unless an attempt was made less than the refetch interval ago; on failure
        keep the keys already known (or raise if there are none)."""
        attempted = self._attempted_at
        async with self._lock:
            if self._attempted_at != attempted:
                return  # another request loaded (or tried) while this one waited
            if attempted is not None and now - attempted < self._interval:
                if self._loaded_at is None:
                    raise IdentityProviderUnavailable(
                        "The identity provider's signing keys (JWKS) cannot be loaded; tokens cannot "
                        "be checked now. Try again later.",
                        headers=self._retry_after(),
                    )
                return
            try:
                await self.load()
            except IdentityProviderUnavailable as exc:
                log.warning("cannot load the JWKS: %s", exc.detail)
                if self._loaded_at is None:
                    raise

    def _retry_after(self) -> dict[str, str]:
        return {"Retry-After": str(max(1, round(self._interval)))}

    def _prepared(self, jwk: dict[str, Any], alg: str) -> PyJWK:
        cache_key = (id(jwk), alg)
        key = self._keys.get(cache_key)
        if key is None:
            from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
            from jwt import PyJWK
            from jwt.exceptions import PyJWTError

            try:
                key = PyJWK(jwk, algorithm=alg)
            except PyJWTError as exc:
                log.warning("unusable key %r in %s: %s", jwk.get("kid"), self.source, exc)
                raise invalid_token(
                    f"The token's signing key '{jwk.get('kid')}' is unusable: {exc}."
                ) from exc
            if isinstance(key.key, RSAPublicKey) and key.key.key_size < _MIN_RSA_BITS:
                raise invalid_token(
                    f"The token's signing key '{jwk.get('kid')}' is too short ({key.key.key_size} bits)."
                )
            self._keys[cache_key] = key
        return key

    async def _read(self) -> bytes:
        if self._client is None:
            assert self._file is not None
            path = self._file
            data = await asyncio.to_thread(path.read_bytes)
        else:
            assert self._url is not None
            egress.check_url(self._url, via="oidc jwks")
            response = await self._client.get(self._url, headers={"accept": "application/json"})
            response.raise_for_status()
            data = response.content
        if len(data) > _MAX_JWKS_BYTES:
            raise ValueError(f"the JWKS is larger than {_MAX_JWKS_BYTES} bytes")
        return data


def _parse_jwks(raw: bytes) -> dict[str | None, list[dict[str, Any]]]:
    """Signing keys by ``kid``: keys for encryption, symmetric keys and unknown types are left out."""
    document = orjson.loads(raw)
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWKS: expected an object with a 'keys' list")
    keys: dict[str | None, list[dict[str, Any]]] = {}
    for jwk in document["keys"]:
        if not isinstance(jwk, dict) or jwk.get("use", "sig") != "sig":
            continue
        if jwk.get("kty") not in ("RSA", "EC", "OKP"):
            continue
        kid = jwk.get("kid")
        if kid is not None and not isinstance(kid, str):
            continue
        keys.setdefault(kid, []).append(jwk)
    if not keys:
        raise ValueError("the JWKS holds no signing key (RSA, EC or OKP)")
    return keys


class TokenVerifier:
    """Checks a JWT: shape, algorithm, signature (against :class:`KeySet`) and the standard claims
    ``exp`` (required), ``nbf``, ``iat``, ``iss`` and ``aud`` (required, exact), with ``leeway_s``."""

    def __init__(
        self,
        keys: KeySet,
        *,
        issuer: str,
        audience: Sequence[str],
        algorithms: Sequence[str],
        leeway_s: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        unknown = sorted(set(algorithms) - set(_KEY_TYPES))
        if unknown:
            raise ValueError(f"unsupported JWT algorithm(s): {unknown}")
        self.keys = keys
        self._issuer = issuer
        self._audience = frozenset(audience)
        self._algorithms = tuple(algorithms)
        self._leeway = leeway_s
        self._clock = clock

    async def verify(self, token: str) -> VerifiedToken:
        if len(token) > MAX_TOKEN_LENGTH:
            raise invalid_token(f"The token is longer than {MAX_TOKEN_LENGTH} characters.")
        if _JWT_SHAPE.fullmatch(token) is None:
            raise invalid_token("Malformed token: a JWT is three base64url segments separated by dots.")
        head, body, signature = token.split(".")
        header = _json_object(head, "header")
        alg = self._check_header(header)
        kid = header.get("kid")
        key = await self.keys.key(kid, alg)
        try:
            raw_signature = _b64decode(signature)
        except binascii.Error as exc:
            raise invalid_token("Malformed token: the signature is not base64url.") from exc
        message = f"{head}.{body}".encode("ascii")
        try:
            valid = key.Algorithm.verify(message, key.key, raw_signature)
        except (ValueError, TypeError) as exc:
            raise invalid_token(f"The token's signature cannot be checked: {exc}.") from exc
        if not valid:
            raise invalid_token(
                "The token's signature is invalid: it was altered, or signed by another key.",
                code="invalid_signature",
            )
        claims = _json_object(body, "payload")
        expires_at = self._check_claims(claims)
        return VerifiedToken(header=header, claims=claims, expires_at=expires_at)

    def _check_header(self, header: dict[str, Any]) -> str:
        alg = header.get("alg")
        if not isinstance(alg, str) or not alg:
            raise invalid_token("Malformed token: the header names no algorithm ('alg').")
        accepted = ", ".join(self._algorithms)
        if alg.lower() == "none":
            raise invalid_token(f"Unsigned tokens (alg 'none') are never accepted; accepted: {accepted}.")
        if alg.upper().startswith("HS"):
            raise invalid_token(
                f"Tokens signed with a shared secret ({alg[:10]}) are never accepted; accepted: {accepted}."
            )
        if alg not in self._algorithms:
            raise invalid_token(f"The token's algorithm {alg[:20]!r} is not accepted; accepted: {accepted}.")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise invalid_token("Malformed token: the 'kid' header is not a string.")
        if "crit" in header or header.get("b64") is not None:
            raise invalid_token("The token uses critical JWS extensions ('crit'), which are not supported.")
        return alg

    def _check_claims(self, claims: dict[str, Any]) -> float:
        now = self._clock()
        exp = _numeric_claim(claims, "exp")
        nbf = _numeric_claim(claims, "nbf")
        iat = _numeric_claim(claims, "iat")
        if exp is None:
            raise invalid_token("The token has no expiry ('exp'); only expiring tokens are accepted.")
        if exp <= now - self._leeway:
            raise invalid_token(f"The token expired at {_utc(exp)}.", code="token_expired")
        if nbf is not None and nbf > now + self._leeway:
            raise invalid_token(f"The token is not valid before {_utc(nbf)}.", code="token_not_yet_valid")
        if iat is not None and iat > now + self._leeway:
            raise invalid_token(
                f"The token was issued in the future ({_utc(iat)}); check the clocks of Socle and of the "
                "identity provider.",
                code="token_not_yet_valid",
            )
        issuer = claims.get("iss")
        if not isinstance(issuer, str):
            raise invalid_token("The token names no issuer ('iss').")
        if issuer != self._issuer:
            raise invalid_token(
                f"The token was issued by {issuer[:200]!r}, not by the configured issuer {self._issuer!r}."
            )
        self._check_audience(claims.get("aud"))
        return exp

    def _check_audience(self, audience: object) -> None:
        expected = " or ".join(repr(a) for a in sorted(self._audience))
        if audience is None or audience == [] or audience == "":
            raise invalid_token(f"The token names no audience ('aud'); it must name {expected}.")
        values = [audience] if isinstance(audience, str) else audience
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise invalid_token("Malformed token: the 'aud' claim is not a string or a list of strings.")
        if self._audience.isdisjoint(values):
            shown = ", ".join(repr(v[:100]) for v in values[:5])
            raise invalid_token(
                f"The token is meant for another audience ({shown}); Socle accepts {expected}.",
                code="invalid_audience",
            )
