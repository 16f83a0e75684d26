"""An in-memory matrix of chunk embeddings, searched exactly (brute force) with the scope as a mask.

Why not an approximate index: with access filters, an ANN graph searched first and filtered afterwards
loses recall (a narrow scope may leave nothing of the graph's top candidates), and an exact scan of
100,000 384-dimensional vectors is one matrix-vector product, a few milliseconds with BLAS. The scope
mask is applied to the scores before the top k is taken, so recall within the scope is exact.

Concurrency: searches run in worker threads on a :class:`_Snapshot`; a refresh never changes what an
existing snapshot can see (rows are appended past its ``n``; deletions and compactions build new
arrays), so searches need no lock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from socle.errors import BadRequestError
from socle.knowledge.stores.base import Scope, Scored

__all__ = ["VectorMatrix"]

_Floats = npt.NDArray[np.float32]
_Ints = npt.NDArray[np.int64]
_Codes = npt.NDArray[np.int32]
_Bools = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class _Snapshot:
    n: int
    keys: _Ints
    live: _Bools
    collections: _Codes
    documents: _Codes
    vectors: _Floats


class VectorMatrix:
    """Embeddings by chunk key, appended in increasing key order, removed by key."""

    def __init__(self) -> None:
        self._snap = _Snapshot(
            0,
            np.zeros(0, np.int64),
            np.zeros(0, np.bool_),
            np.zeros(0, np.int32),
            np.zeros(0, np.int32),
            np.zeros((0, 0), np.float32),
        )
        self._collection_codes: dict[str, int] = {}
        self._document_codes: dict[str, int] = {}
        self.live_count = 0
        self.generation = -1

    @property
    def max_key(self) -> int:
        snap = self._snap
        return int(snap.keys[snap.n - 1]) if snap.n else 0

    @property
    def dimensions(self) -> int:
        return int(self._snap.vectors.shape[1]) if self._snap.n else 0

    def add(self, rows: Sequence[tuple[int, str, str, bytes]]) -> None:
        """Append rows ``(key, collection_id, document_id, float32 bytes)``, keys above every key held."""
        if not rows:
            return
        vectors = np.stack([np.frombuffer(r[3], dtype=np.float32) for r in rows])
        snap = self._snap
        dim = vectors.shape[1]
        if snap.n and dim != snap.vectors.shape[1]:
            raise BadRequestError(
                f"embeddings of {dim} dimensions cannot join an index of {snap.vectors.shape[1]}: "
                "re-index the knowledge base after changing the embedding model",
                code="embedding_dimensions",
            )
        count = len(rows)
        needed = snap.n + count
        if needed > len(snap.keys) or snap.vectors.shape[1] != dim:
            capacity = max(needed, 2 * len(snap.keys), 1024)
            snap = _Snapshot(
                snap.n,
                _grow(snap.keys, capacity),
                _grow(snap.live, capacity),
                _grow(snap.collections, capacity),
                _grow(snap.documents, capacity),
                _grow_matrix(snap.vectors, capacity, dim, snap.n),
            )
        start, end = snap.n, needed
        snap.keys[start:end] = [r[0] for r in rows]
        snap.live[start:end] = True
        snap.collections[start:end] = [_code(self._collection_codes, r[1]) for r in rows]
        snap.documents[start:end] = [_code(self._document_codes, r[2]) for r in rows]
        snap.vectors[start:end] = vectors
        self._snap = replace(snap, n=end)
        self.live_count += count

    def retain(self, live_keys: Iterable[int]) -> None:
        """Drop every row whose key is not in ``live_keys``; compact when a quarter is dead."""
        snap = self._snap
        keep = np.isin(snap.keys[: snap.n], np.fromiter(live_keys, np.int64))
        live = snap.live.copy()
        live[: snap.n] &= keep
        self.live_count = int(live[: snap.n].sum())
        if snap.n and self.live_count < 0.75 * snap.n:
            rows = np.flatnonzero(live[: snap.n])
            self._snap = _Snapshot(
                len(rows),
                snap.keys[rows],
                live[rows],
                snap.collections[rows],
                snap.documents[rows],
                snap.vectors[rows],
            )
        else:
            self._snap = replace(snap, live=live)

    def search(self, vector: Sequence[float], scope: Scope, k: int) -> list[Scored]:
        """The ``k`` rows in ``scope`` with the highest dot product with ``vector`` (exact)."""
        snap = self._snap
        if snap.n == 0 or k <= 0 or scope.empty:
            return []
        query = np.asarray(vector, dtype=np.float32)
        if query.shape != (snap.vectors.shape[1],):
            raise BadRequestError(
                f"the query embedding has {query.size} dimensions, the index {snap.vectors.shape[1]}",
                code="embedding_dimensions",
            )
        rows = np.flatnonzero(self._mask(snap, scope))
        if rows.size == 0:
            return []
        if rows.size * 3 < snap.n:
            scores = snap.vectors[rows] @ query
        else:
            scores = (snap.vectors[: snap.n] @ query)[rows]
        if k < rows.size:
            best = np.argpartition(-scores, k - 1)[:k]
            best = best[np.argsort(-scores[best], kind="stable")]
        else:
            best = np.argsort(-scores, kind="stable")
        return [Scored(int(snap.keys[rows[i]]), float(scores[i])) for i in best]

    def _mask(self, snap: _Snapshot, scope: Scope) -> _Bools:
        n = snap.n
        mask = snap.live[:n] & np.isin(
            snap.collections[:n], _codes(self._collection_codes, scope.collections)
        )
        if scope.exclude_documents:
            mask &= ~np.isin(snap.documents[:n], _codes(self._document_codes, scope.exclude_documents))
        if scope.documents is not None:
            mask &= np.isin(snap.documents[:n], _codes(self._document_codes, scope.documents))
        return mask


def _code(codes: dict[str, int], name: str) -> int:
    code = codes.get(name)
    if code is None:
        code = codes[name] = len(codes)
    return code


def _codes(codes: dict[str, int], names: Iterable[str]) -> _Codes:
    return np.array([codes[n] for n in names if n in codes], dtype=np.int32)


_A = TypeVar("_A", bound=np.generic)


def _grow(array: npt.NDArray[_A], capacity: int) -> npt.NDArray[_A]:
    grown = np.zeros(capacity, dtype=array.dtype)
    grown[: len(array)] = array
    return grown


def _grow_matrix(matrix: _Floats, capacity: int, dim: int, used: int) -> _Floats:
    grown = np.zeros((capacity, dim), dtype=np.float32)
    if used:
        grown[:used] = matrix[:used]
    return grown
