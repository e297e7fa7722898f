"""What a release publishes: every cell of the views, with its figure or the reason it is withheld.

Pure: the release job (:mod:`vigie_aggregation.release`) loads the buckets, calls these functions and stores
the result; the API serves only what was stored.

One reason covers both small counts and the cells suppressed to protect them: saying which cells are small
would hand the reader the very fact that suppression hides ("this cell is between 1 and 10").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from vigie_aggregation.disclosure.noise import NoiseSource, two_sided_geometric
from vigie_aggregation.disclosure.table import Cell, LeafFigures, Table

__all__ = [
    "REASON_BUDGET",
    "REASON_DAY_WITHHELD",
    "REASON_DISCLOSURE",
    "PublishedCell",
    "noisy_leaves",
    "published_cells",
    "withheld_cells",
]

REASON_DISCLOSURE = "disclosure_control"
REASON_DAY_WITHHELD = "day_withheld"
REASON_BUDGET = "privacy_budget_exhausted"


@dataclass(frozen=True, slots=True)
class PublishedCell:
    """One published cell. ``value`` and ``max_objects`` are kept for the day's sums and never served when
    ``suppressed``."""

    cell: Cell
    value: float
    max_objects: int | None
    suppressed: bool
    reason: str | None


def published_cells(
    table: Table, suppressed: Iterable[Cell], *, reason: str = REASON_DISCLOSURE
) -> list[PublishedCell]:
    """Every cell of the table, suppressed or not, in a stable order."""
    hidden = set(suppressed)
    return [
        PublishedCell(
            cell,
            figures.value,
            figures.max_objects,
            cell in hidden,
            reason if cell in hidden else None,
        )
        for cell, figures in sorted(table.cells.items())
    ]


def withheld_cells(table: Table) -> list[PublishedCell]:
    """The cells of cameras whose privacy budget is spent: listed as withheld, with no figure. They are in
    no site total (the site's coverage shows the camera as not analysed)."""
    return [
        PublishedCell(cell, 0.0, None, True, REASON_BUDGET)
        for cell in sorted(table.cells)
        if cell[0]  # not a site total
    ]


def noisy_leaves(
    leaves: Mapping[Cell, LeafFigures], *, epsilon: float, source: NoiseSource
) -> dict[Cell, LeafFigures]:
    """Count leaves with two-sided geometric noise, clamped at zero (see ``disclosure.noise``)."""
    noisy = {}
    for cell, figures in leaves.items():
        count = max(0, round(figures.value) + two_sided_geometric(epsilon, source))
        noisy[cell] = LeafFigures(float(count), count, figures.max_objects)
    return noisy
