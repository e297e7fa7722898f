"""Camera policies for tests and tools: the messages the registry publishes, and a writer of the policy
bucket that stands in for it where a test runs a service without the registry.

The platform itself (``vigie_embedded.platform``) uses the real registry; this is for the services' own
integration tests, which check that a change written to the bucket reaches them and takes effect.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from nats.aio.client import Client
from nats.js.kv import KeyValue

from vigie_core.messaging import connect
from vigie_core.policy import POLICY_BUCKET, POLICY_SCHEMA_VERSION, encode_policy, timestamp
from vigie_core.settings import NatsSettings
from vigie_proto.v1.policy_pb2 import (
    AnalysisOutput,
    AnalysisZone,
    CameraPolicy,
    CameraStatus,
    CountingLine,
    LineDirections,
    NormalisedPoint,
    PositionAnchor,
    PrivacyMask,
    Purpose,
)
from vigie_proto.v1.tracks_pb2 import ObjectClass

__all__ = ["PolicyBucketWriter", "camera_policy"]

Polygon = Sequence[tuple[float, float]]
Segment = tuple[tuple[float, float], tuple[float, float]]

_ALL_CLASSES = [c for c in ObjectClass.values() if c != ObjectClass.OBJECT_CLASS_UNSPECIFIED]


def _point(x: float, y: float) -> NormalisedPoint:
    return NormalisedPoint(x=x, y=y)


def camera_policy(
    camera_id: str,
    *,
    version: int = 1,
    status: CameraStatus.ValueType = CameraStatus.CAMERA_STATUS_ACTIVE,
    paused_until: float | None = None,
    issued_at: float | None = None,
    sample_fps: float = 0.0,
    masks: Sequence[Polygon] = (),
    lines: dict[str, Segment] | None = None,
    zones: dict[str, Polygon] | None = None,
    reporting_window_s: int = 1200,
    justification: str = "",
) -> CameraPolicy:
    """An occupancy-and-crossings policy (all six classes) as the registry would publish it; times are
    Unix seconds (``issued_at`` defaults to now)."""
    policy = CameraPolicy(
        schema_version=POLICY_SCHEMA_VERSION,
        camera_id=camera_id,
        version=version,
        status=status,
        purpose=Purpose.PURPOSE_OCCUPANCY_STATISTICS,
        outputs=[
            AnalysisOutput.ANALYSIS_OUTPUT_LINE_CROSSINGS,
            AnalysisOutput.ANALYSIS_OUTPUT_ZONE_OCCUPANCY,
            AnalysisOutput.ANALYSIS_OUTPUT_DWELL_TIME,
        ],
        object_classes=_ALL_CLASSES,
        sample_fps=sample_fps,
        masks=[PrivacyMask(id=f"mask-{i}", polygon=[_point(*p) for p in m]) for i, m in enumerate(masks)],
        reporting_window_seconds=reporting_window_s,
        reporting_window_justification=justification,
        anchor=PositionAnchor.POSITION_ANCHOR_BOTTOM_CENTRE,
        lines=[
            CountingLine(
                id=line_id,
                start=_point(*start),
                end=_point(*end),
                directions=LineDirections.LINE_DIRECTIONS_BOTH,
            )
            for line_id, (start, end) in (lines or {}).items()
        ],
        zones=[
            AnalysisZone(id=zone_id, polygon=[_point(*p) for p in polygon])
            for zone_id, polygon in (zones or {}).items()
        ],
        dwell_bucket_seconds=[30, 120, 600],
        track_max_seconds=600,
    )
    policy.issued_at.CopyFrom(timestamp(datetime.fromtimestamp(issued_at or time.time(), UTC)))
    if paused_until is not None:
        policy.paused_until.CopyFrom(timestamp(datetime.fromtimestamp(paused_until, UTC)))
    return policy


@dataclass
class PolicyBucketWriter:
    """Writes the policy bucket as the registry does (put, delete; the provisioner created it); close it when
    done."""

    client: Client
    bucket: KeyValue

    @classmethod
    async def open(cls, url: str, user: str | None = None, password: str | None = None) -> PolicyBucketWriter:
        client = await connect(
            NatsSettings(url=url, user=user, password=password),
            "policy-writer",
        )
        bucket = await client.jetstream().key_value(POLICY_BUCKET)
        return cls(client, bucket)

    async def put(self, policy: CameraPolicy) -> None:
        await self.bucket.put(policy.camera_id, encode_policy(policy))

    async def delete(self, camera_id: str) -> None:
        await self.bucket.delete(camera_id)

    async def close(self) -> None:
        await self.client.close()
