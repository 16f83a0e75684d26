"""Keyed hashes that stand for personal data in the log (GDPR Art. 4(5) pseudonymisation).

The log must show *that* a given prompt was sent and answered, and let an auditor who holds the text
check it (recompute the HMAC and compare), without holding the text itself. A plain hash would let
anyone confirm guesses of short texts; an HMAC with a secret key (32 random bytes in a 0600 file,
``audit-hmac.key``) does not. Replicas must share the key for their HMACs to be comparable.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path
from typing import Any

from socle.governance.audit.canonical import canonicalize
from socle.governance.audit.keys import load_or_create_secret

__all__ = ["Pseudonymizer"]


class Pseudonymizer:
    """HMAC-SHA256 of texts and JSON values, written ``hmac-sha256:<hex>``."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("the HMAC key must have at least 32 bytes")
        self._key = key

    @classmethod
    def from_file(cls, path: Path) -> Pseudonymizer:
        return cls(load_or_create_secret(path, lambda: secrets.token_bytes(32)))

    def text(self, value: str | bytes) -> str:
        data = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value
        return "hmac-sha256:" + hmac.new(self._key, data, hashlib.sha256).hexdigest()

    def json(self, value: Any) -> str:
        """The HMAC of a JSON value's canonical form (chat messages, lists of inputs)."""
        return self.text(canonicalize(value))
