"""A small OAuth 2 / OIDC authorisation server on loopback, for browser tests of the console's SSO.

It does what an identity provider such as Keycloak does for a public client using the authorisation
code flow with PKCE (RFC 7636), and nothing more:

- ``GET /authorize`` checks ``response_type=code``, the client id, the registered redirect URI and an
  S256 ``code_challenge``, then approves the configured user at once (no login form) and redirects to
  the redirect URI with ``code`` and ``state``.
- ``POST /token`` (form-encoded ``grant_type=authorization_code``) accepts each code once, within a
  minute, for the same client id and redirect URI, and only with the ``code_verifier`` whose SHA-256
  is the challenge; it answers an RS256 access token (``aud`` the API's audience) and an ID token
  (``aud`` the client id), signed by :class:`socle.testing.oidc.FakeIdentityProvider`. Errors are
  RFC 6749 JSON (``invalid_grant``, ``invalid_client``...). The console's origin gets CORS headers.
- ``GET /jwks`` serves the public keys.

The issuer is the server's own base URL (``http://127.0.0.1:<port>``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from socle.testing.oidc import FakeIdentityProvider

__all__ = ["OIDCTestProvider", "s256"]

_CODE_LIFETIME_S = 60.0


def s256(verifier: str) -> str:
    """The S256 code challenge of a PKCE code verifier."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass
class _Grant:
    challenge: str
    client_id: str
    redirect_uri: str
    scope: str
    expires: float


@dataclass
class OIDCTestProvider:
    """See the module docs. ``claims`` are the approved user's (``sub``, ``preferred_username``,
    ``groups``...); ``origin`` is the console's origin (CORS on ``/token``)."""

    client_id: str
    redirect_uri: str
    claims: dict[str, Any]
    audience: str = "socle"
    origin: str | None = None
    issuer: str = ""
    tokens: FakeIdentityProvider | None = None
    _grants: dict[str, _Grant] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def authorization_endpoint(self) -> str:
        return self.issuer + "/authorize"

    @property
    def token_endpoint(self) -> str:
        return self.issuer + "/token"

    @property
    def jwks_url(self) -> str:
        return self.issuer + "/jwks"

    # The protocol ---------------------------------------------------------------------------------
    def authorize(self, query: dict[str, str]) -> tuple[int, dict[str, str], dict[str, Any] | None]:
        """``(status, headers, error body)`` of an authorisation request."""
        if query.get("client_id") != self.client_id:
            return 400, {}, _error("invalid_client", "unknown client_id")
        if query.get("redirect_uri") != self.redirect_uri:
            return 400, {}, _error("invalid_request", "redirect_uri is not registered for this client")
        if query.get("response_type") != "code":
            return 400, {}, _error("unsupported_response_type", "only the code flow is supported")
        challenge = query.get("code_challenge", "")
        if query.get("code_challenge_method") != "S256" or len(challenge) != 43:
            return 400, {}, _error("invalid_request", "an S256 code_challenge is required (PKCE)")
        code = secrets.token_urlsafe(32)
        with self._lock:
            self._grants[code] = _Grant(
                challenge,
                self.client_id,
                self.redirect_uri,
                query.get("scope", ""),
                time.time() + _CODE_LIFETIME_S,
            )
        params = {"code": code, **({"state": query["state"]} if "state" in query else {})}
        return 302, {"Location": f"{self.redirect_uri}?{urlencode(params)}"}, None

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """``(status, JSON body)`` of a token request."""
        if form.get("grant_type") != "authorization_code":
            return 400, _error("unsupported_grant_type", "only authorization_code is supported")
        with self._lock:
            grant = self._grants.pop(form.get("code", ""), None)  # a code is used once, right or wrong
        if grant is None or grant.expires < time.time():
            return 400, _error("invalid_grant", "unknown, used or expired code")
        if form.get("client_id") != grant.client_id:
            return 400, _error("invalid_client", "the code was issued to another client")
        if form.get("redirect_uri") != grant.redirect_uri:
            return 400, _error("invalid_grant", "redirect_uri differs from the authorisation request's")
        verifier = form.get("code_verifier", "")
        if not 43 <= len(verifier) <= 128 or not hmac.compare_digest(s256(verifier), grant.challenge):
            return 400, _error("invalid_grant", "code_verifier does not match the code_challenge")
        assert self.tokens is not None
        claims = {k: v for k, v in self.claims.items() if k != "sub"}
        sub = str(self.claims.get("sub", "user"))
        access = self.tokens.token(sub, **claims, scope=grant.scope)
        identity = self.tokens.token(sub, **claims, aud=self.client_id, typ="ID")
        body = {
            "access_token": access,
            "id_token": identity,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": grant.scope,
        }
        return 200, body

    # Serving --------------------------------------------------------------------------------------
    @contextmanager
    def serve(self) -> Iterator[OIDCTestProvider]:
        """Listen on a free loopback port until the block ends; the issuer becomes its base URL."""
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # the name http.server calls
                url = urlsplit(self.path)
                if url.path == "/jwks":
                    assert provider.tokens is not None
                    self._json(200, provider.tokens.jwks())
                elif url.path == "/authorize":
                    status, headers, error = provider.authorize(_single(parse_qs(url.query)))
                    if error is not None:
                        self._json(status, error, headers)
                    else:
                        self._send(status, b"", headers)
                else:
                    self._json(404, _error("not_found", url.path))

            def do_POST(self) -> None:
                if urlsplit(self.path).path != "/token":
                    self._json(404, _error("not_found", self.path))
                    return
                length = int(self.headers.get("content-length") or 0)
                form = _single(parse_qs(self.rfile.read(length).decode("utf-8")))
                self._json(*provider.token(form))

            def do_OPTIONS(self) -> None:
                self._send(204, b"", {"Access-Control-Allow-Methods": "POST", "Access-Control-Max-Age": "60"})

            def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self._send(status, data, {"Content-Type": "application/json", **(headers or {})})

            def _send(self, status: int, data: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                origin = self.headers.get("origin")
                if provider.origin is not None and origin == provider.origin:
                    self.send_header("Access-Control-Allow-Origin", origin)
                    self.send_header("Access-Control-Allow-Headers", "Content-Type")
                    self.send_header("Vary", "Origin")
                self.send_header("Cache-Control", "no-store")
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self.issuer = f"http://127.0.0.1:{server.server_address[1]}"
        self.tokens = FakeIdentityProvider(self.issuer, self.audience)
        self.tokens.add_key("RSA", kid="test-idp-1")
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="socle-test-idp", daemon=True
        )
        thread.start()
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=10)


def _single(values: dict[str, list[str]]) -> dict[str, str]:
    return {k: v[0] for k, v in values.items() if v}


def _error(code: str, description: str) -> dict[str, str]:
    return {"error": code, "error_description": description}
