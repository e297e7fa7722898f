"""What the anonymiser is told: each camera's lines, zones and reporting window, and how it counts.

`CameraGeometryConfig` is the configuration form (TOML, environment, later the registry's policy);
`CameraGeometry` is the checked, ready-to-use form the domain works with.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from vigie_anonymiser.geometry import (
    Anchor,
    CountingLine,
    CrossingDirection,
    Zone,
    is_simple_polygon,
    polygon_area,
)
from vigie_anonymiser.zones import DwellBuckets
from vigie_core.settings import CameraId
from vigie_proto.v1.tracks_pb2 import ObjectClass

__all__ = [
    "ALL_CLASSES",
    "DEFAULT_WINDOW_S",
    "CameraGeometry",
    "CameraGeometryConfig",
    "CountingParams",
    "LineConfig",
    "ObjectClassName",
    "ZoneConfig",
]

# docs/privacy.md rule 11: figures are not refreshed more often than every twenty minutes by default.
DEFAULT_WINDOW_S = 1200
_DAY_S = 86_400

ObjectClassName = Literal["person", "bicycle", "car", "motorcycle", "bus", "truck"]
# The `ObjectClass` codes of the six classes: what a line or zone without classes counts.
ALL_CLASSES: frozenset[int] = frozenset(
    int(code) for code in ObjectClass.values() if code != ObjectClass.OBJECT_CLASS_UNSPECIFIED
)
NormalisedPoint = tuple[
    Annotated[float, Field(ge=0.0, le=1.0)],
    Annotated[float, Field(ge=0.0, le=1.0)],
]


def _class_code(name: ObjectClassName) -> int:
    return int(ObjectClass.Value(f"OBJECT_CLASS_{name.upper()}"))


def _unique_names(values: list[ObjectClassName]) -> list[ObjectClassName]:
    if len(set(values)) != len(values):
        raise ValueError(f"classes are listed twice: {values}")
    return values


ClassList = Annotated[list[ObjectClassName], AfterValidator(_unique_names)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CountingParams(_Section):
    """How tracks become counts; shared by every camera of a replica. See `vigie_anonymiser.crossing`."""

    hysteresis: float = Field(
        0.15,
        ge=0.0,
        le=2.0,
        description=(
            "half-width of the dead band around a line, in box sizes along the line's normal: an excursion "
            "across a line that stays within it is not counted (see vigie_anonymiser.crossing)"
        ),
    )
    min_band: float = Field(
        0.004, ge=0.0, le=0.2, description="smallest half-width of the dead band, normalised units"
    )
    establish_frames: int = Field(
        2,
        ge=1,
        le=50,
        description="consecutive observations in (or out of) a zone that enter (or leave) it",
    )
    track_ttl_s: float = Field(
        10.0, gt=0.0, le=60.0, description="a track not seen this long (capture time) is forgotten"
    )
    handover_s: float = Field(
        1.5,
        ge=0.0,
        le=10.0,
        description=(
            "a new track appearing this soon after an ended or lost one, close to where that one was last "
            "seen, continues its line and zone state (0 turns this off)"
        ),
    )
    handover_radius: float = Field(
        1.0, ge=0.0, le=5.0, description="how close, in box sizes, for the handover above"
    )
    occupancy_hold_s: float = Field(
        1.0, ge=0.0, le=10.0, description="a track unseen this long no longer counts in a zone's occupancy"
    )
    coverage_max_gap_s: float = Field(
        3.0, gt=0.0, le=60.0, description="a gap between analysed frames longer than this is not covered"
    )


class LineConfig(_Section):
    id: CameraId = Field(description="unique within the camera; one NATS subject token")
    start: NormalisedPoint
    end: NormalisedPoint
    directions: Literal["both", "left_to_right", "right_to_left"] = Field(
        "both",
        description=(
            "which crossings count; left and right as seen walking from start to end on the picture "
            "(image y grows downwards)"
        ),
    )
    classes: ClassList = Field(default_factory=list, description="classes counted; empty: all")

    @model_validator(mode="after")
    def _long_enough(self) -> Self:
        dx, dy = self.end[0] - self.start[0], self.end[1] - self.start[1]
        if (dx * dx + dy * dy) ** 0.5 < 0.01:
            raise ValueError(f"line {self.id!r}: start and end must be at least 0.01 apart")
        return self

    def to_line(self) -> CountingLine:
        directions = {
            "both": frozenset(CrossingDirection),
            "left_to_right": frozenset({CrossingDirection.LEFT_TO_RIGHT}),
            "right_to_left": frozenset({CrossingDirection.RIGHT_TO_LEFT}),
        }[self.directions]
        return CountingLine(
            id=self.id,
            start=self.start,
            end=self.end,
            directions=directions,
            classes=frozenset(_class_code(c) for c in self.classes),
        )


class ZoneConfig(_Section):
    id: CameraId = Field(description="unique within the camera; one NATS subject token")
    polygon: list[NormalisedPoint] = Field(min_length=3, max_length=64)
    classes: ClassList = Field(default_factory=list, description="classes measured; empty: all")

    @model_validator(mode="after")
    def _simple_polygon(self) -> Self:
        if not is_simple_polygon(self.polygon):
            raise ValueError(f"zone {self.id!r}: the polygon's edges cross each other")
        if polygon_area(self.polygon) < 1e-4:
            raise ValueError(f"zone {self.id!r}: the polygon encloses no area")
        return self

    def to_zone(self) -> Zone:
        return Zone(
            id=self.id,
            polygon=tuple(self.polygon),
            classes=frozenset(_class_code(c) for c in self.classes),
        )


class CameraGeometryConfig(_Section):
    """One camera's counting geometry and reporting window, in normalised image coordinates."""

    id: CameraId
    reporting_window_s: int = Field(
        DEFAULT_WINDOW_S,
        ge=60,
        le=_DAY_S,
        description="figures cover windows this long, aligned on UTC midnight; must divide a day",
    )
    reporting_window_justification: str = Field(
        "",
        max_length=1000,
        description=f"why a window shorter than {DEFAULT_WINDOW_S} s is needed (docs/privacy.md rules 8, 11)",
    )
    anchor: Anchor = Anchor.BOTTOM_CENTRE
    lines: list[LineConfig] = Field(default_factory=list, max_length=32)
    zones: list[ZoneConfig] = Field(default_factory=list, max_length=32)
    dwell_buckets_s: list[int] = Field(
        default_factory=lambda: list(DwellBuckets().bounds),
        min_length=1,
        max_length=8,
        description="upper bounds of the dwell-time buckets, seconds, increasing",
    )
    dwell_time: bool = Field(
        True,
        description="measure how long stays in the zones last (the dwell_time output); false when the "
        "camera's purpose does not allow it (docs/privacy.md rule 1): zones then give occupancy only",
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if _DAY_S % self.reporting_window_s:
            raise ValueError(
                f"camera {self.id!r}: reporting_window_s {self.reporting_window_s} must divide a day "
                f"({_DAY_S} s) so that windows align on the same times every day"
            )
        if self.reporting_window_s < DEFAULT_WINDOW_S and not self.reporting_window_justification.strip():
            raise ValueError(
                f"camera {self.id!r}: a reporting window shorter than {DEFAULT_WINDOW_S} s needs a written "
                "reporting_window_justification (docs/privacy.md rule 11: shorter only for purposes that "
                "need it, with justification; rule 8: anything less protective is an explicit, justified "
                "choice)"
            )
        ids = [line.id for line in self.lines] + [zone.id for zone in self.zones]
        duplicated = sorted({i for i in ids if ids.count(i) > 1})
        if duplicated:
            raise ValueError(f"camera {self.id!r}: line and zone ids must be unique, repeated: {duplicated}")
        DwellBuckets(tuple(self.dwell_buckets_s))
        return self

    def to_geometry(self) -> CameraGeometry:
        return CameraGeometry(
            camera_id=self.id,
            window_s=self.reporting_window_s,
            anchor=self.anchor,
            lines=tuple(line.to_line() for line in self.lines),
            zones=tuple(zone.to_zone() for zone in self.zones),
            dwell=DwellBuckets(tuple(self.dwell_buckets_s)),
            version=self.version(),
            dwell_time=self.dwell_time,
        )

    def version(self) -> str:
        """A short digest of everything that changes what the figures mean."""
        # dwell_time enters the digest only when off, so that the versions of existing geometries stay.
        exclude = {"reporting_window_justification"} | ({"dwell_time"} if self.dwell_time else set())
        canonical = json.dumps(self.model_dump(mode="json", exclude=exclude), sort_keys=True)
        return hashlib.blake2b(canonical.encode(), digest_size=8).hexdigest()


@dataclass(frozen=True, slots=True)
class CameraGeometry:
    camera_id: str
    window_s: int
    anchor: Anchor
    lines: tuple[CountingLine, ...]
    zones: tuple[Zone, ...]
    dwell: DwellBuckets
    version: str
    dwell_time: bool = True

    def member_classes(self) -> dict[str, frozenset[int]]:
        """The classes each line and zone counts, by id (one without classes counts all six).

        With the registry's policy every line and zone has its classes, within the policy's
        ``object_classes`` (``vigie_core.policy.geometry_document``); they are part of the version.
        """
        members: tuple[CountingLine | Zone, ...] = (*self.lines, *self.zones)
        return {member.id: member.classes or ALL_CLASSES for member in members}

    @property
    def object_classes(self) -> frozenset[int]:
        """The classes the camera counts: every class one of its lines or zones counts."""
        return frozenset(c for classes in self.member_classes().values() for c in classes)

    @property
    def one_way_lines(self) -> tuple[tuple[str, CrossingDirection], ...]:
        """The lines that count one direction only, with that direction (the others count both).

        Directions are part of the version (``CameraGeometryConfig.version``), as classes are.
        """
        return tuple(
            (line.id, direction)
            for line in self.lines
            if len(line.directions) == 1
            for direction in line.directions
        )

    @property
    def dwell_bounds(self) -> tuple[int, ...]:
        """The dwell buckets' upper bounds when stays are measured (zones and dwell time); else none."""
        return self.dwell.bounds if self.dwell_time and self.zones else ()
