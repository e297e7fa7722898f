"""Primary and secondary suppression of one site's releases, window after window, then the day.

What is published. Per site, family (crossings, occupancy, dwell) and period, the cells of the table's views
(:mod:`vigie_aggregation.disclosure.table`), at two time levels: each reporting window, and each UTC day
(the sum of its windows). Nothing else: no hour, no month, no total over sites or over days. A window is
released once, after it ends, and never changes; the day is released after its last window.

Primary suppression. A cell whose sensitivity (its count; for occupancy the most objects at once) is from
1 to ``threshold - 1`` is suppressed. Zero is published: it says that nobody was counted, which is about no
one (and a suppressed zero would make every zero-free total exact); a count of at least the threshold is
published.

Secondary suppression. Each primary cell gets a certificate
(:mod:`~vigie_aggregation.disclosure.certificates`): a hypercube of leaves that can be changed without
changing any published figure. Its cells in the current window are suppressed now. Time is the last
dimension, and the certificate reaches across it in one of three ways, the cheapest that exists:

- **backward**: paired with an earlier window of the same day in which exactly the same cells are already
  suppressed (``d = (e_a - e_b) (x) rest``): the day total then sums ``d`` to zero and nothing else changes.
  Repeating the pattern over time is what Eurostat asks ("the same pattern over time").
- **forward**: paired with the next window of the same day, which must then suppress the same cells (an
  :class:`Obligation`). If the next window cannot (its camera or line is gone), the obligation falls back
  to the day.
- **vertical**: not paired in time (``d = e_a (x) rest``): the day release must suppress the same cells.

A day cell that is itself small gets a vertical certificate from one of its windows where that cell was a
primary (its window certificate's cells are suppressed there) or any window with the needed pattern.
If none could be found, which the construction rules out, the whole day release is withheld.

Since each primary cell keeps a certificate whose cells are all suppressed in the final publication, no
linear combination of published figures, across views, windows and the day, gives its value
(``tests/test_disclosure_properties.py`` checks this by linear algebra on random tables).

Non-negativity. An attacker may also use that counts are not negative: a certificate whose zero corners have
both signs cannot move at all, and an LP solver would pin the cell. Among the candidates, those whose known
zero corners all have one sign ("room") are preferred, at a bounded price (``NO_ROOM_PENALTY``): best
effort, not a guarantee.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from vigie_aggregation.disclosure.certificates import Certificate, candidate_certificates, star_certificate
from vigie_aggregation.disclosure.table import Cell, Table

__all__ = [
    "DayProtection",
    "Obligation",
    "TimeLink",
    "WindowPattern",
    "WindowProtection",
    "is_primary",
    "protect_day",
    "protect_window",
]


def is_primary(sensitivity: int, threshold: int) -> bool:
    """docs/privacy.md rule 12: a count from 1 to threshold-1 is suppressed; zero is published."""
    return 0 < sensitivity < threshold


class TimeLink:
    BACKWARD = "backward"
    FORWARD = "forward"
    VERTICAL = "vertical"


@dataclass(frozen=True, slots=True)
class Obligation:
    """Cells the next window of the same day must suppress, provided its ``corners`` exist there."""

    cells: tuple[Cell, ...]
    corners: tuple[Cell, ...]


@dataclass(frozen=True, slots=True)
class WindowPattern:
    """A released window, as later releases of the same day need it: its suppressed cells with their
    values, and the certificate of each of its primary cells."""

    period_start: int
    suppressed: Mapping[Cell, float]
    certificates: Mapping[Cell, Certificate]


@dataclass(slots=True)
class WindowProtection:
    suppressed: set[Cell] = field(default_factory=set)
    primary: set[Cell] = field(default_factory=set)
    certificates: dict[Cell, Certificate] = field(default_factory=dict)
    next_window: list[Obligation] = field(default_factory=list)
    day: set[Cell] = field(default_factory=set)
    links: collections.Counter[str] = field(default_factory=collections.Counter)


@dataclass(slots=True)
class DayProtection:
    suppressed: set[Cell] = field(default_factory=set)
    primary: set[Cell] = field(default_factory=set)
    certificates: dict[Cell, tuple[int, Certificate]] = field(default_factory=dict)
    withheld: bool = False


def _aggregation_level(table: Table, cell: Cell) -> int:
    return sum(leaf - len(node) for node, leaf in zip(cell, table.spec.leaf_depths, strict=True))


def _primaries(table: Table, threshold: int) -> list[Cell]:
    cells = [cell for cell, figures in table.cells.items() if is_primary(figures.sensitivity, threshold)]
    # Leaves first: their certificates are the cheapest and aggregated cells then reuse them.
    cells.sort(key=lambda c: (_aggregation_level(table, c), table.cells[c].sensitivity, c))
    return cells


def _room(signed_values: Iterable[tuple[float, int]]) -> bool:
    """Whether the leaves can move along the certificate without a count going negative."""
    zero_signs = {sign for value, sign in signed_values if value <= 0}
    return len(zero_signs) < 2


def _weight(value: float) -> float:
    # The information lost by suppressing a cell; zeros still cost something.
    return 1.0 + value


# What a certificate without room costs on top of its suppressions, in the unit of _weight (counts): room
# is worth losing that much published information, not more. Measured on a realistic day (5 cameras, two
# lines each, threshold 11): 25 keeps every day total of persons and cars per line and direction published,
# where preferring room at any cost suppressed 15 of those 40.
NO_ROOM_PENALTY = 25.0


@dataclass(slots=True)
class _Choice:
    key: tuple[float, int]
    certificate: Certificate
    cells: tuple[Cell, ...]
    link: str


def protect_window(
    table: Table,
    *,
    threshold: int,
    forced: Sequence[Obligation] = (),
    past: Sequence[WindowPattern] = (),
    has_next_window: bool,
    windows_per_day: int,
    day_forced: Iterable[Cell] = (),
) -> WindowProtection:
    """Suppress the primary cells of one window and choose each one's certificate.

    ``forced``: the obligations the previous window left to this one. ``past``: the earlier windows of the
    same day. ``has_next_window``: whether another window of the same day follows. ``day_forced``: the day
    cells already owed to earlier windows (they cost nothing more).
    """
    result = WindowProtection()
    for obligation in forced:
        if all(corner in table.leaves for corner in obligation.corners):
            result.suppressed.update(c for c in obligation.cells if c in table.cells)
        else:
            # The pair with this window cannot exist (the line is gone): the earlier window's certificate
            # becomes vertical, and the day owes its cells.
            result.day.update(obligation.cells)
    day_owed = set(day_forced) | result.day
    forward_owed: set[Cell] = set()

    past_index: dict[Cell, list[int]] = collections.defaultdict(list)
    for position, window in enumerate(past):
        for cell in window.suppressed:
            past_index[cell].append(position)

    for primary in _primaries(table, threshold):
        result.primary.add(primary)
        best: _Choice | None = None
        order = 0
        for certificate in candidate_certificates(table.hierarchies, primary, table.leaves):
            order += 1
            choice = _best_link(
                table,
                certificate,
                order,
                best.key[0] if best is not None else None,
                result.suppressed,
                past,
                past_index,
                has_next_window,
                windows_per_day,
                day_owed,
                forward_owed,
            )
            if choice is not None and (best is None or choice.key < best.key):
                best = choice
                if best.key[0] == 0:
                    break  # free and with room: nothing beats it
        if best is None:
            under = table.leaves_under(primary)
            leaf = max(under, key=lambda c: (table.leaves[c].value, c))
            star = star_certificate(leaf)
            best = _best_link(
                table,
                star,
                order + 1,
                None,
                result.suppressed,
                (),
                {},
                has_next_window,
                windows_per_day,
                day_owed,
                forward_owed,
            )
            assert best is not None, "a star certificate always has a vertical link"
        result.certificates[primary] = best.certificate
        result.suppressed.update(best.cells)
        result.links[best.link] += 1
        if best.link == TimeLink.FORWARD:
            corners = tuple(corner for corner, _ in best.certificate.corners)
            result.next_window.append(Obligation(best.cells, corners))
            forward_owed.update(best.cells)
        elif best.link == TimeLink.VERTICAL:
            result.day.update(best.cells)
            day_owed.update(best.cells)
    return result


def _best_link(
    table: Table,
    certificate: Certificate,
    order: int,
    bound: float | None,
    suppressed: set[Cell],
    past: Sequence[WindowPattern],
    past_index: Mapping[Cell, list[int]],
    has_next_window: bool,
    windows_per_day: int,
    day_owed: set[Cell],
    forward_owed: set[Cell],
) -> _Choice | None:
    cells = certificate.required_cells(table.spec)
    if any(cell not in table.cells for cell in cells):
        return None  # cannot happen when every corner exists; kept as a guard
    here = sum(_weight(table.cells[c].value) for c in cells if c not in suppressed)
    if bound is not None and here >= bound:
        return None  # every link costs at least this: it cannot beat the best so far
    corners_here = [(table.leaves[c].value, sign) for c, sign in certificate.corners]
    room_here = _room(corners_here)
    best: _Choice | None = None

    # Backward: an earlier window with exactly these cells suppressed already.
    candidates: set[int] | None = None
    for cell in cells:
        positions = past_index.get(cell)
        if not positions:
            candidates = set()
            break
        candidates = set(positions) if candidates is None else candidates & set(positions)
        if not candidates:
            break
    for position in sorted(candidates or (), reverse=True):
        earlier = past[position]
        signed = corners_here + [(earlier.suppressed[c], -sign) for c, sign in certificate.corners]
        room = _room(signed)
        choice = _Choice(
            (here + (0.0 if room else NO_ROOM_PENALTY), order), certificate, cells, TimeLink.BACKWARD
        )
        if best is None or choice.key < best.key:
            best = choice
        if room:
            break  # the most recent window with room

    if has_next_window:
        # The next window is unknown: assume it repeats this one (with the signs flipped).
        mirrored = _room(corners_here + [(value, -sign) for value, sign in corners_here])
        later = sum(_weight(table.cells[c].value) for c in cells if c not in forward_owed)
        cost = here + later + (0.0 if mirrored else NO_ROOM_PENALTY)
        choice = _Choice((cost, order), certificate, cells, TimeLink.FORWARD)
        if best is None or choice.key < best.key:
            best = choice

    day = sum(_weight(table.cells[c].value) * windows_per_day for c in cells if c not in day_owed)
    cost = here + day + (0.0 if room_here else NO_ROOM_PENALTY)
    choice = _Choice((cost, order), certificate, cells, TimeLink.VERTICAL)
    if best is None or choice.key < best.key:
        best = choice
    return best


def protect_day(
    table: Table,
    *,
    threshold: int,
    forced: Iterable[Cell] = (),
    windows: Sequence[WindowPattern] = (),
) -> DayProtection:
    """Suppress the primary cells of a day (its windows are released) and the cells the windows owe it."""
    result = DayProtection()
    result.suppressed.update(c for c in forced if c in table.cells)
    index: dict[Cell, list[int]] = collections.defaultdict(list)
    for position, window in enumerate(windows):
        for cell in window.suppressed:
            index[cell].append(position)

    for primary in _primaries(table, threshold):
        result.primary.add(primary)
        best: tuple[tuple[float, int], int, Certificate, tuple[Cell, ...]] | None = None
        options: list[tuple[int, Certificate]] = [
            (position, window.certificates[primary])
            for position, window in enumerate(windows)
            if primary in window.certificates
        ]
        for certificate in candidate_certificates(table.hierarchies, primary, table.leaves):
            cells = certificate.required_cells(table.spec)
            positions: set[int] | None = None
            for cell in cells:
                found = set(index.get(cell, ()))
                positions = found if positions is None else positions & found
                if not positions:
                    break
            if positions:
                options.append((max(positions), certificate))
        for order, (position, certificate) in enumerate(options):
            cells = certificate.required_cells(table.spec)
            if any(cell not in table.cells for cell in cells):
                continue
            window = windows[position]
            if any(cell not in window.suppressed for cell in cells):
                continue  # a stored certificate that no longer matches its window: not usable
            cost = sum(_weight(table.cells[c].value) for c in cells if c not in result.suppressed)
            room = _room((window.suppressed[c], sign) for c, sign in certificate.corners)
            key = (cost + (0.0 if room else NO_ROOM_PENALTY), order)
            if best is None or key < best[0]:
                best = (key, position, certificate, cells)
        if best is None:
            # Unreachable when every window was released by protect_window; withholding the whole day is
            # the safe answer if it ever happens (the windows stay protected on their own).
            result.withheld = True
            result.suppressed = set(table.cells)
            return result
        _, position, certificate, cells = best
        result.certificates[primary] = (windows[position].period_start, certificate)
        result.suppressed.update(cells)
    return result
