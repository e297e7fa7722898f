"""Window reports as the aggregation receives them: decoded, checked, and put in the publication window.

:func:`parse_window_report` turns an EVENTS message into a :class:`WindowPart` or raises
:class:`InvalidReportError` naming the field at fault and the rule it breaks; the consumer sets such a
message aside on the dead-letter subject and carries on.

A part counts in the publication window that contains it: a report whose own window is shorter (a purpose
that justified 10-minute windows, say) must divide the publication window and is added to it; a report
whose window is longer cannot be split and is refused.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from vigie_aggregation.vocabulary import DIRECTION_NAMES, OBJECT_CLASS_NAMES, dwell_bucket_key
from vigie_proto.v1.events_pb2 import ReportClosure, WindowReport

__all__ = [
    "DwellCount",
    "InvalidReportError",
    "LineCrossings",
    "WindowPart",
    "ZoneOccupancy",
    "parse_window_report",
]

_REPORT_ID = re.compile(r"^[0-9a-f]{32}$")
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_VERSION = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
# Bounds that no real window reaches; beyond them a report is corrupt, not busy.
_MAX_COUNT = 1_000_000
_MAX_OBJECTS = 100_000
_MAX_ENTRIES = 10_000
_MAX_MEMBERS = 256
_MAX_MODEL = 128
# covered_seconds is rounded to milliseconds by the anonymiser.
_COVERAGE_TOLERANCE_S = 0.5
# A window starting further ahead than this is a clock or encoding error.
_FUTURE_TOLERANCE_S = 24 * 3600


class InvalidReportError(ValueError):
    """A report that breaks a rule; ``field`` names the field at fault."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True, slots=True)
class LineCrossings:
    line_id: str
    direction: int
    object_class: int
    count: int


@dataclass(frozen=True, slots=True)
class ZoneOccupancy:
    zone_id: str
    object_class: int
    object_seconds: float
    max_objects: int


@dataclass(frozen=True, slots=True)
class DwellCount:
    zone_id: str
    object_class: int
    bucket: str  # vocabulary.dwell_bucket_key
    count: int


@dataclass(frozen=True, slots=True)
class WindowPart:
    """One checked part of one camera's window, placed in its publication window."""

    report_id: str
    camera_id: str
    window_start: int  # start of the publication window that contains the part, Unix seconds
    report_window_start: int
    report_window_s: int
    closed_by: int
    geometry_version: str
    line_ids: tuple[str, ...]
    zone_ids: tuple[str, ...]
    frames: int
    covered_seconds: float
    crossings: tuple[LineCrossings, ...]
    occupancy: tuple[ZoneOccupancy, ...]
    dwell: tuple[DwellCount, ...]
    models: tuple[str, ...]


def _members(values: list[str], field: str) -> tuple[str, ...]:
    if len(values) > _MAX_MEMBERS:
        raise InvalidReportError(field, f"at most {_MAX_MEMBERS} ids")
    for value in values:
        if not _TOKEN.fullmatch(value):
            raise InvalidReportError(field, f"{value!r} is not an id (1 to 64 letters, digits, '-' or '_')")
    if len(set(values)) != len(values):
        raise InvalidReportError(field, "an id is listed twice")
    return tuple(values)


def _object_class(value: int, field: str) -> int:
    if value not in OBJECT_CLASS_NAMES:
        raise InvalidReportError(field, f"{value} is not a known object class")
    return value


def _count(value: int, field: str) -> int:
    if value > _MAX_COUNT:
        raise InvalidReportError(field, f"{value} is above {_MAX_COUNT}: a corrupt report")
    return value


