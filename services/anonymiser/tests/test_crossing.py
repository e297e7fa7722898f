"""Line crossings on synthetic tracks: each real crossing once, nothing for jitter, flicker or lingering."""

import itertools
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from vigie_anonymiser import CountingParams, CrossingDirection, LineConfig
from vigie_anonymiser.synthetic import (
    FrameBuilder,
    _true_crossings,
    box_for,
    camera_for,
    crossing_counts,
    feed,
)
from vigie_proto.v1.tracks_pb2 import OBJECT_CLASS_CAR, OBJECT_CLASS_PERSON

L2R, R2L = CrossingDirection.LEFT_TO_RIGHT, CrossingDirection.RIGHT_TO_LEFT
# Walking east along it, its right-hand side is below it (y > 0.5): walking down the picture is L2R.
HORIZONTAL = LineConfig(id="h", start=(0.0, 0.5), end=(1.0, 0.5))
BAND = CountingParams().hysteresis * 0.12  # a default synthetic box is 0.12 high


def ys(start: float, stop: float, step: float = 0.02) -> Iterator[float]:
    count = round(abs(stop - start) / step)
    return (start + (stop - start) * i / count for i in range(count + 1))


def test_a_walk_across_counts_once_in_its_direction() -> None:
    frames = FrameBuilder()
    down = [frames.frame({1: (0.5, y)}) for y in ys(0.3, 0.7)]
    up = [frames.frame({2: (0.3, y)}) for y in ys(0.7, 0.3)]
    assert crossing_counts(feed(camera_for([HORIZONTAL]), down + up)) == {("h", L2R): 1, ("h", R2L): 1}


def test_a_box_jittering_on_the_line_is_never_counted() -> None:
    frames = FrameBuilder()
    jitter = [frames.frame({1: (0.5, 0.5 + (0.9 if i % 2 else -0.9) * BAND)}) for i in range(200)]
    assert crossing_counts(feed(camera_for([HORIZONTAL]), jitter)) == {}


def test_a_flicker_over_the_line_within_the_band_is_not_a_crossing() -> None:
    frames = FrameBuilder()
    near = [frames.frame({1: (0.5, 0.5 - 1.5 * BAND)}) for _ in range(5)]
    glitch = [frames.frame({1: (0.5, 0.5 + 0.9 * BAND)})]
    back = [frames.frame({1: (0.5, 0.5 - 1.5 * BAND)}) for _ in range(5)]
    assert crossing_counts(feed(camera_for([HORIZONTAL]), near + glitch + back + glitch + back)) == {}


def test_a_quick_return_beyond_the_band_counts_both_ways_each_time() -> None:
    # One observation beyond the band on the far side is enough: a person stepping over and back is two
    # crossings, as many times as they do it.
    frames = FrameBuilder()
    path = [0.4, 0.4, 0.4, 0.6, 0.4, 0.4, 0.4, 0.6, 0.4]
    walk = [frames.frame({1: (0.5, y)}) for y in path]
    assert crossing_counts(feed(camera_for([HORIZONTAL]), walk)) == {
        ("h", L2R): 2,
        ("h", R2L): 2,
    }


def test_missed_detections_during_a_crossing_do_not_matter() -> None:
    frames = FrameBuilder()
    walk = [frames.frame({1: (0.5, y)} if i % 3 else {}) for i, y in enumerate(ys(0.3, 0.7))]
    assert crossing_counts(feed(camera_for([HORIZONTAL]), walk)) == {("h", L2R): 1}


def test_lingering_on_the_line_then_walking_on_counts_once() -> None:
    frames = FrameBuilder()
    approach = [frames.frame({1: (0.5, y)}) for y in ys(0.3, 0.5)]
    linger = [frames.frame({1: (0.5, 0.5 + (0.8 if i % 3 else -0.8) * BAND)}) for i in range(300)]
    leave = [frames.frame({1: (0.5, y)}) for y in ys(0.5, 0.7)]
    assert crossing_counts(feed(camera_for([HORIZONTAL]), approach + linger + leave)) == {("h", L2R): 1}


