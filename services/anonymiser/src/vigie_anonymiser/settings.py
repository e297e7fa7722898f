"""Settings of the anonymiser service, built once at start-up."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator

from vigie_anonymiser.config import CameraGeometryConfig, CountingParams
from vigie_core.audit import AuditPublishSettings
from vigie_core.policy import PolicySettings
from vigie_core.settings import ServiceSettings

__all__ = ["AnonymiserSettings"]


class AnonymiserSettings(ServiceSettings, env_prefix="VIGIE_ANONYMISER_"):
    cameras: list[CameraGeometryConfig] = Field(
        default_factory=list,
        description="the cameras counted, with their lines, zones and window; with the policy on, what a "
        "camera's policy says replaces these, which only fill in where it is silent",
    )
    counting: CountingParams = CountingParams()
    partition: int = Field(0, ge=0, description="which partition of TRACKS this replica consumes")
    partitions: int = Field(1, ge=1, le=64, description="how many partitions TRACKS is split into")
    camera_idle_s: float = Field(
        60.0,
        gt=0,
        description=(
            "a camera silent this long (wall clock) has its tracks finished and its window part reported; "
            "keep it above inference's camera_idle_s so that inference's end-of-tracks message comes first"
        ),
    )
    fetch_batch: int = Field(64, ge=1, le=1024, description="TRACKS messages fetched at once")
    events_max_age_s: float = Field(
        3 * 24 * 3600.0, gt=0, description="how long EVENTS keeps a report the aggregation has not taken"
    )
    events_duplicate_window_s: float = Field(
        3600.0, ge=60, le=24 * 3600.0, description="EVENTS drops a report id seen within this"
    )
    deadletter_max_age_s: float = Field(
        3600.0,
        gt=0,
        le=24 * 3600.0,
        description=(
            "how long rejected TRACKS messages are kept for inspection (memory only: they may hold track "
            "ids; docs/privacy.md rule 14 allows pseudonymous data 24 hours at worst)"
        ),
    )

    audit: AuditPublishSettings = AuditPublishSettings()
    policy: PolicySettings = Field(
        PolicySettings(),
        description="the registry's policy: geometry and pauses (a camera it does not allow is not counted)",
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.partition >= self.partitions:
            raise ValueError(f"partition {self.partition} must be below partitions ({self.partitions})")
        ids = [camera.id for camera in self.cameras]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise ValueError(f"cameras: each camera may be listed once, repeated: {repeated}")
        return self
