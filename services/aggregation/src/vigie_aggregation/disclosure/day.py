"""The releases of one site, family and UTC day, in order: each window, then the day.

:class:`DayReleases` carries from window to window what the next releases need (:class:`DayState`): the
earlier windows' suppression patterns and certificates, the obligations the last window left to the next
one, and the cells the day owes. The service stores that state with each window release and rebuilds it
from the database before the next one, so a restart (or another replica) continues the same day exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from vigie_aggregation.disclosure.protection import (
    DayProtection,
    Obligation,
    WindowPattern,
    WindowProtection,
    protect_day,
    protect_window,
)
from vigie_aggregation.disclosure.table import Cell, LeafFigures, SensitivityRule, Table, TableSpec

__all__ = ["DayReleases", "DayState", "day_leaves"]


@dataclass(slots=True)
class DayState:
    windows: list[WindowPattern] = field(default_factory=list)
    next_window: list[Obligation] = field(default_factory=list)
    day_owed: set[Cell] = field(default_factory=set)


def day_leaves(spec: TableSpec, windows: Iterable[Mapping[Cell, LeafFigures]]) -> dict[Cell, LeafFigures]:
    """The day's leaves: each the sum of the same leaf over the windows (max for maxima and, with the MAX
    rule, for the sensitivity)."""
    day: dict[Cell, LeafFigures] = {}
    summed = spec.sensitivity is SensitivityRule.SUM
    for leaves in windows:
        for cell, figures in leaves.items():
            previous = day.get(cell)
            if previous is None:
                day[cell] = figures
                continue
            if figures.max_objects is None or previous.max_objects is None:
                maximum = figures.max_objects if previous.max_objects is None else previous.max_objects
            else:
                maximum = max(previous.max_objects, figures.max_objects)
            day[cell] = LeafFigures(
                previous.value + figures.value,
                previous.sensitivity + figures.sensitivity
                if summed
                else max(previous.sensitivity, figures.sensitivity),
                maximum,
            )
    return day


class DayReleases:
    def __init__(
        self,
        spec: TableSpec,
        *,
        threshold: int,
        windows_per_day: int,
        state: DayState | None = None,
    ) -> None:
        self.spec = spec
        self.threshold = threshold
        self.windows_per_day = windows_per_day
        self.state = state or DayState()

    def release_window(self, period_start: int, table: Table, *, has_next_window: bool) -> WindowProtection:
        state = self.state
        protection = protect_window(
            table,
            threshold=self.threshold,
            forced=state.next_window,
            past=state.windows,
            has_next_window=has_next_window,
            windows_per_day=self.windows_per_day,
            day_forced=state.day_owed,
        )
        state.windows.append(
            WindowPattern(
                period_start,
                {cell: table.cells[cell].value for cell in protection.suppressed},
                dict(protection.certificates),
            )
        )
        state.next_window = list(protection.next_window)
        state.day_owed |= protection.day
        return protection

    def release_day(self, table: Table) -> DayProtection:
        return protect_day(
            table, threshold=self.threshold, forced=self.state.day_owed, windows=self.state.windows
        )