def test_a_track_hidden_while_it_crosses_counts_when_found_again() -> None:
    frames = FrameBuilder()
    before = [frames.frame({1: (0.5, y)}) for y in ys(0.3, 0.44)]
    hidden = [frames.frame() for _ in range(8)]
    after = [frames.frame({1: (0.5, y)}) for y in ys(0.62, 0.7)]
    assert crossing_counts(feed(camera_for([HORIZONTAL]), before + hidden + after)) == {("h", L2R): 1}


def test_ended_then_new_id_at_the_same_place_is_counted_once() -> None:
    """The tracker loses a person who crossed and stands still; a new id picks them up where they are."""
    frames = FrameBuilder()
    cross = [frames.frame({1: (0.5, y)}) for y in [*ys(0.3, 0.56), *[0.56] * 10]]
    lost = [frames.frame() for _ in range(5)] + [frames.frame(ended=[1])]
    # Found again a hair above the line (in the band), then walking on down.
    found = [frames.frame({2: (0.5, y)}) for y in [0.495, 0.49, 0.497, *ys(0.52, 0.7)]]
    observations = cross + lost + found
    assert crossing_counts(feed(camera_for([HORIZONTAL]), observations)) == {("h", L2R): 1}
    # What the handover prevents: the new id, first seen above the line, would count again.
    no_handover = CountingParams(handover_s=0.0)
    assert crossing_counts(feed(camera_for([HORIZONTAL], params=no_handover), observations)) == {
        ("h", L2R): 2
    }


def test_ended_before_the_line_then_new_id_beyond_it_is_counted() -> None:
    """The person crossed while hidden: the old id ended before, the new one starts after the line."""
    frames = FrameBuilder()
    before = [frames.frame({1: (0.5, y)}) for y in ys(0.3, 0.46)]
    gap = [frames.frame(ended=[1])] + [frames.frame() for _ in range(4)]
    after = [frames.frame({2: (0.5, y)}) for y in ys(0.56, 0.7)]
    assert crossing_counts(feed(camera_for([HORIZONTAL]), before + gap + after)) == {("h", L2R): 1}


def test_without_handover_the_new_id_would_be_missed() -> None:
    frames = FrameBuilder()
    before = [frames.frame({1: (0.5, y)}) for y in ys(0.3, 0.46)]
    gap = [frames.frame(ended=[1])] + [frames.frame() for _ in range(4)]
    after = [frames.frame({2: (0.5, y)}) for y in ys(0.56, 0.7)]
    no_handover = CountingParams(handover_s=0.0)
    assert crossing_counts(feed(camera_for([HORIZONTAL], params=no_handover), before + gap + after)) == {}


def test_a_far_away_new_track_does_not_inherit() -> None:
    frames = FrameBuilder()
    before = [frames.frame({1: (0.2, y)}) for y in ys(0.3, 0.46)]
    after = [frames.frame({2: (0.8, y)}, ended=[1] if i == 0 else []) for i, y in enumerate(ys(0.56, 0.7))]
    assert crossing_counts(feed(camera_for([HORIZONTAL]), before + after)) == {}


def test_walking_back_and_forth_counts_every_pass() -> None:
    frames = FrameBuilder()
    pacing = [*ys(0.3, 0.7), *ys(0.7, 0.3), *ys(0.3, 0.7), *ys(0.7, 0.3)]
    walk = [frames.frame({1: (0.5, y)}) for y in pacing]
    assert crossing_counts(feed(camera_for([HORIZONTAL]), walk)) == {("h", L2R): 2, ("h", R2L): 2}


