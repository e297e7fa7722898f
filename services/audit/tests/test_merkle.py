"""The Merkle tree against RFC 9162: Certificate Transparency's known answers, an independent recursive
implementation written straight from the RFC's definitions, and properties over random trees."""

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vigie_audit.merkle import (
    EMPTY_ROOT,
    ConsistencyProof,
    InclusionProof,
    MerkleFrontier,
    MerkleTree,
    ProofRequestError,
    ProofVerificationError,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)

# The Certificate Transparency reference tree (RFC 6962 test vectors, as published in Google's
# certificate-transparency code and kept in transparency-dev/merkle proof/verify_test.go).
CT_LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
# (leaf index from 0, tree size, path)
CT_INCLUSION = [
    (0, 1, []),
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
CT_CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]


# --- RFC 9162 section 2.1, transcribed as literally as possible, over lists of leaf data ---------------


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(d: list[bytes]) -> bytes:
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = _k(len(d))
    return hashlib.sha256(b"\x01" + mth(d[:k]) + mth(d[k:])).digest()


def path(m: int, d: list[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = _k(len(d))
    if m < k:
        return [*path(m, d[:k]), mth(d[k:])]
    return [*path(m - k, d[k:]), mth(d[:k])]


def subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [mth(d)]
    k = _k(n)
    if m <= k:
        return [*subproof(m, d[:k], b), mth(d[k:])]
    return [*subproof(m - k, d[k:], False), mth(d[:k])]


def proof(m: int, d: list[bytes]) -> list[bytes]:
    return subproof(m, d, True)


def tree_of(data: list[bytes]) -> MerkleTree:
    return MerkleTree(leaf_hash(x) for x in data)


# --- known answers --------------------------------------------------------------------------------------


def test_empty_tree_root_is_sha256_of_nothing() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert MerkleTree().root() == EMPTY_ROOT
    assert MerkleFrontier().root() == EMPTY_ROOT


@pytest.mark.parametrize("size", range(1, 9))
def test_roots_match_certificate_transparency(size: int) -> None:
    assert tree_of(CT_LEAVES).root(size).hex() == CT_ROOTS[size - 1]
    frontier = MerkleFrontier()
    for leaf in CT_LEAVES[:size]:
        frontier.append(leaf_hash(leaf))
    assert frontier.root().hex() == CT_ROOTS[size - 1]


@pytest.mark.parametrize(("index", "size", "expected"), CT_INCLUSION)
def test_inclusion_proofs_match_certificate_transparency(index: int, size: int, expected: list[str]) -> None:
    tree = tree_of(CT_LEAVES)
    assert [h.hex() for h in tree.inclusion_proof(index, size)] == expected
    verify_inclusion(
        index, size, leaf_hash(CT_LEAVES[index]), [bytes.fromhex(h) for h in expected], tree.root(size)
    )


@pytest.mark.parametrize(("first", "second", "expected"), CT_CONSISTENCY)
def test_consistency_proofs_match_certificate_transparency(
    first: int, second: int, expected: list[str]
) -> None:
    tree = tree_of(CT_LEAVES)
    assert [h.hex() for h in tree.consistency_proof(first, second)] == expected
    verify_consistency(
        first, second, tree.root(first), tree.root(second), [bytes.fromhex(h) for h in expected]
    )


# --- against the literal RFC transcription, every shape up to 40 leaves -----------------------------------


def test_every_root_path_and_proof_matches_the_rfc_definitions() -> None:
    data = [bytes([i, i * 7 % 256]) for i in range(40)]
    tree = tree_of(data)
    for n in range(1, 41):
        assert tree.root(n) == mth(data[:n])
        for m in range(n):
            assert tree.inclusion_proof(m, n) == path(m, data[:n]), (m, n)
        for m in range(1, n):
            assert tree.consistency_proof(m, n) == proof(m, data[:n]), (m, n)


def test_the_frontier_creates_each_perfect_node_once() -> None:
    frontier, tree = MerkleFrontier(), MerkleTree()
    created: dict[tuple[int, int], bytes] = {}
    for i in range(100):
        h = leaf_hash(str(i).encode())
        for node, value in frontier.append(h):
            assert (node.level, node.index) not in created
            created[(node.level, node.index)] = value
        tree.append(h)
        assert frontier.root() == tree.root()
    for (level, index), value in created.items():
        assert tree.nodes(level)[index] == value
    resumed = MerkleFrontier(100, [created[(n.level, n.index)] for n in MerkleFrontier.nodes_for(100)])
    assert resumed.root() == frontier.root()


def test_impossible_requests_are_refused() -> None:
    tree = tree_of(CT_LEAVES)
    with pytest.raises(ProofRequestError, match="not in a tree of size 8"):
        tree.inclusion_proof(8, 8)
    with pytest.raises(ProofRequestError, match="past the log"):
        tree.inclusion_proof(0, 9)
    with pytest.raises(ProofRequestError, match="from tree size 5 to 3"):
        tree.consistency_proof(5, 3)


# --- properties --------------------------------------------------------------------------------------------

LEAF_SETS = st.lists(st.binary(max_size=8), min_size=1, max_size=70)


@settings(max_examples=150, deadline=None)
@given(data=LEAF_SETS, choice=st.data())
def test_every_inclusion_proof_verifies_and_altered_ones_fail(
    data: list[bytes], choice: st.DataObject
) -> None:
    tree = tree_of(data)
    n = choice.draw(st.integers(1, len(data)), label="tree size")
    m = choice.draw(st.integers(0, n - 1), label="index")
    leaf, root, audit_path = leaf_hash(data[m]), tree.root(n), tree.inclusion_proof(m, n)
    verify_inclusion(m, n, leaf, audit_path, root)
    InclusionProof(m, n, leaf, tuple(audit_path), root).verify()

    alterations: list[tuple[int, int, bytes, list[bytes]]] = [
        (m, n, leaf, audit_path[:-1]) if audit_path else (m, n, leaf, [root]),
        (m, n, leaf, [*audit_path, root]),
        (m, n, leaf_hash(b"another leaf"), audit_path),
        # Leaves are at most 8 bytes: these longer strings are in no tree.
        (m, n, leaf, [leaf_hash(b"not a sibling of anything"), *audit_path[1:]]),
    ]
    if audit_path:
        position = choice.draw(st.integers(0, len(audit_path) - 1), label="element")
        bit = choice.draw(st.integers(0, 255), label="bit")
        flipped = list(audit_path)
        flipped[position] = bytes([flipped[position][0] ^ (1 << (bit % 8)), *flipped[position][1:]])
        alterations.append((m, n, leaf, flipped))
    if m + 1 < n and tree.inclusion_proof(m + 1, n) != audit_path:
        alterations.append((m + 1, n, leaf, audit_path))
    for index, size, leaf_value, altered in alterations:
        with pytest.raises(ProofVerificationError):
            verify_inclusion(index, size, leaf_value, altered, root)


@settings(max_examples=150, deadline=None)
@given(data=LEAF_SETS, choice=st.data())
def test_every_consistency_proof_verifies_and_altered_ones_fail(
    data: list[bytes], choice: st.DataObject
) -> None:
    tree = tree_of(data)
    second = choice.draw(st.integers(1, len(data)), label="second")
    first = choice.draw(st.integers(0, second), label="first")
    r1, r2, consistency = tree.root(first), tree.root(second), tree.consistency_proof(first, second)
    verify_consistency(first, second, r1, r2, consistency)
    ConsistencyProof(first, second, r1, r2, tuple(consistency)).verify()
    if not consistency:
        return  # 0 or equal sizes: nothing to alter but the roots
    position = choice.draw(st.integers(0, len(consistency) - 1), label="element")
    flipped = list(consistency)
    flipped[position] = bytes([flipped[position][0] ^ 0x10, *flipped[position][1:]])
    alterations = [
        (first, second, r1, r2, flipped),
        (first, second, r1, r2, consistency[:-1]),
        (first, second, r1, r2, [*consistency, r2]),
        (first, second, r1, r2, [r1, *consistency]),
        (first, second, r2, r1, consistency),
        (first, second, r1, leaf_hash(b"x"), consistency),
    ]
    for size1, size2, root1, root2, altered in alterations:
        with pytest.raises(ProofVerificationError):
            verify_consistency(size1, size2, root1, root2, altered)


def test_a_changed_leaf_changes_every_later_root_and_no_earlier_one() -> None:
    data = [bytes([i]) for i in range(20)]
    tampered = list(data)
    tampered[11] = b"changed"
    original, changed = tree_of(data), tree_of(tampered)
    for n in range(1, 21):
        assert (original.root(n) == changed.root(n)) == (n <= 11)
    # And the old head of 15 entries cannot be shown consistent with the changed tree.
    with pytest.raises(ProofVerificationError):
        verify_consistency(15, 20, original.root(15), changed.root(20), changed.consistency_proof(15, 20))


def test_proofs_round_trip_through_json() -> None:
    tree = tree_of(CT_LEAVES)
    inclusion = InclusionProof(5, 8, tree.nodes(0)[5], tuple(tree.inclusion_proof(5, 8)), tree.root(8))
    assert InclusionProof.from_json(inclusion.to_json()) == inclusion
    consistency = ConsistencyProof(3, 7, tree.root(3), tree.root(7), tuple(tree.consistency_proof(3, 7)))
    assert ConsistencyProof.from_json(consistency.to_json()) == consistency
    with pytest.raises(ValueError, match="audit_path"):
        InclusionProof.from_json({**inclusion.to_json(), "audit_path": ["zz"]})
    with pytest.raises(ValueError, match="first"):
        ConsistencyProof.from_json({**consistency.to_json(), "first": -1})
