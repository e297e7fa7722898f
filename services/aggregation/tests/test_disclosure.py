"""Disclosure control, unit by unit: the primary rule, certificates, links across time, noise, budget."""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Hashable, Mapping

import pytest

from vigie_aggregation.disclosure import (
    DayReleases,
    Factor,
    LeafFigures,
    SystemNoise,
    Table,
    TimeLink,
    budget_period_start,
    day_leaves,
    decide_budget,
    is_primary,
    protect_window,
    two_sided_geometric,
)
from vigie_aggregation.disclosure.protection import _room
from vigie_aggregation.families import CROSSINGS, CameraWindowFigures, family_leaves
from vigie_aggregation.publication import noisy_leaves, published_cells

PERSON, CAR, BUS = 1, 3, 5
LR, RL = 1, 2


def busy_camera(
    camera: str = "cam", lines: tuple[str, ...] = ("l1", "l2"), **counts: int
) -> CameraWindowFigures:
    """A camera whose every line counts 40 persons and 30 cars each way, plus the given exceptions:
    ``l1_LR_bus=2`` is 2 buses left to right over line l1."""
    figures = CameraWindowFigures(camera, covered_seconds=1200, line_ids=set(lines))
    for line in lines:
        for direction in (LR, RL):
            figures.crossings[(line, direction, PERSON)] = 40
            figures.crossings[(line, direction, CAR)] = 30
    names = {"LR": LR, "RL": RL}
    classes = {"person": PERSON, "car": CAR, "bus": BUS}
    for key, count in counts.items():
        line, direction, object_class = key.split("_")
        figures.crossings[(line, names[direction], classes[object_class])] = count
    return figures


def table(*cameras: CameraWindowFigures) -> Table:
    return Table(CROSSINGS, family_leaves(CROSSINGS, cameras))


def leaf(camera: str, line: str, direction: int, object_class: int) -> tuple[tuple[str, ...], ...]:
    return ((camera, line), (str(direction),), (str(object_class),))


@pytest.mark.parametrize(
    ("count", "suppressed"), [(0, False), (1, True), (10, True), (11, False), (500, False)]
)
def test_counts_from_1_to_threshold_minus_1_are_primary_and_zero_is_published(
    count: int, suppressed: bool
) -> None:
    assert is_primary(count, 11) is suppressed


def test_a_factor_is_non_zero_on_the_paths_up_to_the_common_ancestor() -> None:
    assert set(Factor(("c", "l1"), ("c", "l2")).nonzero_nodes()) == {("c", "l1"), ("c", "l2")}
    assert set(Factor(("c", "l1"), None).nonzero_nodes()) == {("c", "l1"), ("c",), ()}
    assert set(Factor(("c", "l1"), ("d", "l1")).nonzero_nodes()) == {("c", "l1"), ("c",), ("d", "l1"), ("d",)}


def test_one_small_count_is_suppressed_with_complements_and_cannot_be_recovered(attack) -> None:  # type: ignore[no-untyped-def]
    window = table(busy_camera(l1_LR_bus=2))
    protection = protect_window(window, threshold=11, has_next_window=False, windows_per_day=72)
    small = leaf("cam", "l1", LR, BUS)
    assert protection.primary == {small, ((("cam", "l1")), ("1",), ("5",))} | {
        ((("cam", "l1")), (), ("5",)),  # the line's buses over both directions: 2
        ((("cam",)), (), ("5",)),  # the camera's buses: 2
        ((), (), ("5",)),  # the site's buses: 2
    }
    assert protection.primary <= protection.suppressed
    published = [
        frozenset(window.leaves_under(c.cell))
        for c in published_cells(window, protection.suppressed)
        if not c.suppressed
    ]
    targets: Mapping[Hashable, frozenset[Hashable]] = {
        cell: frozenset(window.leaves_under(cell)) for cell in protection.primary
    }
    # The last window of a day is protected vertically: its cells are owed by the day release too.
    assert protection.links == {TimeLink.VERTICAL: len(protection.primary)}
    assert protection.day
    assert attack(published, targets) == set()
    # Big figures are still published: the person and car counts, the camera and site totals.
    kept = {c.cell for c in published_cells(window, protection.suppressed) if not c.suppressed}
    assert ((), (), ()) in kept
    assert leaf("cam", "l2", RL, PERSON) in kept


