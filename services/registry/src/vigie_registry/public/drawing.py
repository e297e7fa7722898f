"""Pictures the page draws itself, as inline SVG: the map of the cameras (their relative positions, no
outside tiles, so the page makes no third-party request) and the diagram of one camera's picture."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["CameraMap", "MapMarker", "MapPoint", "ScaleBar", "camera_map", "frame_points"]

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
