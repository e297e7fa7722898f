"""The policy in the anonymiser, without NATS: paused time is never covered, a suspended camera's tracks
end, and each camera's geometry comes from its policy, complemented by the settings only where the
policy is silent and its purpose allows."""

import math

import pytest

from vigie_anonymiser import CameraGeometryConfig, CountingParams, CrossingDirection, LineConfig, ZoneConfig
from vigie_anonymiser.geometry_source import GeometryUpdate, PolicyGeometrySource, policy_geometry
from vigie_anonymiser.pauses import PausedTime
from vigie_anonymiser.synthetic import T0, FrameBuilder, camera_for, crossing_counts, feed
from vigie_core.policy import StaticPolicies
from vigie_embedded.policies import camera_policy
from vigie_proto.v1.policy_pb2 import AnalysisOutput, CameraStatus, Purpose
from vigie_proto.v1.tracks_pb2 import ObjectClass

HORIZONTAL = LineConfig(id="h", start=(0.0, 0.5), end=(1.0, 0.5))
# Gaps of any length are covered here, so that only the policy's pauses are left out.
LENIENT = CountingParams(coverage_max_gap_s=60)


# -- paused time --------------------------------------------------------------------------------------


def test_paused_time_follows_each_policy_version_from_its_issue() -> None:
    paused = PausedTime()
    assert paused.follow(camera_policy("cam", version=1, issued_at=T0))
    assert paused.intervals == ()
    assert not paused.follow(camera_policy("cam", version=1, issued_at=T0)), "once per version"
    paused.follow(camera_policy("cam", version=2, issued_at=T0 + 10, paused_until=T0 + 70))
    assert paused.intervals == ((T0 + 10, T0 + 70),)
    # A later version during the pause (a geometry change) keeps it; an extension lengthens it.
    paused.follow(camera_policy("cam", version=3, issued_at=T0 + 30, paused_until=T0 + 70))
    paused.follow(camera_policy("cam", version=4, issued_at=T0 + 40, paused_until=T0 + 100))
    assert paused.intervals == ((T0 + 10, T0 + 100),)
    # Switched off by the administrator, then on again.
    paused.follow(
        camera_policy("cam", version=5, issued_at=T0 + 200, status=CameraStatus.CAMERA_STATUS_PAUSED)
    )
    paused.follow(camera_policy("cam", version=6, issued_at=T0 + 260))
    assert paused.intervals == ((T0 + 10, T0 + 100), (T0 + 200, T0 + 260))
    assert paused.overlap(T0, T0 + 300) == pytest.approx(90 + 60)
    assert paused.overlap(T0 + 90, T0 + 210) == pytest.approx(10 + 10)
    paused.forget_before(T0 + 150)
    assert paused.intervals == ((T0 + 200, T0 + 260),)


def test_security_events_are_paused_outside_their_authorisation_window() -> None:
    policy = camera_policy("cam", issued_at=T0)
    policy.purpose = Purpose.PURPOSE_SECURITY_EVENTS
    policy.authorised_from.FromSeconds(int(T0 + 100))
    policy.authorised_until.FromSeconds(int(T0 + 200))
    paused = PausedTime()
    paused.follow(policy)
    assert paused.intervals == ((T0, T0 + 100), (T0 + 200, math.inf))


def test_paused_time_is_not_covered_even_when_frames_straddle_it() -> None:
    frames = FrameBuilder(fps=1)
    camera = camera_for([HORIZONTAL], params=LENIENT)
    camera.paused.follow(camera_policy("cam", version=1, issued_at=T0 + 10, paused_until=T0 + 40))
    observations = [frames.frame() for _ in range(11)]  # 0..10 s
    frames.start += 34  # the next frame (none lost: the next sequence) comes 35 s later
    observations += [frames.frame() for _ in range(6)]  # 45..50 s: the 35 s gap straddles the pause
    (report,) = feed(camera, observations)
    assert report.covered_s == pytest.approx(50 - 30)


def test_a_suspended_camera_finishes_its_tracks_and_covers_nothing_until_it_counts_again() -> None:
    frames = FrameBuilder(fps=1)
    camera = camera_for([HORIZONTAL], params=LENIENT)
    # Walking down across the line, then a pause after 12 s, then another walker 20 s later.
    for i in range(13):
        camera.process(frames.frame({1: (0.5, 0.3 + 0.03 * i)}), 1.0)
    assert camera.live_tracks == 1
    camera.suspend()
    assert camera.live_tracks == 0
    frames.sequence += 20
    later = [frames.frame({2: (0.5, 0.3 + 0.03 * i)}) for i in range(13)]
    (report,) = feed(camera, later)
    assert crossing_counts([report]) == {("h", CrossingDirection.LEFT_TO_RIGHT): 2}
    assert report.covered_s == pytest.approx(12 + 12), "the 21 s around the pause are not covered"


# -- geometry from the policy ---------------------------------------------------------------------------

STATIC = CameraGeometryConfig(
    id="cam",
    reporting_window_s=600,
    reporting_window_justification="peak hours study",
    lines=[LineConfig(id="static-line", start=(0.0, 0.6), end=(1.0, 0.6), classes=["person", "car"])],
    zones=[ZoneConfig(id="static-zone", polygon=[(0.1, 0.1), (0.9, 0.1), (0.5, 0.9)])],
)


