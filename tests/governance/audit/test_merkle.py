"""The RFC 6962 tree: published vectors (transparency-dev/merkle test data), a naive transcription of
the RFC's recursive definitions as the reference, and exhaustive and random property tests."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from socle.governance.audit.merkle import (
    EMPTY_ROOT,
    Frontier,
    ProofError,
    consistency_ranges,
    inclusion_ranges,
    leaf_hash,
    range_root,
    verify_consistency,
    verify_inclusion,
)

LEAVES = [bytes.fromhex(h) for h in ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                      "606162636465666768696a6b6c6d6e6f"]]  # fmt: skip
ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
H = bytes.fromhex


# The reference: RFC 6962 §2.1 written recursively, as in the RFC ------------------------------------
def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(d: list[bytes]) -> bytes:
    if not d:
        return _sha(b"")
    if len(d) == 1:
        return _sha(b"\x00" + d[0])
    k = _k(len(d))
    return _sha(b"\x01" + mth(d[:k]) + mth(d[k:]))


def path(m: int, d: list[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = _k(len(d))
    if m < k:
        return path(m, d[:k]) + [mth(d[k:])]
    return path(m - k, d[k:]) + [mth(d[:k])]


def subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    if m == len(d):
        return [] if b else [mth(d)]
    k = _k(len(d))
    if m <= k:
        return subproof(m, d[:k], b) + [mth(d[k:])]
    return subproof(m - k, d[k:], False) + [mth(d[:k])]


def _data(n: int) -> list[bytes]:
    return [i.to_bytes(4, "big") for i in range(n)]


def _hashes(ranges: list[tuple[int, int]], d: list[bytes]) -> list[bytes]:
    leaves = [leaf_hash(x) for x in d]
    return [range_root(leaves[a:b]) for a, b in ranges]


# Published vectors ------------------------------------------------------------------------------------
def test_roots_of_the_published_vectors() -> None:
    frontier = Frontier()
    assert frontier.root() == EMPTY_ROOT == H(ROOTS[0])
    for n, leaf in enumerate(LEAVES, start=1):
        frontier.append(leaf_hash(leaf))
        assert frontier.root().hex() == ROOTS[n]
        assert range_root([leaf_hash(x) for x in LEAVES[:n]]).hex() == ROOTS[n]
        assert mth(LEAVES[:n]).hex() == ROOTS[n]


def test_published_proofs() -> None:
    assert [h.hex()[:8] for h in _hashes(inclusion_ranges(0, 8), LEAVES)] == [
        "96a296d2",
        "5f083f0a",
        "6b47aaf2",
    ]
    assert [h.hex()[:8] for h in _hashes(inclusion_ranges(5, 8), LEAVES)] == [
        "bc1a0643",
        "ca854ea1",
        "d37ee418",
    ]
    assert [h.hex()[:8] for h in _hashes(consistency_ranges(1, 8), LEAVES)] == [
        "96a296d2",
        "5f083f0a",
        "6b47aaf2",
    ]
    assert [h.hex()[:8] for h in _hashes(consistency_ranges(6, 8), LEAVES)] == [
        "0ebc5d34",
        "ca854ea1",
        "d37ee418",
    ]
    assert [h.hex()[:8] for h in _hashes(consistency_ranges(2, 5), LEAVES)] == ["5f083f0a", "bc1a0643"]
    proof = _hashes(consistency_ranges(2, 5), LEAVES)
    verify_consistency(2, 5, H(ROOTS[2]), H(ROOTS[5]), proof)
    with pytest.raises(ProofError):
        verify_consistency(2, 5, H(ROOTS[2]), H(ROOTS[4]), proof)


# Against the reference, exhaustively on small trees ----------------------------------------------------
@pytest.mark.parametrize("n", range(1, 34))
def test_inclusion_proofs_match_the_rfc_and_verify(n: int) -> None:
    d = _data(n)
    root = mth(d)
    for m in range(n):
        proof = _hashes(inclusion_ranges(m, n), d)
        assert proof == path(m, d)
        verify_inclusion(m, n, leaf_hash(d[m]), proof, root)
        with pytest.raises(ProofError):
            verify_inclusion(m, n, leaf_hash(b"other"), proof, root)
        if proof:
            with pytest.raises(ProofError):
                verify_inclusion(m, n, leaf_hash(d[m]), proof[:-1], root)
            with pytest.raises(ProofError):
                verify_inclusion(m, n, leaf_hash(d[m]), [*proof, proof[0]], root)
            bad = [*proof]
            bad[-1] = bytes(32)
            with pytest.raises(ProofError):
                verify_inclusion(m, n, leaf_hash(d[m]), bad, root)
        if n > 1:
            with pytest.raises(ProofError):
                verify_inclusion((m + 1) % n, n, leaf_hash(d[m]), proof, root)
    with pytest.raises(ProofError):
        verify_inclusion(n, n, leaf_hash(d[0]), [], root)


@pytest.mark.parametrize("n", range(1, 34))
def test_consistency_proofs_match_the_rfc_and_verify(n: int) -> None:
    d = _data(n)
    new_root = mth(d)
    for m in range(1, n + 1):
        proof = _hashes(consistency_ranges(m, n), d)
        assert proof == (subproof(m, d, True) if m < n else [])
        verify_consistency(m, n, mth(d[:m]), new_root, proof)
        if m < n:
            with pytest.raises(ProofError):
                verify_consistency(m, n, mth(d[: m - 1] + [b"x"]), new_root, proof)
            with pytest.raises(ProofError):
                verify_consistency(m, n, mth(d[:m]), mth(d[:-1] + [b"x"]), proof)
            with pytest.raises(ProofError):
                verify_consistency(m, n, mth(d[:m]), new_root, proof[:-1])
            with pytest.raises(ProofError):
                verify_consistency(m, n, mth(d[:m]), new_root, [*proof, proof[0]])
    verify_consistency(0, n, EMPTY_ROOT, new_root, [])


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 5000), st.data())
def test_large_random_trees(n: int, data: st.DataObject) -> None:
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]
    root = range_root(leaves)
    m = data.draw(st.integers(0, n - 1))
    proof = [range_root(leaves[a:b]) for a, b in inclusion_ranges(m, n)]
    verify_inclusion(m, n, leaves[m], proof, root)
    old = data.draw(st.integers(1, n))
    cproof = [range_root(leaves[a:b]) for a, b in consistency_ranges(old, n)]
    verify_consistency(old, n, range_root(leaves[:old]), root, cproof)
    # A frontier resumed from its hashes gives the same roots as one built in one go.
    half = Frontier()
    half.extend(leaves[:old])
    resumed = Frontier(half.size, list(half.hashes))
    resumed.extend(leaves[old:])
    assert resumed.root() == root
    assert [range_root(leaves[a:b]) for a, b in half.ranges()] == half.hashes


def test_frontier_checks_its_shape() -> None:
    with pytest.raises(ValueError):
        Frontier(3, [bytes(32)])
    with pytest.raises(ValueError):
        inclusion_ranges(3, 3)
    with pytest.raises(ValueError):
        consistency_ranges(4, 3)
