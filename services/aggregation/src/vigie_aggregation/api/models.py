"""The statistics API's response documents (JSON), with the examples the OpenAPI document shows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Coverage",
    "CrossingItem",
    "CrossingsPage",
    "Disclosure",
    "DwellItem",
    "DwellPage",
    "Links",
    "NoiseInfo",
    "OccupancyItem",
    "OccupancyPage",
    "Site",
    "SitesPage",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Coverage(_Model):
    ratio: float = Field(description="share of the period the cameras were analysed, 0 to 1")
    covered_seconds: float
    period_seconds: int = Field(description="the period's length times the number of cameras")
    cameras: int
    withheld_cameras: list[str] = Field(
        default_factory=list, description="cameras whose figures were withheld (privacy budget spent)"
    )


class NoiseInfo(_Model):
    mechanism: str = Field("two_sided_geometric", description="noise added to every count before publication")
    epsilon_per_window: float


class Disclosure(_Model):
    threshold: int = Field(description="counts from 1 to threshold-1 are suppressed, with their complements")
    window_seconds: int = Field(description="the reporting window: nothing finer is ever published")
    noise: NoiseInfo | None = None
    rule: str = Field(
        "A suppressed figure (value null, suppressed true) is a small count or a figure withheld so that "
        "no small count can be computed from the published totals; the two are not told apart on purpose."
    )


class Links(_Model):
    self: str
    next: str | None = None


class _Item(_Model):
    site: str
    camera: str | None = Field(None, description="null for a total over the site's cameras")
    period_start: datetime
    period_end: datetime
    suppressed: bool
    reason: str | None = Field(
        None,
        description="why the figure is withheld: disclosure_control, privacy_budget_exhausted, day_withheld",
    )
    coverage: Coverage


class CrossingItem(_Item):
    line: str | None = Field(None, description="null for a total over the camera's (or site's) lines")
    direction: str = Field(
        description="left_to_right, right_to_left (only the directions counted: a one-way line has no "
        "figure for the other), or all (the total over the directions counted)"
    )
    object_class: str = Field(
        description="person, bicycle, car, motorcycle, bus, truck (only the classes counted: a camera whose "
        "purpose counts persons has no car figure), or all (the total over the classes counted)"
    )
    count: int | None = Field(description="null when suppressed")


class OccupancyItem(_Item):
    zone: str
    object_class: str
    mean_objects: float | None = Field(
        description="mean number of objects in the zone over the analysed time"
    )
    max_objects: int | None = Field(description="most objects at once (per class only; null for all classes)")


class DwellItem(_Item):
    zone: str
    object_class: str
    dwell: str = Field(description="stay duration bucket in seconds, '60-300' (300 excluded), '300-' or all")
    count: int | None


_COVERAGE_EXAMPLE: dict[str, Any] = {
    "ratio": 0.98,
    "covered_seconds": 1176.0,
    "period_seconds": 1200,
    "cameras": 1,
}


class _Page(_Model):
    family: str
    granularity: str
    level: str
    start: datetime = Field(description="periods starting at or after this time")
    end: datetime = Field(description="and before this time")
    disclosure: Disclosure
    next_cursor: str | None = Field(
        None, description="pass as cursor= to get the next page; null on the last"
    )
    links: Links


class CrossingsPage(_Page):
    items: list[CrossingItem]

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "family": "crossings",
                    "granularity": "window",
                    "level": "line",
                    "start": "2026-05-01T08:00:00Z",
                    "end": "2026-05-01T09:00:00Z",
                    "disclosure": {"threshold": 11, "window_seconds": 1200, "noise": None},
                    "items": [
                        {
                            "site": "centre",
                            "camera": "north-gate",
                            "line": "crosswalk",
                            "direction": "left_to_right",
                            "object_class": "person",
                            "period_start": "2026-05-01T08:00:00Z",
                            "period_end": "2026-05-01T08:20:00Z",
                            "count": 42,
                            "suppressed": False,
                            "reason": None,
                            "coverage": _COVERAGE_EXAMPLE,
                        },
                        {
                            "site": "centre",
                            "camera": "north-gate",
                            "line": "crosswalk",
                            "direction": "left_to_right",
                            "object_class": "bicycle",
                            "period_start": "2026-05-01T08:00:00Z",
                            "period_end": "2026-05-01T08:20:00Z",
                            "count": None,
                            "suppressed": True,
                            "reason": "disclosure_control",
                            "coverage": _COVERAGE_EXAMPLE,
                        },
                    ],
                    "next_cursor": "WzE3NzcsImNlbnRyZSJd",
                    "links": {
                        "self": "/api/statistics/v1/crossings?site=centre"
                        "&from=2026-05-01T08:00:00Z&to=2026-05-01T09:00:00Z",
                        "next": "/api/statistics/v1/crossings?site=centre"
                        "&from=2026-05-01T08:00:00Z&to=2026-05-01T09:00:00Z&cursor=WzE3NzcsImNlbnRyZSJd",
                    },
                }
            ]
        },
    )


class OccupancyPage(_Page):
    items: list[OccupancyItem]

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "family": "occupancy",
                    "granularity": "day",
                    "level": "zone",
                    "start": "2026-05-01T00:00:00Z",
                    "end": "2026-05-02T00:00:00Z",
                    "disclosure": {"threshold": 11, "window_seconds": 1200, "noise": None},
                    "items": [
                        {
                            "site": "centre",
                            "camera": "north-gate",
                            "zone": "square",
                            "object_class": "person",
                            "period_start": "2026-05-01T00:00:00Z",
                            "period_end": "2026-05-02T00:00:00Z",
                            "mean_objects": 14.2,
                            "max_objects": 57,
                            "suppressed": False,
                            "reason": None,
                            "coverage": {
                                "ratio": 0.91,
                                "covered_seconds": 78624.0,
                                "period_seconds": 86400,
                                "cameras": 1,
                            },
                        }
                    ],
                    "next_cursor": None,
                    "links": {
                        "self": "/api/statistics/v1/occupancy?camera=north-gate&granularity=day&from=...",
                        "next": None,
                    },
                }
            ]
        },
    )


class DwellPage(_Page):
    items: list[DwellItem]

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "family": "dwell",
                    "granularity": "window",
                    "level": "zone",
                    "start": "2026-05-01T08:00:00Z",
                    "end": "2026-05-01T08:20:00Z",
                    "disclosure": {"threshold": 11, "window_seconds": 1200, "noise": None},
                    "items": [
                        {
                            "site": "centre",
                            "camera": "north-gate",
                            "zone": "square",
                            "object_class": "all",
                            "dwell": "60-300",
                            "period_start": "2026-05-01T08:00:00Z",
                            "period_end": "2026-05-01T08:20:00Z",
                            "count": 23,
                            "suppressed": False,
                            "reason": None,
                            "coverage": _COVERAGE_EXAMPLE,
                        }
                    ],
                    "next_cursor": None,
                    "links": {
                        "self": "/api/statistics/v1/dwell?site=centre&dwell=each&from=...",
                        "next": None,
                    },
                }
            ]
        },
    )


class Site(_Model):
    site: str
    cameras: list[str]


class SitesPage(_Model):
    sites: list[Site]
