"""What a camera is to the ingest service: where to read it and how often to keep a frame."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from vigie_core.audit import redact_url
from vigie_core.settings import CameraId

LIVE_SCHEMES = frozenset({"rtsp", "rtsps", "http", "https"})
FILE_SCHEME = "file"


def file_only_options(url: str, *, loop: bool, realtime: bool) -> dict[str, bool]:
    """``loop`` and ``realtime`` for a file source; nothing for a live one (they do not apply)."""
    if urlsplit(url).scheme.lower() in LIVE_SCHEMES:
        return {}
    return {"loop": loop, "realtime": realtime}


class CameraConfig(BaseModel):
    """One camera: a live stream (RTSP, HTTP) or a video file played as if it were one."""

    # Camera URLs may carry passwords: validation errors must not echo what they were given.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    id: CameraId = Field(
        description="Camera identifier, one NATS subject token: [A-Za-z0-9_-], 1 to 64 chars."
    )
    url: str = Field(
        description="A file path, file://, rtsp://, rtsps://, http:// or https:// URL.",
        min_length=1,
    )
    sample_fps: float = Field(
        default=5.0, gt=0, le=30, description="Frames kept per second of video (at most the source's rate)."
    )
    loop: bool = Field(default=False, description="Files only: start again at the end (demos).")
    realtime: bool = Field(
        default=True,
        description=(
            "Files only: deliver frames at the media's own pace, as a camera would. "
            "False reads as fast as the publisher takes them (benchmarks, tests)."
        ),
    )
    options: dict[str, str] = Field(
        default_factory=dict, description="FFmpeg options passed to av.open (e.g. probesize)."
    )

    @field_validator("url")
    @classmethod
    def _url_has_a_known_scheme(cls, value: str) -> str:
        parts = urlsplit(value)
        scheme = parts.scheme.lower()
        if scheme in LIVE_SCHEMES:
            if not parts.hostname:
                raise ValueError(f"camera url {redact_url(value)!r} has no host")
        elif scheme == FILE_SCHEME:
            if not parts.path:
                raise ValueError(f"camera url {value!r} has no path")
        elif scheme and len(scheme) > 1:
            # A one-letter "scheme" would be a Windows drive; anything longer is a URL we do not read.
            allowed = ", ".join(f"{s}://" for s in sorted(LIVE_SCHEMES | {FILE_SCHEME}))
            raise ValueError(f"camera url scheme {scheme!r} is not supported; use a file path or {allowed}")
        return value

    @model_validator(mode="after")
    def _file_only_settings_on_files(self) -> CameraConfig:
        if self.live and self.loop:
            raise ValueError(f"camera {self.id!r}: loop applies to files only, not to {self.display_url!r}")
        if self.live and not self.realtime:
            raise ValueError(f"camera {self.id!r}: realtime=False applies to files only")
        return self

    @property
    def scheme(self) -> str:
        """The URL scheme in lower case; `file` for a plain path."""
        scheme = urlsplit(self.url).scheme.lower()
        return scheme if scheme in LIVE_SCHEMES else FILE_SCHEME

    @property
    def live(self) -> bool:
        """RTSP and HTTP sources are live (wall-clock time, reconnect); files are not."""
        return self.scheme in LIVE_SCHEMES

    @property
    def file_path(self) -> Path:
        """The path of a file source (a file:// URL decoded)."""
        if self.live:
            raise ValueError(f"camera {self.id!r} is live, it has no file path")
        parts = urlsplit(self.url)
        if parts.scheme.lower() == FILE_SCHEME:
            return Path(unquote(parts.path))
        return Path(self.url)

    @property
    def display_url(self) -> str:
        """The URL without its password nor its query values (a token, often): the only form that may
        appear in logs and errors."""
        parts = urlsplit(redact_url(self.url))
        if not parts.query:
            return parts.geturl()
        query = urlencode([(k, "***") for k, _ in parse_qsl(parts.query, keep_blank_values=True)], safe="*")
        return urlunsplit(parts._replace(query=query))

    def redacted(self, text: str) -> str:
        """``text`` (an error from FFmpeg or elsewhere, a traceback) with this camera's URL replaced by its
        display form, and its password and query values, wherever they appear, by ``***``."""
        text = text.replace(self.url, self.display_url)
        parts = urlsplit(self.url)
        # Every password; query values long enough to be a token (not "1" or "hd", which are everywhere).
        values = {v for _, v in parse_qsl(parts.query, keep_blank_values=True) if len(v) >= 4}
        secrets = {parts.password or "", *values}
        secrets |= {unquote(secret) for secret in secrets}
        for secret in sorted((s for s in secrets if s), key=len, reverse=True):
            text = text.replace(secret, "***")
        return text


class LiveConnectionPolicy(BaseModel):
    """How live sources connect and reconnect; shared by all cameras of a service."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    open_timeout_s: float = Field(default=5.0, gt=0, description="Give up opening a stream after this.")
    read_timeout_s: float = Field(
        default=5.0, gt=0, description="Treat a stream that sends nothing for this long as lost."
    )
    backoff_initial_s: float = Field(default=1.0, gt=0, description="First delay before reconnecting.")
    backoff_max_s: float = Field(default=30.0, gt=0, description="Longest delay between reconnections.")
    backoff_jitter_s: float = Field(
        default=1.0,
        ge=0,
        description="Random extra delay, so cameras behind one outage do not reconnect in step.",
    )

    @model_validator(mode="after")
    def _max_not_below_initial(self) -> LiveConnectionPolicy:
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s must be at least backoff_initial_s")
        return self
