"""The journal's Merkle tree, as RFC 9162 section 2.1 defines it (the tree of Certificate Transparency).

Hashes are SHA-256; a leaf hash is ``SHA-256(0x00 || leaf)``, an interior node ``SHA-256(0x01 || left ||
right)``. For ``n`` leaves the root is MTH(D[n]): the left child covers the largest power of two below
``n`` leaves, the right child the rest, recursively (no padding, no duplicated leaves).

Storage. Every subtree the RFC's recursion reaches is either *perfect* (2**level leaves starting at a
multiple of 2**level) or the ragged right edge of a tree, and a ragged subtree is the right fold of the
perfect subtrees that tile it (one per set bit of its size). So a log keeps only the hashes of perfect
subtrees, each written once and never changed (a :class:`Node`): an append writes the leaf and the
parents it completes (two nodes on average, at most log2(n) + 1), and any root, inclusion proof or
consistency proof needs at most about 2*log2(n) stored nodes, known before reading any of them
(:func:`inclusion_proof_plan`, :func:`consistency_proof_plan`): one batched read whatever the log's size.

This module is pure: it imports no database, network or web code.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

HASH_SIZE = 32
# MTH({}) = SHA-256 of the empty string.
EMPTY_ROOT = hashlib.sha256(b"").digest()
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(_LEAF_PREFIX + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def largest_power_of_two_below(n: int) -> int:
    """The RFC's k: the largest power of two strictly smaller than ``n`` (n >= 2)."""
    if n < 2:
        raise ValueError(f"no power of two is below {n} in the RFC's sense (n must be at least 2)")
    return 1 << ((n - 1).bit_length() - 1)


@dataclass(frozen=True, slots=True, order=True)
class Node:
    """A perfect subtree: the 2**level leaves from ``index * 2**level``; level 0 is a leaf."""

    level: int
    index: int

    @property
    def first_leaf(self) -> int:
        return self.index << self.level

    @property
    def end_leaf(self) -> int:
        """One past its last leaf."""
        return (self.index + 1) << self.level


