"""Settings of the ingest service, built once at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from vigie_core.audit import AuditPublishSettings
from vigie_core.policy import PolicySettings
from vigie_core.settings import ServiceSettings
from vigie_core.sources import check_fernet_key
from vigie_ingest.camera import CameraConfig, LiveConnectionPolicy
from vigie_ingest.pyav_source import DecoderThreadType
from vigie_ingest.resize import DEFAULT_TARGET_SIZE


class RegistrySourcesSettings(BaseModel):
    """The cameras the registry declares (the NATS KV bucket ``vigie-sources``), read as they come and go.

    Off by default: the static ``cameras`` list alone (tools, benchmarks, a deployment without a registry).
    On, ``source_key`` is the registry's ``source_key`` (it opens the sealed URLs). The file-only options
    (``loop``, ``realtime``) and ``sample_fps`` (replaced by the policy's rate when it sets one) apply to
    every camera from the registry.
    """

    # Never echo a key in an error.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    enabled: bool = Field(
        False, description="read the cameras the registry declares, live (the bucket vigie-sources)"
    )
    source_key: SecretStr | None = Field(
        None, description="the registry's source_key (Fernet): opens the sealed source URLs; never logged"
    )
    sample_fps: float = Field(
        5.0, gt=0, le=30, description="frames kept per second, unless the policy sets it"
    )
    loop: bool = Field(False, description="files only: start again at the end (demos)")
    realtime: bool = Field(True, description="files only: deliver frames at the media's own pace")
    options: dict[str, str] = Field(default_factory=dict, description="FFmpeg options passed to av.open")
    shard_count: int = Field(
        1, ge=1, le=1024, description="ingest replicas sharing the registry's cameras (stable hash of the id)"
    )
    shard_index: int = Field(0, ge=0, description="this replica's share, 0 to shard_count - 1")
    startup_wait_s: float = Field(
        10.0,
        ge=0,
        le=300,
        description="how long to wait at start for a first complete read of the bucket before going on "
        "with the static cameras alone (the registry's start as they arrive)",
    )

    @field_validator("source_key")
    @classmethod
    def _fernet(cls, value: SecretStr | None) -> SecretStr | None:
        return check_fernet_key(value, "sources.source_key (the registry's source_key)")

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.enabled and self.source_key is None:
            raise ValueError(
                "sources.enabled needs sources.source_key, the registry's source_key "
                "(VIGIE_INGEST_SOURCES__SOURCE_KEY): the sources arrive sealed"
            )
        if self.shard_index >= self.shard_count:
            raise ValueError("sources.shard_index must be below sources.shard_count")
        return self


class IngestSettings(ServiceSettings, env_prefix="VIGIE_INGEST_", hide_input_in_errors=True):
    """Camera URLs may hold credentials: validation errors never echo the input."""

    cameras: list[CameraConfig] = Field(
        default_factory=list,
        description="the cameras this replica reads from its configuration; an id the registry also "
        "distributes is read from here",
    )
    live: LiveConnectionPolicy = LiveConnectionPolicy()
    target_size: int = Field(DEFAULT_TARGET_SIZE, ge=32, le=1280, description="the model's square input side")
    decoder_threads: DecoderThreadType = Field(
        "ADAPTIVE",
        description="FFmpeg's decoder threading: ADAPTIVE (one thread per camera paced by its clock, live or "
        "real-time file: the least CPU per frame; FFmpeg's frame and slice threads for files read as fast as "
        "possible), or AUTO, FRAME, SLICE, NONE for every camera",
    )
    frames_partitions: int = Field(
        1, ge=1, le=64, description="partitions of FRAMES (one per inference replica)"
    )
    frames_max_age_s: float = Field(5.0, gt=0, description="retention of the FRAMES stream")
    audit: AuditPublishSettings = AuditPublishSettings()
    policy: PolicySettings = Field(
        PolicySettings(),
        description="the registry's policy (pauses, masks, sampling); enabled by default, failing closed",
    )
    sources: RegistrySourcesSettings = Field(
        RegistrySourcesSettings(),
        description="the cameras the registry declares, read live; off by default",
    )
    state_dir: Path | None = Field(
        None,
        description="where each file camera's position is kept (created if missing), so that a restarted "
        "ingest goes on where it was; none: a restart plays files from their beginning. Live cameras are "
        "never kept.",
    )