def test_the_policys_geometry_replaces_the_static_one() -> None:
    policy = camera_policy(
        "cam",
        lines={"gate": ((0.1, 0.5), (0.9, 0.5))},
        zones={"square": [(0.2, 0.2), (0.8, 0.2), (0.8, 0.8)]},
        reporting_window_s=60,
        justification="demonstration",
    )
    config = policy_geometry(policy, STATIC)
    assert config is not None
    assert [line.id for line in config.lines] == ["gate"]
    assert [zone.id for zone in config.zones] == ["square"]
    assert (config.reporting_window_s, config.reporting_window_justification) == (60, "demonstration")
    assert policy_geometry(None, STATIC) is STATIC


def test_static_lines_fill_in_only_what_the_purpose_allows_and_for_its_classes() -> None:
    policy = camera_policy("cam", reporting_window_s=0)
    policy.purpose = Purpose.PURPOSE_TRAFFIC_FLOW_STATISTICS
    del policy.outputs[:]
    policy.outputs.append(AnalysisOutput.ANALYSIS_OUTPUT_LINE_CROSSINGS)
    del policy.object_classes[:]
    policy.object_classes.extend([ObjectClass.OBJECT_CLASS_CAR, ObjectClass.OBJECT_CLASS_BUS])
    config = policy_geometry(policy, STATIC)
    assert config is not None
    assert [(line.id, line.classes) for line in config.lines] == [("static-line", ["car"])]
    assert config.zones == [], "no zone output: the static zone is not measured"
    assert config.reporting_window_s == 600, "the policy sets no window: the static one"


def test_a_policy_geometry_the_anonymiser_cannot_use_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="reporting_window_s"):
        policy_geometry(camera_policy("cam", reporting_window_s=7, justification="x"), None)


def test_the_geometry_source_follows_policy_versions() -> None:
    policies = StaticPolicies([camera_policy("cam", lines={"a": ((0.0, 0.5), (1.0, 0.5))})])
    source = PolicyGeometrySource(policies, [STATIC, STATIC.model_copy(update={"id": "static-only"})])
    current = {g.camera_id: g for g in source.current()}
    assert [line.id for line in current["cam"].lines] == ["a"]
    assert [line.id for line in current["static-only"].lines] == ["static-line"]
    assert source.poll() == []
    # A pause changes the policy but not the geometry: nothing to apply.
    policies.set(camera_policy("cam", version=2, lines={"a": ((0.0, 0.5), (1.0, 0.5))}, paused_until=T0))
    assert source.poll() == []
    policies.set(camera_policy("cam", version=3, lines={"b": ((0.0, 0.4), (1.0, 0.4))}))
    (update,) = source.poll()
    assert update.camera_id == "cam"
    assert update.geometry is not None
    assert [line.id for line in update.geometry.lines] == ["b"]
    # A new camera declared in the registry, then an unusable policy: its geometry is withdrawn.
    policies.set(camera_policy("new", lines={"c": ((0.0, 0.4), (1.0, 0.4))}))
    assert [u.camera_id for u in source.poll()] == ["new"]
    policies.set(camera_policy("new", version=2, reporting_window_s=7, justification="x"))
    assert source.poll() == [GeometryUpdate("new", None)]


def test_stays_are_measured_only_when_the_purpose_has_the_dwell_time_output() -> None:
    zone = {"square": [(0.0, 0.4), (1.0, 0.4), (1.0, 1.0), (0.0, 1.0)]}
    occupancy = policy_geometry(camera_policy("cam", zones=zone), None)
    assert occupancy is not None
    assert occupancy.dwell_time
    traffic_policy = camera_policy("cam", zones=zone)
    traffic_policy.purpose = Purpose.PURPOSE_TRAFFIC_FLOW_STATISTICS
    traffic_policy.outputs.remove(AnalysisOutput.ANALYSIS_OUTPUT_DWELL_TIME)
    traffic = policy_geometry(traffic_policy, None)
    assert traffic is not None
    assert not traffic.dwell_time
    assert traffic.version() != occupancy.version()
    assert (
        CameraGeometryConfig(id="cam").version() == CameraGeometryConfig(id="cam", dwell_time=True).version()
    )

    def stays(config: CameraGeometryConfig) -> tuple[int, float]:
        frames = FrameBuilder(fps=1)
        # Someone walks into the square, stays 40 s, and leaves.
        observations = [frames.frame({1: (0.5, 0.3 + 0.05 * i)}) for i in range(4)]
        observations += [frames.frame({1: (0.5, 0.5)}) for _ in range(40)]
        observations += [frames.frame({1: (0.5, 0.3)}) for _ in range(3)]
        camera = camera_for(**config.model_dump(exclude={"id"}))
        (report,) = feed(camera, observations)
        return sum(d.count for d in report.dwell), sum(o.object_seconds for o in report.occupancy)

    measured, occupied = stays(occupancy)
    assert measured == 1
    assert stays(traffic) == (0, occupied), "occupancy still measured, stays not"
