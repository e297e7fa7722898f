"""What a report says it measured (events.proto): the classes counted, the lines and zones that counted
fewer, the lines that counted one direction only, and the dwell buckets, so that the aggregation publishes
no figure for what was not measured."""

from vigie_anonymiser import (
    Anonymiser,
    CameraGeometryConfig,
    CountingParams,
    CrossingDirection,
    LineConfig,
    ReportClosure,
    WindowReport,
    ZoneConfig,
)
from vigie_anonymiser.events import report_from_message, report_message
from vigie_anonymiser.geometry_source import PolicyGeometrySource, policy_geometry
from vigie_anonymiser.synthetic import FrameBuilder, camera_for, feed
from vigie_core.policy import StaticPolicies
from vigie_embedded.policies import camera_policy
from vigie_proto.v1.events_pb2 import OneWayLine
from vigie_proto.v1.policy_pb2 import AnalysisOutput, CameraPolicy, LineDirections, Purpose
from vigie_proto.v1.tracks_pb2 import ObjectClass

PERSON, BICYCLE = ObjectClass.OBJECT_CLASS_PERSON, ObjectClass.OBJECT_CLASS_BICYCLE
L2R, R2L = CrossingDirection.LEFT_TO_RIGHT, CrossingDirection.RIGHT_TO_LEFT
SIX = (1, 2, 3, 4, 5, 6)
LINE = {"gate": ((0.0, 0.5), (1.0, 0.5))}
ZONE = {"square": [(0.1, 0.1), (0.9, 0.1), (0.9, 0.9), (0.1, 0.9)]}


def pedestrian_policy(version: int = 1, classes: tuple[int, ...] = (PERSON,)) -> CameraPolicy:
    policy = camera_policy("cam", version=version, lines=LINE, zones=ZONE)
    policy.purpose = Purpose.PURPOSE_PEDESTRIAN_FLOW_STATISTICS
    del policy.object_classes[:]
    policy.object_classes.extend(classes)  # type: ignore[arg-type]
    return policy


def one_report(config: CameraGeometryConfig) -> WindowReport:
    frames = FrameBuilder(fps=1)
    camera = camera_for(**config.model_dump(exclude={"id"}))
    (report,) = feed(camera, [frames.frame() for _ in range(3)])
    return report


def test_a_pedestrian_cameras_reports_say_they_counted_persons_only() -> None:
    config = policy_geometry(pedestrian_policy(), None)
    assert config is not None
    frames = FrameBuilder(fps=1)
    camera = camera_for(**config.model_dump(exclude={"id"}))
    (report,) = feed(camera, [frames.frame() for _ in range(3)])
    assert report.object_classes == (PERSON,)
    assert report.member_classes == (), "every line and zone counts the purpose's classes"
    assert report.dwell_bounds == (30, 120, 600), "the policy's default buckets: stays are measured"
    message = report_from_message(report_message(report).SerializeToString())
    assert list(message.object_classes) == [PERSON]
    assert list(message.member_classes) == []
    assert list(message.dwell_bucket_seconds) == [30, 120, 600]


def test_static_lines_and_zones_say_which_classes_they_counted() -> None:
    config = CameraGeometryConfig(
        id="cam",
        lines=[LineConfig(id="cycle-lane", start=(0.0, 0.5), end=(1.0, 0.5), classes=["bicycle"])],
        zones=[ZoneConfig(id="square", polygon=[(0.1, 0.1), (0.9, 0.1), (0.5, 0.9)], classes=["person"])],
        dwell_time=False,
    )
    report = one_report(config)
    assert report.object_classes == (PERSON, BICYCLE)
    assert report.member_classes == (("cycle-lane", (BICYCLE,)), ("square", (PERSON,)))
    assert report.dwell_bounds == (), "stays are not measured"
    # Without classes, a static line counts all six (as before the policy said anything).
    everything = one_report(
        CameraGeometryConfig(id="cam", lines=[LineConfig(id="l", start=(0, 0.5), end=(1, 0.5))])
    )
    assert everything.object_classes == SIX
    assert everything.dwell_bounds == (), "no zone: no stay"