def test_a_small_count_on_a_persons_only_camera_takes_its_totals_over_classes(attack) -> None:  # type: ignore[no-untyped-def]
    """A pedestrian camera counts persons only: its lines have no car or bus leaf, so the total over classes
    of a line (or of the camera) is its persons count, and a small persons count cannot hide behind
    zeros of other classes; it is protected across lines and directions instead, next to a camera that
    counts all six classes."""
    walk = CameraWindowFigures(
        "walk", covered_seconds=1200, line_ids={"l1", "l2"}, line_classes={"l1": {PERSON}, "l2": {PERSON}}
    )
    walk.crossings = {
        ("l1", LR, PERSON): 4,
        ("l1", RL, PERSON): 40,
        ("l2", LR, PERSON): 40,
        ("l2", RL, PERSON): 40,
    }
    window = table(walk, busy_camera("street"))
    assert {cell[2] for cell in window.leaves if cell[0][0] == "walk"} == {(str(PERSON),)}
    assert (("walk",), (), (str(CAR),)) not in window.cells, "no figure for cars, not even a zero"
    protection = protect_window(window, threshold=11, has_next_window=False, windows_per_day=72)
    small = leaf("walk", "l1", LR, PERSON)
    over_classes = (("walk", "l1"), (str(LR),), ())
    assert {small, over_classes} <= protection.primary
    assert protection.primary <= protection.suppressed
    published_figures = published_cells(window, protection.suppressed)
    published = [frozenset(window.leaves_under(c.cell)) for c in published_figures if not c.suppressed]
    targets = {cell: frozenset(window.leaves_under(cell)) for cell in protection.primary}
    assert attack(published, targets) == set()
    # The complements are persons too (another line or direction): no class is left to pair with.
    assert all(cell[2] in ((), (str(PERSON),)) for cell in protection.suppressed if cell[0][:1] == ("walk",))
    # The other camera's figures are still published.
    kept = {c.cell for c in published_figures if not c.suppressed}
    assert leaf("street", "l1", LR, CAR) in kept


def test_a_small_count_on_a_one_way_line_takes_its_totals_over_directions(attack) -> None:  # type: ignore[no-untyped-def]
    """An exit-only line counts right to left only: it has no left-to-right leaf, so its total over
    directions for a class is that class's one count, and a small count cannot hide behind a zero of the
    other direction; it is protected across classes and lines instead."""
    camera = busy_camera("gate", lines=("exit", "l2"), exit_RL_bus=3)
    camera.line_directions = {"exit": frozenset({RL})}
    for object_class in (PERSON, CAR):
        del camera.crossings[("exit", LR, object_class)]
    window = table(camera)
    assert {cell[1] for cell in window.leaves if cell[0] == ("gate", "exit")} == {(str(RL),)}
    assert leaf("gate", "exit", LR, BUS) not in window.cells, "no figure for the direction not counted"
    protection = protect_window(window, threshold=11, has_next_window=False, windows_per_day=72)
    small = leaf("gate", "exit", RL, BUS)
    over_directions = (("gate", "exit"), (), (str(BUS),))
    assert {small, over_directions} <= protection.primary
    assert protection.primary <= protection.suppressed
    published_figures = published_cells(window, protection.suppressed)
    published = [frozenset(window.leaves_under(c.cell)) for c in published_figures if not c.suppressed]
    targets = {cell: frozenset(window.leaves_under(cell)) for cell in protection.primary}
    assert attack(published, targets) == set()
    # The line's totals over directions are its right-to-left figures, published where not suppressed.
    kept = {c.cell: c for c in published_figures if not c.suppressed}
    assert kept[(("gate", "exit"), (), (str(PERSON),))].value == 40
    assert leaf("gate", "l2", LR, PERSON) in kept


def test_a_small_count_is_paired_with_the_next_window_then_the_next_repeats_the_pattern() -> None:
    releases = DayReleases(CROSSINGS, threshold=11, windows_per_day=72)
    first = releases.release_window(0, table(busy_camera(l1_LR_bus=2)), has_next_window=True)
    assert first.links[TimeLink.FORWARD] >= 1
    assert first.next_window
    owed = {cell for obligation in first.next_window for cell in obligation.cells}
    second = releases.release_window(1200, table(busy_camera(l1_LR_bus=3)), has_next_window=True)
    assert owed <= second.suppressed  # the obligation is honoured
    # The second window's own small buses find the same cells suppressed in the first: a backward pair.
    assert second.links[TimeLink.BACKWARD] >= 1


