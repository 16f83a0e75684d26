"""Signed checkpoints: the log's size and root hash, signed with Ed25519, in the C2SP formats.

A checkpoint (https://c2sp.org/tlog-checkpoint) is the text::

    <origin>\\n<tree size, decimal>\\n<root hash, base64>\\n

inside a signed note (https://c2sp.org/signed-note): the text, a blank line, then one line per
signature, ``— <key name> <base64(4-byte key hash || signature)>``. The key hash is the first four
bytes of ``SHA-256(name || 0x0A || 0x01 || public key)`` (0x01 names Ed25519), and the signature
covers the text exactly. A verifier key is written ``<name>+<key hash, hex>+<base64(0x01 || public
key)>``, as Go's ``golang.org/x/mod/sumdb/note`` and every transparency-log tool read it, so a
checkpoint of Socle's log can be checked with those tools too.

Signing goes through the small :class:`Signer` protocol; :class:`Ed25519Signer` keeps its key in a
0600 file (``PRIVATE+KEY+<name>+<hash>+<base64(0x01 || seed)>``, the same tools' format). A KMS or
HSM signer implements the same three members.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from socle.errors import ConfigError
from socle.governance.audit.keys import load_or_create_secret

__all__ = [
    "Checkpoint",
    "Ed25519Signer",
    "NoteError",
    "NoteVerifier",
    "Signer",
    "key_hash",
    "load_signer",
    "open_note",
    "sign_note",
    "verifier_key",
    "write_witness",
]

_ED25519 = b"\x01"
_DASH = "\u2014 "
_NAME = re.compile(r"^[^\s+]+$")


class NoteError(ValueError):
    """A note or checkpoint is malformed, or no trusted signature verifies it."""


class Signer(Protocol):
    """What signs checkpoints: a name, an Ed25519 public key and a signing operation."""

    @property
    def name(self) -> str: ...

    @property
    def public_key(self) -> bytes: ...

    def sign(self, message: bytes) -> bytes: ...


def key_hash(name: str, public_key: bytes) -> bytes:
    """The 4-byte key id of signed notes."""
    return hashlib.sha256(name.encode() + b"\n" + _ED25519 + public_key).digest()[:4]


def verifier_key(name: str, public_key: bytes) -> str:
    """The verifier key string: ``<name>+<hex key hash>+<base64(0x01 || public key)>``."""
    return f"{name}+{key_hash(name, public_key).hex()}+{base64.b64encode(_ED25519 + public_key).decode()}"


def _check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"invalid key name {name!r}: no spaces and no '+'")
    return name


class Ed25519Signer:
    """An Ed25519 key held in memory (loaded from its 0600 file by :func:`load_signer`)."""

    def __init__(self, name: str, seed: bytes) -> None:
        self._name = _check_name(name)
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        self._seed = seed
        self._public = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def name(self) -> str:
        return self._name

    @property
    def public_key(self) -> bytes:
        return self._public

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def private_key_string(self) -> str:
        """``PRIVATE+KEY+<name>+<hex key hash>+<base64(0x01 || seed)>``."""
        encoded = base64.b64encode(_ED25519 + self._seed).decode()
        return f"PRIVATE+KEY+{self._name}+{key_hash(self._name, self._public).hex()}+{encoded}"

    @classmethod
    def from_private_key_string(cls, text: str) -> Ed25519Signer:
        parts = text.strip().split("+", 4)  # base64 may hold "+"
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
            raise ValueError("not a PRIVATE+KEY+<name>+<hash>+<key> string")
        try:
            raw = base64.b64decode(parts[4], validate=True)
        except binascii.Error as exc:
            raise ValueError("the private key is not base64") from exc
        if len(raw) != 33 or raw[:1] != _ED25519:
            raise ValueError("not an Ed25519 private key")
        signer = cls(parts[2], raw[1:])
        if key_hash(signer.name, signer.public_key).hex() != parts[3]:
            raise ValueError("the private key's hash does not match its key")
        return signer

    @property
    def verifier(self) -> NoteVerifier:
        return NoteVerifier(verifier_key(self.name, self.public_key))


def load_signer(path: Path, name: str | None = None) -> Ed25519Signer:
    """The signing key in ``path``, created (0600) with a new key named ``name`` if missing; the default
    name is ``socle-audit/<random>``, unique per log."""

    def create() -> bytes:
        key_name = name or f"socle-audit/{secrets.token_hex(4)}"
        return Ed25519Signer(key_name, secrets.token_bytes(32)).private_key_string().encode() + b"\n"

    data = load_or_create_secret(path, create)
    try:
        return Ed25519Signer.from_private_key_string(data.decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"the audit signing key {path} is not valid: {exc}") from exc


class NoteVerifier:
    """Checks signatures of one named key, given as a verifier key string."""

    def __init__(self, vkey: str) -> None:
        parts = vkey.strip().split("+", 2)  # base64 may hold "+"
        if len(parts) != 3:
            raise NoteError("a verifier key is <name>+<hash>+<key>")
        name, hash_hex, encoded = parts
        try:
            raw = base64.b64decode(encoded, validate=True)
            expected = bytes.fromhex(hash_hex)
        except (binascii.Error, ValueError) as exc:
            raise NoteError("the verifier key is not well encoded") from exc
        if len(raw) != 33 or raw[:1] != _ED25519 or len(expected) != 4:
            raise NoteError("the verifier key is not an Ed25519 key")
        if key_hash(name, raw[1:]) != expected:
            raise NoteError("the verifier key's hash does not match its key")
        self.name = name
        self.key_hash = expected
        self.public_key = raw[1:]
        self._key = Ed25519PublicKey.from_public_bytes(raw[1:])
        self.text = vkey.strip()

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            self._key.verify(signature, message)
        except InvalidSignature:
            return False
        return True


def sign_note(text: str, signer: Signer) -> str:
    """The signed note of ``text`` (which must end with a newline)."""
    if not text.endswith("\n") or "\n\n" in text:
        raise ValueError("a note's text ends with a newline and has no blank line")
    signature = signer.sign(text.encode())
    blob = base64.b64encode(key_hash(signer.name, signer.public_key) + signature).decode()
    return f"{text}\n{_DASH}{signer.name} {blob}\n"


def open_note(note: str, verifier: NoteVerifier) -> str:
    """The text of ``note`` if ``verifier``'s key signed it; raises :class:`NoteError` otherwise."""
    text, sep, signatures = note.rpartition("\n\n")
    if not sep or not note.endswith("\n"):
        raise NoteError("malformed note: no blank line before the signatures")
    text += "\n"
    found = False
    for line in signatures.splitlines():
        if not line.startswith(_DASH):
            raise NoteError(f"malformed signature line {line!r}")
        name, _, blob = line[len(_DASH) :].partition(" ")
        try:
            raw = base64.b64decode(blob, validate=True)
        except binascii.Error as exc:
            raise NoteError("malformed signature: not base64") from exc
        if len(raw) < 5:
            raise NoteError("malformed signature: too short")
        if name != verifier.name or raw[:4] != verifier.key_hash:
            continue  # another key's signature (a witness's cosignature, say)
        if not verifier.verify(text.encode(), raw[4:]):
            raise NoteError(f"the signature of {name} does not verify")
        found = True
    if not found:
        raise NoteError(f"the note has no signature by {verifier.name}+{verifier.key_hash.hex()}")
    return text


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A checkpoint's content: which log, how many entries, what root hash."""

    origin: str
    size: int
    root_hash: bytes

    def text(self) -> str:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root_hash).decode()}\n"

    def sign(self, signer: Signer) -> str:
        return sign_note(self.text(), signer)

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "":
            raise NoteError("a checkpoint has an origin, a size and a root hash, one per line")
        origin, size, root = lines[0], lines[1], lines[2]
        if not origin or not size.isdigit() or (size != "0" and size.startswith("0")):
            raise NoteError(f"malformed checkpoint header {origin!r} / {size!r}")
        try:
            root_hash = base64.b64decode(root, validate=True)
        except binascii.Error as exc:
            raise NoteError("the checkpoint's root hash is not base64") from exc
        if len(root_hash) != 32:
            raise NoteError("the checkpoint's root hash is not 32 bytes")
        return cls(origin, int(size), root_hash)

    @classmethod
    def open(cls, note: str, verifier: NoteVerifier) -> Checkpoint:
        """Verify ``note``'s signature, then parse its checkpoint."""
        return cls.parse(open_note(note, verifier))


def write_witness(directory: Path, size: int, note: str) -> None:
    """Copy a signed checkpoint to the witness directory: ``checkpoint.<size>``, and ``checkpoint`` (the
    latest) unless a larger one is already there; each file is written atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    names = [f"checkpoint.{size:012d}"]
    try:
        latest = (directory / "checkpoint").read_text(encoding="utf-8").split("\n")[1]
    except (OSError, IndexError):
        latest = ""
    if not latest.isdigit() or int(latest) <= size:
        names.append("checkpoint")
    for name in names:
        temporary = directory / f".{name}.{os.getpid()}.tmp"
        temporary.write_text(note, encoding="utf-8")
        os.replace(temporary, directory / name)