def test_a_change_of_the_purposes_classes_closes_the_part() -> None:
    policies = StaticPolicies([pedestrian_policy(classes=(PERSON, BICYCLE))])
    source = PolicyGeometrySource(policies)
    anonymiser = Anonymiser(source.current(), CountingParams())
    frames = FrameBuilder(fps=1)
    for _ in range(3):
        assert anonymiser.process(frames.frame(), 1.0).reports == ()
    # The registry narrows the camera's classes: its lines and zones, hence its geometry version, change.
    policies.set(pedestrian_policy(version=2))
    (update,) = source.poll()
    assert update.geometry is not None
    (first,) = anonymiser.set_geometry("cam", update.geometry)
    assert first.closed_by is ReportClosure.GEOMETRY_CHANGED
    assert first.object_classes == (PERSON, BICYCLE)
    for _ in range(3):
        anonymiser.process(frames.frame(), 1.0)
    (second,) = anonymiser.stop()
    assert second.object_classes == (PERSON,)
    assert second.geometry_version != first.geometry_version


def test_the_purposes_classes_change_nothing_counted_when_no_line_or_zone_changes() -> None:
    def restricted_to_persons(classes: tuple[int, ...]) -> CameraGeometryConfig:
        policy = pedestrian_policy(classes=classes)
        for member in (*policy.lines, *policy.zones):
            member.classes.append(PERSON)
        config = policy_geometry(policy, None)
        assert config is not None
        return config

    # Every line and zone counts persons only: adding bicycles to the purpose changes no line or zone, so
    # neither the version (no part is closed) nor what the reports say was measured.
    wider, narrower = restricted_to_persons((PERSON, BICYCLE)), restricted_to_persons((PERSON,))
    assert wider.version() == narrower.version()
    assert one_report(wider).object_classes == (PERSON,)


def test_without_the_dwell_time_output_no_bucket_is_listed() -> None:
    policy = pedestrian_policy()
    policy.outputs.remove(AnalysisOutput.ANALYSIS_OUTPUT_DWELL_TIME)
    config = policy_geometry(policy, None)
    assert config is not None
    assert one_report(config).dwell_bounds == ()


def one_way_policy(
    version: int = 1, directions: int = LineDirections.LINE_DIRECTIONS_LEFT_TO_RIGHT
) -> CameraPolicy:
    policy = camera_policy("cam", version=version, lines=LINE)
    policy.lines[0].directions = directions  # type: ignore[assignment]
    return policy


def test_a_one_way_line_of_the_policy_counts_and_reports_its_direction_only() -> None:
    config = policy_geometry(one_way_policy(), None)
    assert config is not None
    frames = FrameBuilder()
    down = [frames.frame({1: (0.5, 0.3 + i / 50)}) for i in range(21)]  # left to right across "gate"
    up = [frames.frame({2: (0.5, 0.7 - i / 50)}) for i in range(21)]
    camera = camera_for(**config.model_dump(exclude={"id"}))
    (report,) = feed(camera, down + up)
    assert {(c.line_id, c.direction) for c in report.crossings} == {("gate", L2R)}
    assert report.one_way_lines == (("gate", L2R),)
    message = report_from_message(report_message(report).SerializeToString())
    assert list(message.one_way_lines) == [OneWayLine(line_id="gate", direction=L2R)]


def test_static_lines_say_which_direction_they_counted() -> None:
    config = CameraGeometryConfig(
        id="cam",
        lines=[
            LineConfig(id="exit", start=(0.0, 0.5), end=(1.0, 0.5), directions="right_to_left"),
            LineConfig(id="both-ways", start=(0.0, 0.4), end=(1.0, 0.4)),
        ],
    )
    report = one_report(config)
    assert report.one_way_lines == (("exit", R2L),), "a line counting both directions is not listed"
    assert list(report_message(report).one_way_lines) == [OneWayLine(line_id="exit", direction=R2L)]


def test_a_change_of_a_lines_direction_closes_the_part() -> None:
    policies = StaticPolicies([one_way_policy(directions=LineDirections.LINE_DIRECTIONS_BOTH)])
    source = PolicyGeometrySource(policies)
    anonymiser = Anonymiser(source.current(), CountingParams())
    frames = FrameBuilder(fps=1)
    for _ in range(3):
        assert anonymiser.process(frames.frame(), 1.0).reports == ()
    policies.set(one_way_policy(version=2))
    (update,) = source.poll()
    assert update.geometry is not None
    (first,) = anonymiser.set_geometry("cam", update.geometry)
    assert first.closed_by is ReportClosure.GEOMETRY_CHANGED
    assert first.one_way_lines == ()
    for _ in range(3):
        anonymiser.process(frames.frame(), 1.0)
    (second,) = anonymiser.stop()
    assert second.one_way_lines == (("gate", L2R),)
    assert second.geometry_version != first.geometry_version
