"""The audit log service: ``await audit.record(event)`` appends one entry, or refuses (fail closed).

Entries
    An entry is the RFC 8785 canonical JSON of an envelope around the event::

        {"actor": ..., "data": {...}, "request_id": ..., "seq": N, "team": ..., "time": "...Z",
         "type": "inference.request", "v": 1}

    ``seq`` is the entry's leaf index in the RFC 6962 Merkle tree; ``time`` is when the event was
    recorded (UTC, microseconds). The envelope is canonicalised when the event is recorded, around a
    gap for ``seq``, so that a malformed event fails in its caller, never in the writer.

Writing: one writer per process, group commit
    :meth:`AuditLog.record` queues the entry and waits for its receipt. A single task per process
    takes everything queued (up to ``batch_max``) and writes it in one transaction that holds the
    head row (:mod:`socle.governance.audit.store`): numbers the entries from the head's size, inserts
    them, extends the Merkle frontier, signs a checkpoint when one is due (every ``checkpoint_every``
    entries, or ``checkpoint_interval_s`` after the last one; a timer makes the time-based ones for
    quiet logs), and moves the head. While one batch commits, the next fills up, so throughput grows
    with load instead of every request paying its own transaction. Processes sharing PostgreSQL (or
    one SQLite file) are serialised by the head lock: sequence numbers are gapless, in commit order.

Fail closed
    If a batch cannot be written, every caller in it gets :class:`socle.errors.AuditUnavailableError`
    (503) and the log enters the *unavailable* state: :meth:`ensure_available` and :meth:`record`
    refuse at once (counting refusals), an ``audit.unavailable`` alert is raised, and a recovery task
    retries every ``retry_s`` by writing an ``audit.outage`` entry (since, until, requests refused,
    error). When that entry is written, the log is available again and an ``audit.recovered`` alert
    says so: the outage itself is on the record.

Content vault
    For teams whose policy asks (``store_content_teams``), :meth:`record` takes the request's prompt
    and response and stores them AES-256-GCM sealed in ``audit_contents``, in the same transaction as
    the entry but outside the tree (see :mod:`socle.governance.audit.vault`). :meth:`erase` deletes them
    and records a ``data.erasure`` entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from socle.config import AuditSettings, Settings
from socle.errors import AuditUnavailableError, ConfigError
from socle.governance.alerts import Alert, Alerts
from socle.governance.audit.canonical import canonicalize
from socle.governance.audit.checkpoint import (
    Ed25519Signer,
    NoteVerifier,
    Signer,
    load_signer,
    verifier_key,
    write_witness,
)
from socle.governance.audit.events import AuditOutage, DataErasure, Event
from socle.governance.audit.merkle import leaf_hash
from socle.governance.audit.pseudonyms import Pseudonymizer
from socle.governance.audit.reader import AuditReader
from socle.governance.audit.store import CONTENTS, ENTRIES, Head, add_checkpoint, load_head, save_head
from socle.governance.audit.vault import Vault
from socle.governance.audit.verify import Report, read_database, verify
from socle.storage.db import Database
from socle.storage.types import utcnow

__all__ = [
    "HMAC_KEY_FILE",
    "SIGNING_KEY_FILE",
    "VAULT_KEY_FILE",
    "AuditKeys",
    "AuditLog",
    "Receipt",
    "encode_entry",
    "format_time",
    "policy_digest",
]

log = logging.getLogger("socle.audit")

SIGNING_KEY_FILE = "audit-signing.key"
HMAC_KEY_FILE = "audit-hmac.key"
VAULT_KEY_FILE = "audit-vault.key"
_COLUMN = 64  # width of the actor, team and request id columns (the entry keeps the full value)


@dataclass(frozen=True, slots=True)
class Receipt:
    """Where an entry landed: its sequence number (leaf index) and leaf hash."""

    seq: int
    leaf_hash: bytes


@dataclass(frozen=True, slots=True)
class AuditKeys:
    """The three secrets of the log, loaded from their 0600 files in the key directory."""

    signer: Ed25519Signer
    pseudonyms: Pseudonymizer
    vault: Vault

    @classmethod
    def load(cls, key_dir: Path, origin: str | None = None) -> AuditKeys:
        return cls(
            signer=load_signer(key_dir / SIGNING_KEY_FILE, origin),
            pseudonyms=Pseudonymizer.from_file(key_dir / HMAC_KEY_FILE),
            vault=Vault.from_file(key_dir / VAULT_KEY_FILE),
        )

    @classmethod
    def for_settings(cls, settings: Settings) -> AuditKeys:
        key_dir = settings.audit.key_dir or settings.resolved_data_dir
        return cls.load(key_dir.expanduser(), settings.audit.origin)


def format_time(when: datetime) -> str:
    """The entry time format: RFC 3339, UTC, microseconds, ``Z``."""
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def policy_digest(settings: Settings) -> str:
    """The default policy version: a digest of the effective configuration (secrets masked), so that
    each answer names the configuration it was served under."""
    return "cfg-" + hashlib.sha256(canonicalize(settings.public_dump())).hexdigest()[:16]


def encode_entry(event: Event, when: datetime) -> tuple[bytes, bytes]:
    """The canonical bytes of ``event``'s entry, split around its sequence number: the entry numbered
    ``seq`` is ``prefix + str(seq) + suffix``. Members are concatenated in RFC 8785 order (all names
    ASCII), each value canonicalised, so the whole is canonical by construction."""
    prefix = b"".join(
        (
            b'{"actor":',
            canonicalize(event.actor),
            b',"data":',
            canonicalize(event.data()),
            b',"request_id":',
            canonicalize(event.request_id),
            b',"seq":',
        )
    )
    suffix = b"".join(
        (
            b',"team":',
            canonicalize(event.team),
            b',"time":',
            canonicalize(format_time(when)),
            b',"type":',
            canonicalize(event.type),
            b',"v":1}',
        )
    )
    return prefix, suffix


@dataclass(slots=True)
class _Pending:
    prefix: bytes
    suffix: bytes
    created_at: datetime
    type: str
    actor: str | None
    team: str | None
    request_id: str | None
    content: dict[str, Any] | None
    future: asyncio.Future[Receipt]


class AuditLog:
    """Appends events to the log (see the module docs). Build with :meth:`open`; close with :meth:`aclose`."""

    def __init__(
        self,
        db: Database,
        settings: AuditSettings,
        keys: AuditKeys,
        *,
        alerts: Alerts | None = None,
        policy_version: str | None = None,
        content_teams: frozenset[str] = frozenset(),
    ) -> None:
        self._db = db
        self.settings = settings
        self.reader = AuditReader(db)
        """Queries and proofs (shares this log's database)."""
        self.signer: Signer = keys.signer
        self.pseudonyms = keys.pseudonyms
        self.vault = keys.vault
        self.verifier_key = verifier_key(keys.signer.name, keys.signer.public_key)
        self.policy_version = policy_version
        self._content_teams = content_teams
        self._alerts = alerts
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        self._writer: asyncio.Task[None] | None = None
        self._timer: asyncio.Task[None] | None = None
        self._unavailable_since: datetime | None = None
        self._error = ""
        self._refused = 0
        self._closed = False
        self._verifying = asyncio.Lock()

    @classmethod
    async def open(
        cls, db: Database, settings: Settings, *, alerts: Alerts | None = None, keys: AuditKeys | None = None
    ) -> AuditLog:
        """Load (or create) the keys, check that they are the log's, and start the writer."""
        if keys is None:
            keys = await asyncio.to_thread(AuditKeys.for_settings, settings)
        audit = cls(
            db,
            settings.audit,
            keys,
            alerts=alerts,
            policy_version=settings.audit.policy_version or policy_digest(settings),
            content_teams=frozenset(settings.audit.store_content_teams),
        )
        await audit._claim_log()
        audit.start()
        return audit

    def start(self) -> None:
        self._writer = asyncio.create_task(self._write_loop(), name="socle-audit-writer")
        self._timer = asyncio.create_task(self._checkpoint_loop(), name="socle-audit-checkpoints")

    async def _claim_log(self) -> None:
        """Record this key as the log's on first use; refuse a key that is not the log's."""
        async with self._db.connect() as connection:
            head = await load_head(connection, lock=True)
            if head.verifier_key is None:
                head.verifier_key = self.verifier_key
                head.checkpoint_at = utcnow()  # time-based checkpoints count from the log's creation
                await save_head(connection, head, utcnow())
            elif head.verifier_key != self.verifier_key:
                raise ConfigError(
                    "this process's audit signing key is not the one the log is signed with",
                    detail=f"log key {head.verifier_key}, this key {self.verifier_key}: copy the log's "
                    f"{SIGNING_KEY_FILE} into the key directory of every replica",
                )

    # The one way in ---------------------------------------------------------------------------------
    async def record(self, event: Event, *, content: dict[str, Any] | None = None) -> Receipt:
        """Append ``event`` and return its receipt once it is committed. Raises
        :class:`AuditUnavailableError` (503) if it cannot be written. ``content`` (prompt and
        response) is stored in the vault if the event's team's policy asks for it."""
        self.ensure_available()
        pending = self._pending(event, content if self.stores_content(event.team) else None)
        self._queue.put_nowait(pending)
        return await pending.future

    def ensure_available(self) -> None:
        """Raise :class:`AuditUnavailableError` while the log cannot be written (see the module docs)."""
        if self._closed:
            raise AuditUnavailableError("The audit log is closed; the request was refused.")
        if self._unavailable_since is not None:
            self._refused += 1
            raise AuditUnavailableError(
                "The audit log cannot be written; governed requests are refused until it can.",
                headers={"retry-after": str(max(1, round(self.settings.retry_s)))},
            )

    @property
    def available(self) -> bool:
        return self._unavailable_since is None and not self._closed

    def stores_content(self, team: str | None, team_name: str | None = None) -> bool:
        """Whether the policy of ``team`` (id, or its name) asks for contents to be kept."""
        return bool(self._content_teams) and bool({team, team_name} & self._content_teams)

    def _pending(self, event: Event, content: dict[str, Any] | None) -> _Pending:
        if content is not None and not event.request_id:
            raise ValueError("contents are stored by request id: the event needs one")
        now = utcnow()
        prefix, suffix = encode_entry(event, now)
        return _Pending(
            prefix,
            suffix,
            now,
            event.type,
            event.actor,
            event.team,
            event.request_id,
            content,
            asyncio.get_running_loop().create_future(),
        )

    # Writer -----------------------------------------------------------------------------------------
    async def _write_loop(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.settings.batch_max and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                receipts = await self._write(batch)
            except asyncio.CancelledError:
                self._refuse(batch, "the audit writer stopped")
                raise
            except Exception as exc:  # any failure to write is an outage: fail closed, never crash the writer
                self._refuse(batch, _describe(exc))
                self._become_unavailable(exc)
            else:
                for pending, receipt in zip(batch, receipts, strict=True):
                    if not pending.future.done():
                        pending.future.set_result(receipt)
            finally:
                for _ in batch:
                    self._queue.task_done()

    def _refuse(self, batch: Sequence[_Pending], reason: str) -> None:
        for pending in batch:
            if not pending.future.done():
                pending.future.set_exception(
                    AuditUnavailableError(
                        "The audit entry could not be written; the request was refused.", detail=reason
                    )
                )

    async def _write(self, batch: Sequence[_Pending]) -> list[Receipt]:
        now = utcnow()
        async with self._db.connect() as connection:
            head = await load_head(connection, lock=True)
            receipts, notes = await self._append(connection, head, batch, now)
            await save_head(connection, head, now)
        for note in notes:
            await self._witness(note)
        return receipts

    async def append_locked(
        self, connection: AsyncConnection, head: Head, events: Sequence[Event], now: datetime
    ) -> list[str]:
        """Append ``events`` inside a caller's transaction that holds the head (pruning does, to record
        itself atomically with what it removes); the caller saves the head and then calls
        :meth:`witness` with the returned notes."""
        _, notes = await self._append(connection, head, [self._pending(e, None) for e in events], now)
        return notes

    async def witness(self, notes: Sequence[str]) -> None:
        for note in notes:
            await self._witness(note)

    async def _append(
        self, connection: AsyncConnection, head: Head, batch: Sequence[_Pending], now: datetime
    ) -> tuple[list[Receipt], list[str]]:
        """Insert ``batch`` after ``head`` (locked by the caller, who saves it), signing the checkpoints
        that fall due. Returns the receipts and the signed notes."""
        rows, contents, receipts, notes = [], [], [], []
        for pending in batch:
            seq = head.frontier.size
            entry = pending.prefix + str(seq).encode() + pending.suffix
            leaf = leaf_hash(entry)
            head.frontier.append(leaf)
            if head.size % self.settings.checkpoint_every == 0:  # at exact multiples, even mid-batch
                notes.append(await add_checkpoint(connection, head, self.signer, now))
            rows.append(
                {
                    "seq": seq,
                    "created_at": pending.created_at,
                    "type": pending.type,
                    "actor": _column(pending.actor),
                    "team_id": _column(pending.team),
                    "request_id": _column(pending.request_id),
                    "entry": entry,
                    "leaf_hash": leaf,
                }
            )
            receipts.append(Receipt(seq, leaf))
            if pending.content is not None and pending.request_id:
                nonce, sealed = self.vault.seal(pending.request_id, pending.content)
                contents.append(
                    {
                        "request_id": pending.request_id,
                        "team_id": _column(pending.team),
                        "principal_id": _column(pending.actor),
                        "nonce": nonce,
                        "ciphertext": sealed,
                        "created_at": now,
                    }
                )
        await connection.execute(insert(ENTRIES), rows)
        if contents:
            await connection.execute(insert(CONTENTS), contents)
        if self._checkpoint_due(head, now):
            notes.append(await add_checkpoint(connection, head, self.signer, now))
        return receipts, notes

    def _checkpoint_due(self, head: Head, now: datetime) -> bool:
        if head.size <= head.checkpoint_size:
            return False
        if head.checkpoint_at is None:
            return True
        return (now - head.checkpoint_at).total_seconds() >= self.settings.checkpoint_interval_s

    async def checkpoint(self, *, force: bool = False) -> int | None:
        """Sign a checkpoint now if entries were added since the last one (and, unless ``force``, one
        is due). Returns the checkpoint's size, or ``None`` if none was made."""
        now = utcnow()
        async with self._db.read() as connection:  # cheap look first: most ticks have nothing to do
            head = await load_head(connection, lock=False)
        if head.size <= head.checkpoint_size or not (force or self._checkpoint_due(head, now)):
            return None
        async with self._db.connect() as connection:
            head = await load_head(connection, lock=True)
            if head.size <= head.checkpoint_size or not (force or self._checkpoint_due(head, now)):
                return None
            note = await add_checkpoint(connection, head, self.signer, now)
            await save_head(connection, head, now)
        await self._witness(note)
        return head.checkpoint_size

    async def _checkpoint_loop(self) -> None:
        interval = self.settings.checkpoint_interval_s
        while True:
            await asyncio.sleep(interval)
            if not self.available:
                continue
            try:
                await self.checkpoint()
            except Exception as exc:  # the next tick retries; an outage shows on the next record()
                log.warning("audit checkpoint failed: %s", _describe(exc))

    async def _witness(self, note: str) -> None:
        if self.settings.witness_dir is None:
            return
        size = int(note.split("\n")[1])
        try:
            await asyncio.to_thread(write_witness, self.settings.witness_dir.expanduser(), size, note)
        except OSError as exc:  # the checkpoint is in the database; the copy is a convenience
            log.error("cannot copy checkpoint %d to the witness directory: %s", size, exc)

    # Outage and recovery ----------------------------------------------------------------------------
    def _become_unavailable(self, exc: BaseException) -> None:
        if self._unavailable_since is not None:
            return
        self._unavailable_since = utcnow()
        self._error = _describe(exc)
        self._refused = 0
        log.error("audit log cannot be written, refusing governed requests: %s", self._error, exc_info=exc)
        self._spawn(
            self._alert(
                "audit.unavailable", f"The audit log cannot be written ({self._error}); requests are refused."
            )
        )
        self._spawn(self._recover())

    async def _recover(self) -> None:
        while not self._closed:
            await asyncio.sleep(self.settings.retry_s)
            assert self._unavailable_since is not None
            outage = AuditOutage(
                actor="system",
                since=format_time(self._unavailable_since),
                until=format_time(utcnow()),
                refused=self._refused,
                error=self._error,
            )
            try:
                await self._write([self._pending(outage, None)])
            except Exception as exc:
                log.debug("audit log still unavailable: %s", _describe(exc))
                continue
            log.warning("audit log writable again after refusing %d requests", self._refused)
            self._unavailable_since = None
            await self._alert(
                "audit.recovered", f"The audit log is writable again ({outage.refused} refused)."
            )
            return

    async def _alert(self, kind: str, message: str) -> None:
        if self._alerts is None:
            return
        alert = Alert(
            kind=kind,
            subject="audit",
            threshold=0,
            period=utcnow().strftime("%Y-%m-%dT%H:%M"),
            message=message,
        )
        try:
            await self._alerts.emit(alert)
        except Exception as exc:  # the database may be what failed; the log line above still says it
            log.error("cannot raise alert %s: %s", kind, _describe(exc))

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # Vault ------------------------------------------------------------------------------------------
    async def content(self, request_id: str) -> dict[str, Any] | None:
        """The stored prompt and response of a request, decrypted, or ``None``."""
        async with self._db.read() as connection:
            row = (
                await connection.execute(select(CONTENTS).where(CONTENTS.c.request_id == request_id))
            ).first()
        return None if row is None else self.vault.open(request_id, row.nonce, row.ciphertext)

    async def erase(
        self, *, actor: str, request_id: str | None = None, principal_id: str | None = None
    ) -> int:
        """Erase stored contents of one request or of every request of one principal; the erasure is
        recorded (``data.erasure``). Returns how many contents were erased."""
        if (request_id is None) == (principal_id is None):
            raise ValueError("erase one request or one principal's requests")
        where = CONTENTS.c.request_id == request_id if request_id else CONTENTS.c.principal_id == principal_id
        async with self._db.connect() as connection:
            erased = (await connection.execute(delete(CONTENTS).where(where))).rowcount or 0
        await self.record(DataErasure(actor=actor, subject=request_id or principal_id or "", items=erased))
        return erased

    async def verify(self, url: str) -> Report:
        """Verify the whole log in the database at ``url`` with this log's public key (in a thread, one
        verification at a time: it reads every entry)."""

        def run() -> Report:
            rows, state, close = read_database(url)
            try:
                return verify(rows, state, NoteVerifier(self.verifier_key))
            finally:
                close()

        async with self._verifying:
            return await asyncio.to_thread(run)

    # Life cycle -------------------------------------------------------------------------------------
    async def drain(self) -> None:
        """Wait until everything queued so far is written (or refused)."""
        await self._queue.join()

    async def aclose(self) -> None:
        """Write what is queued, sign a last checkpoint over it, and stop."""
        if self._closed:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.drain(), 15)
        if self.available:
            try:
                await self.checkpoint(force=True)
            except Exception as exc:
                log.warning("no final audit checkpoint: %s", _describe(exc))
        self._closed = True
        for task in (self._writer, self._timer, *self._tasks):
            if task is not None:
                task.cancel()
        await asyncio.gather(
            *(t for t in (self._writer, self._timer, *self._tasks) if t is not None), return_exceptions=True
        )


def _column(value: str | None) -> str | None:
    return None if value is None else value[:_COLUMN]


def _describe(exc: BaseException) -> str:
    text = str(getattr(exc, "detail", None) or exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]
