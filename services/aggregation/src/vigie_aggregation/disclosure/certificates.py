"""Protection certificates: why a suppressed cell cannot be computed from what is published.

Every published figure is a sum of leaves, so what a reader learns is a set of linear equations on the
leaves. A suppressed cell ``p`` is safe when there is a change ``d`` of the leaves that leaves every
published figure as it is but changes ``p``: then the publication is the same for two different values of
``p``, and no combination of published figures (totals, other windows, overlapping queries) gives ``p``.
Such a ``d`` is the cell's **certificate**; it stays valid whatever else is suppressed later, since
suppressing more only removes equations.

Certificates here are hypercubes (the method of Eurostat's tau-Argus): in each dimension ``j`` pick a leaf
``a_j`` under ``p``'s node and either a leaf ``b_j`` in a sibling branch or none, and let
``d = (e_a1 - e_b1) (x) (e_a2 - e_b2) (x) ...`` (with ``e_bj`` omitted when there is no ``b_j``). The sum of
``d`` over a cell factorises per dimension: it is non-zero exactly when, in every dimension, the cell's node
contains one of ``a_j``, ``b_j`` but not both. Those cells (:meth:`Certificate.required_cells`) must all be
suppressed; every other published cell sums ``d`` to zero. ``p`` itself is among them, so ``d`` changes ``p``.
Time is one more dimension, handled by :mod:`vigie_aggregation.disclosure.protection`, which chooses how the
certificate reaches other windows and the day.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Container, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property

from vigie_aggregation.disclosure.table import Cell, Hierarchy, Node, TableSpec

__all__ = ["Certificate", "Factor", "candidate_certificates", "star_certificate"]

# How many leaves are tried as a_j under an aggregated node, and as b_j in each sibling branch.
_LEAVES_PER_BRANCH = 2
# At most this many certificates are weighed per primary cell (the cheapest usually comes early).
_MAX_CANDIDATES = 600


@dataclass(frozen=True, slots=True)
class Factor:
    """One dimension of a hypercube: +1 on leaf ``a``, -1 on leaf ``b`` (none: only ``a``)."""

    a: Node
    b: Node | None

    def nonzero_nodes(self) -> tuple[Node, ...]:
        """The nodes containing exactly one of ``a``, ``b``: the paths from each up to their common ancestor
        (excluded); with no ``b``, the whole path from ``a`` to the root."""
        if self.b is None:
            return tuple(self.a[:depth] for depth in range(len(self.a), -1, -1))
        common = 0
        while common < min(len(self.a), len(self.b)) and self.a[common] == self.b[common]:
            common += 1
        return tuple(self.a[:depth] for depth in range(len(self.a), common, -1)) + tuple(
            self.b[:depth] for depth in range(len(self.b), common, -1)
        )

    def to_json(self) -> list[list[str] | None]:
        return [list(self.a), list(self.b) if self.b is not None else None]

    @classmethod
    def from_json(cls, value: Sequence[Sequence[str] | None]) -> Factor:
        a, b = value
        if a is None:
            raise ValueError("a factor needs its leaf a")
        return cls(tuple(a), tuple(b) if b is not None else None)


@dataclass(frozen=True)
class Certificate:
    """A hypercube over the non-time dimensions of one table."""

    factors: tuple[Factor, ...]

    @cached_property
    def corners(self) -> tuple[tuple[Cell, int], ...]:
        """The leaves where the certificate is non-zero, with its sign there."""
        per_dimension = [[(f.a, 1)] + ([(f.b, -1)] if f.b is not None else []) for f in self.factors]
        corners = []
        for combination in itertools.product(*per_dimension):
            sign = 1
            for _, s in combination:
                sign *= s
            corners.append((tuple(node for node, _ in combination), sign))
        return tuple(corners)

    def required_cells(self, spec: TableSpec) -> tuple[Cell, ...]:
        """The published cells whose sum of the certificate is non-zero: they must all be suppressed."""
        return _required_cells(self.factors, spec.views)

    def to_json(self) -> list[list[list[str] | None]]:
        return [f.to_json() for f in self.factors]

    @classmethod
    def from_json(cls, value: Sequence[Sequence[Sequence[str] | None]]) -> Certificate:
        return cls(tuple(Factor.from_json(f) for f in value))


@functools.lru_cache(maxsize=4096)
def _nodes_by_depth(factor: Factor) -> dict[int, tuple[Node, ...]]:
    nodes: dict[int, list[Node]] = {}
    for node in factor.nonzero_nodes():
        nodes.setdefault(len(node), []).append(node)
    return {depth: tuple(found) for depth, found in nodes.items()}


# The same hypercubes come back for every primary cell of a window and every window of a site.
@functools.lru_cache(maxsize=65536)
def _required_cells(factors: tuple[Factor, ...], views: frozenset[tuple[int, ...]]) -> tuple[Cell, ...]:
    by_depth = [_nodes_by_depth(factor) for factor in factors]
    cells: list[Cell] = []
    for view in sorted(views):  # only the published shapes: one product per view
        choices = [nodes.get(depth, ()) for nodes, depth in zip(by_depth, view, strict=True)]
        if all(choices):
            cells.extend(itertools.product(*choices))
    return tuple(cells)


def _factor_candidates(hierarchy: Hierarchy, node: Node) -> list[Factor]:
    if hierarchy.is_leaf(node):
        a_choices: Sequence[Node] = (node,)
    else:
        a_choices = hierarchy.leaves_under(node)[:_LEAVES_PER_BRANCH]
    b_choices: list[Node | None] = []
    for sibling in hierarchy.siblings(node):
        b_choices.extend(hierarchy.leaves_under(sibling)[:_LEAVES_PER_BRANCH])
    b_choices.append(None)  # always possible: the path up to the root
    return [Factor(a, b) for a in a_choices for b in b_choices]


def candidate_certificates(
    hierarchies: Sequence[Hierarchy], cell: Cell, leaves: Container[Cell]
) -> Iterator[Certificate]:
    """Hypercubes whose every corner is an existing leaf and whose required cells include ``cell``.

    Deterministic: the same table and cell give the same candidates in the same order.
    """
    per_dimension = [_factor_candidates(h, node) for h, node in zip(hierarchies, cell, strict=True)]
    produced = 0
    for factors in itertools.product(*per_dimension):
        certificate = Certificate(tuple(factors))
        if all(corner in leaves for corner, _ in certificate.corners):
            yield certificate
            produced += 1
            if produced >= _MAX_CANDIDATES:
                return


def star_certificate(leaf: Cell) -> Certificate:
    """The certificate that always exists: one leaf alone, every published cell above it suppressed."""
    return Certificate(tuple(Factor(node, None) for node in leaf))
