"""Governance: identity, and later roles, budgets, audit, residency and guardrails."""

from socle.governance.identity import (
    ApiKeyRecord,
    BootstrapResult,
    KeyStore,
    Principal,
    bootstrap,
    generate_api_key,
    hash_api_key,
)

__all__ = [
    "ApiKeyRecord",
    "BootstrapResult",
    "KeyStore",
    "Principal",
    "bootstrap",
    "generate_api_key",
    "hash_api_key",
]
