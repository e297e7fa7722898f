"""Properties of the counting, over random lines, walks and message orders."""

import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from vigie_anonymiser import CountingParams, CrossingDirection, LineConfig
from vigie_anonymiser.synthetic import (
    FrameBuilder,
    SceneSpec,
    camera_for,
    crossing_counts,
    feed,
    synthetic_scene,
)

PARAMS = CountingParams()
SIZE = (0.04, 0.12)


@st.composite
def lines(draw: st.DrawFn) -> LineConfig:
    """A line through the middle of the picture at any angle, 0.3 to 0.6 long."""
    angle = draw(st.floats(0, 2 * math.pi))
    half = draw(st.floats(0.15, 0.3))
    cx, cy = draw(st.floats(0.4, 0.6)), draw(st.floats(0.4, 0.6))
    dx, dy = half * math.cos(angle), half * math.sin(angle)
    return LineConfig(id="l", start=(cx - dx, cy - dy), end=(cx + dx, cy + dy))


def geometry(line: LineConfig) -> tuple[tuple[float, float], tuple[float, float], float]:
    """The line's midpoint, unit normal (to its right-hand side) and dead band for a SIZE box."""
    (x1, y1), (x2, y2) = line.start, line.end
    length = math.hypot(x2 - x1, y2 - y1)
    normal = (-(y2 - y1) / length, (x2 - x1) / length)
    band = max(PARAMS.min_band, PARAMS.hysteresis * (abs(normal[0]) * SIZE[0] + abs(normal[1]) * SIZE[1]))
    return ((x1 + x2) / 2, (y1 + y2) / 2), normal, band


@settings(max_examples=60, deadline=None)
@given(
    line=lines(),
    along=st.floats(-0.1, 0.1),
    offsets=st.lists(st.floats(-0.95, 0.95), min_size=1, max_size=120),
)
def test_a_track_oscillating_within_the_band_is_never_counted(
    line: LineConfig, along: float, offsets: list[float]
) -> None:
    (mx, my), (nx, ny), band = geometry(line)
    ux, uy = ny, -nx  # along the line
    frames = FrameBuilder()
    observations = [
        frames.frame({1: (mx + ux * along + nx * band * o, my + uy * along + ny * band * o)}, size=SIZE)
        for o in offsets
    ]
    observations.append(frames.frame(ended=[1]))
    assert crossing_counts(feed(camera_for([line]), observations)) == {}


@settings(max_examples=60, deadline=None)
@given(
    line=lines(),
    other=lines(),
    where=st.floats(-0.6, 0.6),
    reach=st.floats(3.0, 6.0),
    steps=st.integers(6, 40),
    forwards=st.booleans(),
)
def test_a_straight_walk_across_counts_exactly_once_per_line_crossed(
    line: LineConfig, other: LineConfig, where: float, reach: float, steps: int, forwards: bool
) -> None:
    (mx, my), (nx, ny), band = geometry(line)
    (x1, y1), (x2, y2) = line.start, line.end
    # Cross the line at a point between its ends (away from them), from `reach` bands on one side to as far
    # on the other.
    px, py = mx + (x2 - x1) / 2 * where, my + (y2 - y1) / 2 * where
    sign = -1.0 if forwards else 1.0
    start = (px + sign * nx * band * reach, py + sign * ny * band * reach)
    end = (px - sign * nx * band * reach, py - sign * ny * band * reach)
    path = [
        (start[0] + (end[0] - start[0]) * i / steps, start[1] + (end[1] - start[1]) * i / steps)
        for i in range(steps + 1)
    ]
    frames = FrameBuilder()
    observations = [frames.frame({1: p}, size=SIZE) for p in path]
    expected_direction = CrossingDirection.LEFT_TO_RIGHT if forwards else CrossingDirection.RIGHT_TO_LEFT
    assert crossing_counts(feed(camera_for([line]), observations)) == {("l", expected_direction): 1}
    # Another line counts the same walk at most once per direction.
    second = other.model_copy(update={"id": "m"})
    counted = crossing_counts(feed(camera_for([line, second]), observations))
    assert counted[("l", expected_direction)] == 1
    assert all(n <= 1 for (line_id, _), n in counted.items() if line_id == "m")


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), copies=st.lists(st.integers(0, 10_000), min_size=1, max_size=60))
def test_counts_are_invariant_to_copies_and_redeliveries(seed: int, copies: list[int]) -> None:
    horizontal = LineConfig(id="h", start=(0.05, 0.6), end=(0.95, 0.6))
    scene = synthetic_scene(
        random.Random(seed),
        [camera_for([horizontal]).geometry.lines[0]],
        SceneSpec(duration_s=30, walkers=8, lingerers=2),
    )
    clean = feed(camera_for([horizontal]), scene.observations)
    noisy = list(scene.observations)
    for position in sorted(copies, reverse=True):
        # A copy of an earlier message inserted later: an immediate duplicate or a late redelivery.
        at = position % len(noisy)
        noisy.insert(at + 1, noisy[max(0, at - position % 7)])
    redelivered = feed(camera_for([horizontal]), noisy)
    assert crossing_counts(redelivered) == crossing_counts(clean)
    assert [r.report_id for r in redelivered] == [r.report_id for r in clean]
    assert [r.dwell for r in redelivered] == [r.dwell for r in clean]
