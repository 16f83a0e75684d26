"""The web console: a single-page app served by ``socle serve`` at ``/``, air-gapped.

Every script, style and font is a file in ``static/`` (vendored: Preact and htm, the Inter font; see
``scripts/vendor-console.sh``); nothing is built at install time and nothing is fetched from a CDN. The
pages call the same public API as every other client, with the user's key or SSO token: the console has
no privileges of its own. A strict Content-Security-Policy allows only this origin (and the identity
provider's token endpoint, for SSO).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, FastAPI
from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from socle import __version__
from socle.config import ConsoleSettings
from socle.gateway.deps import public
from socle.gateway.responses import JSONBytes

__all__ = ["STATIC", "mount_console"]

STATIC = Path(__file__).parent / "static"


class _Static(StaticFiles):
    """Vendored assets: cached by the browser, revalidated (an upgrade changes them in place)."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["Cache-Control"] = "no-cache"
        response.headers.update(_SECURITY)
        return response


_SECURITY = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def content_security_policy(settings: ConsoleSettings) -> str:
    connect = ["'self'"]
    if settings.oidc_token_endpoint:
        parts = urlsplit(settings.oidc_token_endpoint)
        connect.append(f"{parts.scheme}://{parts.netloc}")
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "font-src 'self'",
            f"connect-src {' '.join(connect)}",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'self'",
        ]
    )


def mount_console(app: FastAPI, settings: ConsoleSettings) -> None:
    """Serve the console at ``/`` (the app shell) and ``/console/`` (assets and public config)."""
    if not settings.enabled:
        return
    headers = {**_SECURITY, "Content-Security-Policy": content_security_policy(settings)}
    router = APIRouter(tags=["Console"], dependencies=[Depends(public)], include_in_schema=False)

    @router.get("/")
    async def shell() -> Response:
        return FileResponse(STATIC / "index.html", headers={**headers, "Cache-Control": "no-cache"})

    @router.get("/console/config.json")
    async def config() -> Response:
        return JSONBytes(console_config(settings), headers={"Cache-Control": "no-cache"})

    app.include_router(router)
    app.mount("/console/static", _Static(directory=STATIC), name="console-static")


def console_config(settings: ConsoleSettings) -> dict[str, Any]:
    """What the browser needs before login: languages and, with SSO, the public client's endpoints."""
    sso = None
    if settings.sso:
        sso = {
            "client_id": settings.oidc_client_id,
            "authorization_endpoint": settings.oidc_authorization_endpoint,
            "token_endpoint": settings.oidc_token_endpoint,
            "scopes": settings.oidc_scopes,
            "token": settings.oidc_token,
        }
    return {
        "version": __version__,
        "default_language": settings.default_language,
        "languages": ["fr", "en"],
        "sso": sso,
    }