def test_a_track_leaving_right_after_crossing_counts() -> None:
    frames = FrameBuilder()
    walk = [frames.frame({1: (0.5, y)}) for y in ys(0.3, 0.54)]
    assert crossing_counts(feed(camera_for([HORIZONTAL]), [*walk, frames.frame(ended=[1])])) == {
        ("h", L2R): 1
    }


def test_passing_beside_the_line_is_not_a_crossing() -> None:
    short = LineConfig(id="s", start=(0.4, 0.5), end=(0.6, 0.5))
    frames = FrameBuilder()
    walk = [frames.frame({1: (0.8, y)}) for y in ys(0.3, 0.7)]
    assert crossing_counts(feed(camera_for([short]), walk)) == {}


def test_two_lines_and_a_diagonal_each_count_their_own() -> None:
    vertical = LineConfig(id="v", start=(0.5, 0.0), end=(0.5, 1.0))
    diagonal = LineConfig(id="d", start=(0.2, 0.2), end=(0.8, 0.8))
    frames = FrameBuilder()
    # Eastwards along y = 0.3: crosses v (from its right-hand side to its left) and d at x = 0.3.
    walk = [frames.frame({1: (x / 100, 0.3)}) for x in range(5, 96, 2)]
    counted = crossing_counts(feed(camera_for([HORIZONTAL, vertical, diagonal]), walk))
    assert counted == {("v", R2L): 1, ("d", R2L): 1}


def test_several_tracks_at_once() -> None:
    frames = FrameBuilder()
    walk = [frames.frame({n: (n / 10, y if n % 2 else 1.0 - y) for n in range(1, 8)}) for y in ys(0.3, 0.7)]
    assert crossing_counts(feed(camera_for([HORIZONTAL]), walk)) == {("h", L2R): 4, ("h", R2L): 3}


def test_a_line_counts_only_its_directions_and_classes() -> None:
    down_only = LineConfig(id="down", start=(0.0, 0.5), end=(1.0, 0.5), directions="left_to_right")
    cars = LineConfig(id="cars", start=(0.0, 0.5), end=(1.0, 0.5), classes=["car"])
    frames = FrameBuilder()
    up = [frames.frame({1: (0.5, y)}) for y in ys(0.7, 0.3)]
    car = [frames.frame({2: (0.5, y)}, object_class=OBJECT_CLASS_CAR) for y in ys(0.3, 0.7)]
    reports = feed(camera_for([down_only, cars]), up + car)
    assert crossing_counts(reports) == {("down", L2R): 1, ("cars", L2R): 1}
    by_class = {(c.line_id, c.object_class) for r in reports for c in r.crossings}
    assert by_class == {("down", OBJECT_CLASS_CAR), ("cars", OBJECT_CLASS_CAR)}
    assert OBJECT_CLASS_PERSON not in {c.object_class for r in reports for c in r.crossings}


@settings(max_examples=300, deadline=None)
@given(
    turns=st.lists(
        st.tuples(st.floats(0.05, 0.95), st.floats(0.15, 0.95)), min_size=2, max_size=8, unique=True
    ),
    speed=st.floats(0.01, 0.08),
    size=st.floats(0.06, 0.3),
)
def test_on_exact_tracks_every_crossing_beyond_the_band_is_counted(
    turns: list[tuple[float, float]], speed: float, size: float
) -> None:
    # One person walking a random polyline (U-turns, repeats, lingering near lines), seen exactly at each
    # frame: the counts are the geometric crossings once excursions within the dead band are taken out.
    lines = [HORIZONTAL, LineConfig(id="v", start=(0.5, 0.1), end=(0.5, 0.9))]
    path: list[tuple[float, float]] = []
    for (x0, y0), (x1, y1) in itertools.pairwise(turns):
        steps = max(1, round(math.dist((x0, y0), (x1, y1)) / speed))
        path.extend((x0 + (x1 - x0) * i / steps, y0 + (y1 - y0) * i / steps) for i in range(steps))
    path.append(turns[-1])
    camera = camera_for(lines)
    width = size * 0.4
    truth: Counter[tuple[str, CrossingDirection]] = Counter()
    params = CountingParams()
    _true_crossings(
        camera.geometry.lines,
        path,
        truth,
        lambda line, _: line.band(width, size, params.hysteresis, params.min_band),
    )
    frames = FrameBuilder()
    walk = [frames.frame({1: point}, size=(width, size)) for point in path]
    assert crossing_counts(feed(camera, walk)) == +truth


