"""Bucketing: the parts of a batch merged into per-bucket increments, by the rules of events.proto.

A bucket is one camera x publication window x (line, direction, class), (zone, class) or
(zone, class, dwell bucket). Parts add up: counts, object-seconds, covered seconds and frames are SUMS,
``max_objects`` is the MAX. The lines and zones a part lists are the window's members (a listed line with
no entry counted zero), and so are the classes each of them counted (a class with no entry counted zero; a
class not counted has no figure), the directions each line counted (likewise) and the dwell buckets the
part lists; membership, like the set of geometry versions, is the UNION over parts, and so are a member's
classes and a line's directions. The
storage applies these increments with the same rules (``count = count + increment``,
``max = max(max, increment)``), so merging a batch first and storing it after gives the same figures as
storing each part alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from vigie_aggregation.reports import WindowPart

__all__ = ["BucketIncrements", "CameraWindowIncrement", "OccupancyIncrement", "merge_parts"]

CameraWindow = tuple[str, int]  # (camera, publication window start)


@dataclass(slots=True)
class CameraWindowIncrement:
    covered_seconds: float = 0.0
    frames: int = 0
    parts: int = 0


@dataclass(slots=True)
class OccupancyIncrement:
    object_seconds: float = 0.0
    max_objects: int = 0


@dataclass(slots=True)
class BucketIncrements:
    """What a batch of parts adds to the buckets, keyed as the tables are."""

    windows: dict[CameraWindow, CameraWindowIncrement] = field(default_factory=dict)
    # (camera, window, kind, id): kind "line" or "zone", "geom" for a geometry version counted with, or
    # "dwel" for a dwell bucket (vocabulary.dwell_bucket_key) of the camera's configuration
    members: set[tuple[str, int, str, str]] = field(default_factory=set)
    # (camera, window, kind, id) of a line or zone -> the classes it counted
    member_classes: dict[tuple[str, int, str, str], frozenset[int]] = field(default_factory=dict)
    # (camera, window, "line", id) -> the directions it counted
    line_directions: dict[tuple[str, int, str, str], frozenset[int]] = field(default_factory=dict)
    # (camera, window, line, direction, class) -> count
    crossings: dict[tuple[str, int, str, int, int], int] = field(default_factory=dict)
    # (camera, window, zone, class)
    occupancy: dict[tuple[str, int, str, int], OccupancyIncrement] = field(default_factory=dict)
    # (camera, window, zone, class, dwell bucket) -> count
    dwell: dict[tuple[str, int, str, int, str], int] = field(default_factory=dict)

    def add(self, part: WindowPart) -> None:
        camera, window = part.camera_id, part.window_start
        increment = self.windows.setdefault((camera, window), CameraWindowIncrement())
        increment.covered_seconds += part.covered_seconds
        increment.frames += part.frames
        increment.parts += 1
        self.members.add((camera, window, "geom", part.geometry_version))
        self.members.update((camera, window, "dwel", bucket) for bucket in part.dwell_buckets)
        for kind, classes in (("line", part.line_classes), ("zone", part.zone_classes)):
            for member, counted in classes.items():
                member_key = (camera, window, kind, member)
                self.members.add(member_key)
                self.member_classes[member_key] = self.member_classes.get(member_key, frozenset()) | counted
        for line, directions in part.line_directions.items():
            line_key = (camera, window, "line", line)
            self.line_directions[line_key] = self.line_directions.get(line_key, frozenset()) | directions
        for crossing in part.crossings:
            key = (camera, window, crossing.line_id, crossing.direction, crossing.object_class)
            self.crossings[key] = self.crossings.get(key, 0) + crossing.count
        for occupancy in part.occupancy:
            occupancy_key = (camera, window, occupancy.zone_id, occupancy.object_class)
            figures = self.occupancy.setdefault(occupancy_key, OccupancyIncrement())
            figures.object_seconds += occupancy.object_seconds
            figures.max_objects = max(figures.max_objects, occupancy.max_objects)
        for dwell in part.dwell:
            dwell_key = (camera, window, dwell.zone_id, dwell.object_class, dwell.bucket)
            self.dwell[dwell_key] = self.dwell.get(dwell_key, 0) + dwell.count


def merge_parts(parts: Iterable[WindowPart]) -> BucketIncrements:
    """The increments of ``parts`` (each part once: the caller has dropped report ids already applied)."""
    increments = BucketIncrements()
    for part in parts:
        increments.add(part)
    return increments
