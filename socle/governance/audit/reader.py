"""Reading the log: entries by filter or request, checkpoints, and Merkle proofs computed from the store.

Proofs need the roots of subtrees (:mod:`socle.governance.audit.merkle` says which). The root of a
range of an append-only log never changes, so :class:`AuditReader` caches the roots of the perfect
subtrees of 256 leaves and more; the first proof over a large log reads its leaf hashes once, in
chunks of 65,536, and later proofs read at most a few hundred leaf hashes. Below the pruned size, the
subtrees a proof can need are exactly the frontier kept by pruning (see :mod:`socle.governance.audit.log`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Select, and_, select

from socle.errors import NotFoundError, StorageError
from socle.governance.audit.merkle import consistency_ranges, inclusion_ranges, node_hash, range_root, split
from socle.governance.audit.store import CHECKPOINTS, ENTRIES, Head, load_head
from socle.governance.audit.verify import CheckpointRecord
from socle.storage.db import Database

__all__ = ["AuditReader", "EntryRecord", "EventFilter"]

_BLOCK = 256
_CHUNK = 65_536
Range = tuple[int, int]


@dataclass(frozen=True, slots=True)
class EntryRecord:
    seq: int
    entry: bytes
    leaf_hash: bytes

    def content(self) -> dict[str, Any]:
        data: dict[str, Any] = orjson.loads(self.entry)
        return data

    def as_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "leaf_hash": self.leaf_hash.hex(), "entry": self.content()}


@dataclass(frozen=True, slots=True, kw_only=True)
class EventFilter:
    since: datetime | None = None
    until: datetime | None = None
    actor: str | None = None
    team_id: str | None = None
    type: str | None = None
    request_id: str | None = None

    def where(self, query: Select[Any]) -> Select[Any]:
        conditions = []
        if self.since is not None:
            conditions.append(ENTRIES.c.created_at >= self.since)
        if self.until is not None:
            conditions.append(ENTRIES.c.created_at < self.until)
        for column, value in (
            (ENTRIES.c.actor, self.actor),
            (ENTRIES.c.team_id, self.team_id),
            (ENTRIES.c.type, self.type),
            (ENTRIES.c.request_id, self.request_id),
        ):
            if value is not None:
                conditions.append(column == value)
        return query.where(and_(*conditions)) if conditions else query


class AuditReader:
    """Queries and proofs over the log in ``db``."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._cache: dict[Range, bytes] = {}

    async def head(self) -> Head:
        async with self._db.read() as connection:
            return await load_head(connection, lock=False)

    async def latest_checkpoint(self) -> CheckpointRecord | None:
        rows = await self._db.fetch_all(select(CHECKPOINTS).order_by(CHECKPOINTS.c.size.desc()).limit(1))
        return _checkpoint(rows[0]) if rows else None

    async def checkpoint(self, size: int) -> CheckpointRecord:
        rows = await self._db.fetch_all(select(CHECKPOINTS).where(CHECKPOINTS.c.size == size))
        if not rows:
            raise NotFoundError(f"There is no checkpoint at size {size}.", code="checkpoint_not_found")
        return _checkpoint(rows[0])

    async def events(
        self, where: EventFilter, *, after: int | None = None, limit: int = 100
    ) -> list[EntryRecord]:
        """Entries matching ``where``, in sequence order, after the sequence number ``after``."""
        query = (
            select(ENTRIES.c.seq, ENTRIES.c.entry, ENTRIES.c.leaf_hash).order_by(ENTRIES.c.seq).limit(limit)
        )
        if after is not None:
            query = query.where(ENTRIES.c.seq > after)
        rows = await self._db.fetch_all(where.where(query))
        return [EntryRecord(r.seq, bytes(r.entry), bytes(r.leaf_hash)) for r in rows]

    async def entry(self, seq: int) -> EntryRecord:
        rows = await self._db.fetch_all(
            select(ENTRIES.c.seq, ENTRIES.c.entry, ENTRIES.c.leaf_hash).where(ENTRIES.c.seq == seq)
        )
        if not rows:
            raise NotFoundError(
                f"There is no audit entry {seq} (pruned, or not written yet).", code="entry_not_found"
            )
        return EntryRecord(rows[0].seq, bytes(rows[0].entry), bytes(rows[0].leaf_hash))

    # Proofs -----------------------------------------------------------------------------------------
    async def inclusion_proof(self, seq: int, size: int) -> list[bytes]:
        head = await self.head()
        self._check_size(size, head)
        return [await self._root(a, b, head) for a, b in inclusion_ranges(seq, size)]

    async def consistency_proof(self, old: int, new: int) -> list[bytes]:
        head = await self.head()
        self._check_size(new, head)
        return [await self._root(a, b, head) for a, b in consistency_ranges(old, new)]

    @staticmethod
    def _check_size(size: int, head: Head) -> None:
        if size > head.size:
            raise NotFoundError(f"The log has {head.size} entries, not {size}.", code="tree_size_too_large")

    async def _root(self, start: int, end: int, head: Head) -> bytes:
        """The root of leaves [start, end) (see the module docs)."""
        pruned = head.pruned
        if start < pruned.size:
            for (a, b), value in zip(pruned.ranges(), pruned.hashes, strict=True):
                if (a, b) == (start, end):
                    return value
            if end <= pruned.size:
                raise NotFoundError(
                    f"Entries below {pruned.size} were pruned: this proof can no longer be computed.",
                    code="pruned",
                )
            k = split(end - start)
            return node_hash(await self._root(start, start + k, head), await self._root(start + k, end, head))
        size = end - start
        cached = self._cache.get((start, end))
        if cached is not None:
            return cached
        if size < _BLOCK:
            return range_root(await self._leaves(start, end))
        perfect = size & (size - 1) == 0 and start % size == 0
        if perfect and size <= _CHUNK:  # read the chunk around it once, caching its perfect subtrees
            first = start - start % _CHUNK
            await self._fill(first, min(first + _CHUNK, head.size))
            if (start, end) in self._cache:
                return self._cache[(start, end)]
        k = split(size)
        value = node_hash(await self._root(start, start + k, head), await self._root(start + k, end, head))
        if perfect:
            self._cache[(start, end)] = value
        return value

    async def _fill(self, start: int, end: int) -> None:
        """Read leaves [start, end) and cache every perfect subtree of 256 leaves or more inside."""
        leaves = await self._leaves(start, end)
        level = {}
        for offset in range(0, len(leaves) - _BLOCK + 1, _BLOCK):
            a = start + offset
            level[a] = range_root(leaves[offset : offset + _BLOCK])
            self._cache[(a, a + _BLOCK)] = level[a]
        width = _BLOCK
        while len(level) > 1:
            upper = {}
            for a, value in level.items():
                if a % (2 * width) == 0 and a + width in level:
                    upper[a] = node_hash(value, level[a + width])
                    self._cache[(a, a + 2 * width)] = upper[a]
            level, width = upper, width * 2

    async def _leaves(self, start: int, end: int) -> list[bytes]:
        rows = await self._db.fetch_all(
            select(ENTRIES.c.leaf_hash)
            .where(ENTRIES.c.seq >= start, ENTRIES.c.seq < end)
            .order_by(ENTRIES.c.seq)
        )
        if len(rows) != end - start:
            raise StorageError(
                "The audit log is missing entries; run 'socle audit verify'.",
                detail=f"entries {start} to {end - 1}: found {len(rows)} of {end - start}",
            )
        return [bytes(r.leaf_hash) for r in rows]


def _checkpoint(row: Any) -> CheckpointRecord:
    return CheckpointRecord(row.size, bytes(row.root_hash), row.note)
