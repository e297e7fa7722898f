"""Checking EVENTS messages: a clear error naming the field, and parts placed in their publication window."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from vigie_aggregation.buckets import merge_parts
from vigie_aggregation.reports import InvalidReportError, WindowPart, parse_window_report
from vigie_aggregation.synthetic import T0, window_report
from vigie_aggregation.vocabulary import ALL_CLASSES, ALL_DIRECTIONS
from vigie_proto.v1.events_pb2 import WindowReport


def parse(report: WindowReport, *, subject: str | None = None, msg_id: str | None = None) -> WindowPart:
    return parse_window_report(
        subject or f"vigie.events.{report.camera_id}",
        report.SerializeToString(),
        msg_id,
        publication_window_s=1200,
        now=T0,
    )


def test_a_good_report_becomes_a_part() -> None:
    report = window_report(
        "cam-a",
        T0 + 1200,
        lines=("l1", "l2"),
        zones=("z1",),
        crossings={("l1", 1, 1): 4, ("l2", 2, 3): 7},
        occupancy={("z1", 1): (300.5, 2)},
        dwell={("z1", 1, 60, 300): 3, ("z1", 1, 300, 0): 1},
        covered_seconds=1100.0,
    )
    part = parse(report, msg_id=report.report_id)
    assert (part.camera_id, part.window_start, part.covered_seconds) == ("cam-a", T0 + 1200, 1100.0)
    assert part.line_ids == ("l1", "l2")
    assert [d.bucket for d in part.dwell] == ["60-300", "300-"]


def test_a_part_says_which_classes_each_line_and_zone_counted_and_which_dwell_buckets() -> None:
    report = window_report(
        "cam-a",
        T0,
        lines=("l1", "cycle-lane"),
        zones=("z1",),
        crossings={("l1", 1, 1): 4, ("cycle-lane", 2, 2): 1},
        dwell={("z1", 1, 30, 120): 2},
        object_classes=(1, 2),
        member_classes={"cycle-lane": (2,)},
        dwell_bucket_seconds=(30, 120),
    )
    part = parse(report)
    assert part.line_classes == {"l1": {1, 2}, "cycle-lane": {2}}
    assert part.zone_classes == {"z1": {1, 2}}
    assert part.dwell_buckets == ("0-30", "30-120", "120-")


def test_a_part_that_does_not_say_counted_all_six_classes() -> None:
    part = parse(window_report("cam-a", T0, lines=("l1",), zones=("z1",)))
    assert part.line_classes == {"l1": ALL_CLASSES}
    assert part.zone_classes == {"z1": ALL_CLASSES}
    assert part.dwell_buckets == ()
    assert part.line_directions == {"l1": ALL_DIRECTIONS}


def test_a_part_says_which_lines_counted_one_direction_only() -> None:
    report = window_report(
        "cam-a", T0, lines=("exit", "l2"), crossings={("exit", 2, 1): 5}, one_way_lines={"exit": 2}
    )
    part = parse(report)
    assert part.line_directions == {"exit": {2}, "l2": ALL_DIRECTIONS}


def test_a_shorter_window_goes_into_the_publication_window_that_contains_it() -> None:
    part = parse(window_report("cam-a", T0 + 600, window_seconds=600))
    assert part.window_start == T0
    assert part.report_window_start == T0 + 600


def _mutate(change: Callable[[WindowReport], None]) -> WindowReport:
    report = window_report("cam-a", T0, lines=("l1",), zones=("z1",), crossings={("l1", 1, 1): 2})
    change(report)
    return report


def _narrow(member: str, *classes: int) -> Callable[[WindowReport], None]:
    def change(report: WindowReport) -> None:
        report.member_classes.add(member_id=member, object_classes=list(classes))  # type: ignore[arg-type]

    return change


def _one_way(line: str, direction: int) -> Callable[[WindowReport], None]:
    def change(report: WindowReport) -> None:
        report.one_way_lines.add(line_id=line, direction=direction)  # type: ignore[arg-type]

    return change


def _both(*changes: Callable[[WindowReport], object]) -> Callable[[WindowReport], None]:
    def change(report: WindowReport) -> None:
        for one in changes:
            one(report)

    return change


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        (lambda r: setattr(r, "report_id", "XYZ"), "report_id", "hexadecimal"),
        (lambda r: setattr(r, "camera_id", "cam b"), "camera_id", "not a camera id"),
        (lambda r: setattr(r, "window_seconds", 3600), "window_seconds", "does not divide"),
        (lambda r: setattr(r, "window_seconds", 0), "window_seconds", "positive"),
        (lambda r: r.window_start.__setattr__("seconds", T0 + 7), "window_start", "multiple"),
        (lambda r: r.window_start.__setattr__("seconds", T0 + 400 * 86_400), "window_start", "future"),
        (lambda r: setattr(r, "closed_by", 42), "closed_by", "known closure"),
        (lambda r: setattr(r, "geometry_version", ""), "geometry_version", "letters"),
        (lambda r: r.line_ids.append("l1"), "line_ids", "twice"),
        (lambda r: setattr(r, "covered_seconds", 5000.0), "covered_seconds", "within"),
        (lambda r: setattr(r, "covered_seconds", float("nan")), "covered_seconds", "within"),
        (lambda r: setattr(r.crossings[0], "line_id", "l9"), "crossings[0].line_id", "not in line_ids"),
        (lambda r: setattr(r.crossings[0], "direction", 0), "crossings[0].direction", "not a direction"),
        (lambda r: setattr(r.crossings[0], "object_class", 99), "crossings[0].object_class", "object class"),
        (lambda r: setattr(r.crossings[0], "count", 2_000_000), "crossings[0].count", "corrupt"),
        (
            lambda r: r.crossings.add(line_id="l1", direction=1, object_class=1, count=1),
            "crossings[1]",
            "repeats",
        ),
        (
            lambda r: r.occupancy.add(zone_id="z1", object_class=1, object_seconds=-1.0),
            "occupancy[0].object_seconds",
            "non-negative",
        ),
        (
            lambda r: r.occupancy.add(zone_id="z1", object_class=1, object_seconds=10.0, max_objects=0),
            "occupancy[0].max_objects",
            "is 0",
        ),
        (
            lambda r: r.dwell.add(zone_id="z1", object_class=1, min_seconds=60, max_seconds=30, count=1),
            "dwell[0].max_seconds",
            "above min_seconds",
        ),
        # What was measured: a figure must be for a class its line or zone counted, in a listed bucket.
        (lambda r: r.object_classes.extend([3, 3]), "object_classes", "twice"),
        (lambda r: r.object_classes.append(3), "crossings[0].object_class", "person is not among"),
        (_narrow("l1", 3), "crossings[0].object_class", "person is not among the classes 'l1' counted"),
        (_narrow("l9", 1), "member_classes[0].member_id", "not in line_ids or zone_ids"),
        (_narrow("z1"), "member_classes[0].object_classes", "empty"),
        (
            _both(lambda r: r.object_classes.append(1), _narrow("z1", 2)),
            "member_classes[0].object_classes",
            "not within",
        ),
        (_both(_narrow("z1", 1), _narrow("z1", 1)), "member_classes[1].member_id", "listed twice"),
        (
            _both(
                lambda r: r.occupancy.add(zone_id="z1", object_class=3, object_seconds=1.0, max_objects=1),
                _narrow("z1", 1),
            ),
            "occupancy[0].object_class",
            "car is not among",
        ),
        # ... and for a direction its line counted.
        (_one_way("l1", 2), "crossings[0].direction", "left_to_right is not a direction 'l1' counted"),
        (_one_way("l9", 1), "one_way_lines[0].line_id", "not in line_ids"),
        (_one_way("z1", 1), "one_way_lines[0].line_id", "not in line_ids"),
        (_one_way("l1", 0), "one_way_lines[0].direction", "not a direction"),
        (_both(_one_way("l1", 1), _one_way("l1", 1)), "one_way_lines[1].line_id", "listed twice"),
        (lambda r: r.dwell_bucket_seconds.extend([60, 30]), "dwell_bucket_seconds", "increasing"),
        (lambda r: r.dwell_bucket_seconds.extend([0, 30]), "dwell_bucket_seconds", "positive"),
        (
            _both(
                lambda r: r.dwell_bucket_seconds.extend([30, 120]),
                lambda r: r.dwell.add(zone_id="z1", object_class=1, min_seconds=0, max_seconds=60, count=1),
            ),
            "dwell[0]",
            "0-60 is not one",
        ),
    ],
)
def test_a_bad_report_names_the_field_and_the_rule(
    change: Callable[[WindowReport], None], field: str, words: str
) -> None:
    with pytest.raises(InvalidReportError) as raised:
        parse(_mutate(change))
    assert raised.value.field == field
    assert words in str(raised.value)


def test_garbage_the_wrong_subject_or_a_foreign_message_id_are_refused() -> None:
    with pytest.raises(InvalidReportError, match=r"message: not a vigie\.v1\.WindowReport"):
        parse_window_report("vigie.events.cam-a", b"\xff\xff\xff", None, publication_window_s=1200, now=T0)
    report = window_report("cam-a", T0)
    with pytest.raises(InvalidReportError, match="subject of camera 'cam-b'"):
        parse(report, subject="vigie.events.cam-b")
    with pytest.raises(InvalidReportError, match="Nats-Msg-Id"):
        parse(report, msg_id="0" * 32)


def test_parts_of_a_window_merge_by_the_rules_of_events_proto() -> None:
    first = window_report(
        "cam-a",
        T0,
        part=0,
        lines=("l1",),
        zones=("z1",),
        crossings={("l1", 1, 1): 3},
        occupancy={("z1", 1): (100.0, 4)},
        dwell={("z1", 1, 0, 60): 2},
        covered_seconds=500,
        frames=100,
        geometry_version="g1",
    )
    second = window_report(
        "cam-a",
        T0,
        part=1,
        lines=("l1", "l2"),
        zones=("z1",),
        crossings={("l1", 1, 1): 5, ("l2", 2, 3): 1},
        occupancy={("z1", 1): (50.0, 2)},
        dwell={("z1", 1, 0, 60): 1},
        covered_seconds=600,
        frames=120,
        geometry_version="g2",
    )
    increments = merge_parts([parse(first), parse(second)])
    window = increments.windows[("cam-a", T0)]
    assert (window.covered_seconds, window.frames, window.parts) == (1100.0, 220, 2)
    assert increments.crossings == {("cam-a", T0, "l1", 1, 1): 8, ("cam-a", T0, "l2", 2, 3): 1}
    occupancy = increments.occupancy[("cam-a", T0, "z1", 1)]
    assert (occupancy.object_seconds, occupancy.max_objects) == (150.0, 4)  # sum, and max
    assert increments.dwell == {("cam-a", T0, "z1", 1, "0-60"): 3}
    assert {(kind, m) for _, _, kind, m in increments.members} == {
        ("line", "l1"),
        ("line", "l2"),
        ("zone", "z1"),
        ("geom", "g1"),
        ("geom", "g2"),
    }


def test_the_classes_and_dwell_buckets_of_a_window_are_the_union_over_its_parts() -> None:
    persons = window_report(
        "cam-a", T0, part=0, zones=("z1",), object_classes=(1,), dwell_bucket_seconds=(60,)
    )
    # The registry widened the purpose to bicycles, the zone counting bicycles only.
    bicycles = window_report(
        "cam-a",
        T0,
        part=1,
        zones=("z1",),
        object_classes=(1, 2),
        member_classes={"z1": (2,)},
        geometry_version="g2",
    )
    increments = merge_parts([parse(persons), parse(bicycles)])
    assert increments.member_classes == {
        ("cam-a", T0, "line", "l1"): {1, 2},
        ("cam-a", T0, "zone", "z1"): {1, 2},
    }
    assert {m for _, _, kind, m in increments.members if kind == "dwel"} == {"0-60", "60-"}


def test_the_directions_of_a_line_are_the_union_over_its_parts() -> None:
    exit_only = window_report("cam-a", T0, part=0, lines=("l1", "l2"), one_way_lines={"l1": 2})
    still_one_way = window_report(
        "cam-a", T0, part=1, lines=("l1",), one_way_lines={"l1": 2}, geometry_version="g2"
    )
    increments = merge_parts([parse(exit_only), parse(still_one_way)])
    assert increments.line_directions == {
        ("cam-a", T0, "line", "l1"): {2},
        ("cam-a", T0, "line", "l2"): ALL_DIRECTIONS,
    }
    both_ways = window_report("cam-a", T0, part=2, lines=("l1",), geometry_version="g3")
    increments = merge_parts([parse(exit_only), parse(both_ways)])
    assert increments.line_directions[("cam-a", T0, "line", "l1")] == ALL_DIRECTIONS
