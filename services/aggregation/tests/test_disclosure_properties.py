"""Property-based tests: no suppressed small count can be computed from what the API publishes.

Hypothesis draws a site (cameras, lines or zones that come and go; with ``classes``, each counting only
some classes, which may change from one window to the next as a policy would; with ``directions``, lines
that count one direction only, also changing), a short day of windows and
small, skewed counts; the publication pipeline releases every window then the day, exactly as the service does
(``family_leaves`` -> ``Table`` -> ``DayReleases`` -> ``published_cells``); the attacker then takes every
published figure of every window and of the day (all views: lines, directions, classes, camera and site
totals, day totals) as a linear equation on the leaves and tries to solve for each small count.
"""

from __future__ import annotations

from collections.abc import Hashable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vigie_aggregation.disclosure import DayReleases, Table, day_leaves, is_primary
from vigie_aggregation.families import CROSSINGS, DWELL, OCCUPANCY, CameraWindowFigures, family_leaves
from vigie_aggregation.publication import published_cells

W = 1200
SMALL_SKEWED = st.sampled_from([0, 0, 0, 0, 0, 1, 1, 2, 3, 4, 6, 12, 25])
SIX = frozenset(range(1, 7))
# What a camera's purpose counts: everything, persons (pedestrian flow), vehicles, persons and bicycles.
PURPOSE_CLASSES = st.sampled_from([SIX, frozenset({1}), frozenset({2, 3, 4, 5, 6}), frozenset({1, 2})])


@st.composite
def site_day(
    draw: st.DrawFn, zones: bool, classes: bool = False, directions: bool = False
) -> tuple[int, list[list[CameraWindowFigures]]]:
    threshold = draw(st.sampled_from([3, 5, 11]))
    cameras = {
        f"cam{c}": [f"m{i}" for i in range(draw(st.integers(1, 2)))] for c in range(draw(st.integers(1, 2)))
    }
    windows = []
    for _ in range(draw(st.integers(1, 4))):
        figures = []
        for camera, members in cameras.items():
            present = [m for m in members if draw(st.integers(0, 5)) > 0]  # a member sometimes missing
            if not present:
                continue
            window = CameraWindowFigures(camera, covered_seconds=W)
            counted = dict.fromkeys(present, SIX)
            if classes:
                purpose = draw(PURPOSE_CLASSES)
                # A member counts the purpose's classes, or sometimes one of them only (a cycle lane).
                counted = {
                    m: purpose if draw(st.booleans()) else frozenset({draw(st.sampled_from(sorted(purpose)))})
                    for m in present
                }
                if zones:
                    window.zone_classes = dict(counted)
                else:
                    window.line_classes = dict(counted)
            if zones:
                window.zone_ids = set(present)
                buckets = ["0-60", "60-"]
                for zone in present:
                    for object_class in sorted(counted[zone]):
                        objects = draw(SMALL_SKEWED)
                        if objects:
                            window.occupancy[(zone, object_class)] = (
                                objects * draw(st.floats(1, 600)),
                                objects,
                            )
                        for bucket in buckets:
                            count = draw(SMALL_SKEWED)
                            if count:
                                window.dwell[(zone, object_class, bucket)] = count
            else:
                window.line_ids = set(present)
                if directions:
                    # A line counts both directions, or one only (a one-way street, an exit-only door).
                    window.line_directions = {
                        line: draw(st.sampled_from([frozenset({1, 2}), frozenset({1}), frozenset({2})]))
                        for line in present
                    }
                for line in present:
                    for direction in sorted(window.line_directions.get(line, {1, 2})):
                        for object_class in sorted(counted[line]):
                            count = draw(SMALL_SKEWED)
                            if count:
                                window.crossings[(line, direction, object_class)] = count
            figures.append(window)
        windows.append(figures)
    return threshold, windows


