"""Settings of the audit service, built once at start-up (env prefix ``VIGIE_AUDIT_``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from vigie_core.audit import AuditPublishSettings
from vigie_core.auth import AuthSettings
from vigie_core.settings import ServiceSettings
from vigie_core.streams import AuditStream

_DAY_S = 24 * 3600.0


class AuditStreamSettings(BaseModel):
    """The AUDIT stream, which the audit service owns (it creates it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_age_days: float = Field(365.0, gt=0, description="how long an event not yet journaled is kept")
    max_bytes: int = Field(
        4 * 1024**3, gt=0, description="backlog bound; beyond it publishers buffer and retry"
    )
    duplicate_window_s: float = Field(600.0, gt=0, description="Nats-Msg-Id de-duplication window")

    def stream(self) -> AuditStream:
        return AuditStream(
            max_age_s=self.max_age_days * _DAY_S,
            max_bytes=self.max_bytes,
            duplicate_window_s=self.duplicate_window_s,
        )


class AuditSettings(ServiceSettings, env_prefix="VIGIE_AUDIT_"):
    database_url: SecretStr = Field(
        SecretStr("sqlite+aiosqlite:///var/audit/journal.sqlite3"),
        description="SQLAlchemy async URL: sqlite+aiosqlite:///PATH or postgresql+asyncpg://...",
    )
    database_schema: str | None = Field(
        None,
        pattern=r"^[a-z_][a-z0-9_]{0,62}$",
        description="PostgreSQL schema (search_path); none: the default",
    )
    log_id: str = Field(
        "vigie-audit", pattern=r"^[A-Za-z0-9._:/-]{1,128}$", description="names the log in tree heads"
    )
    signing_key: SecretStr | None = Field(
        None, description="Ed25519 private key, PEM or base64 raw; none: one is generated at start and logged"
    )
    tree_head_interval_s: float = Field(
        60.0, gt=0, description="sign a tree head this often when the log grew"
    )
    retention_days: int = Field(
        365,
        ge=183,
        le=3 * 366,
        description="6 months to 1 year; up to 3 years with a justification (rule 21)",
    )
    retention_justification: str | None = Field(None, description="why more than a year, when it is")
    retention_check_interval_s: float = Field(3600.0, gt=0)
    fetch_batch: int = Field(1000, ge=1, le=10_000, description="events appended per transaction at most")
    fetch_timeout_s: float = Field(0.5, gt=0)
    ack_wait_s: float = Field(60.0, gt=0, description="when a fetched, unacknowledged event is redelivered")
    read_scope: str = Field("audit:read", min_length=1, description="OAuth2 scope the audit API requires")
    stream: AuditStreamSettings = AuditStreamSettings()
    auth: AuthSettings = AuthSettings()
    audit: AuditPublishSettings = AuditPublishSettings()

    @model_validator(mode="after")
    def _check_retention(self) -> AuditSettings:
        if self.retention_days > 366 and not (self.retention_justification or "").strip():
            raise ValueError(
                f"retention_days {self.retention_days}: more than a year needs a retention_justification "
                "(docs/privacy.md rule 21)"
            )
        return self
