"""Pure-ASGI middleware (cheaper than Starlette's BaseHTTPMiddleware on the hot path).

:class:`RequestContextMiddleware` gives every request an id (echoed in the ``x-request-id`` response
header and recorded with usage and audit; :func:`current_request` gives it, with the path, to code
that runs for the request but is not handed the request, such as the knowledge catalog's refusal
sink), and enforces the request-body size limit: bodies
are read up to the limit before the app sees them; a larger body (by ``content-length`` or by actual
bytes when chunked) is answered with 413 in OpenAI's error format and never reaches the app.
"""

from __future__ import annotations

import uuid
from contextvars import ContextVar

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from socle.errors import PayloadTooLargeError

__all__ = ["RequestContextMiddleware", "current_request", "new_request_id"]

_CURRENT: ContextVar[tuple[str, str] | None] = ContextVar("socle_request", default=None)


def new_request_id() -> str:
    return "req_" + uuid.uuid4().hex


def current_request() -> tuple[str, str] | None:
    """The id and path of the request being served (in its task and the tasks it starts), else ``None``."""
    return _CURRENT.get()


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int, upload_max_bytes: int | None = None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.upload_max_bytes = upload_max_bytes or max_body_bytes
        """The limit of document uploads (``/v1/collections/.../documents...``), usually larger."""

    def _limit(self, scope: Scope) -> int:
        path: str = scope.get("path", "")
        if path.startswith("/v1/collections/") and "/documents" in path:
            return self.upload_max_bytes
        return self.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        token = _CURRENT.set((request_id, scope.get("path", "")))
        try:
            await self._serve(scope, receive, send, request_id)
        finally:
            _CURRENT.reset(token)

    async def _serve(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        if scope["method"] in ("POST", "PUT", "PATCH"):
            limit = self._limit(scope)
            body = await self._read_body(scope, receive, limit)
            if body is None:
                await self._too_large(send_with_id, limit)
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, send_with_id)

    async def _read_body(self, scope: Scope, receive: Receive, limit: int) -> bytes | None:
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _too_large(self, send: Send, limit: int) -> None:
        error = PayloadTooLargeError(f"Request body exceeds the limit of {limit} bytes.")
        payload = orjson.dumps(error.to_dict())
        await send(
            {
                "type": "http.response.start",
                "status": error.status_code,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
