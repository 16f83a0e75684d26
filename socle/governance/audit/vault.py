"""The content vault: prompts and responses, kept only when a team's policy asks, encrypted.

Contents never enter the log (which holds their HMACs): they are rows of ``audit_contents``, one per
request, sealed with AES-256-GCM under a key in a 0600 file (``audit-vault.key``). The request id is
the associated data, so a ciphertext moved to another request's row does not open. Erasing a row (GDPR
Art. 17) removes the text and leaves the log, and so its verification, intact.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from socle.governance.audit.keys import load_or_create_secret

__all__ = ["Vault", "VaultError"]


class VaultError(ValueError):
    """A sealed content does not open (wrong key, wrong request, or altered)."""


class Vault:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the vault key is 32 bytes (AES-256)")
        self._aead = AESGCM(key)

    @classmethod
    def from_file(cls, path: Path) -> Vault:
        return cls(load_or_create_secret(path, lambda: AESGCM.generate_key(bit_length=256)))

    def seal(self, request_id: str, content: dict[str, Any]) -> tuple[bytes, bytes]:
        """``(nonce, ciphertext)`` of ``content``, bound to ``request_id``."""
        nonce = secrets.token_bytes(12)
        return nonce, self._aead.encrypt(nonce, orjson.dumps(content), request_id.encode())

    def open(self, request_id: str, nonce: bytes, ciphertext: bytes) -> dict[str, Any]:
        try:
            plain = self._aead.decrypt(nonce, ciphertext, request_id.encode())
        except InvalidTag as exc:
            raise VaultError(f"the stored content of {request_id} does not open") from exc
        content: dict[str, Any] = orjson.loads(plain)
        return content
