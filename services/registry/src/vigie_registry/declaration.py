"""What the city's administrator declares for a camera: the shapes of the admin API's bodies.

These models check types, ranges and geometry (a 422 naming the field). The privacy rules — what the
purpose allows, what docs/privacy.md forbids, activation, retention — are :mod:`vigie_registry.rules`, which
names the rule it applies. Lists of outputs, classes and detections are plain strings here on purpose:
asking for ``face_recognition`` must reach the rules and be refused by name, not as an unknown enum value.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal, Self
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from vigie_core.settings import CameraId
from vigie_core.shapes import (
    MIN_LINE_LENGTH,
    MIN_POLYGON_AREA,
    is_simple_polygon,
    line_length,
    polygon_area,
)

__all__ = [
    "CAMERA_STATUSES",
    "DEFAULT_DWELL_BUCKETS_S",
    "DEFAULT_REPORTING_WINDOW_S",
    "DEFAULT_SAMPLE_FPS",
    "DEFAULT_STATISTICS_DAYS",
    "DEFAULT_TRACK_MAX_S",
    "CameraCreate",
    "CameraDeclaration",
    "CameraStatusName",
    "CameraWrite",
    "Contact",
    "LegalDeclaration",
    "LineDeclaration",
    "Location",
    "MaskDeclaration",
    "ObjectionDeclaration",
    "Retention",
    "SecurityEventsDeclaration",
    "SourceDeclaration",
    "ZoneDeclaration",
    "declaration_of",
    "redact_url",
]

# The most protective defaults (docs/privacy.md rule 8); going beyond needs a written justification.
DEFAULT_REPORTING_WINDOW_S = 1200  # rule 11
DEFAULT_SAMPLE_FPS = 5.0
DEFAULT_TRACK_MAX_S = 600  # rule 14: anonymous within minutes
DEFAULT_STATISTICS_DAYS = 365
DEFAULT_DWELL_BUCKETS_S = (30, 120, 600)
_DAY_S = 86_400

CameraStatusName = Literal["draft", "active", "paused", "retired"]
CAMERA_STATUSES: tuple[CameraStatusName, ...] = ("draft", "active", "paused", "retired")

SOURCE_SCHEMES = frozenset({"rtsp", "rtsps", "http", "https", "file"})

Coordinate = Annotated[float, Field(ge=0.0, le=1.0)]
NormalisedPoint = tuple[Coordinate, Coordinate]


def _no_control(value: str) -> str:
    if any(ord(c) < 32 and c not in "\n\t" for c in value) or "\x7f" in value:
        raise ValueError("control characters are not allowed")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("not valid Unicode text") from None
    return value


# A requested output, class or detection: checked against the closed lists by the rules.
Term = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_ .\-]+$")]
Text = Annotated[str, Field(max_length=2000), AfterValidator(_no_control)]
ShortText = Annotated[str, Field(max_length=300), AfterValidator(_no_control)]
Name = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_no_control)]
# Times of a legal decision: this century or the next, so that they convert everywhere.
_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
_LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def _plausible(value: datetime) -> datetime:
    if not _EARLIEST <= value <= _LATEST:
        raise ValueError("a date between 2000 and 2200 is expected")
    return value


DecisionTime = Annotated[AwareDatetime, AfterValidator(_plausible)]


class _Model(BaseModel):
    # Bodies may hold the source's credentials: a validation error never echoes its input.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


def redact_url(url: str) -> str:
    """The URL without its password nor query values: the only form the API returns or logs."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None or parts.username is not None:
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        netloc = f"{parts.username or ''}:***@{host}" if parts.password is not None else f"***@{host}"
    query = urlencode([(k, "***") for k, _ in parse_qsl(parts.query, keep_blank_values=True)], safe="*")
    return urlunsplit(parts._replace(netloc=netloc, query=query, fragment=""))