class ProofRequestError(ValueError):
    """A proof was asked for sizes or indexes that do not describe one (e.g. an index past the tree);
    ``field`` names the request field at fault when there is one."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ProofVerificationError(ValueError):
    """A proof does not prove what it claims."""


def subtree_nodes(start: int, end: int) -> list[Node]:
    """The perfect subtrees, left to right, whose right fold is MTH(D[start:end]).

    ``[start, end)`` must be a subtree the RFC's recursion reaches (the whole tree, a left child, or a
    right child): then the largest power of two that fits always starts at an aligned position.
    """
    nodes: list[Node] = []
    while start < end:
        level = (end - start).bit_length() - 1
        if start & ((1 << level) - 1):
            raise ValueError(f"[{start}, {end}) is not a subtree of an RFC 9162 tree")
        nodes.append(Node(level, start >> level))
        start += 1 << level
    return nodes


def fold_subtree(hashes: Sequence[bytes]) -> bytes:
    """MTH of a subtree from the hashes of :func:`subtree_nodes`, folding from the right."""
    if not hashes:
        raise ValueError("a subtree has at least one leaf")
    result = hashes[-1]
    for left in reversed(hashes[:-1]):
        result = node_hash(left, result)
    return result


@dataclass(frozen=True, slots=True)
class ProofPlan:
    """The subtrees (as leaf ranges) whose hashes make a proof, in the proof's order, and the stored
    perfect nodes needed to compute them."""

    ranges: tuple[tuple[int, int], ...]

    @property
    def nodes(self) -> set[Node]:
        return {node for start, end in self.ranges for node in subtree_nodes(start, end)}

    def assemble(self, hashes: Mapping[Node, bytes]) -> list[bytes]:
        """The proof, given the hashes of :attr:`nodes` (a missing one raises KeyError)."""
        return [
            fold_subtree([hashes[node] for node in subtree_nodes(start, end)]) for start, end in self.ranges
        ]


def root_plan(size: int) -> ProofPlan:
    """MTH(D[size]) as a one-element plan; the empty tree has no nodes (its root is :data:`EMPTY_ROOT`)."""
    if size < 0:
        raise ProofRequestError(f"tree size {size} is negative")
    return ProofPlan(((0, size),) if size else ())


def root_from(size: int, hashes: Mapping[Node, bytes]) -> bytes:
    return root_plan(size).assemble(hashes)[0] if size else EMPTY_ROOT


def inclusion_proof_plan(index: int, size: int) -> ProofPlan:
    """PATH(index, D[size]) of RFC 9162 section 2.1.3.1, deepest sibling first."""
    if not 0 <= index < size:
        raise ProofRequestError(f"leaf index {index} is not in a tree of size {size}")
    ranges: list[tuple[int, int]] = []
    start, end = 0, size
    while end - start > 1:
        k = largest_power_of_two_below(end - start)
        if index < start + k:
            ranges.append((start + k, end))  # PATH(m, D[0:k]) : MTH(D[k:n])
            end = start + k
        else:
            ranges.append((start, start + k))  # PATH(m - k, D[k:n]) : MTH(D[0:k])
            start += k
    return ProofPlan(tuple(reversed(ranges)))


def consistency_proof_plan(first: int, second: int) -> ProofPlan:
    """PROOF(first, D[second]) of RFC 9162 section 2.1.4.1 (empty when first is 0 or equals second)."""
    if not 0 <= first <= second:
        raise ProofRequestError(f"no consistency proof from tree size {first} to {second}")
    if first in (0, second):
        return ProofPlan(())
    ranges: list[tuple[int, int]] = []
    start, end, m, whole_old_tree = 0, second, first, True
    while m != end - start:
        k = largest_power_of_two_below(end - start)
        if m <= k:
            ranges.append((start + k, end))  # SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
            end = start + k
        else:
            ranges.append((start, start + k))  # SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
            start += k
            m -= k
            whole_old_tree = False
    if not whole_old_tree:
        ranges.append((start, end))  # SUBPROOF(m, D[m], false) = {MTH(D[m])}
    return ProofPlan(tuple(reversed(ranges)))


def _check_hash(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise ProofVerificationError(f"{what} is {len(value)} bytes, a SHA-256 hash is {HASH_SIZE}")


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> None:
    """RFC 9162 section 2.1.3.2: raise :class:`ProofVerificationError` unless ``proof`` shows that the
    leaf hash ``leaf`` is at ``index`` in the tree of ``size`` leaves whose root is ``root``."""
    if not 0 <= index < size:
        raise ProofVerificationError(f"leaf index {index} is not in a tree of size {size}")
    _check_hash(leaf, "the leaf hash")
    _check_hash(root, "the root hash")
    fn, sn, r = index, size - 1, leaf
    for position, p in enumerate(proof):
        _check_hash(p, f"proof element {position}")
        if sn == 0:
            raise ProofVerificationError(f"the proof is longer than a tree of size {size} needs")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofVerificationError(f"the proof is shorter than a tree of size {size} needs")
    if r != root:
        raise ProofVerificationError("the proof leads to another root")


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 section 2.1.4.2: raise :class:`ProofVerificationError` unless ``proof`` shows that the tree
    of ``first`` leaves with root ``first_root`` is a prefix of the tree of ``second`` leaves."""
    if not 0 <= first <= second:
        raise ProofVerificationError(f"tree size {first} cannot precede tree size {second}")
    _check_hash(first_root, "the first root hash")
    _check_hash(second_root, "the second root hash")
    if first == second:
        if proof:
            raise ProofVerificationError("trees of equal size need an empty proof")
        if first_root != second_root:
            raise ProofVerificationError(f"two different roots for the same tree size {first}")
        return
    if first == 0:
        if proof:
            raise ProofVerificationError("the empty tree needs an empty proof")
        return  # the empty tree is a prefix of every tree
    if not proof:
        raise ProofVerificationError("the proof is empty")
    for position, c in enumerate(proof):
        _check_hash(c, f"proof element {position}")
    path = list(proof)
    if first & (first - 1) == 0:  # first is a power of two: its root is a node of the second tree
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofVerificationError("the proof is longer than these tree sizes need")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofVerificationError("the proof is shorter than these tree sizes need")
    if fr != first_root:
        raise ProofVerificationError(f"the proof does not lead to the root of tree size {first}")
    if sr != second_root:
        raise ProofVerificationError(f"the proof does not lead to the root of tree size {second}")


class MerkleFrontier:
    """The perfect subtrees that tile the first ``size`` leaves (one per set bit of ``size``) and their
    hashes: all a writer needs in memory to append in O(log n) and compute the current root."""

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        nodes = subtree_nodes(0, size)
        if len(nodes) != len(hashes):
            raise ValueError(f"a frontier of size {size} has {len(nodes)} nodes, got {len(hashes)} hashes")
        self._size = size
        self._nodes = list(zip(nodes, hashes, strict=True))

    @staticmethod
    def nodes_for(size: int) -> list[Node]:
        """The nodes to load to resume appending after ``size`` leaves."""
        return subtree_nodes(0, size)

    @property
    def size(self) -> int:
        return self._size

    def copy(self) -> MerkleFrontier:
        clone = MerkleFrontier()
        clone._size, clone._nodes = self._size, list(self._nodes)
        return clone

    def append(self, leaf: bytes) -> list[tuple[Node, bytes]]:
        """Add a leaf hash; return the nodes it creates (the leaf itself first, then completed parents)."""
        _check_hash(leaf, "a leaf hash")
        created = [(Node(0, self._size), leaf)]
        current_node, current_hash = created[0]
        while self._nodes and self._nodes[-1][0].level == current_node.level:
            left_node, left_hash = self._nodes.pop()
            current_node = Node(left_node.level + 1, left_node.index >> 1)
            current_hash = node_hash(left_hash, current_hash)
            created.append((current_node, current_hash))
        self._nodes.append((current_node, current_hash))
        self._size += 1
        return created

    def root(self) -> bytes:
        return fold_subtree([h for _, h in self._nodes]) if self._nodes else EMPTY_ROOT


