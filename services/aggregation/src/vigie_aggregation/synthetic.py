"""Synthetic window reports, for the tests and the benchmark (no anonymiser, no video)."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping

from vigie_proto.v1.events_pb2 import (
    LineCrossingCount,
    MemberClasses,
    OneWayLine,
    ReportClosure,
    WindowReport,
    ZoneDwellCount,
    ZoneOccupancy,
)

__all__ = ["random_report", "report_id_for", "window_report"]

T0 = 1_700_006_400  # a UTC midnight (2023-11-15)


def report_id_for(camera_id: str, window_start: int, part: int = 0) -> str:
    return hashlib.blake2b(f"{camera_id}/{window_start}/{part}".encode(), digest_size=16).hexdigest()


def window_report(
    camera_id: str,
    window_start: int,
    *,
    window_seconds: int = 1200,
    part: int = 0,
    lines: tuple[str, ...] = ("l1",),
    zones: tuple[str, ...] = (),
    crossings: Mapping[tuple[str, int, int], int] | None = None,
    occupancy: Mapping[tuple[str, int], tuple[float, int]] | None = None,
    dwell: Mapping[tuple[str, int, int, int], int] | None = None,
    covered_seconds: float | None = None,
    frames: int = 6000,
    closed_by: int = ReportClosure.REPORT_CLOSURE_WINDOW_ENDED,
    geometry_version: str = "g1",
    object_classes: tuple[int, ...] = (),
    member_classes: Mapping[str, tuple[int, ...]] | None = None,
    dwell_bucket_seconds: tuple[int, ...] = (),
    one_way_lines: Mapping[str, int] | None = None,
) -> WindowReport:
    """A report: ``crossings`` by (line, direction, class), ``occupancy`` by (zone, class) as
    (object-seconds, max objects), ``dwell`` by (zone, class, min s, max s). ``object_classes``,
    ``member_classes``, ``one_way_lines`` (line -> its one direction) and ``dwell_bucket_seconds`` say what
    was measured (none: all six classes, both directions, the buckets of the dwell entries, as a report from
    before these fields)."""
    report = WindowReport(
        report_id=report_id_for(camera_id, window_start, part),
        camera_id=camera_id,
        window_seconds=window_seconds,
        closed_by=closed_by,  # type: ignore[arg-type]
        geometry_version=geometry_version,
        line_ids=list(lines),
        zone_ids=list(zones),
        frames=frames,
        covered_seconds=float(window_seconds if covered_seconds is None else covered_seconds),
        crossings=[
            LineCrossingCount(line_id=line, direction=d, object_class=k, count=n)  # type: ignore[arg-type]
            for (line, d, k), n in sorted((crossings or {}).items())
        ],
        occupancy=[
            ZoneOccupancy(zone_id=z, object_class=k, object_seconds=s, max_objects=m)  # type: ignore[arg-type]
            for (z, k), (s, m) in sorted((occupancy or {}).items())
        ],
        dwell=[
            ZoneDwellCount(zone_id=z, object_class=k, min_seconds=lo, max_seconds=hi, count=n)  # type: ignore[arg-type]
            for (z, k, lo, hi), n in sorted((dwell or {}).items())
        ],
        models=["synthetic/1"],
        object_classes=list(object_classes),  # type: ignore[arg-type]
        member_classes=[
            MemberClasses(member_id=member, object_classes=list(classes))  # type: ignore[arg-type]
            for member, classes in sorted((member_classes or {}).items())
        ],
        dwell_bucket_seconds=list(dwell_bucket_seconds),
        one_way_lines=[
            OneWayLine(line_id=line, direction=direction)  # type: ignore[arg-type]
            for line, direction in sorted((one_way_lines or {}).items())
        ],
    )
    report.window_start.seconds = window_start
    return report


def random_report(camera_id: str, window_start: int, rng: random.Random, *, part: int = 0) -> WindowReport:
    """A plausible busy-street report: two lines, one zone, persons and cars mostly, rare other classes."""
    crossings = {}
    for line in ("l1", "l2"):
        for direction in (1, 2):
            crossings[(line, direction, 1)] = rng.randint(0, 40)
            crossings[(line, direction, 3)] = rng.randint(0, 25)
            if rng.random() < 0.3:
                crossings[(line, direction, rng.choice((2, 4, 5, 6)))] = rng.randint(1, 3)
    persons = rng.randint(0, 6)
    return window_report(
        camera_id,
        window_start,
        part=part,
        lines=("l1", "l2"),
        zones=("z1",),
        crossings={k: v for k, v in crossings.items() if v},
        occupancy={("z1", 1): (persons * rng.uniform(100, 1200), persons)} if persons else {},
        dwell={("z1", 1, 0, 60): rng.randint(0, 10), ("z1", 1, 60, 300): rng.randint(0, 4)},
    )
