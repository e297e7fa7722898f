"""Pictures the page draws itself, as inline SVG: the map of the cameras (their relative positions, no
outside tiles, so the page makes no third-party request) and the diagram of one camera's picture: its
counting lines with the direction each counts, its zones and masks, over the camera's scene view when it
has one (:func:`scene_diagram`)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "DIAGRAM_WIDTH",
    "CameraMap",
    "DrawnLine",
    "DrawnZone",
    "MapMarker",
    "MapPoint",
    "ScaleBar",
    "SceneDiagram",
    "camera_map",
    "frame_points",
    "scene_diagram",
]

_EARTH_RADIUS_M = 6_371_000.0


@dataclass(frozen=True, slots=True)
class MapPoint:
    number: int
    latitude: float
    longitude: float
    state: str


@dataclass(frozen=True, slots=True)
class MapMarker:
    number: int
    x: float
    y: float
    state: str


@dataclass(frozen=True, slots=True)
class ScaleBar:
    x: float
    y: float
    length: float
    label: str


@dataclass(frozen=True, slots=True)
class CameraMap:
    width: int
    height: int
    markers: tuple[MapMarker, ...]
    scale: ScaleBar | None


def _round_distance(metres: float) -> float:
    """The largest of 1, 2, 5 x 10^k not above ``metres``."""
    exponent = math.floor(math.log10(metres))
    for step in (5, 2, 1):
        candidate = step * 10.0**exponent
        if candidate <= metres:
            return candidate
    return 10.0**exponent


def _distance_label(metres: float) -> str:
    if metres >= 1000:
        return f"{metres / 1000:g} km"
    return f"{metres:g} m"


def camera_map(
    points: Sequence[MapPoint], *, width: int = 640, height: int = 400, margin: int = 36
) -> CameraMap:
    """Place ``points`` in a ``width`` x ``height`` picture, north up, keeping distances in proportion
    (a local equirectangular projection: accurate over a city)."""
    if not points:
        return CameraMap(width, height, (), None)
    latitude0 = sum(p.latitude for p in points) / len(points)
    longitude0 = sum(p.longitude for p in points) / len(points)
    cos0 = math.cos(math.radians(latitude0))

    def metres(point: MapPoint) -> tuple[float, float]:
        east = math.radians(point.longitude - longitude0) * cos0 * _EARTH_RADIUS_M
        north = math.radians(point.latitude - latitude0) * _EARTH_RADIUS_M
        return east, north

    positions = [metres(p) for p in points]
    xs = [e for e, _ in positions]
    ys = [n for _, n in positions]
    span_x = max(xs) - min(xs)
    span_y = max(ys) - min(ys)
    usable_w = width - 2 * margin
    usable_h = height - 2 * margin - 24  # room for the scale bar
    if span_x == 0 and span_y == 0:
        scale = None
        markers = tuple(MapMarker(p.number, width / 2, (height - 24) / 2, p.state) for p in points)
        return CameraMap(width, height, markers, scale)
    pixels_per_metre = min(
        usable_w / span_x if span_x else math.inf, usable_h / span_y if span_y else math.inf
    )
    centre_x = (max(xs) + min(xs)) / 2
    centre_y = (max(ys) + min(ys)) / 2
    markers = tuple(
        MapMarker(
            p.number,
            round(width / 2 + (east - centre_x) * pixels_per_metre, 1),
            round((height - 24) / 2 - (north - centre_y) * pixels_per_metre, 1),
            p.state,
        )
        for p, (east, north) in zip(points, positions, strict=True)
    )
    distance = _round_distance(usable_w / 4 / pixels_per_metre)
    bar = ScaleBar(margin, height - 14, round(distance * pixels_per_metre, 1), _distance_label(distance))
    return CameraMap(width, height, markers, bar)


def frame_points(points: Iterable[Sequence[float]], width: float, height: float) -> str:
    """Normalised image coordinates (0..1, y down) as SVG ``points`` in a ``width`` x ``height`` frame."""
    return " ".join(f"{x * width:.1f},{y * height:.1f}" for x, y in points)


# The diagram's width in SVG units, whatever the picture's size: strokes and labels keep one size.
DIAGRAM_WIDTH = 320.0
# Without a picture, the usual 16:9 frame.
_DEFAULT_HEIGHT = 180.0
# The direction arrow across a line: half its length, its head's length and half width (SVG units).
_ARROW_HALF = 20.0
_HEAD_LENGTH = 9.0
_HEAD_HALF_WIDTH = 6.0
# Labels stay this far inside the frame.
_LABEL_MARGIN = 12.0

Point = tuple[float, float]
Directions = Literal["both", "left_to_right", "right_to_left"]


@dataclass(frozen=True, slots=True)
class DrawnLine:
    """A counting line as drawn: the segment, the arrow across its middle with a head at each end it counts
    towards (SVG ``points``), and where its name goes."""

    id: str
    points: str
    arrow: str
    heads: tuple[str, ...]
    label: Point


@dataclass(frozen=True, slots=True)
class DrawnZone:
    id: str
    points: str
    label: Point


@dataclass(frozen=True, slots=True)
class SceneDiagram:
    """One camera's picture as drawn: a ``width`` x ``height`` frame with the picture's proportions."""

    width: float
    height: float
    lines: tuple[DrawnLine, ...]
    zones: tuple[DrawnZone, ...]
    masks: tuple[str, ...]


def _points(points: Iterable[Point]) -> str:
    return " ".join(f"{x:.1f},{y:.1f}" for x, y in points)


def _inside(point: Point, width: float, height: float) -> Point:
    x = min(max(point[0], _LABEL_MARGIN), width - _LABEL_MARGIN)
    y = min(max(point[1], _LABEL_MARGIN), height - _LABEL_MARGIN)
    return round(x, 1), round(y, 1)


def _head(tip: Point, towards: Point) -> str:
    """A triangle pointing along the unit vector ``towards``, its tip at ``tip``."""
    ux, uy = towards
    base = (tip[0] - ux * _HEAD_LENGTH, tip[1] - uy * _HEAD_LENGTH)
    side = (-uy * _HEAD_HALF_WIDTH, ux * _HEAD_HALF_WIDTH)
    return _points([tip, (base[0] + side[0], base[1] + side[1]), (base[0] - side[0], base[1] - side[1])])


def _line(
    line_id: str,
    start: Sequence[float],
    end: Sequence[float],
    directions: Directions,
    width: float,
    height: float,
) -> DrawnLine:
    a = (start[0] * width, start[1] * height)
    b = (end[0] * width, end[1] * height)
    dx, dy = b[0] - a[0], b[1] - a[1]
    length = math.hypot(dx, dy) or 1.0
    # The line's right-hand side, walking from start to end on the picture (y down): where
    # ``left_to_right`` crossings go (proto/vigie_proto/v1/policy.proto, LineDirections).
    right = (-dy / length, dx / length)
    middle = ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2)
    on_left = (middle[0] - right[0] * _ARROW_HALF, middle[1] - right[1] * _ARROW_HALF)
    on_right = (middle[0] + right[0] * _ARROW_HALF, middle[1] + right[1] * _ARROW_HALF)
    heads: list[str] = []
    if directions in ("both", "left_to_right"):
        heads.append(_head(on_right, right))
    if directions in ("both", "right_to_left"):
        heads.append(_head(on_left, (-right[0], -right[1])))
    # The name beside the start, on the left-hand side (the arrow is at the middle).
    label = (a[0] + dx / length * 14 - right[0] * 12, a[1] + dy / length * 14 - right[1] * 12)
    return DrawnLine(
        line_id, _points([a, b]), _points([on_left, on_right]), tuple(heads), _inside(label, width, height)
    )


def _centroid(polygon: Sequence[Sequence[float]]) -> Point:
    """The polygon's centre of area (its vertices' mean if it has none)."""
    area = cx = cy = 0.0
    for (x0, y0), (x1, y1) in zip(polygon, [*polygon[1:], polygon[0]], strict=True):
        cross = x0 * y1 - x1 * y0
        area += cross
        cx += (x0 + x1) * cross
        cy += (y0 + y1) * cross
    if abs(area) < 1e-12:
        return sum(p[0] for p in polygon) / len(polygon), sum(p[1] for p in polygon) / len(polygon)
    return cx / (3 * area), cy / (3 * area)


def scene_diagram(
    lines: Iterable[tuple[str, Sequence[float], Sequence[float], Directions]],
    zones: Iterable[tuple[str, Sequence[Sequence[float]]]],
    masks: Iterable[Sequence[Sequence[float]]],
    picture: tuple[int, int] | None = None,
) -> SceneDiagram:
    """Lines ``(id, start, end, directions)``, zones ``(id, polygon)`` and masks (polygons), in normalised
    image coordinates, drawn in a frame with the proportions of ``picture`` (its width and height in
    pixels; None: 16:9)."""
    width = DIAGRAM_WIDTH
    height = _DEFAULT_HEIGHT
    if picture is not None and picture[0] > 0 and picture[1] > 0:
        height = round(width * picture[1] / picture[0], 1)
    drawn_zones = []
    for zone_id, polygon in zones:
        cx, cy = _centroid(polygon)
        drawn_zones.append(
            DrawnZone(
                zone_id,
                frame_points(polygon, width, height),
                _inside((cx * width, cy * height), width, height),
            )
        )
    return SceneDiagram(
        width,
        height,
        tuple(_line(i, start, end, directions, width, height) for i, start, end, directions in lines),
        tuple(drawn_zones),
        tuple(frame_points(mask, width, height) for mask in masks),
    )