class SourceDeclaration(_Model):
    """Where ingest reads the camera. Secret: stored encrypted when a key is set, returned redacted."""

    url: SecretStr = Field(
        description="rtsp://, rtsps://, http://, https:// or file:// URL; may hold credentials (never "
        "returned)"
    )

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: SecretStr) -> SecretStr:
        url = _no_control(value.get_secret_value())
        if len(url) > 2000:
            raise ValueError("at most 2000 characters")
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError for a port out of range
        if parts.scheme.lower() not in SOURCE_SCHEMES:
            raise ValueError(f"the scheme must be one of {', '.join(sorted(SOURCE_SCHEMES))}")
        if parts.scheme.lower() != "file" and not parts.hostname:
            raise ValueError("the URL has no host")
        if parts.scheme.lower() == "file" and not parts.path:
            raise ValueError("the file URL has no path")
        return value

    @property
    def display_url(self) -> str:
        return redact_url(self.url.get_secret_value())

    @property
    def has_credentials(self) -> bool:
        parts = urlsplit(self.url.get_secret_value())
        return parts.password is not None or parts.username is not None or bool(parts.query)


class Location(_Model):
    address: Name
    latitude: float = Field(ge=-90.0, le=90.0)
    longitude: float = Field(ge=-180.0, le=180.0)
    site: CameraId | None = Field(None, description="the statistics site the camera belongs to")


class Contact(_Model):
    """An organisational contact (a service, a functional mailbox): never a citizen's data."""

    name: Name
    email: Annotated[str, AfterValidator(_no_control)] | None = Field(
        None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
    )
    url: Annotated[str, AfterValidator(_no_control)] | None = Field(
        None, max_length=500, pattern=r"^https?://\S+$"
    )
    address: ShortText = ""

    @model_validator(mode="after")
    def _reachable(self) -> Self:
        if not self.email and not self.url:
            raise ValueError("give an e-mail address or a URL to reach this contact")
        return self


class LegalDeclaration(_Model):
    basis: Literal["public_task", "legitimate_interest", "legal_obligation"] = Field(
        "public_task", description="GDPR art. 6(1)(e), (f) or (c)"
    )
    act: ShortText = Field(
        "", description="the act that decided the processing (e.g. the municipal council's deliberation)"
    )
    dpia_reference: ShortText = Field(
        "", description="the DPIA's reference (GDPR art. 35); needed to activate"
    )
    rights_restriction_legal_text: ShortText = Field(
        "", description="the legal text restricting data subjects' rights, if any (GDPR art. 23)"
    )


class Retention(_Model):
    statistics_days: int = Field(
        DEFAULT_STATISTICS_DAYS, ge=1, description="how long the anonymous statistics are kept"
    )
    statistics_justification: Text = ""
    track_max_s: int = Field(
        DEFAULT_TRACK_MAX_S,
        ge=1,
        description="the longest a pseudonymous track may live before it is forgotten (rule 14)",
    )
    track_justification: Text = ""


class SecurityEventsDeclaration(_Model):
    """security_events only (docs/privacy.md rule 5)."""

    detections: list[Term] = Field(min_length=1, max_length=16)
    legal_text: ShortText = Field(description="the law and decree allowing the processing")
    authorisation_reference: ShortText = Field(
        description="the authorising decision (e.g. a prefect's order)"
    )
    authorised_from: DecisionTime
    authorised_until: DecisionTime


class ObjectionDeclaration(_Model):
    enabled: bool = Field(True, description="the public objection button pauses this camera (rule 16)")


class LineDeclaration(_Model):
    id: CameraId
    start: NormalisedPoint
    end: NormalisedPoint
    directions: Literal["both", "left_to_right", "right_to_left"] = "both"
    classes: list[Term] = Field(default_factory=list, max_length=6, description="empty: the camera's classes")

    @model_validator(mode="after")
    def _long_enough(self) -> Self:
        if line_length(self.start, self.end) < MIN_LINE_LENGTH:
            raise ValueError(f"line {self.id!r}: start and end must be at least {MIN_LINE_LENGTH} apart")
        return self


def _check_polygon(kind: str, identifier: str, polygon: list[tuple[float, float]]) -> None:
    if not is_simple_polygon(polygon):
        raise ValueError(f"{kind} {identifier!r}: the polygon's edges cross each other")
    if polygon_area(polygon) < MIN_POLYGON_AREA:
        raise ValueError(f"{kind} {identifier!r}: the polygon encloses no area")


