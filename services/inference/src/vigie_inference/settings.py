"""Settings of the inference service, built once at start-up."""

from __future__ import annotations

from pydantic import Field, model_validator

from vigie_core.audit import AuditPublishSettings
from vigie_core.policy import PolicySettings
from vigie_core.settings import ServiceSettings
from vigie_inference.tracker import TrackerParams


class InferenceSettings(ServiceSettings, env_prefix="VIGIE_INFERENCE_"):
    triton_url: str = Field("127.0.0.1:8001", description="Triton gRPC endpoint, host:port")
    model_name: str = "yolov4_tiny"
    model_version: str = Field("", description="empty: the version Triton serves")
    partition: int = Field(0, ge=0, description="which partition of FRAMES this replica analyses")
    partitions: int = Field(1, ge=1, le=64, description="how many partitions FRAMES is split into")
    max_batch: int = Field(1, ge=1, le=32, description="frames per Triton request; more helps on GPUs")
    max_in_flight: int = Field(
        2, ge=1, le=64, description="Triton requests in flight, so the model never idles"
    )
    tracks_partitions: int = Field(
        1, ge=1, le=64, description="partitions of TRACKS (one per anonymiser replica)"
    )
    tracks_max_age_s: float = Field(60.0, gt=0, description="retention of the TRACKS stream")
    tracker: TrackerParams = TrackerParams()
    iou_threshold: float = Field(0.45, gt=0, lt=1, description="non-maximum suppression overlap")
    camera_idle_s: float = Field(30.0, gt=0, description="a camera silent this long has its tracks ended")
    audit: AuditPublishSettings = AuditPublishSettings()
    policy: PolicySettings = Field(
        PolicySettings(),
        description="the registry's policy: frames of a camera it does not allow are dropped unanalysed",
    )

    @model_validator(mode="after")
    def _check(self) -> InferenceSettings:
        if self.partition >= self.partitions:
            raise ValueError(f"partition {self.partition} must be below partitions ({self.partitions})")
        return self
