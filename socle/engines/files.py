"""Model files: where they are and whether they are the ones the operator approved.

A model is named by a path, or by ``pkg:PACKAGE/RELATIVE`` for a file shipped inside an installed pip
package (located without importing the package). Before any load, the file's sha256 is compared with
the configured one; a mismatch refuses the start with a message that gives both hashes. Only GGUF and
safetensors weights are ever loaded.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

from socle.errors import ModelVerificationError

__all__ = ["resolve_model_path", "sha256_file", "verify_sha256"]

_CHUNK = 1 << 20


def resolve_model_path(spec: str) -> Path:
    """Turn a configured model location into a path on disk (not checked for existence)."""
    if spec.startswith("pkg:"):
        package, _, relative = spec[4:].partition("/")
        found = importlib.util.find_spec(package)
        if found is None or not found.submodule_search_locations:
            raise ModelVerificationError(
                f"model package {package!r} is not installed (model_path={spec!r}); install it with pip"
            )
        base = Path(next(iter(found.submodule_search_locations)))
        return base / relative if relative else base
    return Path(spec).expanduser()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str, *, what: str) -> str:
    """Check ``path`` against ``expected``; return the hash. Raise a clear error otherwise."""
    if not path.is_file():
        raise ModelVerificationError(f"{what}: model file not found: {path}")
    if path.suffix not in (".gguf", ".safetensors"):
        raise ModelVerificationError(f"{what}: only .gguf and .safetensors files are loaded, not {path.name}")
    actual = sha256_file(path)
    if actual != expected.lower():
        raise ModelVerificationError(
            f"{what}: sha256 mismatch for {path}: expected {expected.lower()}, found {actual}. "
            "Refusing to load a model file that is not the approved one."
        )
    return actual
