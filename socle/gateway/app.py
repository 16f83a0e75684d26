"""``create_app(settings)``: builds the ASGI app. Importing this module does nothing.

The lifespan owns every client, pool and engine (:class:`socle.gateway.services.Services`). One place
maps errors to OpenAI's error format: :class:`socle.errors.SocleError` subclasses carry their status,
validation errors become 400 with the offending field in ``param``, unknown routes 404, and anything
else is a bug, answered with a 500 that names the request id (the traceback goes to the log).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from socle.config import Settings
from socle.console import mount_console
from socle.errors import SocleError
from socle.gateway.middleware import RequestContextMiddleware
from socle.gateway.responses import JSONBytes
from socle.gateway.routes import (
    access,
    account,
    admin,
    audit,
    conversations,
    engines,
    feedback,
    guard_policies,
    guardrails,
    health,
    knowledge,
    openai,
    quotas,
    usage,
)
from socle.gateway.services import Services

__all__ = ["create_app"]

log = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    *,
    services: Services | None = None,
    on_started: Callable[[Services], None] | None = None,
    close_services: bool = False,
) -> FastAPI:
    """Build the app. Its lifespan starts the services, unless started ``services`` are passed in (then
    the caller owns them, unless ``close_services``: then the lifespan's end closes them). ``on_started``
    is called once they are up (the CLI prints the admin key)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = services is None or close_services
        running = await Services.start(settings) if services is None else services
        app.state.services = running
        if on_started is not None:
            on_started(running)
        try:
            yield
        finally:
            if owned:
                await running.aclose()

    app = FastAPI(
        title="Socle",
        summary="Sovereign AI platform: OpenAI-compatible API over local and remote engines.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.include_router(openai.router)
    app.include_router(admin.router)
    app.include_router(engines.router)
    app.include_router(access.router)
    app.include_router(usage.router)
    app.include_router(quotas.router)
    app.include_router(guardrails.router)
    app.include_router(guard_policies.router)
    app.include_router(audit.router)
    app.include_router(knowledge.router)
    app.include_router(account.router)
    app.include_router(conversations.router)
    app.include_router(feedback.router)
    app.include_router(health.router)
    mount_console(app, settings.console)
    app.add_exception_handler(SocleError, _socle_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected_error)
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=settings.max_request_bytes,
        upload_max_bytes=settings.knowledge.max_upload_bytes,
    )
    return app


def _error(status: int, message: str, type_: str, code: str | None, param: str | None = None) -> Response:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return JSONBytes(body, status_code=status)


async def _socle_error(request: Request, exc: SocleError) -> Response:
    response = JSONBytes(exc.to_dict(), status_code=exc.status_code, headers=exc.headers)
    return response


async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
    errors = exc.errors()
    first: dict[str, Any] = (
        dict(errors[0]) if errors else {"loc": (), "msg": "invalid request", "type": "invalid"}
    )
    if first.get("type") == "json_invalid":
        return _error(
            400,
            f"Malformed JSON body: {(first.get('ctx') or {}).get('error', 'cannot parse')}.",
            "invalid_request_error",
            "invalid_json",
        )
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = ".".join(loc) or None
    if first.get("type") == "missing":
        message = f"Missing required parameter: '{param}'."
    else:
        message = f"Invalid value for '{param}': {first.get('msg')}." if param else str(first.get("msg"))
    if len(errors) > 1:
        message += f" ({len(errors) - 1} more error{'s' if len(errors) > 2 else ''})"
    return _error(400, message, "invalid_request_error", "invalid_request", param)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    if exc.status_code == 404:
        message = f"Unknown path {request.url.path}."
    elif exc.status_code == 405:
        message = f"Method {request.method} is not allowed on {request.url.path}."
    else:
        message = str(exc.detail)
    type_ = "invalid_request_error" if exc.status_code < 500 else "server_error"
    response = _error(exc.status_code, message, type_, None)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    request_id = getattr(request.state, "request_id", "?")
    log.exception("unexpected error in request %s", request_id, exc_info=exc)
    return _error(
        500, f"Internal error (request {request_id}); this is a bug.", "server_error", "internal_error"
    )
