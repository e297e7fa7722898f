"""A camera as the registry stores it, and the effective policy it publishes for it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from google.protobuf.timestamp_pb2 import Timestamp

from vigie_core.policy import POLICY_SCHEMA_VERSION, decide
from vigie_proto.v1.policy_pb2 import (
    AnalysisZone,
    CameraPolicy,
    CameraStatus,
    CountingLine,
    LineDirections,
    NormalisedPoint,
    PositionAnchor,
    PrivacyMask,
    ViewRequest,
)
from vigie_registry.declaration import CameraDeclaration, CameraStatusName
from vigie_registry.purposes import (
    PURPOSES,
    class_code,
    output_code,
    purpose_code,
    security_event_code,
)
from vigie_registry.rules import effective_classes, effective_outputs

__all__ = [
    "SAMPLE_SECONDS_MAX",
    "SAMPLE_SECONDS_MIN",
    "LiveState",
    "SceneViewRequest",
    "StoredCamera",
    "build_policy",
    "timestamp_of",
]

LiveState = Literal["analysing", "paused_by_objection", "off"]

# How long a scene view's frames may be sampled: long enough for passers-by to vanish, short enough that
# the request is not a way to watch the scene.
SAMPLE_SECONDS_MIN = 10
SAMPLE_SECONDS_MAX = 600

_STATUS = {
    "draft": CameraStatus.CAMERA_STATUS_DRAFT,
    "active": CameraStatus.CAMERA_STATUS_ACTIVE,
    "paused": CameraStatus.CAMERA_STATUS_PAUSED,
    "retired": CameraStatus.CAMERA_STATUS_RETIRED,
}
_DIRECTIONS = {
    "both": LineDirections.LINE_DIRECTIONS_BOTH,
    "left_to_right": LineDirections.LINE_DIRECTIONS_LEFT_TO_RIGHT,
    "right_to_left": LineDirections.LINE_DIRECTIONS_RIGHT_TO_LEFT,
}
_ANCHORS = {
    "bottom_centre": PositionAnchor.POSITION_ANCHOR_BOTTOM_CENTRE,
    "centre": PositionAnchor.POSITION_ANCHOR_CENTRE,
}


@dataclass(frozen=True, slots=True)
class SceneViewRequest:
    """An operator's request for a view of the camera's scene without its people (the policy's
    ``view_request``): the camera's only current one, replaced by the next."""

    request_id: str
    # Unix seconds.
    requested_at: int
    sample_seconds: int


@dataclass(frozen=True, slots=True)
class StoredCamera:
    id: str
    declaration: CameraDeclaration
    # The source as the API shows it (no password, no query values); the URL itself is a secret kept apart.
    source_display: str
    source_has_credentials: bool
    status: CameraStatusName
    # Why the status was last set by the registry itself (e.g. "authorisation_expired"); "" otherwise.
    status_reason: str
    # The registry's policy sequence at the last change, and the last version written to the bucket.
    version: int
    published_version: int
    # Unix seconds: the end of the pause of the latest objection (None: never objected).
    paused_until: int | None
    created_at: int
    updated_at: int
    # The current request for a scene view; in every policy published until the next one replaces it.
    view_request: SceneViewRequest | None = None

    def live_state(self, now: float) -> LiveState:
        """What the public page says: analysing, paused by an objection, or off."""
        decision = decide(self.id, build_policy(self, now), now)
        if decision.analyse:
            return "analysing"
        if self.status == "active" and self.paused_until is not None and now < self.paused_until:
            return "paused_by_objection"
        return "off"


def _point(x: float, y: float) -> NormalisedPoint:
    return NormalisedPoint(x=x, y=y)


def timestamp_of(value: datetime | float) -> Timestamp:
    """A protobuf timestamp of a datetime or of Unix seconds."""
    stamp = Timestamp()
    if isinstance(value, datetime):
        stamp.FromDatetime(value.astimezone(UTC))
    else:
        stamp.FromNanoseconds(int(value * 1e9))
    return stamp


def build_policy(camera: StoredCamera, now: float) -> CameraPolicy:
    """The effective policy of ``camera``: what every service applies (``vigie.v1.CameraPolicy``)."""
    d = camera.declaration
    purpose = PURPOSES[d.purpose]
    classes = effective_classes(d, purpose)
    policy = CameraPolicy(
        schema_version=POLICY_SCHEMA_VERSION,
        camera_id=camera.id,
        version=camera.version,
        status=_STATUS[camera.status],
        purpose=purpose_code(purpose.name),
        outputs=[output_code(o) for o in effective_outputs(d, purpose)],
        object_classes=[class_code(c) for c in classes],
        sample_fps=d.sample_fps,
        masks=[PrivacyMask(id=m.id, polygon=[_point(*p) for p in m.polygon]) for m in d.masks],
        reporting_window_seconds=d.reporting_window_s,
        reporting_window_justification=d.reporting_window_justification,
        anchor=_ANCHORS[d.anchor],
        lines=[
            CountingLine(
                id=line.id,
                start=_point(*line.start),
                end=_point(*line.end),
                directions=_DIRECTIONS[line.directions],
                classes=[class_code(c) for c in line.classes if c in classes],
            )
            for line in d.lines
        ],
        zones=[
            AnalysisZone(
                id=zone.id,
                polygon=[_point(*p) for p in zone.polygon],
                classes=[class_code(c) for c in zone.classes if c in classes],
            )
            for zone in d.zones
        ],
        dwell_bucket_seconds=list(d.dwell_buckets_s),
        track_max_seconds=d.retention.track_max_s,
    )
    policy.issued_at.CopyFrom(timestamp_of(now))
    if camera.paused_until is not None:
        policy.paused_until.CopyFrom(timestamp_of(float(camera.paused_until)))
    if d.security_events is not None and purpose.needs_authorisation:
        policy.security_events.extend(security_event_code(k) for k in d.security_events.detections)
        policy.authorised_from.CopyFrom(timestamp_of(d.security_events.authorised_from))
        policy.authorised_until.CopyFrom(timestamp_of(d.security_events.authorised_until))
    if camera.view_request is not None:
        request = camera.view_request
        policy.view_request.CopyFrom(
            ViewRequest(
                request_id=request.request_id,
                requested_at=timestamp_of(float(request.requested_at)),
                sample_seconds=request.sample_seconds,
            )
        )
    return policy