def publish_day(spec, threshold, windows):  # type: ignore[no-untyped-def]
    """Run the releases of one day; return the published cells as leaf sets, and the primary cells."""
    releases = DayReleases(spec, threshold=threshold, windows_per_day=len(windows))
    tables = []
    published: list[tuple[frozenset[Hashable], bool, float]] = []
    primaries: dict[Hashable, frozenset[Hashable]] = {}
    for i, cameras in enumerate(windows):
        table = Table(spec, family_leaves(spec, cameras))
        tables.append(table)
        protection = releases.release_window(i * W, table, has_next_window=i < len(windows) - 1)
        for cell in published_cells(table, protection.suppressed):
            leaves = frozenset((i, leaf) for leaf in table.leaves_under(cell.cell))
            published.append((leaves, cell.suppressed, cell.value))
            if is_primary(table.cells[cell.cell].sensitivity, threshold):
                assert cell.suppressed, f"window {i}: primary cell {cell.cell} published"
                primaries[("window", i, cell.cell)] = leaves
    day = Table(spec, day_leaves(spec, [t.leaves for t in tables]))
    protection = releases.release_day(day)
    for cell in published_cells(day, protection.suppressed):
        leaves = frozenset((i, leaf) for i, t in enumerate(tables) for leaf in t.leaves_under(cell.cell))
        published.append((leaves, cell.suppressed, cell.value))
        if is_primary(day.cells[cell.cell].sensitivity, threshold):
            assert cell.suppressed, f"day: primary cell {cell.cell} published"
            primaries[("day", cell.cell)] = leaves
    return published, primaries, protection.withheld


PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(site_day(zones=False))
def test_no_suppressed_crossing_count_is_a_combination_of_published_figures(attack, drawn) -> None:  # type: ignore[no-untyped-def]
    threshold, windows = drawn
    published, primaries, withheld = publish_day(CROSSINGS, threshold, windows)
    assert not withheld
    visible = [leaves for leaves, suppressed, _ in published if not suppressed]
    assert attack(visible, primaries) == set()


@PROPERTY
@pytest.mark.parametrize("spec", [OCCUPANCY, DWELL], ids=["occupancy", "dwell"])
@given(site_day(zones=True))
def test_no_suppressed_zone_figure_is_a_combination_of_published_figures(attack, spec, drawn) -> None:  # type: ignore[no-untyped-def]
    threshold, windows = drawn
    published, primaries, withheld = publish_day(spec, threshold, windows)
    assert not withheld
    visible = [leaves for leaves, suppressed, _ in published if not suppressed]
    assert attack(visible, primaries) == set()


@PROPERTY
@pytest.mark.parametrize("spec", [CROSSINGS, OCCUPANCY, DWELL], ids=["crossings", "occupancy", "dwell"])
@given(data=st.data())
def test_counting_only_some_classes_leaves_no_suppressed_figure_recoverable(attack, spec, data) -> None:  # type: ignore[no-untyped-def]
    """Totals over classes are totals over the classes counted: with one class counted, a line's total is
    that class's count, and it must be suppressed with it (the certificates see no sibling class)."""
    threshold, windows = data.draw(site_day(zones=spec is not CROSSINGS, classes=True))
    published, primaries, withheld = publish_day(spec, threshold, windows)
    assert not withheld
    visible = [leaves for leaves, suppressed, _ in published if not suppressed]
    assert attack(visible, primaries) == set()


@PROPERTY
@given(data=st.data())
def test_one_way_lines_leave_no_suppressed_figure_recoverable(attack, data) -> None:  # type: ignore[no-untyped-def]
    """Totals over directions are totals over the directions counted: a one-way line's total is its one
    direction's count, and it must be suppressed with it."""
    threshold, windows = data.draw(site_day(zones=False, classes=True, directions=True))
    published, primaries, withheld = publish_day(CROSSINGS, threshold, windows)
    assert not withheld
    visible = [leaves for leaves, suppressed, _ in published if not suppressed]
    assert attack(visible, primaries) == set()
