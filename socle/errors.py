"""One exception tree for Socle.

Every error that can reach a client is a :class:`SocleError`. Each subclass fixes the HTTP status, the
OpenAI error ``type`` and a default ``code``; a single handler in :mod:`socle.gateway.app` maps the tree
to OpenAI-style JSON::

    {"error": {"message": "...", "type": "invalid_request_error", "param": null, "code": "..."}}

Foreign exceptions are translated at the boundary with ``raise SocleError(...) from exc``. Anything
that escapes this tree is a bug and is answered with a 500 that says so.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "AuditUnavailableError",
    "AuthenticationError",
    "BadRequestError",
    "BudgetExceededError",
    "ConfigError",
    "ConflictError",
    "ContextLengthError",
    "EngineError",
    "EngineUnavailableError",
    "GuardrailBlockedError",
    "IdentityProviderUnavailable",
    "ModelNotFoundError",
    "ModelVerificationError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitError",
    "ResidencyError",
    "SocleError",
    "StorageError",
    "UnsupportedError",
]


class SocleError(Exception):
    """Base of every error Socle raises on purpose."""

    status_code: ClassVar[int] = 500
    error_type: ClassVar[str] = "server_error"
    default_code: ClassVar[str | None] = None

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail
        """Operator-facing detail (hosts, paths, driver messages): logged and shown by the CLI, never
        sent to API clients."""
        self.code = code if code is not None else self.default_code
        self.param = param
        self.headers = headers or {}
        self.audited = False
        """Set once this refusal is in the audit log, so that no later step records it again."""

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI wire form of this error."""
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class ConfigError(SocleError):
    """The configuration is invalid; raised at start-up, never while serving."""

    default_code = "config_error"


class ModelVerificationError(ConfigError):
    """A model file is missing or its sha256 does not match the configured one."""

    default_code = "model_verification_failed"


class StorageError(SocleError):
    """The database cannot be read or written."""

    status_code = 503
    default_code = "storage_unavailable"


class BadRequestError(SocleError):
    status_code = 400
    error_type = "invalid_request_error"
    default_code = "invalid_request"


class ConflictError(BadRequestError):
    """The request conflicts with what is stored: a name already taken, a row still in use."""

    status_code = 409
    default_code = "conflict"


class ContextLengthError(BadRequestError):
    default_code = "context_length_exceeded"


class UnsupportedError(BadRequestError):
    """The request asks for something the chosen model or engine does not do."""

    default_code = "unsupported"


class GuardrailBlockedError(BadRequestError):
    """A guardrail policy blocks the request or its answer; the message names the rule."""

    default_code = "guardrail_blocked"


class AuthenticationError(SocleError):
    status_code = 401
    error_type = "authentication_error"
    default_code = "invalid_api_key"


class PermissionDeniedError(SocleError):
    status_code = 403
    error_type = "permission_error"
    default_code = "permission_denied"


class ResidencyError(PermissionDeniedError):
    """The request's data classification allows no zone that an engine of its model is in (403)."""

    default_code = "residency_denied"


class NotFoundError(SocleError):
    status_code = 404
    error_type = "invalid_request_error"
    default_code = "not_found"


class ModelNotFoundError(NotFoundError):
    default_code = "model_not_found"


class PayloadTooLargeError(SocleError):
    status_code = 413
    error_type = "invalid_request_error"
    default_code = "request_too_large"


class RateLimitError(SocleError):
    status_code = 429
    error_type = "rate_limit_error"
    default_code = "rate_limit_exceeded"


class BudgetExceededError(RateLimitError):
    """A budget cannot admit the request's worst case (OpenAI's ``insufficient_quota``, also a 429)."""

    error_type = "insufficient_quota"
    default_code = "insufficient_quota"


class EngineError(SocleError):
    """An engine failed while serving a request (upstream error, crash, bad answer)."""

    status_code = 502
    error_type = "server_error"
    default_code = "engine_error"


class EngineUnavailableError(SocleError):
    """No engine can take the request now (all saturated or unhealthy); the client may retry."""

    status_code = 503
    error_type = "server_error"
    default_code = "engine_unavailable"


class IdentityProviderUnavailable(SocleError):
    """The identity provider's signing keys cannot be loaded and none are known: no SSO token can be
    checked until they can (503; API keys keep working)."""

    status_code = 503
    error_type = "server_error"
    default_code = "identity_provider_unavailable"


class AuditUnavailableError(SocleError):
    """The audit log cannot be written: governed requests are refused until it can (fail closed)."""

    status_code = 503
    error_type = "server_error"
    default_code = "audit_unavailable"