class ZoneDeclaration(_Model):
    id: CameraId
    polygon: list[NormalisedPoint] = Field(min_length=3, max_length=64)
    classes: list[Term] = Field(default_factory=list, max_length=6, description="empty: the camera's classes")

    @model_validator(mode="after")
    def _simple(self) -> Self:
        _check_polygon("zone", self.id, self.polygon)
        return self


class MaskDeclaration(_Model):
    """An area blanked at ingest before anything analyses the picture (docs/privacy.md rule 9)."""

    id: CameraId
    polygon: list[NormalisedPoint] = Field(min_length=3, max_length=64)

    @model_validator(mode="after")
    def _simple(self) -> Self:
        _check_polygon("mask", self.id, self.polygon)
        return self


class CameraDeclaration(_Model):
    """Everything the registry knows of a camera but its id, status and source (a secret, kept apart)."""

    name: Name
    description: Text = ""
    location: Location
    purpose: Term = Field(description="one of the closed list (GET /v1/purposes)")
    outputs: list[Term] | None = Field(
        None, max_length=8, description="what the analysis produces; default: everything the purpose allows"
    )
    object_classes: list[Term] | None = Field(
        None, max_length=8, description="classes counted; default: those the purpose allows"
    )
    audio: bool = Field(False, description="sound capture: always refused (docs/privacy.md rule 25)")
    lines: list[LineDeclaration] = Field(default_factory=list, max_length=32)
    zones: list[ZoneDeclaration] = Field(default_factory=list, max_length=32)
    masks: list[MaskDeclaration] = Field(default_factory=list, max_length=32)
    sample_fps: float = Field(DEFAULT_SAMPLE_FPS, gt=0, le=30, description="frames analysed per second")
    sample_fps_justification: Text = ""
    reporting_window_s: int = Field(DEFAULT_REPORTING_WINDOW_S, ge=60, le=_DAY_S)
    reporting_window_justification: Text = ""
    anchor: Literal["bottom_centre", "centre"] = "bottom_centre"
    dwell_buckets_s: list[Annotated[int, Field(gt=0, le=_DAY_S)]] = Field(
        default_factory=lambda: list(DEFAULT_DWELL_BUCKETS_S), min_length=1, max_length=8
    )
    legal: LegalDeclaration = LegalDeclaration()
    controller: Contact
    dpo: Contact
    recipients: list[ShortText] = Field(
        default_factory=lambda: ["the city's departments that use the statistics"], max_length=20
    )
    security_measures: list[ShortText] = Field(
        default_factory=list, max_length=20, description="measures beyond those Vigie applies itself"
    )
    retention: Retention = Retention()
    security_events: SecurityEventsDeclaration | None = None
    objection: ObjectionDeclaration = ObjectionDeclaration()

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.reporting_window_s and _DAY_S % self.reporting_window_s:
            raise ValueError(
                f"reporting_window_s {self.reporting_window_s} must divide a day ({_DAY_S} s) so that "
                "windows align on the same times every day"
            )
        ids = [m.id for m in self.lines] + [m.id for m in self.zones]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise ValueError(f"line and zone ids must be unique, repeated: {repeated}")
        masks = [m.id for m in self.masks]
        if len(set(masks)) != len(masks):
            raise ValueError("mask ids must be unique")
        if list(self.dwell_buckets_s) != sorted(set(self.dwell_buckets_s)):
            raise ValueError("dwell_buckets_s must be increasing")
        return self


class CameraWrite(CameraDeclaration):
    """A camera's declaration and status (PUT /v1/cameras/{id}); without ``source``, the stored one stays."""

    status: CameraStatusName = "draft"
    source: SourceDeclaration | None = None


class CameraCreate(CameraWrite):
    """A new camera (POST /v1/cameras)."""

    id: CameraId
    source: SourceDeclaration


def declaration_of(model: CameraDeclaration) -> CameraDeclaration:
    """The declaration part of a create or write body (without id, status and source)."""
    if type(model) is CameraDeclaration:
        return model
    return CameraDeclaration.model_validate(model.model_dump(exclude={"id", "status", "source"}))
