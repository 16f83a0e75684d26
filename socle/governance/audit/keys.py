"""Secret files of the audit trail (signing key, HMAC key, vault key): created once, owner-only.

Each secret lives in its own file in the key directory (the data dir unless configured), created with
mode 0600 atomically (``O_EXCL``): when several processes start at once, one creates the file and the
others read it. A secret file that others may read is refused: these keys are what make the log's
signatures and pseudonyms trustworthy. Replicas on several machines must share the same files (copy
them, or mount the directory); a KMS can replace the signing key later (see
:class:`socle.governance.audit.checkpoint.Signer`).
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

from socle.errors import ConfigError

__all__ = ["load_or_create_secret"]


def load_or_create_secret(path: Path, create: Callable[[], bytes]) -> bytes:
    """The content of the secret file ``path``; if it does not exist, ``create()`` is written to it."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read(path)
    except OSError as exc:
        raise ConfigError(f"cannot create the audit key file {path}: {exc}") from exc
    data = create()
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
    except OSError as exc:
        raise ConfigError(f"cannot write the audit key file {path}: {exc}") from exc
    return data


def _read(path: Path) -> bytes:
    for _ in range(100):  # another process may be writing it right now (created, not yet filled)
        try:
            mode = path.stat().st_mode
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read the audit key file {path}: {exc}") from exc
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(
                f"the audit key file {path} may be read by others (mode {stat.filemode(mode)}): "
                f"run 'chmod 600 {path}'"
            )
        if data:
            return data
        time.sleep(0.01)
    raise ConfigError(f"the audit key file {path} is empty")
