"""Window reports as the aggregation receives them: decoded, checked, and put in the publication window.

:func:`parse_window_report` turns an EVENTS message into a :class:`WindowPart` or raises
:class:`InvalidReportError` naming the field at fault and the rule it breaks; the consumer sets such a
message aside on the dead-letter subject and carries on.

A part also says what it measured: the classes each listed line and zone counted (``object_classes``,
narrowed per member by ``member_classes``; a report without them counted all six), the directions each
line counted (both, or the one ``one_way_lines`` gives it) and the camera's dwell buckets. A figure for a
class a line or zone did not count, for a direction a line did not count, or for a bucket that is not
listed, contradicts the report and is refused.

A part counts in the publication window that contains it: a report whose own window is shorter (a purpose
that justified 10-minute windows, say) must divide the publication window and is added to it; a report
whose window is longer cannot be split and is refused.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from vigie_aggregation.vocabulary import (
    ALL_CLASSES,
    ALL_DIRECTIONS,
    DIRECTION_NAMES,
    OBJECT_CLASS_NAMES,
    dwell_bucket_key,
)
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
_MAX_DWELL_BOUNDS = 16
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
    # The classes each listed line and zone counted (all six for a report that does not say).
    line_classes: Mapping[str, frozenset[int]]
    zone_classes: Mapping[str, frozenset[int]]
    # The directions each listed line counted (both for a line one_way_lines does not list).
    line_directions: Mapping[str, frozenset[int]]
    # The camera's dwell buckets when stays were measured (vocabulary.dwell_bucket_key); empty when none
    # was, or for a report that does not say (then only the buckets of its dwell entries are known).
    dwell_buckets: tuple[str, ...]


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


def _classes(values: list[int], field: str) -> frozenset[int]:
    for value in values:
        _object_class(value, field)
    if len(set(values)) != len(values):
        raise InvalidReportError(field, "a class is listed twice")
    return frozenset(values)


def _counted(classes: Mapping[str, frozenset[int]], member: str, object_class: int, field: str) -> int:
    if object_class not in classes[member]:
        raise InvalidReportError(
            field, f"{OBJECT_CLASS_NAMES[object_class]} is not among the classes {member!r} counted"
        )
    return object_class


def _dwell_buckets(bounds: list[int]) -> tuple[str, ...]:
    if len(bounds) > _MAX_DWELL_BOUNDS:
        raise InvalidReportError("dwell_bucket_seconds", f"at most {_MAX_DWELL_BOUNDS} bounds")
    if any(b <= 0 for b in bounds) or any(a >= b for a, b in itertools.pairwise(bounds)):
        raise InvalidReportError("dwell_bucket_seconds", "the bounds must be positive and increasing")
    if not bounds:
        return ()
    lower = [0, *bounds]
    return tuple(dwell_bucket_key(lo, hi) for lo, hi in zip(lower, [*bounds, 0], strict=True))


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
    counted = _classes(list(report.object_classes), "object_classes") or ALL_CLASSES
    line_classes = dict.fromkeys(line_ids, counted)
    zone_classes = dict.fromkeys(zone_ids, counted)
    narrowed: set[str] = set()
    for i, m in enumerate(report.member_classes):
        field = f"member_classes[{i}]"
        if m.member_id in narrowed:
            raise InvalidReportError(f"{field}.member_id", f"{m.member_id!r} is listed twice")
        if m.member_id in line_classes and m.member_id in zone_classes:
            raise InvalidReportError(f"{field}.member_id", f"{m.member_id!r} is both a line and a zone")
        member_classes = line_classes if m.member_id in line_classes else zone_classes
        if m.member_id not in member_classes:
            raise InvalidReportError(f"{field}.member_id", f"{m.member_id!r} is not in line_ids or zone_ids")
        classes = _classes(list(m.object_classes), f"{field}.object_classes")
        if not classes:
            raise InvalidReportError(f"{field}.object_classes", "empty: a line or zone counts some class")
        if not classes <= counted:
            raise InvalidReportError(f"{field}.object_classes", "not within the report's object_classes")
        narrowed.add(m.member_id)
        member_classes[m.member_id] = classes
    line_directions = dict.fromkeys(line_ids, ALL_DIRECTIONS)
    one_way: set[str] = set()
    for i, w in enumerate(report.one_way_lines):
        field = f"one_way_lines[{i}]"
        if w.line_id not in line_directions:
            raise InvalidReportError(f"{field}.line_id", f"{w.line_id!r} is not in line_ids")
        if w.line_id in one_way:
            raise InvalidReportError(f"{field}.line_id", f"{w.line_id!r} is listed twice")
        if w.direction not in DIRECTION_NAMES:
            raise InvalidReportError(f"{field}.direction", f"{w.direction} is not a direction")
        one_way.add(w.line_id)
        line_directions[w.line_id] = frozenset({w.direction})
    dwell_buckets = _dwell_buckets(list(report.dwell_bucket_seconds))
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
        if c.direction not in line_directions[c.line_id]:
            raise InvalidReportError(
                f"{field}.direction",
                f"{DIRECTION_NAMES[c.direction]} is not a direction {c.line_id!r} counted",
            )
        object_class = _object_class(c.object_class, f"{field}.object_class")
        key = (
            c.line_id,
            c.direction,
            _counted(line_classes, c.line_id, object_class, f"{field}.object_class"),
        )
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
        object_class = _object_class(o.object_class, f"{field}.object_class")
        occupancy_key = (o.zone_id, _counted(zone_classes, o.zone_id, object_class, f"{field}.object_class"))
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
        object_class = _object_class(d.object_class, f"{field}.object_class")
        dwell_key = (
            d.zone_id,
            _counted(zone_classes, d.zone_id, object_class, f"{field}.object_class"),
            dwell_bucket_key(d.min_seconds, d.max_seconds),
        )
        if dwell_buckets and dwell_key[2] not in dwell_buckets:
            raise InvalidReportError(
                field, f"the bucket {dwell_key[2]} is not one dwell_bucket_seconds lists"
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
        line_classes=line_classes,
        zone_classes=zone_classes,
        line_directions=line_directions,
        dwell_buckets=dwell_buckets,
    )
