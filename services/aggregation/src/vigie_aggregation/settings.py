"""Settings of the aggregation service, built once at start-up (env prefix ``VIGIE_AGGREGATION_``)."""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from vigie_core.audit import AuditPublishSettings
from vigie_core.auth import AuthSettings
from vigie_core.settings import CameraId, ServiceSettings

__all__ = [
    "DEFAULT_WINDOW_S",
    "AggregationSettings",
    "CameraSiteConfig",
    "DisclosureSettings",
    "NoiseSettings",
    "SiteId",
]

# docs/privacy.md rule 11: figures are not refreshed more often than every twenty minutes by default.
DEFAULT_WINDOW_S = 1200
DAY_S = 86_400

# A site id follows the camera id rule (one NATS subject token), so the registry can key both alike.
SiteId = CameraId


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CameraSiteConfig(_Section):
    """Which site a camera belongs to (the registry will supply it later: ``vigie_aggregation.sites``)."""

    id: CameraId
    site: SiteId


class DisclosureSettings(_Section):
    """Statistical disclosure control of everything published (docs/privacy.md rules 11 and 12)."""

    window_s: int = Field(
        DEFAULT_WINDOW_S,
        ge=60,
        le=DAY_S,
        description="the publication window: figures are published per window or per day, never finer",
    )
    window_justification: str = Field(
        "",
        max_length=1000,
        description=f"why a window shorter than {DEFAULT_WINDOW_S} s is needed (docs/privacy.md rules 8, 11)",
    )
    threshold: int = Field(
        11,
        ge=3,
        le=1000,
        description=(
            "counts from 1 to threshold-1 are suppressed (11: INSEE's rule for persons, the most protective "
            "default, rule 8; 3 is the general frequency rule)"
        ),
    )
    release_delay_s: float = Field(
        300.0,
        ge=0,
        le=DAY_S,
        description=(
            "a window is published this long after it ends (and once EVENTS is drained), so the parts that "
            "close it have arrived; a part arriving later is stored but never published"
        ),
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if DAY_S % self.window_s:
            raise ValueError(f"disclosure.window_s {self.window_s} must divide a day ({DAY_S} s)")
        if self.window_s < DEFAULT_WINDOW_S and not self.window_justification.strip():
            raise ValueError(
                f"disclosure.window_s {self.window_s}: a window shorter than {DEFAULT_WINDOW_S} s needs a "
                "written disclosure.window_justification (docs/privacy.md rules 8 and 11)"
            )
        return self


class NoiseSettings(_Section):
    """Optional noise on published counts, with a privacy budget per camera and budget period."""

    enabled: bool = Field(False, description="add two-sided geometric noise to every published count")
    epsilon_per_window: float = Field(
        0.5, gt=0, le=10, description="privacy loss of one window's counts of one camera (event-level)"
    )
    budget_epsilon: float = Field(
        36.0,
        gt=0,
        description=(
            "total privacy loss allowed per camera and budget period; windows past it are withheld "
            "(the default allows every 20-minute window of a day at 0.5)"
        ),
    )
    budget_period_days: int = Field(1, ge=1, le=366, description="the ledger's period, in UTC days")


class AggregationSettings(ServiceSettings, env_prefix="VIGIE_AGGREGATION_"):
    database_url: SecretStr = Field(
        SecretStr("sqlite+aiosqlite:///var/aggregation/statistics.sqlite3"),
        description="SQLAlchemy async URL: sqlite+aiosqlite:///PATH or postgresql+asyncpg://...",
    )
    database_schema: str | None = Field(
        None,
        pattern=r"^[a-z_][a-z0-9_]{0,62}$",
        description="PostgreSQL schema (search_path); none: the default",
    )
    cameras: list[CameraSiteConfig] = Field(
        default_factory=list,
        description="each camera's site; reports of unlisted cameras are stored, not published",
    )
    disclosure: DisclosureSettings = DisclosureSettings()
    noise: NoiseSettings = NoiseSettings()
    retention_days: int = Field(
        365, ge=1, le=3660, description="statistics older than this are deleted (the purpose's retention)"
    )
    retention_check_interval_s: float = Field(3600.0, gt=0)
    release_check_interval_s: float = Field(15.0, gt=0, description="how often closed windows are looked for")
    fetch_batch: int = Field(256, ge=1, le=10_000, description="reports stored per transaction at most")
    fetch_timeout_s: float = Field(0.5, gt=0)
    ack_wait_s: float = Field(60.0, gt=0, description="when a fetched, unacknowledged report is redelivered")
    deadletter_max_age_s: float = Field(
        7 * DAY_S, gt=0, le=366 * DAY_S, description="how long rejected reports are kept for inspection"
    )
    read_scope: str = Field(
        "stats:read", min_length=1, description="OAuth2 scope the statistics API requires"
    )
    max_page_size: int = Field(1000, ge=1, le=10_000)
    auth: AuthSettings = AuthSettings()
    audit: AuditPublishSettings = AuditPublishSettings()

    @model_validator(mode="after")
    def _check(self) -> Self:
        ids = [camera.id for camera in self.cameras]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise ValueError(f"cameras: a camera belongs to one site, listed more than once: {repeated}")
        if self.noise.enabled and self.noise.epsilon_per_window > self.noise.budget_epsilon:
            raise ValueError(
                f"noise.budget_epsilon {self.noise.budget_epsilon} is below one window's "
                f"noise.epsilon_per_window {self.noise.epsilon_per_window}: nothing could ever be published"
            )
        return self
