"""The statistical table of one release: leaves, hierarchies, and every cell the API may publish.

A table has a few dimensions, each a hierarchy (a tree). A node is the path from the root of its tree:
``()`` is the root (the total over the dimension), ``("north-gate",)`` a camera, ``("north-gate", "l1")``
one of its lines. A cell is one node per dimension. The **leaves** are the finest cells (every dimension at
its deepest level): the figures the anonymiser reported. Every other cell is the sum of the leaves under
it, and is published only if its shape (the depth of its node in each dimension) is one of the table's
**views**: the fixed list of aggregates the API serves. Nothing outside the views is ever published, which
is what lets disclosure control reason about every published linear combination.

A leaf exists when it was configured (a line listed by the report, even with a zero count). A cell that
has no existing leaf under it does not exist: it is not published at all ("not configured", not zero).
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["Cell", "CellFigures", "Hierarchy", "LeafFigures", "Node", "SensitivityRule", "Table", "TableSpec"]

Node = tuple[str, ...]
Cell = tuple[Node, ...]


class SensitivityRule(enum.Enum):
    """How the figure that the threshold applies to aggregates from the leaves."""

    # Counts: the cell's own value (the number of crossings or stays).
    SUM = "sum"
    # Occupancy: the most objects seen at once in any leaf under the cell (a lower bound of how many
    # distinct objects the cell describes).
    MAX = "max"


@dataclass(frozen=True, slots=True)
class TableSpec:
    """A family of figures: its dimensions, their leaf depths, and the views the API publishes."""

    name: str
    dimensions: tuple[str, ...]
    leaf_depths: tuple[int, ...]
    views: frozenset[tuple[int, ...]]
    sensitivity: SensitivityRule

    def __post_init__(self) -> None:
        if len(self.leaf_depths) != len(self.dimensions):
            raise ValueError(f"{self.name}: one leaf depth per dimension is needed")
        if self.leaf_depths not in self.views:
            raise ValueError(f"{self.name}: the leaves themselves must be one of the views")
        for view in self.views:
            if len(view) != len(self.dimensions) or any(
                not 0 <= d <= leaf for d, leaf in zip(view, self.leaf_depths, strict=True)
            ):
                raise ValueError(f"{self.name}: view {view} does not fit the dimensions")

    def is_published_shape(self, cell: Cell) -> bool:
        return tuple(len(node) for node in cell) in self.views


@dataclass(frozen=True, slots=True)
class LeafFigures:
    """What a leaf holds: the additive figure, the figure the threshold applies to, and a maximum."""

    value: float
    sensitivity: int
    max_objects: int | None = None


@dataclass(frozen=True, slots=True)
class CellFigures:
    value: float
    sensitivity: int
    max_objects: int | None


class Hierarchy:
    """One dimension's tree, as far as the existing leaves of a table reach."""

    def __init__(self, leaves: Iterable[Node]) -> None:
        children: dict[Node, set[Node]] = {}
        leaf_set: set[Node] = set()
        for leaf in leaves:
            leaf_set.add(leaf)
            for depth in range(len(leaf)):
                children.setdefault(leaf[:depth], set()).add(leaf[: depth + 1])
        self._children = {node: tuple(sorted(kids)) for node, kids in children.items()}
        self._leaves = leaf_set
        self._leaves_under: dict[Node, tuple[Node, ...]] = {}

    def children(self, node: Node) -> tuple[Node, ...]:
        return self._children.get(node, ())

    def is_leaf(self, node: Node) -> bool:
        return node in self._leaves

    def siblings(self, node: Node) -> tuple[Node, ...]:
        if not node:
            return ()
        return tuple(n for n in self.children(node[:-1]) if n != node)

    def leaves_under(self, node: Node) -> tuple[Node, ...]:
        cached = self._leaves_under.get(node)
        if cached is None:
            if node in self._leaves:
                cached = (node,)
            else:
                cached = tuple(leaf for child in self.children(node) for leaf in self.leaves_under(child))
            self._leaves_under[node] = cached
        return cached


class Table:
    """The leaves of one release of one family, and every published cell computed from them."""

    def __init__(self, spec: TableSpec, leaves: Mapping[Cell, LeafFigures]) -> None:
        for cell in leaves:
            if tuple(len(node) for node in cell) != spec.leaf_depths:
                raise ValueError(f"{spec.name}: {cell} is not a leaf (depths {spec.leaf_depths})")
        self.spec = spec
        self.leaves = dict(leaves)
        self.hierarchies = tuple(
            Hierarchy(cell[i] for cell in self.leaves) for i in range(len(spec.dimensions))
        )
        self.cells = _aggregate(spec, self.leaves)

    def value(self, cell: Cell) -> float:
        figures = self.cells.get(cell)
        return figures.value if figures is not None else 0.0

    def leaves_under(self, cell: Cell) -> list[Cell]:
        """The existing leaves a cell sums (also for cells outside the views)."""
        per_dimension = [h.leaves_under(node) for h, node in zip(self.hierarchies, cell, strict=True)]
        return [leaf for leaf in itertools.product(*per_dimension) if leaf in self.leaves]


def _aggregate(spec: TableSpec, leaves: Mapping[Cell, LeafFigures]) -> dict[Cell, CellFigures]:
    values: dict[Cell, float] = {}
    sensitivity: dict[Cell, int] = {}
    maxima: dict[Cell, int | None] = {}
    summed = spec.sensitivity is SensitivityRule.SUM
    views = sorted(spec.views)
    for leaf, figures in leaves.items():
        for view in views:
            cell = tuple(node[:depth] for node, depth in zip(leaf, view, strict=True))
            values[cell] = values.get(cell, 0.0) + figures.value
            if summed:
                sensitivity[cell] = sensitivity.get(cell, 0) + figures.sensitivity
            else:
                sensitivity[cell] = max(sensitivity.get(cell, 0), figures.sensitivity)
            if figures.max_objects is not None:
                previous = maxima.get(cell)
                maxima[cell] = figures.max_objects if previous is None else max(previous, figures.max_objects)
            else:
                maxima.setdefault(cell, None)
    return {cell: CellFigures(values[cell], sensitivity[cell], maxima[cell]) for cell in values}