def test_hidden_legs_do_not_lift_the_feet_over_a_line() -> None:
    # Standing just past a horizontal line (beyond the band), a person's legs are hidden for a frame: the
    # detector's box keeps its top and stops half a body higher, before the line and beyond the band on
    # that side. The feet stay where they were: no crossing there and back.
    frames = FrameBuilder()
    standing = [frames.frame({1: (0.5, 0.53)}) for _ in range(3)]
    hidden = [frames.frame({1: (0.5, 0.47)}, size=(0.04, 0.06))]
    again = [frames.frame({1: (0.5, 0.53)}) for _ in range(3)]
    assert crossing_counts(feed(camera_for([HORIZONTAL]), standing + hidden + again)) == {}


def test_a_box_shrinking_from_the_top_is_not_taken_for_hidden_legs() -> None:
    # Its head hidden (the top comes down, the bottom stays), a person walking over the line still counts.
    frames = FrameBuilder()
    walk = [frames.frame({1: (0.5, y)}) for y in ys(0.3, 0.5)]
    walk += [frames.frame({1: (0.5, y)}, size=(0.04, 0.07)) for y in ys(0.5, 0.6)]
    assert crossing_counts(feed(camera_for([HORIZONTAL]), walk)) == {("h", L2R): 1}


def test_a_track_crossing_while_being_confirmed_counts_from_where_it_was_first_seen() -> None:
    frames = FrameBuilder()
    first = frames.frame()
    # Reported from its second detection on, already past the line; the first is in `first_box`.
    (obj,) = frames.frame({1: (0.5, 0.56)}).objects
    started = replace(frames.frame({1: (0.5, 0.56)}), objects=(replace(obj, first_box=box_for((0.5, 0.44))),))
    walk = [first, started, *(frames.frame({1: (0.5, y)}) for y in ys(0.58, 0.7))]
    assert crossing_counts(feed(camera_for([HORIZONTAL]), walk)) == {("h", L2R): 1}
    frames = FrameBuilder()
    unknown = [frames.frame({1: (0.5, y)}) for y in ys(0.56, 0.7)]
    assert crossing_counts(feed(camera_for([HORIZONTAL]), unknown)) == {}


VERTICAL = LineConfig(id="v", start=(0.5, 0.0), end=(0.5, 1.0))


def test_two_ids_swapped_across_a_line_count_no_crossing() -> None:
    # Two people walk down side by side, one each side of a vertical line; the tracker swaps their ids
    # for a while, then back. Nobody crossed.
    frames = FrameBuilder()
    walk = []
    for i in range(30):
        left, right = (0.45, 0.2 + 0.02 * i), (0.55, 0.2 + 0.02 * i)
        swapped = 10 <= i < 20
        walk.append(frames.frame({1: right, 2: left} if swapped else {1: left, 2: right}))
    assert crossing_counts(feed(camera_for([VERTICAL]), walk)) == {}


def test_two_people_passing_each_other_over_a_line_both_count() -> None:
    # Head-on, each at its own speed: their steps meet where the other was; each crosses once.
    frames = FrameBuilder()
    walk = [frames.frame({1: (0.3 + 0.02 * i, 0.5), 2: (0.7 - 0.02 * i, 0.52)}) for i in range(21)]
    assert crossing_counts(feed(camera_for([VERTICAL]), walk)) == {("v", L2R): 1, ("v", R2L): 1}
