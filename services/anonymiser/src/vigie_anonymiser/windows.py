"""Reporting windows: what is counted during one window of one camera, and the report that leaves.

A window is `window_s` seconds of capture time aligned on the Unix epoch (so on UTC midnight, since the
window divides a day). Everything counted goes into the open `WindowTally` of its camera; the tally
becomes a `WindowReport` when the camera's frames reach the next window, when the camera falls silent,
when its geometry changes or when the service stops. The last three close a tally before its window ends,
so one window may be reported in several **parts**; every figure of a part is additive (sums, counts, and
a maximum) so that the window is the sum of its parts.

A part is identified by its camera, its window and the first TRACKS message counted in it (run id,
sequence and the message's rank among messages with that sequence). That identity is deterministic: the
same messages processed again (a redelivery to a fresh instance) give the same `report_id`, which is the
report's `Nats-Msg-Id` on EVENTS, so JetStream drops the copy; and it is distinct from every other part,
because no two parts can start with the same message. The id is a keyed digest of non-personal values
only (no track id, no box), so it links nothing to anyone.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from dataclasses import dataclass, field
from enum import IntEnum

from vigie_anonymiser.geometry import CrossingDirection

__all__ = [
    "LineCrossingCount",
    "ReportClosure",
    "WindowReport",
    "WindowTally",
    "ZoneDwellCount",
    "ZoneOccupancy",
    "report_id",
    "window_start",
]


class ReportClosure(IntEnum):
    """Why a part was closed; values are those of the protobuf enum `vigie.v1.ReportClosure`."""

    WINDOW_ENDED = 1  # the camera's frames reached the next window: the last part of this window
    CAMERA_IDLE = 2  # the camera sent nothing for a while; a later part may follow if it resumes
    GEOMETRY_CHANGED = 3  # lines or zones changed; the next part counts with the new ones
    SERVICE_STOPPING = 4  # this replica stops; another may report the rest of the window
    CAMERA_REMOVED = 5  # the camera's geometry was withdrawn


def window_start(captured_at: float, window_s: int) -> int:
    return math.floor(captured_at / window_s) * window_s


def report_id(camera_id: str, start: int, run_id: str, sequence: int, rank: int) -> str:
    digest = hashlib.blake2b(
        f"{camera_id}\n{start}\n{run_id}\n{sequence}\n{rank}".encode(),
        digest_size=16,
        person=b"vigie-report-v1",
    )
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class LineCrossingCount:
    line_id: str
    direction: CrossingDirection
    object_class: int
    count: int


@dataclass(frozen=True, slots=True)
class ZoneOccupancy:
    """`object_seconds`: the integral of the number of objects inside over the covered time (so the mean
    occupancy is object_seconds / covered_s); `max_objects`: the most at once in one analysed frame."""

    zone_id: str
    object_class: int
    object_seconds: float
    max_objects: int


@dataclass(frozen=True, slots=True)
class ZoneDwellCount:
    """`count` stays that ended in this part lasted at least `min_s` and less than `max_s` (None: no
    upper bound)."""

    zone_id: str
    object_class: int
    min_s: int
    max_s: int | None
    count: int


@dataclass(frozen=True, slots=True)
class WindowReport:
    """One part of one window of one camera: anonymous, additive figures and nothing finer than the window."""

    report_id: str
    camera_id: str
    window_start: int
    window_s: int
    closed_by: ReportClosure
    geometry_version: str
    line_ids: tuple[str, ...]
    zone_ids: tuple[str, ...]
    frames: int
    covered_s: float
    crossings: tuple[LineCrossingCount, ...]
    occupancy: tuple[ZoneOccupancy, ...]
    dwell: tuple[ZoneDwellCount, ...]
    models: tuple[str, ...]
    # What was measured, so that no figure is published for what was not: the classes counted, the lines
    # and zones that counted fewer of them (id, classes), the lines that counted one direction only (id,
    # direction), and the dwell buckets' upper bounds (empty: stays were not measured).
    object_classes: tuple[int, ...] = ()
    member_classes: tuple[tuple[str, tuple[int, ...]], ...] = ()
    one_way_lines: tuple[tuple[str, CrossingDirection], ...] = ()
    dwell_bounds: tuple[int, ...] = ()


@dataclass(slots=True)
class WindowTally:
    """The open part of one camera's window. Keys hold line/zone ids and class codes, never tracks."""

    camera_id: str
    window_start: int
    window_s: int
    report_id: str
    geometry_version: str
    line_ids: tuple[str, ...]
    zone_ids: tuple[str, ...]
    dwell_limits: tuple[tuple[int, int | None], ...]
    object_classes: tuple[int, ...] = ()
    member_classes: tuple[tuple[str, tuple[int, ...]], ...] = ()
    one_way_lines: tuple[tuple[str, CrossingDirection], ...] = ()
    dwell_bounds: tuple[int, ...] = ()
    frames: int = 0
    covered_s: float = 0.0
    crossings: Counter[tuple[str, CrossingDirection, int]] = field(default_factory=Counter)
    object_seconds: dict[tuple[str, int], float] = field(default_factory=dict)
    max_objects: dict[tuple[str, int], int] = field(default_factory=dict)
    dwell: Counter[tuple[str, int, int]] = field(default_factory=Counter)
    models: set[str] = field(default_factory=set)

    @property
    def window_end(self) -> int:
        return self.window_start + self.window_s

    def cover(self, seconds: float, occupancy: dict[tuple[str, int], int]) -> None:
        """`seconds` more of analysed video, during which the zones held `occupancy` objects."""
        self.covered_s += seconds
        for key, objects in occupancy.items():
            self.object_seconds[key] = self.object_seconds.get(key, 0.0) + objects * seconds

    def sample(self, occupancy: dict[tuple[str, int], int]) -> None:
        for key, objects in occupancy.items():
            if objects > self.max_objects.get(key, 0):
                self.max_objects[key] = objects

    def close(self, closed_by: ReportClosure) -> WindowReport:
        occupancy_keys = sorted(set(self.object_seconds) | set(self.max_objects))
        return WindowReport(
            report_id=self.report_id,
            camera_id=self.camera_id,
            window_start=self.window_start,
            window_s=self.window_s,
            closed_by=closed_by,
            geometry_version=self.geometry_version,
            line_ids=self.line_ids,
            zone_ids=self.zone_ids,
            frames=self.frames,
            covered_s=round(self.covered_s, 3),
            crossings=tuple(
                LineCrossingCount(line, direction, object_class, count)
                for (line, direction, object_class), count in sorted(self.crossings.items())
            ),
            occupancy=tuple(
                ZoneOccupancy(
                    zone,
                    object_class,
                    round(self.object_seconds.get((zone, object_class), 0.0), 3),
                    self.max_objects.get((zone, object_class), 0),
                )
                for zone, object_class in occupancy_keys
            ),
            dwell=tuple(
                ZoneDwellCount(zone, object_class, *self.dwell_limits[bucket], count)
                for (zone, object_class, bucket), count in sorted(self.dwell.items())
            ),
            models=tuple(sorted(self.models)),
            object_classes=self.object_classes,
            member_classes=self.member_classes,
            one_way_lines=self.one_way_lines,
            dwell_bounds=self.dwell_bounds,
        )
