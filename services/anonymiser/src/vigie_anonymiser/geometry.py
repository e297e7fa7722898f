"""Counting lines and zones in normalised image coordinates (0 is the left/top edge, 1 the right/bottom).

Pure geometry, no state: which side of a line a point lies on, where a step crosses it, whether a point
lies in a polygon. Image coordinates grow downwards, so "right-hand side" below means the side on your
right when you walk along a line from its start to its end as it is drawn on the picture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum

from vigie_core.shapes import is_simple_polygon, polygon_area

__all__ = [
    "Anchor",
    "CountingLine",
    "CrossingDirection",
    "Zone",
    "anchor_point",
    "is_simple_polygon",
    "polygon_area",
]

Point = tuple[float, float]
BoxTuple = tuple[float, float, float, float]


class Anchor(StrEnum):
    """The point of a box that stands for the object's position."""

    # The feet of a person, the wheels of a vehicle: what touches the ground, hence what crosses a line
    # painted on it. The default.
    BOTTOM_CENTRE = "bottom_centre"
    # The middle of the box: for views from above, where the bottom edge is not the ground contact.
    CENTRE = "centre"


def anchor_point(box: BoxTuple, anchor: Anchor) -> Point:
    x1, y1, x2, y2 = box
    if anchor is Anchor.BOTTOM_CENTRE:
        return ((x1 + x2) * 0.5, y2)
    return ((x1 + x2) * 0.5, (y1 + y2) * 0.5)


class CrossingDirection(IntEnum):
    """Values are those of the protobuf enum `vigie.v1.CrossingDirection`."""

    # From the left-hand side of the line to its right-hand side, walking from start to end.
    LEFT_TO_RIGHT = 1
    RIGHT_TO_LEFT = 2


@dataclass(frozen=True, slots=True)
class CountingLine:
    """A segment from `start` to `end`; counts objects whose anchor crosses it.

    `classes`: the `ObjectClass` codes counted (empty: all). `directions`: the directions counted.
    """

    id: str
    start: Point
    end: Point
    directions: frozenset[CrossingDirection] = frozenset(CrossingDirection)
    classes: frozenset[int] = frozenset()
    # Derived once: unit normal pointing to the right-hand side, and the segment's squared length.
    _normal: Point = field(init=False, repr=False, compare=False)
    _length2: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        dx, dy = self.end[0] - self.start[0], self.end[1] - self.start[1]
        length = math.hypot(dx, dy)
        if length == 0.0:
            raise ValueError(f"line {self.id!r}: start and end must differ")
        # Right-hand normal in y-down coordinates: (-dy, dx) / length.
        object.__setattr__(self, "_normal", (-dy / length, dx / length))
        object.__setattr__(self, "_length2", length * length)

    def counts(self, object_class: int) -> bool:
        return not self.classes or object_class in self.classes

    def signed_distance(self, point: Point) -> float:
        """Distance from the infinite line; positive on the right-hand side."""
        nx, ny = self._normal
        return (point[0] - self.start[0]) * nx + (point[1] - self.start[1]) * ny

    def band(self, width: float, height: float, hysteresis: float, minimum: float) -> float:
        """Half-width of the dead band around the line for an object of this box size.

        A box jitters in proportion to its size, and across the line that is its extent along the line's
        normal: its height for a horizontal line, its width for a vertical one. Measured in box sizes, the
        band needs no knowledge of the picture's aspect ratio or of the object's distance to the camera.
        """
        nx, ny = self._normal
        return max(minimum, hysteresis * (abs(nx) * width + abs(ny) * height))

    def crosses_segment(self, before: Point, after: Point, d_before: float, d_after: float) -> bool:
        """Whether the step from `before` to `after` (signed distances given) crosses the line between its
        two ends (the ends included)."""
        if (d_before < 0.0) == (d_after < 0.0):
            return False
        fraction = d_before / (d_before - d_after)
        x = before[0] + fraction * (after[0] - before[0])
        y = before[1] + fraction * (after[1] - before[1])
        along = (x - self.start[0]) * (self.end[0] - self.start[0]) + (y - self.start[1]) * (
            self.end[1] - self.start[1]
        )
        return 0.0 <= along <= self._length2


@dataclass(frozen=True, slots=True)
class Zone:
    """A simple polygon; `classes`: the `ObjectClass` codes it measures (empty: all)."""

    id: str
    polygon: tuple[Point, ...]
    classes: frozenset[int] = frozenset()
    _bounds: BoxTuple = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.polygon) < 3:
            raise ValueError(f"zone {self.id!r}: a polygon needs at least 3 vertices")
        xs = [p[0] for p in self.polygon]
        ys = [p[1] for p in self.polygon]
        object.__setattr__(self, "_bounds", (min(xs), min(ys), max(xs), max(ys)))

    def counts(self, object_class: int) -> bool:
        return not self.classes or object_class in self.classes

    def contains(self, point: Point) -> bool:
        """Even-odd rule; points exactly on an edge may fall either way (the hysteresis absorbs it)."""
        x, y = point
        x1, y1, x2, y2 = self._bounds
        if x < x1 or x > x2 or y < y1 or y > y2:
            return False
        inside = False
        polygon = self.polygon
        px, py = polygon[-1]
        for qx, qy in polygon:
            if (qy > y) != (py > y) and x < (px - qx) * (y - qy) / (py - qy) + qx:
                inside = not inside
            px, py = qx, qy
        return inside
