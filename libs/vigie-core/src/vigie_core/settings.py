"""Settings shared by every service: one object built at start-up from the environment and a TOML file.

Each service subclasses :class:`ServiceSettings` with its own ``env_prefix`` and fields, builds it once
with :meth:`ServiceSettings.load` in ``__main__`` and passes it down. Unknown settings are an error.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

_SUBJECT_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _check_subject_token(value: str) -> str:
    if not _SUBJECT_TOKEN.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid identifier: use 1 to 64 letters, digits, '-' or '_' "
            "(it becomes one NATS subject token)"
        )
    return value


# A camera identifier: also one token of the NATS subjects that carry its data.
CameraId = Annotated[str, AfterValidator(_check_subject_token)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NatsSettings(_Section):
    url: str = Field("nats://127.0.0.1:4222", description="NATS server URL(s), comma-separated")
    user: str | None = Field(None, description="this service's NATS user")
    password: SecretStr | None = None
    connect_timeout_s: float = Field(5.0, gt=0)


class HttpSettings(_Section):
    """Where the service serves /metrics, /healthz and /readyz (and its API, if it has one)."""

    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65535, description="0 picks a free port (it is logged)")


class TelemetrySettings(_Section):
    otlp_endpoint: str | None = Field(None, description="OTLP gRPC endpoint for traces; none exports nothing")
    sample_ratio: float = Field(1.0, ge=0.0, le=1.0)


class ServiceSettings(BaseSettings):
    """Base of every service's settings. Nested fields read from ``<PREFIX>NATS__URL`` and the like."""

    model_config = SettingsConfigDict(extra="forbid", env_nested_delimiter="__", frozen=True)

    nats: NatsSettings = NatsSettings()
    http: HttpSettings = HttpSettings()
    telemetry: TelemetrySettings = TelemetrySettings()
    log_level: str = Field("INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the file, so one value can be changed without editing the file.
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls), file_secret_settings)

    @classmethod
    def load(cls, config_file: Path | None = None) -> Self:
        """Build the settings from the environment and, when given, a TOML file."""
        cls._refuse_unknown_environment()
        if config_file is None:
            return cls()
        if not config_file.is_file():
            raise FileNotFoundError(f"configuration file {config_file} does not exist")
        from_file = type(cls.__name__, (cls,), {"model_config": SettingsConfigDict(toml_file=config_file)})
        settings: Self = from_file()
        return settings

    @classmethod
    def _refuse_unknown_environment(cls) -> None:
        # pydantic-settings ignores variables with our prefix that name no field; a typo would then
        # silently keep a default, so they are refused here.
        prefix = cls.model_config.get("env_prefix", "").upper()
        if not prefix:
            return
        known = {name.upper() for name in cls.model_fields}
        unknown = sorted(
            key
            for key in os.environ
            if key.upper().startswith(prefix) and key.upper()[len(prefix) :].split("__")[0] not in known
        )
        if unknown:
            raise ValueError(f"unknown setting(s) in the environment: {', '.join(unknown)}")
