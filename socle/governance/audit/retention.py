"""Retention: pruning whole old segments while every later checkpoint stays verifiable.

The AI Act (Art. 19) asks for automatic logs to be kept at least six months; GDPR's storage limitation
asks not to keep them much longer. ``retention_days`` (183 by default, and at least that) sets the
line. Pruning removes a *prefix* of the log, always up to a signed checkpoint:

1. The boundary ``P`` is the largest checkpoint size such that every entry before it is older than the
   retention (entries before ``P``, checkpoints before ``P``, and vault contents older than the
   retention go).
2. Before removing anything, the entries from the previous boundary to ``P`` are checked against the
   signed checkpoint at ``P``: a log that does not verify is not pruned (the evidence is kept).
3. What is kept for the pruned prefix is its *frontier*: the roots of its maximal perfect subtrees (at
   most 64 hashes). They reproduce the signed root at ``P`` — which is how a verifier checks them — and
   every root, inclusion proof and consistency proof of a later tree needs nothing else from the
   prefix, since the subtrees left of any leaf at or after ``P`` are exactly those frontier subtrees.
4. In one transaction: the head's ``pruned_size`` and ``pruned_frontier`` move to ``P`` (the
   append-only triggers then allow deleting rows below ``P``, and nothing else), the rows go, and an
   ``audit.prune`` entry records ``P``, the root and the frontier. Verification requires that entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select

from socle.errors import StorageError
from socle.governance.audit.checkpoint import Checkpoint, NoteError, NoteVerifier
from socle.governance.audit.events import AuditPrune
from socle.governance.audit.log import AuditLog, format_time
from socle.governance.audit.merkle import Frontier
from socle.governance.audit.store import CHECKPOINTS, CONTENTS, ENTRIES, Head, load_head, save_head
from socle.storage.db import Database
from socle.storage.types import utcnow

__all__ = ["PruneResult", "prune", "prune_boundary"]

_CHUNK = 65_536


@dataclass(frozen=True, slots=True)
class PruneResult:
    pruned_size: int
    previous_pruned_size: int
    cutoff: datetime
    root_hash: bytes
    done: bool
    """False for a dry run."""


async def prune_boundary(
    db: Database, cutoff: datetime, *, max_entries: int | None = None
) -> tuple[Head, int | None]:
    """The head, and the checkpoint size pruning would move to for ``cutoff`` (``None``: nothing can go
    yet). Reads only. With ``max_entries``, the boundary is the largest checkpoint at most that many
    entries past the current one (or, if there is none, the nearest checkpoint), so that one prune's
    transaction stays short."""
    async with db.read() as connection:
        head = await load_head(connection, lock=False)
        first_recent = await connection.scalar(
            select(func.min(ENTRIES.c.seq)).where(ENTRIES.c.created_at >= cutoff)
        )
        limit = head.size if first_recent is None else int(first_recent)
        after = CHECKPOINTS.c.size > head.pruned.size
        capped = limit if max_entries is None else min(limit, head.pruned.size + max_entries)
        boundary = await connection.scalar(
            select(func.max(CHECKPOINTS.c.size)).where(after, CHECKPOINTS.c.size <= capped)
        )
        if boundary is None and capped < limit:
            boundary = await connection.scalar(
                select(func.min(CHECKPOINTS.c.size)).where(after, CHECKPOINTS.c.size <= limit)
            )
    return head, None if boundary is None else int(boundary)


async def prune(
    db: Database,
    audit: AuditLog,
    *,
    actor: str,
    retention_days: int | None = None,
    now: datetime | None = None,
    dry_run: bool = False,
    max_entries: int | None = None,
) -> PruneResult | None:
    """Prune what the retention allows (see the module docs); ``None`` if nothing can go yet (or another
    process pruned meanwhile). ``max_entries`` bounds one call's work (see :func:`prune_boundary`)."""
    days = audit.settings.retention_days if retention_days is None else retention_days
    cutoff = (now or utcnow()) - timedelta(days=days)
    head, boundary = await prune_boundary(db, cutoff, max_entries=max_entries)
    if boundary is None:
        return None
    size = boundary
    frontier = await _frontier_at(db, head.pruned, size)
    checkpoint = await _signed(db, audit, size)
    if frontier.root() != checkpoint.root_hash:
        raise StorageError(
            "The audit log does not match its checkpoint; nothing was pruned. Run 'socle audit verify'.",
            detail=f"entries {head.pruned.size} to {size - 1} do not give the signed root at {size}",
        )
    result = PruneResult(size, head.pruned.size, cutoff, checkpoint.root_hash, not dry_run)
    if dry_run:
        return result
    stamp = utcnow()
    event = AuditPrune(
        actor=actor,
        pruned_size=size,
        root_hash=checkpoint.root_hash.hex(),
        frontier=[h.hex() for h in frontier.hashes],
        retention_days=days,
        cutoff=format_time(cutoff),
    )
    async with db.connect() as connection:
        head = await load_head(connection, lock=True)
        if head.pruned.size != result.previous_pruned_size:
            return None  # another process pruned meanwhile
        head.pruned = frontier
        await save_head(connection, head, stamp)  # first: the triggers allow deleting below pruned_size
        await connection.execute(delete(ENTRIES).where(ENTRIES.c.seq < size))
        await connection.execute(delete(CHECKPOINTS).where(CHECKPOINTS.c.size < size))
        await connection.execute(delete(CONTENTS).where(CONTENTS.c.created_at < cutoff))
        notes = await audit.append_locked(connection, head, [event], stamp)
        await save_head(connection, head, stamp)
    await audit.witness(notes)
    return result


async def _frontier_at(db: Database, pruned: Frontier, size: int) -> Frontier:
    """The frontier of the first ``size`` leaves: the pruned one, extended with the stored leaves."""
    frontier = pruned.copy()
    while frontier.size < size:
        end = min(frontier.size + _CHUNK, size)
        rows = await db.fetch_all(
            select(ENTRIES.c.seq, ENTRIES.c.leaf_hash)
            .where(ENTRIES.c.seq >= frontier.size, ENTRIES.c.seq < end)
            .order_by(ENTRIES.c.seq)
        )
        for row in rows:
            if row.seq != frontier.size:
                raise StorageError(
                    "The audit log has a gap; nothing was pruned. Run 'socle audit verify'.",
                    detail=f"entry {frontier.size} is missing",
                )
            frontier.append(bytes(row.leaf_hash))
        if not rows:
            raise StorageError(
                "The audit log has a gap; nothing was pruned.", detail=f"entry {frontier.size}"
            )
    return frontier


async def _signed(db: Database, audit: AuditLog, size: int) -> Checkpoint:
    rows = await db.fetch_all(select(CHECKPOINTS.c.note).where(CHECKPOINTS.c.size == size))
    try:
        checkpoint = Checkpoint.open(rows[0].note, NoteVerifier(audit.verifier_key))
    except (IndexError, NoteError) as exc:
        raise StorageError(
            "The checkpoint to prune at does not verify; nothing was pruned.", detail=f"size {size}: {exc}"
        ) from exc
    if checkpoint.size != size:
        raise StorageError("The checkpoint to prune at is not for its size; nothing was pruned.")
    return checkpoint
