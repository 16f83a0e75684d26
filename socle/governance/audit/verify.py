"""Full verification of the log, from the database or from an export, without trusting either.

What is checked, in one pass over the entries in sequence order:

- numbering: sequence numbers are gapless from the pruned size, and each entry's content names its own
  number (a deleted, inserted, renumbered or reordered row shows here, named by its number);
- content: each entry is JSON and its leaf hash, recomputed, equals the stored one (a row edited without
  recomputing the hash shows here); the query columns (type, actor, team, request id) agree with it;
- tree and signatures: at every checkpoint size, the root recomputed from the entries equals the root
  in the checkpoint, whose signature verifies with the log's public key and whose size and origin are
  right (an edit *with* a recomputed hash, or a swapped or forged checkpoint, shows here, between the
  previous good checkpoint and this one);
- pruning: the frontier kept for pruned entries reproduces the signed root at the pruned size, and an
  ``audit.prune`` entry records it;
- the end: no checkpoint covers entries that are missing (truncation), and the head row agrees with
  the entries. Entries after the last checkpoint are reported as not yet signed.

The verifier needs only the public key (a verifier key string, ``audit.pub`` in an export); pass the
key obtained out of band (witness directory, a printout) to be independent of the database's copy.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from socle.governance.audit.checkpoint import Checkpoint, NoteError, NoteVerifier
from socle.governance.audit.merkle import Frontier
from socle.storage.dialects import configure_sqlite, sync_url

__all__ = [
    "CheckpointRecord",
    "Problem",
    "Report",
    "StoredState",
    "read_database",
    "read_export",
    "verify",
]

_MAX_PROBLEMS = 50
_sha256 = hashlib.sha256

Row = tuple[int | None, bytes, bytes | None, tuple[Any, ...] | None]
"""An entry to verify: (stored seq or None, entry bytes, stored leaf hash or None, stored columns
(type, actor, team, request id) or None)."""


@dataclass(frozen=True, slots=True)
class CheckpointRecord:
    size: int
    root_hash: bytes
    note: str


@dataclass(slots=True)
class StoredState:
    """What the store says besides the entries: checkpoints, pruning, head."""

    checkpoints: list[CheckpointRecord]
    pruned: Frontier = field(default_factory=Frontier)
    head: Frontier | None = None
    verifier_key: str | None = None
    head_error: str | None = None


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong: where (an entry's seq, or a checkpoint's size) and what."""

    message: str
    seq: int | None = None
    checkpoint: int | None = None

    def __str__(self) -> str:
        where = f"entry {self.seq}" if self.seq is not None else ""
        if self.checkpoint is not None:
            where = f"checkpoint {self.checkpoint}"
        return f"{where}: {self.message}" if where else self.message


@dataclass(slots=True)
class Report:
    entries: int = 0
    size: int = 0
    pruned_size: int = 0
    checkpoints_verified: int = 0
    signed_size: int = 0
    root_hash: bytes = b""
    problems: list[Problem] = field(default_factory=list)
    more_problems: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_bad_seq(self) -> int | None:
        return next((p.seq for p in self.problems if p.seq is not None), None)

    def add(self, problem: Problem) -> None:
        if len(self.problems) < _MAX_PROBLEMS:
            self.problems.append(problem)
        else:
            self.more_problems += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "size": self.size,
            "pruned_size": self.pruned_size,
            "checkpoints_verified": self.checkpoints_verified,
            "signed_size": self.signed_size,
            "unsigned_entries": self.size - self.signed_size,
            "root_hash": self.root_hash.hex(),
            "first_bad_seq": self.first_bad_seq,
            "problems": [
                {"seq": p.seq, "checkpoint": p.checkpoint, "message": p.message, "text": str(p)}
                for p in self.problems
            ],
            "more_problems": self.more_problems,
            "seconds": round(self.seconds, 3),
        }

    def summary(self) -> str:
        if self.ok:
            tail = self.size - self.signed_size
            return (
                f"OK: {self.entries} entries (log size {self.size}, pruned below {self.pruned_size}), "
                f"{self.checkpoints_verified} checkpoints verified, signed up to {self.signed_size}"
                + (f", {tail} newer entries not yet signed" if tail else "")
                + f", root {self.root_hash.hex()} ({self.seconds:.2f} s)"
            )
        first = self.problems[0]
        total = len(self.problems) + self.more_problems
        return f"FAILED: {first} ({total} problem{'s' if total > 1 else ''} in all)"