class MerkleTree:
    """An in-memory log keeping every perfect node (one list per level): for verifiers and tests."""

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self._levels: list[list[bytes]] = [[]]
        for leaf in leaf_hashes:
            self.append(leaf)

    @property
    def size(self) -> int:
        return len(self._levels[0])

    def append(self, leaf: bytes) -> None:
        _check_hash(leaf, "a leaf hash")
        self._levels[0].append(leaf)
        level = 0
        while len(self._levels[level]) % 2 == 0:
            if level + 1 == len(self._levels):
                self._levels.append([])
            self._levels[level + 1].append(node_hash(*self._levels[level][-2:]))
            level += 1

    def nodes(self, level: int) -> Sequence[bytes]:
        """The perfect nodes of one level, by index."""
        return self._levels[level] if level < len(self._levels) else ()

    def _lookup(self, plan: ProofPlan) -> dict[Node, bytes]:
        return {node: self._levels[node.level][node.index] for node in plan.nodes}

    def root(self, size: int | None = None) -> bytes:
        size = self.size if size is None else size
        if size > self.size:
            raise ProofRequestError(f"tree size {size} is past the log's {self.size} leaves")
        return root_from(size, self._lookup(root_plan(size)))

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        size = self.size if size is None else size
        if size > self.size:
            raise ProofRequestError(f"tree size {size} is past the log's {self.size} leaves")
        plan = inclusion_proof_plan(index, size)
        return plan.assemble(self._lookup(plan))

    def consistency_proof(self, first: int, second: int | None = None) -> list[bytes]:
        second = self.size if second is None else second
        if second > self.size:
            raise ProofRequestError(f"tree size {second} is past the log's {self.size} leaves")
        plan = consistency_proof_plan(first, second)
        return plan.assemble(self._lookup(plan))


def _hex_hash(data: Mapping[str, Any], name: str) -> bytes:
    value = data.get(name)
    try:
        decoded = bytes.fromhex(value) if isinstance(value, str) else b""
    except ValueError:
        decoded = b""
    if len(decoded) != HASH_SIZE:
        raise ValueError(f"{name}: expected a SHA-256 hash in hexadecimal")
    return decoded


def _hex_hashes(data: Mapping[str, Any], name: str) -> tuple[bytes, ...]:
    value = data.get(name)
    if not isinstance(value, list):
        raise ValueError(f"{name}: expected a list of hexadecimal hashes")
    return tuple(_hex_hash({name: v}, name) for v in value)


def _size(data: Mapping[str, Any], name: str) -> int:
    value = data.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name}: expected a non-negative integer")
    return value


@dataclass(frozen=True, slots=True)
class InclusionProof:
    """That the leaf hash ``leaf_hash`` is entry ``index`` of the tree of ``tree_size`` entries."""

    index: int
    tree_size: int
    leaf_hash: bytes
    audit_path: tuple[bytes, ...]
    root_hash: bytes

    def verify(self, root: bytes | None = None) -> None:
        """Against ``root`` (one the caller trusts, e.g. from a signed head), else the proof's own."""
        verify_inclusion(self.index, self.tree_size, self.leaf_hash, self.audit_path, root or self.root_hash)

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "tree_size": self.tree_size,
            "leaf_hash": self.leaf_hash.hex(),
            "audit_path": [h.hex() for h in self.audit_path],
            "root_hash": self.root_hash.hex(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> InclusionProof:
        return cls(
            _size(data, "index"),
            _size(data, "tree_size"),
            _hex_hash(data, "leaf_hash"),
            _hex_hashes(data, "audit_path"),
            _hex_hash(data, "root_hash"),
        )


@dataclass(frozen=True, slots=True)
class ConsistencyProof:
    """That the tree of ``first`` entries is a prefix of the tree of ``second`` entries."""

    first: int
    second: int
    first_root: bytes
    second_root: bytes
    proof: tuple[bytes, ...]

    def verify(self, first_root: bytes | None = None, second_root: bytes | None = None) -> None:
        verify_consistency(
            self.first,
            self.second,
            first_root or self.first_root,
            second_root or self.second_root,
            self.proof,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "first": self.first,
            "second": self.second,
            "first_root": self.first_root.hex(),
            "second_root": self.second_root.hex(),
            "proof": [h.hex() for h in self.proof],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ConsistencyProof:
        return cls(
            _size(data, "first"),
            _size(data, "second"),
            _hex_hash(data, "first_root"),
            _hex_hash(data, "second_root"),
            _hex_hashes(data, "proof"),
        )
