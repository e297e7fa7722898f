"""Zone occupancy and dwell time on synthetic tracks."""

import pytest

from vigie_anonymiser import ZoneConfig
from vigie_anonymiser.synthetic import FrameBuilder, camera_for, feed
from vigie_anonymiser.zones import DwellBuckets
from vigie_proto.v1.tracks_pb2 import OBJECT_CLASS_CAR, OBJECT_CLASS_PERSON

SQUARE = ZoneConfig(id="square", polygon=[(0.2, 0.2), (0.6, 0.2), (0.6, 0.6), (0.2, 0.6)])


def test_dwell_buckets() -> None:
    buckets = DwellBuckets()
    assert [buckets.index(s) for s in (0, 29.9, 30, 119, 120, 599, 600, 5000)] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert [buckets.limits(i) for i in range(4)] == [(0, 30), (30, 120), (120, 600), (600, None)]
    with pytest.raises(ValueError, match="increasing"):
        DwellBuckets((30, 30))


def test_a_stay_is_measured_from_entry_to_exit_and_bucketed() -> None:
    frames = FrameBuilder(fps=5)
    outside = [frames.frame({1: (0.1, 0.4)}) for _ in range(5)]
    inside = [frames.frame({1: (0.4, 0.4)}) for _ in range(45 * 5)]  # 45 s
    gone = [frames.frame({1: (0.8, 0.4)}) for _ in range(5)]
    (report,) = feed(camera_for(zones=[SQUARE]), outside + inside + gone)
    assert [(d.zone_id, d.min_s, d.max_s, d.count) for d in report.dwell] == [("square", 30, 120, 1)]


def test_flicker_on_the_edge_neither_splits_a_stay_nor_makes_a_visit() -> None:
    frames = FrameBuilder(fps=5)
    stay = [
        frames.frame({1: (0.4, 0.4) if i % 50 else (0.7, 0.4)}) for i in range(1, 200)
    ]  # 40 s, 3 blips out
    passer_by = [frames.frame({2: (0.61, 0.4) if i != 5 else (0.59, 0.4)}) for i in range(10)]  # one blip in
    (report,) = feed(camera_for(zones=[SQUARE]), stay + passer_by)
    assert [(d.min_s, d.count) for d in report.dwell] == [(30, 1)]


def test_a_stay_ends_with_its_track() -> None:
    frames = FrameBuilder(fps=5)
    stay = [frames.frame({1: (0.4, 0.4)}) for _ in range(50)]  # 10 s
    (report,) = feed(camera_for(zones=[SQUARE]), [*stay, frames.frame(ended=[1]), *[frames.frame()] * 30])
    assert [(d.min_s, d.max_s, d.count) for d in report.dwell] == [(0, 30, 1)]


def test_occupancy_is_integrated_over_covered_time_with_its_maximum() -> None:
    frames = FrameBuilder(fps=5)
    two = [frames.frame({1: (0.3, 0.4), 2: (0.5, 0.4), 3: (0.9, 0.9)}) for _ in range(51)]  # 10 s, 2 inside
    one = [frames.frame({1: (0.3, 0.4)}) for _ in range(50)]  # 10 s, 1 inside
    (report,) = feed(camera_for(zones=[SQUARE]), two + one)
    assert report.covered_s == pytest.approx(20.0)
    (occupancy,) = report.occupancy
    assert occupancy.max_objects == 2
    # About 2 x 10 + 1 x 10: entering takes two observations (-0.2 s each), and a track unseen still
    # counts for occupancy_hold_s (+1 s for track 2).
    assert occupancy.object_seconds == pytest.approx(30.0, abs=1.0)


def test_a_zone_measures_only_its_classes() -> None:
    parking = ZoneConfig(id="parking", polygon=SQUARE.polygon, classes=["car"])
    frames = FrameBuilder(fps=5)
    observations = [frames.frame({1: (0.4, 0.4)}) for _ in range(20)] + [
        frames.frame({2: (0.4, 0.4)}, object_class=OBJECT_CLASS_CAR) for _ in range(20)
    ]
    (report,) = feed(camera_for(zones=[parking]), observations)
    assert {o.object_class for o in report.occupancy} == {OBJECT_CLASS_CAR}
    assert OBJECT_CLASS_PERSON not in {d.object_class for d in report.dwell}
