"""Checks of the shapes drawn on a camera's picture (normalised coordinates, 0 to 1), shared by the
registry (what it accepts) and the anonymiser (what it counts with), so that whatever the registry
accepts, the anonymiser accepts: a line at least 0.01 long, a polygon whose edges do not cross and that
encloses an area.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "MIN_LINE_LENGTH",
    "MIN_POLYGON_AREA",
    "Point",
    "is_simple_polygon",
    "line_length",
    "polygon_area",
]

Point = tuple[float, float]

MIN_LINE_LENGTH = 0.01
MIN_POLYGON_AREA = 1e-4


def line_length(start: Point, end: Point) -> float:
    return float(((end[0] - start[0]) ** 2 + (end[1] - start[1]) ** 2) ** 0.5)


def polygon_area(polygon: Sequence[Point]) -> float:
    """Unsigned area (shoelace formula)."""
    total = 0.0
    for i, (x1, y1) in enumerate(polygon):
        x2, y2 = polygon[(i + 1) % len(polygon)]
        total += x1 * y2 - x2 * y1
    return abs(total) * 0.5


def is_simple_polygon(polygon: Sequence[Point]) -> bool:
    """Whether no two non-adjacent edges touch (O(n²): a handful of vertices)."""
    n = len(polygon)
    edges = [(polygon[i], polygon[(i + 1) % n]) for i in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            if j == i + 1 or (i == 0 and j == n - 1):
                continue
            if _segments_touch(*edges[i], *edges[j]):
                return False
    return True


def _orientation(a: Point, b: Point, c: Point) -> float:
    return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])


def _on_segment(a: Point, b: Point, p: Point) -> bool:
    return min(a[0], b[0]) <= p[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= p[1] <= max(a[1], b[1])


def _segments_touch(a: Point, b: Point, c: Point, d: Point) -> bool:
    o1, o2 = _orientation(a, b, c), _orientation(a, b, d)
    o3, o4 = _orientation(c, d, a), _orientation(c, d, b)
    if ((o1 > 0) != (o2 > 0)) and ((o3 > 0) != (o4 > 0)) and o1 and o2 and o3 and o4:
        return True
    return (
        (o1 == 0 and _on_segment(a, b, c))
        or (o2 == 0 and _on_segment(a, b, d))
        or (o3 == 0 and _on_segment(c, d, a))
        or (o4 == 0 and _on_segment(c, d, b))
    )
