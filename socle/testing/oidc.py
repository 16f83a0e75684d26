"""A fake OIDC identity provider for tests and benchmarks: real keys, real signatures, a real JWKS.

:class:`FakeIdentityProvider` generates RSA and EC signing keys, mints tokens the way Keycloak does
(``iss``, ``aud``, ``sub``, ``exp``, ``iat``, ``preferred_username``, ``email``, ``groups``,
``realm_access.roles``), writes its JWKS to a file or serves it over HTTP on loopback
(:meth:`FakeIdentityProvider.serve`), and can forge the bad tokens a gateway must refuse (``alg:
none``, HS256 keyed with the public key, a tampered payload). Keys can be added and retired while the
JWKS is served, to exercise key rotation; ``jwks_requests`` counts the fetches.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

__all__ = ["FakeIdentityProvider", "SigningKey", "b64url"]

KeyKind = Literal["RSA", "EC"]


def b64url(data: bytes | dict[str, Any]) -> str:
    """base64url without padding, of bytes or of a JSON object."""
    raw = json.dumps(data, separators=(",", ":")).encode() if isinstance(data, dict) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

    def public_jwk(self) -> dict[str, Any]:
        public = self.private.public_key()
        if isinstance(public, rsa.RSAPublicKey):
            jwk: dict[str, Any] = RSAAlgorithm.to_jwk(public, as_dict=True)
        else:
            jwk = ECAlgorithm.to_jwk(public, as_dict=True)
        return {**jwk, "kid": self.kid, "alg": self.alg, "use": "sig"}

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


class FakeIdentityProvider:
    """Signs tokens like an OIDC identity provider; see the module docs."""

    def __init__(self, issuer: str = "https://sso.example.test/realms/acme", audience: str = "socle") -> None:
        self.issuer = issuer
        self.audience = audience
        self.keys: dict[str, SigningKey] = {}
        self.published: list[str] = []
        self.jwks_requests = 0
        self._lock = threading.Lock()
        self._count = 0

    # Keys ----------------------------------------------------------------------------------------
    def add_key(
        self, kind: KeyKind = "RSA", *, kid: str | None = None, publish: bool = True, rsa_bits: int = 2048
    ) -> SigningKey:
        """A new signing key (RSA → RS256, EC P-256 → ES256), published in the JWKS unless told not."""
        with self._lock:
            self._count += 1
            kid = kid or f"{kind.lower()}-{self._count}"
        private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
        if kind == "RSA":
            private = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
        else:
            private = ec.generate_private_key(ec.SECP256R1())
        key = SigningKey(kid=kid, alg="RS256" if kind == "RSA" else "ES256", private=private)
        with self._lock:
            self.keys[kid] = key
            if publish:
                self.published.append(kid)
        return key

    def publish(self, kid: str) -> None:
        with self._lock:
            if kid not in self.published:
                self.published.append(kid)

    def retire(self, kid: str) -> None:
        with self._lock:
            self.published.remove(kid)

    def jwks(self) -> dict[str, Any]:
        with self._lock:
            return {"keys": [self.keys[kid].public_jwk() for kid in self.published]}

    def write_jwks(self, path: Path) -> Path:
        path.write_text(json.dumps(self.jwks()))
        return path

    # Tokens --------------------------------------------------------------------------------------
    def claims(
        self, sub: str = "alice", *, lifetime_s: float = 300, now: float | None = None, **extra: Any
    ) -> dict[str, Any]:
        """Keycloak-like access-token claims; ``extra`` overrides or adds (``None`` removes a claim)."""
        issued = int(time.time() if now is None else now)
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": sub,
            "iat": issued,
            "exp": int(issued + lifetime_s),
            "jti": f"jti-{sub}-{issued}-{self._next()}",
            "typ": "Bearer",
            "preferred_username": sub,
            "email": f"{sub}@example.test",
        }
        claims.update(extra)
        return {k: v for k, v in claims.items() if v is not None}

    def token(self, sub: str = "alice", *, kid: str | None = None, **claims: Any) -> str:
        """A token signed by ``kid`` (default: the first published key); see :meth:`claims`."""
        key = self.keys[kid or self.published[0]]
        payload = self.claims(sub, **claims)
        return jwt.encode(payload, key.private, algorithm=key.alg, headers={"kid": key.kid})

    def sign(self, header: dict[str, Any], payload: dict[str, Any], kid: str | None = None) -> str:
        """A token with exactly this header and payload, signed by ``kid`` with its algorithm."""
        key = self.keys[kid or self.published[0]]
        message = f"{b64url(header)}.{b64url(payload)}"
        algorithm = jwt.get_algorithm_by_name(key.alg)
        return f"{message}.{b64url(algorithm.sign(message.encode(), key.private))}"

    def _next(self) -> int:
        with self._lock:
            self._count += 1
            return self._count

    # Serving the JWKS ----------------------------------------------------------------------------
    @contextmanager
    def serve(self, path: str = "/realms/acme/protocol/openid-connect/certs") -> Iterator[str]:
        """Serve the JWKS (as it is at each request) on a free loopback port; yields its URL."""
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # the name http.server calls
                if self.path != path:
                    self.send_error(404)
                    return
                with provider._lock:
                    provider.jwks_requests += 1
                body = json.dumps(provider.jwks()).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="socle-fake-idp", daemon=True
        )
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}{path}"
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=10)