def parse_window_report(
    subject: str,
    data: bytes,
    msg_id: str | None,
    *,
    publication_window_s: int,
    now: float,
) -> WindowPart:
    """Decode and check one EVENTS message received on ``subject`` (``vigie.events.<camera>``)."""
    try:
        report = WindowReport.FromString(data)
    except DecodeError as error:
        raise InvalidReportError("message", f"not a vigie.v1.WindowReport: {error}") from None

    if not _REPORT_ID.fullmatch(report.report_id):
        raise InvalidReportError("report_id", "32 lowercase hexadecimal digits are needed")
    if msg_id is not None and msg_id != report.report_id:
        raise InvalidReportError("report_id", f"differs from the message's Nats-Msg-Id {msg_id!r}")
    if not _TOKEN.fullmatch(report.camera_id):
        raise InvalidReportError("camera_id", f"{report.camera_id!r} is not a camera id")
    subject_camera = subject.rsplit(".", 1)[-1]
    if subject_camera != report.camera_id:
        raise InvalidReportError(
            "camera_id", f"{report.camera_id!r} arrived on the subject of camera {subject_camera!r}"
        )

    window_s = report.window_seconds
    if window_s <= 0:
        raise InvalidReportError("window_seconds", "must be positive")
    if publication_window_s % window_s:
        raise InvalidReportError(
            "window_seconds",
            f"{window_s} does not divide the publication window of {publication_window_s} s, "
            "so the part cannot be placed in one published window",
        )
    if not report.HasField("window_start"):
        raise InvalidReportError("window_start", "missing")
    start = report.window_start.seconds
    if report.window_start.nanos != 0 or start % window_s:
        raise InvalidReportError("window_start", f"must be a whole multiple of window_seconds ({window_s})")
    if start > now + _FUTURE_TOLERANCE_S:
        raise InvalidReportError("window_start", "is more than a day in the future")
    if start < 0:
        raise InvalidReportError("window_start", "is before 1970")
    if report.closed_by not in ReportClosure.values():
        raise InvalidReportError("closed_by", f"{report.closed_by} is not a known closure")
    if not _VERSION.fullmatch(report.geometry_version):
        raise InvalidReportError("geometry_version", "1 to 64 letters, digits or ._:- are needed")

    line_ids = _members(list(report.line_ids), "line_ids")
    zone_ids = _members(list(report.zone_ids), "zone_ids")
    covered = report.covered_seconds
    if not math.isfinite(covered) or covered < 0 or covered > window_s + _COVERAGE_TOLERANCE_S:
        raise InvalidReportError(
            "covered_seconds", f"{covered} is not within 0 and window_seconds ({window_s})"
        )
    if len(report.crossings) + len(report.occupancy) + len(report.dwell) > _MAX_ENTRIES:
        raise InvalidReportError("crossings", f"more than {_MAX_ENTRIES} entries in all")

    lines = set(line_ids)
    crossings: list[LineCrossings] = []
    seen_crossings: set[tuple[str, int, int]] = set()
    for i, c in enumerate(report.crossings):
        field = f"crossings[{i}]"
        if c.line_id not in lines:
            raise InvalidReportError(f"{field}.line_id", f"{c.line_id!r} is not in line_ids")
        if c.direction not in DIRECTION_NAMES:
            raise InvalidReportError(f"{field}.direction", f"{c.direction} is not a direction")
        key = (c.line_id, c.direction, _object_class(c.object_class, f"{field}.object_class"))
        if key in seen_crossings:
            raise InvalidReportError(field, "repeats a line, direction and class of an earlier entry")
        seen_crossings.add(key)
        crossings.append(LineCrossings(*key, _count(c.count, f"{field}.count")))

    zones = set(zone_ids)
    occupancy: list[ZoneOccupancy] = []
    seen_occupancy: set[tuple[str, int]] = set()
    for i, o in enumerate(report.occupancy):
        field = f"occupancy[{i}]"
        if o.zone_id not in zones:
            raise InvalidReportError(f"{field}.zone_id", f"{o.zone_id!r} is not in zone_ids")
        occupancy_key = (o.zone_id, _object_class(o.object_class, f"{field}.object_class"))
        if occupancy_key in seen_occupancy:
            raise InvalidReportError(field, "repeats a zone and class of an earlier entry")
        seen_occupancy.add(occupancy_key)
        if not math.isfinite(o.object_seconds) or o.object_seconds < 0:
            raise InvalidReportError(f"{field}.object_seconds", "must be a finite, non-negative number")
        if o.max_objects > _MAX_OBJECTS:
            raise InvalidReportError(f"{field}.max_objects", f"{o.max_objects} is above {_MAX_OBJECTS}")
        if o.object_seconds > 0 and o.max_objects == 0:
            raise InvalidReportError(f"{field}.max_objects", "is 0 although object_seconds is not")
        occupancy.append(ZoneOccupancy(*occupancy_key, o.object_seconds, o.max_objects))

    dwell: list[DwellCount] = []
    seen_dwell: set[tuple[str, int, str]] = set()
    for i, d in enumerate(report.dwell):
        field = f"dwell[{i}]"
        if d.zone_id not in zones:
            raise InvalidReportError(f"{field}.zone_id", f"{d.zone_id!r} is not in zone_ids")
        if d.max_seconds and d.max_seconds <= d.min_seconds:
            raise InvalidReportError(f"{field}.max_seconds", "must be above min_seconds, or 0 for no bound")
        dwell_key = (
            d.zone_id,
            _object_class(d.object_class, f"{field}.object_class"),
            dwell_bucket_key(d.min_seconds, d.max_seconds),
        )
        if dwell_key in seen_dwell:
            raise InvalidReportError(field, "repeats a zone, class and bucket of an earlier entry")
        seen_dwell.add(dwell_key)
        dwell.append(DwellCount(*dwell_key, _count(d.count, f"{field}.count")))

    for model in report.models:
        if not 0 < len(model) <= _MAX_MODEL:
            raise InvalidReportError("models", f"a model name has 1 to {_MAX_MODEL} characters")

    return WindowPart(
        report_id=report.report_id,
        camera_id=report.camera_id,
        window_start=start - start % publication_window_s,
        report_window_start=start,
        report_window_s=window_s,
        closed_by=report.closed_by,
        geometry_version=report.geometry_version,
        line_ids=line_ids,
        zone_ids=zone_ids,
        frames=report.frames,
        covered_seconds=min(covered, float(window_s)),
        crossings=tuple(crossings),
        occupancy=tuple(occupancy),
        dwell=tuple(dwell),
        models=tuple(report.models),
    )