def test_an_obligation_the_next_window_cannot_honour_falls_to_the_day() -> None:
    releases = DayReleases(CROSSINGS, threshold=11, windows_per_day=72)
    first = releases.release_window(0, table(busy_camera(l1_LR_bus=2)), has_next_window=True)
    assert first.next_window
    # The next window has another camera only: the pair cannot exist there.
    releases.release_window(1200, table(busy_camera("other")), has_next_window=True)
    owed = {cell for obligation in first.next_window for cell in obligation.cells}
    assert owed <= releases.state.day_owed


def test_a_small_day_cell_is_protected_through_a_window_where_it_was_small(attack) -> None:  # type: ignore[no-untyped-def]
    releases = DayReleases(CROSSINGS, threshold=11, windows_per_day=3)
    windows = [busy_camera(l1_LR_bus=1), busy_camera(), busy_camera(l1_RL_bus=2)]
    tables = []
    published: list[frozenset[Hashable]] = []
    for i, figures in enumerate(windows):
        window = table(figures)
        tables.append(window)
        protection = releases.release_window(i * 1200, window, has_next_window=i < 2)
        published += [
            frozenset((i, x) for x in window.leaves_under(c.cell))
            for c in published_cells(window, protection.suppressed)
            if not c.suppressed
        ]
    day = Table(CROSSINGS, day_leaves(CROSSINGS, [t.leaves for t in tables]))
    protection = releases.release_day(day)
    buses = ((("cam",)), (), ("5",))
    assert buses in protection.primary  # 3 buses in the day
    assert protection.certificates[buses][0] in (0, 2400)  # from a window where buses were small
    assert not protection.withheld
    published += [
        frozenset((i, x) for i, t in enumerate(tables) for x in t.leaves_under(c.cell))
        for c in published_cells(day, protection.suppressed)
        if not c.suppressed
    ]
    target = frozenset((i, x) for i, t in enumerate(tables) for x in t.leaves_under(buses))
    assert attack(published, {"day buses": target}) == set()


@pytest.mark.parametrize(
    ("corners", "room"),
    [
        ([(2, 1), (5, -1), (40, -1), (30, 1)], True),  # no zero: the leaves can move either way
        ([(2, 1), (0, -1), (40, -1), (0, -1)], True),  # zeros of one sign: they can grow
        ([(2, 1), (0, -1), (40, -1), (0, 1)], False),  # zeros of both signs: nothing can move
    ],
)
def test_a_certificate_has_room_when_its_zero_corners_share_one_sign(
    corners: list[tuple[float, int]], room: bool
) -> None:
    # Without room, counts cannot move along the certificate without one going negative, so an attacker
    # who uses non-negativity (an LP) pins the cell although no linear combination gives it.
    assert _room(corners) is room


def test_two_sided_geometric_noise_is_centred_with_the_discrete_laplace_variance() -> None:
    source = random.Random(1)

    class Seeded:
        def uniform(self) -> float:
            return source.random()

    epsilon = 0.5
    draws = [two_sided_geometric(epsilon, Seeded()) for _ in range(20_000)]
    alpha = math.exp(-epsilon)
    assert abs(statistics.fmean(draws)) < 0.1
    assert statistics.pvariance(draws) == pytest.approx(2 * alpha / (1 - alpha) ** 2, rel=0.08)
    assert all(0.0 <= SystemNoise().uniform() < 1.0 for _ in range(100))
    with pytest.raises(ValueError, match="positive"):
        two_sided_geometric(0, Seeded())


def test_noisy_leaves_are_whole_and_never_negative() -> None:
    leaves = {
        leaf("cam", "l1", LR, PERSON): LeafFigures(0.0, 0),
        leaf("cam", "l1", RL, PERSON): LeafFigures(3.0, 3),
    }
    for _ in range(50):
        noisy = noisy_leaves(leaves, epsilon=0.2, source=SystemNoise())
        assert all(f.value >= 0 and f.value == int(f.value) == f.sensitivity for f in noisy.values())


def test_the_budget_refuses_a_camera_whose_spending_would_exceed_it() -> None:
    decision = decide_budget(["a", "b", "c"], {"a": 35.5, "b": 36.0}, epsilon=0.5, budget=36.0)
    assert decision.granted == {"a", "c"}
    assert decision.refused == {"b"}
    assert budget_period_start(1_700_006_400 + 5000, 1) == 1_700_006_400
    assert budget_period_start(1_700_006_400 + 5000, 7) % (7 * 86_400) == 0