def verify(rows: Iterable[Row], state: StoredState, verifier: NoteVerifier) -> Report:
    """Verify a log (see the module docs). ``rows`` in sequence order."""
    started = time.perf_counter()
    report = Report(pruned_size=state.pruned.size)
    checkpoints = sorted(state.checkpoints, key=lambda c: c.size)
    _check_duplicates(checkpoints, report)
    frontier = state.pruned.copy()
    pending = [c for c in checkpoints if c.size > frontier.size]
    for checkpoint in checkpoints:
        if checkpoint.size == frontier.size:
            _check_checkpoint(checkpoint, frontier, verifier, report)
        elif checkpoint.size < frontier.size:
            _open(checkpoint, verifier, report)  # before the pruned size: only its signature can be checked
    prune_records = _scan(rows, frontier, pending, verifier, report)
    report.size = frontier.size
    report.root_hash = frontier.root()
    for checkpoint in pending:
        if checkpoint.size > frontier.size:
            report.add(
                Problem(
                    f"signed for {checkpoint.size} entries but the log has {frontier.size}: entries from "
                    f"{frontier.size} on were removed (truncation)",
                    checkpoint=checkpoint.size,
                )
            )
    _check_pruning(state, prune_records, report)
    if state.head_error is not None:
        report.add(Problem(state.head_error))
    elif state.head is not None and state.head != frontier:
        report.add(
            Problem(
                f"the head row says {state.head.size} entries with root {state.head.root().hex()[:16]}..., "
                f"the entries give {frontier.size} with root {frontier.root().hex()[:16]}..."
            )
        )
    report.seconds = time.perf_counter() - started
    return report


def _scan(
    rows: Iterable[Row],
    frontier: Frontier,
    pending: list[CheckpointRecord],
    verifier: NoteVerifier,
    report: Report,
) -> dict[int, str]:
    """The pass over the entries; returns the prune records seen (pruned size -> root hex). Kept tight
    (the frontier's append inlined): it runs a million times for a million entries."""
    sha256, envelope = _sha256, _envelope
    hashes, size = frontier.hashes, frontier.size
    next_index, next_size = 0, pending[0].size if pending else -1
    prunes: dict[int, str] = {}
    for stored_seq, entry, stored_leaf, columns in rows:
        if stored_seq is not None and stored_seq != size:
            _misnumbered(stored_seq, size, report)
        node = sha256(b"\x00" + entry).digest()
        if stored_leaf is not None and stored_leaf != node:
            report.add(
                Problem("its content does not match its stored leaf hash: the entry was modified", seq=size)
            )
        fields = envelope(entry)
        if fields is None:
            report.add(Problem("the entry is not a JSON audit entry", seq=size))
        else:
            if fields[0] != (size if stored_seq is None else stored_seq):
                report.add(
                    Problem(
                        f"its content says seq {fields[0]}: rows were reordered, renumbered or inserted",
                        seq=size,
                    )
                )
            if columns is not None and columns != fields[1:] and columns != tuple(map(_clip, fields[1:])):
                report.add(
                    Problem("its type, actor, team or request id columns disagree with its content", seq=size)
                )
            if fields[1] == "audit.prune":
                data = orjson.loads(entry).get("data") or {}
                prunes[data.get("pruned_size", -1)] = data.get("root_hash", "")
        carry = size  # Frontier.append, inlined
        while carry & 1:
            node = sha256(b"\x01" + hashes.pop() + node).digest()
            carry >>= 1
        hashes.append(node)
        size += 1
        if size == next_size:
            frontier.size = size
            report.entries = size - report.pruned_size
            while size == next_size:
                _check_checkpoint(pending[next_index], frontier, verifier, report)
                next_index += 1
                next_size = pending[next_index].size if next_index < len(pending) else -1
    frontier.size = size
    report.entries = size - report.pruned_size
    del pending[:next_index]
    return prunes


