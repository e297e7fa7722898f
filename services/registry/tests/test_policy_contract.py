"""The effective policy the registry builds: what it carries, and that the anonymiser's configuration
accepts its lines, zones and window as they are (a contract test: the anonymiser will read them from the
bucket in the next increment)."""

from __future__ import annotations

from typing import Any

from vigie_anonymiser.config import CameraGeometryConfig
from vigie_core.policy import decide, decode_policy, encode_policy, geometry_document
from vigie_proto.v1.policy_pb2 import AnalysisOutput, CameraStatus, Purpose, SecurityEventKind
from vigie_proto.v1.tracks_pb2 import ObjectClass
from vigie_registry.camera import StoredCamera, build_policy
from vigie_registry.declaration import CameraDeclaration

from .conftest import NOW, declaration, security_declaration

T = NOW.timestamp()


def camera(body: dict[str, Any], status: Any = "active", paused_until: int | None = None) -> StoredCamera:
    return StoredCamera(
        id="north-gate",
        declaration=CameraDeclaration.model_validate({k: v for k, v in body.items() if k != "source"}),
        source_display="rtsp://viewer:***@10.0.0.12/stream",
        source_has_credentials=True,
        status=status,
        status_reason="",
        version=7,
        published_version=0,
        paused_until=paused_until,
        created_at=int(T),
        updated_at=int(T),
    )


def test_the_policy_carries_what_every_service_applies() -> None:
    policy = build_policy(camera(declaration(sample_fps=4.0)), T)
    assert decode_policy("north-gate", encode_policy(policy)) == policy
    assert (policy.schema_version, policy.version, policy.status) == (1, 7, CameraStatus.CAMERA_STATUS_ACTIVE)
    assert policy.purpose == Purpose.PURPOSE_PEDESTRIAN_FLOW_STATISTICS
    assert list(policy.outputs) == [AnalysisOutput.ANALYSIS_OUTPUT_LINE_CROSSINGS]
    assert list(policy.object_classes) == [ObjectClass.OBJECT_CLASS_PERSON]
    assert policy.sample_fps == 4.0
    assert [(p.x, p.y) for p in policy.masks[0].polygon] == [(0.0, 0.0), (0.2, 0.0), (0.2, 0.2)]
    assert policy.track_max_seconds == 600
    assert not policy.HasField("paused_until")
    assert b"s3cret" not in encode_policy(policy)
    paused = build_policy(camera(declaration(), paused_until=int(T) + 900), T)
    assert not decide("north-gate", paused, T).analyse


def test_security_events_carry_their_detections_and_window() -> None:
    policy = build_policy(camera(security_declaration()), T)
    assert list(policy.security_events) == [
        SecurityEventKind.SECURITY_EVENT_KIND_ABANDONED_OBJECT,
        SecurityEventKind.SECURITY_EVENT_KIND_CROWD_MOVEMENT,
    ]
    assert policy.authorised_until.ToDatetime().timestamp() > T
    assert decide("north-gate", policy, T).analyse
    assert not decide("north-gate", policy, T + 10 * 86_400).analyse


def test_the_anonymiser_accepts_the_policys_geometry() -> None:
    body = declaration(
        purpose="traffic_flow_statistics",
        object_classes=["car", "bicycle"],
        lines=[{"id": "lane", "start": [0.0, 0.6], "end": [1.0, 0.6], "directions": "left_to_right"}],
        zones=[
            {
                "id": "crossroads",
                "polygon": [[0.2, 0.2], [0.8, 0.2], [0.8, 0.8], [0.2, 0.8]],
                "classes": ["car"],
            }
        ],
        reporting_window_s=600,
        reporting_window_justification="traffic lights timing study, peak hours only",
        anchor="centre",
    )
    policy = build_policy(camera(body), T)
    config = CameraGeometryConfig.model_validate(geometry_document(policy))
    assert config.id == "north-gate"
    assert config.reporting_window_s == 600
    assert [line.id for line in config.lines] == ["lane"]
    assert config.lines[0].directions == "left_to_right"
    assert [zone.id for zone in config.zones] == ["crossroads"]
    assert config.zones[0].classes == ["car"]
    assert config.anchor == "centre"
    assert list(config.dwell_buckets_s) == [30, 120, 600]
