"""Sealing personal texts at rest: the audit vault's AES-256-GCM, under a key of its own.

A sealed value is ``nonce (12 bytes) || ciphertext``, bound to the id of the row that holds it (the
associated data), so a ciphertext copied into another row does not open. The key is ``chat-vault.key``
in the audit key directory (``audit.key_dir``, default the data dir), created 0600 at first start;
replicas share it as they share the audit keys. Losing it makes the stored history unreadable, which
is also how to erase it all at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from socle.config import Settings
from socle.governance.audit.vault import Vault

__all__ = ["KEY_FILE", "Sealer"]

KEY_FILE = "chat-vault.key"
_NONCE = 12


class Sealer:
    """Seals and opens JSON objects bound to a row id."""

    def __init__(self, vault: Vault) -> None:
        self._vault = vault

    @classmethod
    def from_file(cls, path: Path) -> Sealer:
        return cls(Vault.from_file(path))

    @classmethod
    def for_settings(cls, settings: Settings) -> Sealer:
        key_dir = settings.audit.key_dir or settings.resolved_data_dir
        return cls.from_file(key_dir.expanduser() / KEY_FILE)

    def seal(self, row_id: str, value: dict[str, Any]) -> bytes:
        nonce, ciphertext = self._vault.seal(row_id, value)
        return nonce + ciphertext

    def open(self, row_id: str, sealed: bytes) -> dict[str, Any]:
        """Raises :class:`socle.governance.audit.vault.VaultError` if it does not open."""
        data = bytes(sealed)
        return self._vault.open(row_id, data[:_NONCE], data[_NONCE:])
