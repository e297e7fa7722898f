"""Recompute the journal's tree from what is stored (or exported) and check it, naming the first entry
that does not match.

What is checked, for entries fed in index order:

1. Order: entry ``p`` must be the ``p``-th one; a gap (deleted entry), a repeat or a swap stops the
   check there, since nothing after it can be placed in the tree.
2. Content: each leaf must hash to its stored leaf hash, be a canonical :class:`AuditLogEntry`, and
   (from storage) agree with the indexed copies of its fields (actor, action, cameras...).
3. Stored tree (from storage): every stored perfect node must equal the one recomputed from the leaf
   hashes; a node for an entry that is missing is reported at that entry.
4. Signed tree heads: each signature must be valid (by the pinned key, when one is given) and the root
   of the first ``tree_size`` entries must equal the signed root. A journal rewritten consistently
   from some entry on (content, leaf hash and nodes) passes 1-3 and fails here; the mismatch is then
   located between the largest signed size that still matches and the first that does not.
5. Saved proofs: an inclusion or consistency proof saved earlier must verify against the recomputed
   roots (and an inclusion proof's leaf hash must be the recomputed one).

Pruned entries (retention removed their payload) are checked through their leaf hash only.
Pure: no database, network or web code.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields

from vigie_audit.journal import IndexedColumns, decode_leaf
from vigie_audit.merkle import (
    ConsistencyProof,
    InclusionProof,
    MerkleTree,
    Node,
    ProofVerificationError,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from vigie_audit.tree_head import SignedTreeHead, TreeHeadError

_MAX_FINDINGS = 1000


@dataclass(frozen=True, slots=True)
class LeafRecord:
    """One entry as stored or exported."""

    index: int
    leaf: bytes | None  # None: pruned by retention
    leaf_hash: bytes | None  # None: the stored tree lost it
    columns: IndexedColumns | None = None  # from storage: the indexed copies of the leaf's fields


@dataclass(frozen=True, slots=True)
class Finding:
    """Something that does not match; ``index`` is the first entry concerned (None: no entry is).

    A finding that can only bound where the change is (a stored node or a signed root that differs)
    has ``span_end``: the change is at an index from ``index`` to ``span_end - 1``.
    """

    index: int | None
    reason: str
    span_end: int | None = None

    def __str__(self) -> str:
        return f"index {self.index}: {self.reason}" if self.index is not None else self.reason


@dataclass(slots=True)
class VerificationReport:
    entries: int
    root: bytes
    tree_heads_checked: int
    findings: list[Finding] = field(default_factory=list)
    findings_left_out: int = 0

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def first_failure(self) -> Finding | None:
        """The finding at the smallest index (findings tied to no entry come last)."""
        if not self.findings:
            return None
        return min(self.findings, key=lambda f: (f.index is None, f.index or 0))

    def summary(self) -> str:
        if self.ok:
            return (
                f"OK: {self.entries} entries, root {self.root.hex()}, "
                f"{self.tree_heads_checked} signed tree head(s) match"
            )
        first = self.first_failure
        lines = [f"FAIL at {first}"]
        lines += [
            f"  also {f}" for f in sorted(self.findings, key=lambda f: (f.index is None, f.index or 0))[1:20]
        ]
        more = len(self.findings) - 20 + self.findings_left_out
        if more > 0:
            lines.append(f"  and {more} more")
        return "\n".join(lines)


def _first_column_difference(stored: IndexedColumns, actual: IndexedColumns) -> str | None:
    for column in fields(IndexedColumns):
        if getattr(stored, column.name) != getattr(actual, column.name):
            return column.name
    return None


class JournalVerifier:
    """Feed entries in order (:meth:`add`), then stored nodes, tree heads and proofs; :meth:`finish`."""

    def __init__(self, trusted_key: bytes | None = None) -> None:
        self._trusted_key = trusted_key
        self._tree = MerkleTree()
        self._broken_at: int | None = None
        self._seen = 0
        self._findings: list[Finding] = []
        self._left_out = 0
        self._heads: list[tuple[SignedTreeHead, str]] = []
        self._inclusions: list[InclusionProof] = []
        self._consistencies: list[ConsistencyProof] = []

    @property
    def verified_size(self) -> int:
        """How many entries, from index 0, are placed in the recomputed tree."""
        return self._tree.size

    def _report(self, index: int | None, reason: str, span_end: int | None = None) -> None:
        if len(self._findings) < _MAX_FINDINGS:
            self._findings.append(Finding(index, reason, span_end))
        else:
            self._left_out += 1

    def _pinpointed(self) -> list[Finding]:
        """Findings with a span point at the first exact finding inside it, which explains them."""
        exact = sorted(f.index for f in self._findings if f.span_end is None and f.index is not None)
        resolved = []
        for finding in self._findings:
            if finding.span_end is not None and finding.index is not None:
                inside = [i for i in exact if finding.index <= i < finding.span_end]
                if inside:
                    finding = Finding(inside[0], finding.reason, finding.span_end)
            resolved.append(finding)
        return resolved

    def _break(self, index: int, reason: str) -> None:
        if self._broken_at is None:
            self._broken_at = index
            self._report(index, reason)

    def add(self, item: LeafRecord | Finding) -> None:
        """The next entry, or a finding where the reader could not make one out (a garbled line)."""
        position = self._seen
        self._seen += 1
        if self._broken_at is not None:
            return
        if isinstance(item, Finding):
            self._break(position if item.index is None else item.index, item.reason)
            return
        if item.index != position:
            if item.index > position:
                missing = f"{position}" if item.index == position + 1 else f"{position} to {item.index - 1}"
                self._break(position, f"entry {missing} missing (found entry {item.index} next)")
            else:
                self._break(
                    position,
                    f"found entry {item.index} where entry {position} belongs (reordered or repeated)",
                )
            return
        stored_hash = item.leaf_hash
        if item.leaf is not None:
            actual_hash = leaf_hash(item.leaf)
            if stored_hash is None:
                self._report(position, "the leaf hash is missing from the stored tree")
                stored_hash = actual_hash
            elif actual_hash != stored_hash:
                self._report(position, "the entry's content does not match its leaf hash")
            else:
                self._check_content(position, item.leaf, item.columns)
        elif stored_hash is None:
            self._break(position, "a pruned entry lost its leaf hash: nothing after it can be checked")
            return
        self._tree.append(stored_hash)

    def _check_content(self, index: int, leaf: bytes, columns: IndexedColumns | None) -> None:
        try:
            entry = decode_leaf(leaf)
        except ValueError as error:
            self._report(index, str(error))
            return
        if columns is not None:
            differing = _first_column_difference(columns, IndexedColumns.of(entry))
            if differing is not None:
                self._report(index, f"the stored {differing} column differs from the entry's content")

    def check_stored_level(self, level: int, stored: Iterable[tuple[int, bytes]]) -> None:
        """Compare the stored perfect nodes of one level (by index) with the recomputed ones."""
        recomputed = self._tree.nodes(level)
        expected = 0
        for index, node in stored:
            node_range = Node(level, index)
            while expected < min(index, len(recomputed)):
                self._report_missing_node(Node(level, expected))
                expected += 1
            expected = max(expected, index + 1)
            if index >= len(recomputed):
                # A node past the recomputed tree: some entry it covers is missing (the first one at or
                # after the tree's end). After a break that is already reported.
                if self._broken_at is None:
                    first_missing = max(node_range.first_leaf, self._tree.size)
                    self._report(
                        first_missing,
                        f"the tree holds a hash covering entry {first_missing}, which is missing",
                    )
                continue
            if node != recomputed[index]:
                self._report(
                    node_range.first_leaf,
                    f"the stored hash of entries {node_range.first_leaf} to {node_range.end_leaf - 1} "
                    f"(level {level}) differs from the recomputed one",
                    span_end=node_range.end_leaf,
                )
        while expected < len(recomputed):
            self._report_missing_node(Node(level, expected))
            expected += 1

    def _report_missing_node(self, node: Node) -> None:
        self._report(
            node.first_leaf,
            f"the stored hash of entries {node.first_leaf} to {node.end_leaf - 1} "
            f"(level {node.level}) is missing",
        )

    def check_tree_head(self, head: SignedTreeHead, source: str) -> None:
        self._heads.append((head, source))

    def check_inclusion(self, claim: InclusionProof) -> None:
        self._inclusions.append(claim)

    def check_consistency(self, claim: ConsistencyProof) -> None:
        self._consistencies.append(claim)

    def _root(self, size: int) -> bytes | None:
        return self._tree.root(size) if size <= self._tree.size else None

    def _verify_heads(self) -> int:
        checked = 0
        matched_sizes = [0]
        for signed, source in sorted(self._heads, key=lambda h: h[0].head.tree_size):
            size = signed.head.tree_size
            try:
                signed.verify(self._trusted_key)
            except TreeHeadError as error:
                self._report(None, f"{source} tree head of size {size}: {error}")
                continue
            root = self._root(size)
            if root is None:
                if self._broken_at is None:
                    self._report(
                        self._tree.size,
                        f"{source} signed tree head covers {size} entries but only "
                        f"{self._tree.size} are there: "
                        f"entries from {self._tree.size} on are missing",
                    )
                continue
            if root != signed.head.root_hash:
                lower = max(s for s in matched_sizes if s <= size)
                self._report(
                    lower,
                    f"the first {size} entries do not match the {source} signed tree head of size {size}; "
                    f"the first {lower} match a signed head, so the change is at an index "
                    f"from {lower} to {size - 1}",
                    span_end=size,
                )
                continue
            matched_sizes.append(size)
            checked += 1
        return checked

    def _verify_proofs(self) -> None:
        for claim in self._inclusions:
            root = self._root(claim.tree_size)
            if root is None or claim.index >= self._tree.size:
                self._report(
                    claim.index,
                    f"a saved inclusion proof is for a tree of {claim.tree_size} entries, "
                    "past the checked ones",
                )
                continue
            if claim.leaf_hash != self._tree.nodes(0)[claim.index]:
                self._report(
                    claim.index, "a saved inclusion proof is for another leaf hash than the stored entry's"
                )
                continue
            if claim.root_hash != root:
                self._report(
                    claim.index,
                    f"the root of the first {claim.tree_size} entries is no longer the one a saved inclusion "
                    "proof showed",
                )
                continue
            try:
                verify_inclusion(claim.index, claim.tree_size, claim.leaf_hash, claim.audit_path, root)
            except ProofVerificationError as error:
                self._report(
                    claim.index, f"a saved inclusion proof (tree size {claim.tree_size}) fails: {error}"
                )
        for consistency in self._consistencies:
            first, second = self._root(consistency.first), self._root(consistency.second)
            if first is None or second is None:
                self._report(
                    None,
                    f"a saved consistency proof reaches tree size {consistency.second}, "
                    "past the checked entries",
                )
                continue
            if (consistency.first_root, consistency.second_root) != (first, second):
                self._report(
                    consistency.first,
                    f"the roots of tree sizes {consistency.first} and {consistency.second} are no longer "
                    "the ones a saved consistency proof showed",
                )
                continue
            try:
                verify_consistency(consistency.first, consistency.second, first, second, consistency.proof)
            except ProofVerificationError as error:
                self._report(
                    consistency.first,
                    f"a saved consistency proof from {consistency.first} to {consistency.second} "
                    f"fails: {error}",
                )

    def finish(self) -> VerificationReport:
        checked = self._verify_heads()
        self._verify_proofs()
        return VerificationReport(
            entries=self._seen,
            root=self._tree.root(),
            tree_heads_checked=checked,
            findings=self._pinpointed(),
            findings_left_out=self._left_out,
        )


def parse_proof(data: object) -> InclusionProof | ConsistencyProof:
    """A proof saved from the audit API (its JSON); raises ValueError naming the field at fault."""
    if not isinstance(data, dict):
        raise ValueError("a proof is a JSON object")
    if "audit_path" in data:
        return InclusionProof.from_json(data)
    if "proof" in data:
        return ConsistencyProof.from_json(data)
    raise ValueError("neither an inclusion proof (audit_path) nor a consistency proof (proof)")
