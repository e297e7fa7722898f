"""Settings of the ingest service, built once at start-up."""

from __future__ import annotations

from pydantic import Field

from vigie_core.audit import AuditPublishSettings
from vigie_core.policy import PolicySettings
from vigie_core.settings import ServiceSettings
from vigie_ingest.camera import CameraConfig, LiveConnectionPolicy
from vigie_ingest.resize import DEFAULT_TARGET_SIZE


class IngestSettings(ServiceSettings, env_prefix="VIGIE_INGEST_", hide_input_in_errors=True):
    """Camera URLs may hold credentials: validation errors never echo the input."""

    cameras: list[CameraConfig] = Field(default_factory=list, description="the cameras this replica reads")
    live: LiveConnectionPolicy = LiveConnectionPolicy()
    target_size: int = Field(DEFAULT_TARGET_SIZE, ge=32, le=1280, description="the model's square input side")
    frames_partitions: int = Field(
        1, ge=1, le=64, description="partitions of FRAMES (one per inference replica)"
    )
    frames_max_age_s: float = Field(5.0, gt=0, description="retention of the FRAMES stream")
    audit: AuditPublishSettings = AuditPublishSettings()
    policy: PolicySettings = Field(
        PolicySettings(),
        description="the registry's policy (pauses, masks, sampling); enabled by default, failing closed",
    )
