"""The audit tables, as the writer, the reader and pruning share them.

``audit_head`` is the one row every writer locks (``SELECT ... FOR UPDATE`` on PostgreSQL; on SQLite
the write transaction's ``BEGIN IMMEDIATE`` is already the lock): whoever holds it reads the log's
size and frontier, appends entries numbered from that size, and moves the head forward in the same
transaction. Sequence numbers are therefore gapless and in commit order across every process sharing
the database, and a crash at any point leaves either the whole batch (entries, head, checkpoint) or
none of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Table, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from socle.governance.audit.checkpoint import Checkpoint, Signer
from socle.governance.audit.merkle import Frontier
from socle.storage.models import AuditCheckpointRow, AuditContentRow, AuditEntryRow, AuditHeadRow, Base

__all__ = ["CHECKPOINTS", "CONTENTS", "ENTRIES", "HEAD", "Head", "add_checkpoint", "load_head", "save_head"]

ENTRIES: Table = Base.metadata.tables[AuditEntryRow.__tablename__]
CHECKPOINTS: Table = Base.metadata.tables[AuditCheckpointRow.__tablename__]
HEAD: Table = Base.metadata.tables[AuditHeadRow.__tablename__]
CONTENTS: Table = Base.metadata.tables[AuditContentRow.__tablename__]


@dataclass(slots=True)
class Head:
    """The head row, decoded."""

    frontier: Frontier
    pruned: Frontier
    checkpoint_size: int
    checkpoint_at: datetime | None
    verifier_key: str | None

    @property
    def size(self) -> int:
        return self.frontier.size


async def load_head(connection: AsyncConnection, *, lock: bool) -> Head:
    """Read the head; ``lock`` holds it until the transaction ends (PostgreSQL; see the module docs)."""
    query = select(HEAD).where(HEAD.c.id == 1)
    if lock and connection.dialect.name == "postgresql":
        query = query.with_for_update()
    row = (await connection.execute(query)).one()
    return Head(
        frontier=Frontier(row.size, [bytes.fromhex(h) for h in row.frontier]),
        pruned=Frontier(row.pruned_size, [bytes.fromhex(h) for h in row.pruned_frontier]),
        checkpoint_size=row.checkpoint_size,
        checkpoint_at=row.checkpoint_at,
        verifier_key=row.verifier_key,
    )


async def save_head(connection: AsyncConnection, head: Head, now: datetime) -> None:
    await connection.execute(
        update(HEAD)
        .where(HEAD.c.id == 1)
        .values(
            size=head.frontier.size,
            frontier=[h.hex() for h in head.frontier.hashes],
            pruned_size=head.pruned.size,
            pruned_frontier=[h.hex() for h in head.pruned.hashes],
            checkpoint_size=head.checkpoint_size,
            checkpoint_at=head.checkpoint_at,
            verifier_key=head.verifier_key,
            updated_at=now,
        )
    )


async def add_checkpoint(connection: AsyncConnection, head: Head, signer: Signer, now: datetime) -> str:
    """Sign a checkpoint of the head's current tree, store it, and note it in ``head`` (saved by the
    caller). Returns the signed note."""
    checkpoint = Checkpoint(signer.name, head.size, head.frontier.root())
    note = checkpoint.sign(signer)
    await connection.execute(
        insert(CHECKPOINTS).values(
            size=checkpoint.size, root_hash=checkpoint.root_hash, note=note, created_at=now
        )
    )
    head.checkpoint_size = checkpoint.size
    head.checkpoint_at = now
    return note
