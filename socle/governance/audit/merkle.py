"""The Merkle tree of RFC 6962 / RFC 9162 over audit entries: roots, proofs, and their verification.

Hashes (RFC 9162 §2.1.1): a leaf is ``SHA-256(0x00 || entry)``, an interior node
``SHA-256(0x01 || left || right)``; the tree over ``n`` leaves splits at the largest power of two
smaller than ``n``; the empty tree's root is ``SHA-256("")``.

This module is pure: proofs are computed in two steps, so that storage stays elsewhere.
:func:`inclusion_ranges` and :func:`consistency_ranges` say *which* subtrees a proof is made of
(half-open leaf ranges, in proof order); the caller hashes those ranges from whatever holds the leaves
(:func:`range_root` over a list in memory, or a store with cached subtrees). The verifiers are the
algorithms of RFC 9162 §2.1.3.2 and §2.1.4.2, transcribed step by step.

:class:`Frontier` is the compact form of a tree: the roots of its maximal perfect subtrees, left to
right (at most 64 hashes). Appending a leaf and computing the root need nothing else, which lets the
writer keep the tree's state in one small row, and lets pruning forget old entries while keeping
every later root computable (see :mod:`socle.governance.audit.log`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

__all__ = [
    "EMPTY_ROOT",
    "Frontier",
    "ProofError",
    "consistency_ranges",
    "inclusion_ranges",
    "leaf_hash",
    "node_hash",
    "range_root",
    "split",
    "verify_consistency",
    "verify_inclusion",
]

EMPTY_ROOT = hashlib.sha256(b"").digest()
_sha256 = hashlib.sha256

Range = tuple[int, int]


class ProofError(ValueError):
    """A proof does not verify (or is malformed)."""


def leaf_hash(entry: bytes) -> bytes:
    return _sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right).digest()


def split(n: int) -> int:
    """The largest power of two smaller than ``n`` (``n`` > 1): where RFC 6962 splits a tree."""
    return 1 << ((n - 1).bit_length() - 1)


class Frontier:
    """A tree's compact state: the roots of its maximal perfect subtrees, largest (leftmost) first."""

    __slots__ = ("hashes", "size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if len(hashes) != size.bit_count():
            raise ValueError(f"a frontier of size {size} has {size.bit_count()} hashes, not {len(hashes)}")
        self.size = size
        self.hashes = list(hashes)

    def copy(self) -> Frontier:
        return Frontier(self.size, self.hashes)

    def append(self, leaf: bytes) -> None:
        """Add a leaf hash (merging equal-size subtrees, as binary addition carries)."""
        hashes, size, node = self.hashes, self.size, leaf
        while size & 1:
            node = _sha256(b"\x01" + hashes.pop() + node).digest()
            size >>= 1
        hashes.append(node)
        self.size += 1

    def extend(self, leaves: Iterable[bytes]) -> None:
        for leaf in leaves:
            self.append(leaf)

    def root(self) -> bytes:
        if not self.hashes:
            return EMPTY_ROOT
        node = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            node = _sha256(b"\x01" + left + node).digest()
        return node

    def ranges(self) -> list[Range]:
        """The leaf range each hash covers, in the same order."""
        out, start = [], 0
        for bit in reversed(range(self.size.bit_length())):
            if self.size >> bit & 1:
                out.append((start, start + (1 << bit)))
                start += 1 << bit
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Frontier) and (self.size, self.hashes) == (other.size, other.hashes)

    def __repr__(self) -> str:
        return f"Frontier(size={self.size}, root={self.root().hex()[:16]}...)"


def range_root(leaves: Sequence[bytes]) -> bytes:
    """The root of the tree whose leaf hashes are ``leaves`` (MTH of RFC 9162)."""
    frontier = Frontier()
    frontier.extend(leaves)
    return frontier.root()


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """The subtrees of an inclusion proof of leaf ``index`` in a tree of ``size`` leaves, from the leaf
    up (PATH of RFC 6962 §2.1.1)."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of size {size}")
    out: list[Range] = []
    start, end = 0, size
    while end - start > 1:
        k = split(end - start)
        if index < start + k:
            out.append((start + k, end))
            end = start + k
        else:
            out.append((start, start + k))
            start += k
    out.reverse()
    return out


def consistency_ranges(old: int, new: int) -> list[Range]:
    """The subtrees of a consistency proof from size ``old`` to size ``new`` (PROOF of RFC 6962
    §2.1.2); empty when ``old`` is 0 or equal to ``new``."""
    if not 0 <= old <= new:
        raise ValueError(f"no consistency proof from size {old} to size {new}")
    if old in (0, new):
        return []
    out: list[Range] = []
    start, end, complete = 0, new, True  # SUBPROOF(m, D[start:end], complete)
    m = old
    while m != end - start:
        k = split(end - start)
        if m <= k:
            out.append((start + k, end))
            end = start + k
        else:
            out.append((start, start + k))
            m -= k
            start += k
            complete = False
    if not complete:
        out.append((start, end))
    out.reverse()
    return out


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> None:
    """RFC 9162 §2.1.3.2; raises :class:`ProofError` unless ``proof`` places ``leaf`` at ``index``
    in the tree of ``size`` leaves whose root is ``root``."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is not below the tree size {size}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError("the inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the inclusion proof is too short")
    if r != root:
        raise ProofError("the inclusion proof does not lead to the root")


def verify_consistency(old: int, new: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> None:
    """RFC 9162 §2.1.4.2; raises :class:`ProofError` unless ``proof`` shows that the tree of ``old``
    leaves (root ``old_root``) is a prefix of the tree of ``new`` leaves (root ``new_root``)."""
    if _trivially_consistent(old, new, old_root, new_root, proof):
        return
    if not proof:
        raise ProofError("the consistency proof is empty")
    path = list(proof)
    if old & (old - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("the consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the consistency proof is too short")
    if fr != old_root:
        raise ProofError("the consistency proof does not lead to the old root")
    if sr != new_root:
        raise ProofError("the consistency proof does not lead to the new root")


def _trivially_consistent(
    old: int, new: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """The cases outside the RFC's algorithm: equal sizes, the empty tree, bad sizes (raises)."""
    if not 0 <= old <= new:
        raise ProofError(f"size {old} is larger than size {new}")
    if old == new:
        if proof:
            raise ProofError("a proof between equal sizes must be empty")
        if old_root != new_root:
            raise ProofError("equal sizes with different roots")
        return True
    if old == 0:
        if proof:
            raise ProofError("a proof from the empty tree must be empty")
        return True
    return False
