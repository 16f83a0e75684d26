"""Signed notes and checkpoints in the C2SP formats, checked against the Go sumdb/note example."""

from __future__ import annotations

import base64
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from socle.errors import ConfigError
from socle.governance.audit.checkpoint import (
    Checkpoint,
    Ed25519Signer,
    NoteError,
    NoteVerifier,
    load_signer,
    open_note,
    sign_note,
    verifier_key,
    write_witness,
)

# The example of golang.org/x/mod/sumdb/note (its package documentation and tests).
GO_PRIVATE = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VERIFIER = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT + "\n\u2014 PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)


def test_the_go_note_example() -> None:
    signer = Ed25519Signer.from_private_key_string(GO_PRIVATE)
    assert verifier_key(signer.name, signer.public_key) == GO_VERIFIER
    assert signer.private_key_string() == GO_PRIVATE
    assert sign_note(GO_TEXT, signer) == GO_NOTE  # Ed25519 is deterministic
    assert open_note(GO_NOTE, NoteVerifier(GO_VERIFIER)) == GO_TEXT


@pytest.mark.parametrize(
    "tampered",
    [
        GO_NOTE.replace("cryptography", "cryptographY"),
        GO_NOTE.replace("x08go/ZJ", "x08go/ZK"),
        GO_NOTE.replace("\n\n", "\n"),
        GO_NOTE.replace("\u2014 PeterNeumann", "\u2014 Other"),  # no signature by the trusted key
        GO_NOTE.replace("\u2014 ", "- "),
    ],
)
def test_tampered_notes_do_not_open(tampered: str) -> None:
    with pytest.raises(NoteError):
        open_note(tampered, NoteVerifier(GO_VERIFIER))


def test_another_keys_cosignature_is_ignored_but_a_bad_own_signature_is_not() -> None:
    other = Ed25519Signer("witness.example", bytes(32))
    cosigned = GO_NOTE + sign_note(GO_TEXT, other).split("\n\n")[1]
    assert open_note(cosigned, NoteVerifier(GO_VERIFIER)) == GO_TEXT
    assert open_note(cosigned, other.verifier) == GO_TEXT
    with pytest.raises(NoteError, match="no signature"):
        open_note(GO_NOTE, other.verifier)


@pytest.mark.parametrize(
    "vkey",
    [
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # wrong hash
        "PeterNeumann+c74f20a3+ApPc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # wrong algorithm byte
        "PeterNeumann+c74f20a3",
        "PeterNeumann+zz+ARpc",
    ],
)
def test_bad_verifier_keys(vkey: str) -> None:
    with pytest.raises(NoteError):
        NoteVerifier(vkey)


def test_checkpoint_format_and_round_trip() -> None:
    signer = Ed25519Signer("example.com/log", bytes(range(32)))
    checkpoint = Checkpoint("example.com/log", 8, bytes(32))
    note = checkpoint.sign(signer)
    assert note.startswith(
        "example.com/log\n8\n" + base64.b64encode(bytes(32)).decode() + "\n\n\u2014 example.com/log "
    )
    assert Checkpoint.open(note, signer.verifier) == checkpoint
    for bad in ["example.com/log\n08\nAAAA\n", "example.com/log\n8\nAAAA\n", "\n8\nAAAA\n", "x\n8\n"]:
        with pytest.raises(NoteError):
            Checkpoint.parse(bad)


def test_signing_key_file_is_owner_only_and_shared_by_concurrent_starts(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "audit-signing.key"
    with ThreadPoolExecutor(8) as pool:
        signers = list(pool.map(lambda _: load_signer(path, "socle.test/audit"), range(16)))
    assert len({s.public_key for s in signers}) == 1
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().startswith("PRIVATE+KEY+socle.test/audit+")
    assert load_signer(path, "ignored-when-the-file-exists").name == "socle.test/audit"
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_signer(path)
    default = load_signer(tmp_path / "other.key")
    assert default.name.startswith("socle-audit/")


def test_witness_directory_keeps_every_checkpoint_and_the_latest(tmp_path: Path) -> None:
    signer = Ed25519Signer("w", bytes(32))
    notes = {n: Checkpoint("w", n, bytes(32)).sign(signer) for n in (5, 9, 7)}
    for n, note in notes.items():
        write_witness(tmp_path, n, note)
    assert (tmp_path / "checkpoint").read_text() == notes[9]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint",
        "checkpoint.000000000005",
        "checkpoint.000000000007",
        "checkpoint.000000000009",
    ]