_HEAD = b'{"actor":'
_DATA = b',"data":'
_REQUEST = b',"request_id":'


def _envelope(entry: bytes) -> tuple[Any, ...] | None:
    """``(seq, type, actor, team, request_id)`` of an entry, ``None`` if it is not an audit entry.

    Fast path for the canonical layout: the envelope's members after ``data`` are scalars, and a JSON
    string cannot contain ``,"`` unescaped, so the last ``,"request_id":`` is the envelope's and the
    first ``,"data":`` follows the actor; only those small pieces are parsed. Anything else (an entry
    that is not canonical, say) is parsed in full.
    """
    if entry.startswith(_HEAD):
        data_at = entry.find(_DATA)
        tail_at = entry.rfind(_REQUEST)
        if data_at > 0 and tail_at > data_at:
            try:
                actor = orjson.loads(entry[len(_HEAD) : data_at])
                tail = orjson.loads(b"{" + entry[tail_at + 1 :])
                return tail["seq"], tail["type"], actor, tail["team"], tail["request_id"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                pass
    try:
        content = orjson.loads(entry)
        return content["seq"], content["type"], content["actor"], content["team"], content["request_id"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None


def _misnumbered(stored: int, expected: int, report: Report) -> None:
    if stored > expected:
        missing = f"{expected}" if stored == expected + 1 else f"{expected} to {stored - 1}"
        report.add(Problem(f"entries {missing} are missing (deleted)", seq=expected))
    else:
        report.add(
            Problem(f"found seq {stored} again after {expected - 1}: entries out of order", seq=expected)
        )


def _clip(value: Any) -> Any:
    return value[:64] if isinstance(value, str) else value


def _open(record: CheckpointRecord, verifier: NoteVerifier, report: Report) -> Checkpoint | None:
    try:
        checkpoint = Checkpoint.open(record.note, verifier)
    except NoteError as exc:
        report.add(Problem(f"its signature or format is invalid: {exc}", checkpoint=record.size))
        return None
    if checkpoint.origin != verifier.name:
        report.add(
            Problem(f"it is for log {checkpoint.origin!r}, not {verifier.name!r}", checkpoint=record.size)
        )
        return None
    if checkpoint.size != record.size or checkpoint.root_hash != record.root_hash:
        report.add(
            Problem(
                f"its signed note is for size {checkpoint.size}, root {checkpoint.root_hash.hex()[:16]}...: "
                "checkpoints were swapped or altered",
                checkpoint=record.size,
            )
        )
        return None
    return checkpoint


def _check_checkpoint(
    record: CheckpointRecord, frontier: Frontier, verifier: NoteVerifier, report: Report
) -> None:
    checkpoint = _open(record, verifier, report)
    if checkpoint is None:
        return
    root = frontier.root()
    if root != checkpoint.root_hash:
        since = report.signed_size
        report.add(
            Problem(
                f"the entries give root {root.hex()[:16]}..., the signed root is "
                f"{checkpoint.root_hash.hex()[:16]}...: an entry from {since} to {record.size - 1} "
                "was altered",
                checkpoint=record.size,
            )
        )
        return
    report.checkpoints_verified += 1
    report.signed_size = record.size


def _check_duplicates(checkpoints: list[CheckpointRecord], report: Report) -> None:
    sizes = [c.size for c in checkpoints]
    for size in sorted({s for s in sizes if sizes.count(s) > 1}):
        report.add(Problem("stored more than once", checkpoint=size))


def _check_pruning(state: StoredState, prunes: dict[int, str], report: Report) -> None:
    size = state.pruned.size
    if size == 0:
        return
    if not any(c.size == size for c in state.checkpoints):
        report.add(Problem(f"entries below {size} were pruned, but the checkpoint at {size} is missing"))
    if prunes.get(size) != state.pruned.root().hex():
        report.add(Problem(f"entries below {size} were removed without an audit.prune entry recording it"))


# Sources ----------------------------------------------------------------------------------------------
_ENTRIES_SQL = (
    "SELECT seq, entry, leaf_hash, type, actor, team_id, request_id FROM audit_entries ORDER BY seq"
)


def read_database(url: str, *, batch: int = 20_000) -> tuple[Iterator[Row], StoredState, Any]:
    """Rows and stored state of the log in the database at ``url`` (read with the sync driver, a
    streaming cursor). Returns ``(rows, state, close)``; call ``close()`` when done with ``rows``."""
    engine = create_engine(sync_url(url), poolclass=NullPool)
    if engine.dialect.name == "sqlite":
        configure_sqlite(engine, begin="DEFERRED")
    connection = engine.raw_connection()
    cursor = connection.cursor()
    # One snapshot for every read below, so that a log being written meanwhile is seen at one moment.
    if engine.dialect.name == "sqlite":
        cursor.execute("BEGIN")
    else:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
    cursor.execute("SELECT size, root_hash, note FROM audit_checkpoints ORDER BY size")
    checkpoints = [CheckpointRecord(int(s), bytes(r), n) for s, r, n in cursor.fetchall()]
    cursor.execute(
        "SELECT size, frontier, pruned_size, pruned_frontier, verifier_key FROM audit_head WHERE id = 1"
    )
    head = cursor.fetchone()
    if head is None:
        raise ValueError("the database has no audit head row: is it a Socle database at schema 0006+?")
    size, frontier, pruned_size, pruned_frontier, vkey = head
    state = StoredState(checkpoints=checkpoints, verifier_key=vkey)
    try:
        state.pruned = Frontier(int(pruned_size), [bytes.fromhex(h) for h in _json(pruned_frontier)])
        state.head = Frontier(int(size), [bytes.fromhex(h) for h in _json(frontier)])
    except (ValueError, TypeError) as exc:
        state.head_error = f"the head row is malformed: {exc}"
    cursor.close()
    if engine.dialect.name == "postgresql":
        stream = connection.driver_connection.cursor(name="socle_audit_verify")  # type: ignore[union-attr]
        stream.itersize = batch
    else:
        stream = connection.cursor()

    def rows() -> Iterator[Row]:
        stream.execute(_ENTRIES_SQL)
        while chunk := stream.fetchmany(batch):
            for seq, entry, leaf, kind, actor, team, request_id in chunk:
                if type(entry) is not bytes:  # memoryview from some drivers
                    entry, leaf = bytes(entry), bytes(leaf)
                yield seq, entry, leaf, (kind, actor, team, request_id)

    def close() -> None:
        try:
            stream.close()
            connection.rollback()
            connection.close()
        finally:
            engine.dispose()

    return rows(), state, close


def _json(value: Any) -> list[str]:
    return orjson.loads(value) if isinstance(value, str | bytes) else list(value)


def read_export(directory: Path) -> tuple[Iterator[Row], StoredState]:
    """Rows and stored state of an export written by :func:`socle.governance.audit.export.export`."""
    checkpoints = []
    with (directory / "checkpoints.jsonl").open("rb") as lines:
        for line in lines:
            if line.strip():
                item = orjson.loads(line)
                checkpoints.append(
                    CheckpointRecord(item["size"], bytes.fromhex(item["root_hash"]), item["note"])
                )
    meta = orjson.loads((directory / "log.json").read_bytes())
    state = StoredState(
        checkpoints=checkpoints,
        pruned=Frontier(meta["pruned_size"], [bytes.fromhex(h) for h in meta["pruned_frontier"]]),
    )

    def rows() -> Iterator[Row]:
        with (directory / "entries.jsonl").open("rb") as lines:
            for line in lines:
                entry = line.rstrip(b"\n")
                if entry:
                    yield None, entry, None, None

    return rows(), state
