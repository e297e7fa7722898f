"""Settings of the inference service, built once at start-up."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from vigie_core.audit import AuditPublishSettings
from vigie_core.policy import PolicySettings
from vigie_core.settings import ServiceSettings
from vigie_inference.scene_view import ViewParams
from vigie_inference.tracker import TrackerParams
from vigie_models import CENTERFACE_MODEL_NAME


class ViewSettings(BaseModel):
    """How the replica carries out the registry's view requests (policy.proto's ViewRequest, the
    ``views`` section): frames of the camera kept in memory over the request's ``sample_seconds``, a view
    built from them (:mod:`.scene_view`) and published on VIEWS."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="carry out view requests (false: never keep a frame for a view)")
    face_model_name: str = Field(CENTERFACE_MODEL_NAME, description="the face detector's model on Triton")
    face_model_version: str = Field("", description="empty: the version Triton serves")
    frames: int = Field(
        30,
        ge=ViewParams.min_frames,
        le=120,
        description="frames kept for one view, evenly over the request's sample_seconds (each about 300 KB, "
        "in memory only)",
    )
    frames_wait_s: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="how long past its sample_seconds a request waits for frames (a camera that stopped "
        "sending) before the view is built from those kept",
    )
    max_sample_seconds: float = Field(
        1800.0, gt=0, le=3600, description="a request asking to sample longer is sampled this long"
    )


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
    views: ViewSettings = Field(
        ViewSettings(), description="the registry's view requests: views of a scene without its people"
    )

    @model_validator(mode="after")
    def _check(self) -> InferenceSettings:
        if self.partition >= self.partitions:
            raise ValueError(f"partition {self.partition} must be below partitions ({self.partitions})")
        return self
