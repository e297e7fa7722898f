"""The three families of published figures, their views, and their leaves built from stored buckets.

========== ============================== ==================================================================
family     dimensions (leaf)              views the API publishes (per window and per day)
========== ============================== ==================================================================
crossings  location (site/camera/line),   line x direction x class, and their totals over directions, over
           direction, class               classes and over both; camera x class and camera total (over its
                                          lines and both directions); site x class and site total
occupancy  location (site/camera/zone),   zone x class and zone total over classes (object-seconds, hence
           class                          the mean occupancy; the most objects at once for a class)
dwell      location (site/camera/zone),   zone x class x dwell bucket, and the totals over classes, over
           class, dwell bucket            buckets and over both
========== ============================== ==================================================================

Direction only exists per line (left and right depend on the line's orientation), and dwell buckets and
zones per camera, so there are no camera or site totals by direction, for occupancy or for dwell.

A configured line or zone contributes a leaf for every direction, class and dwell bucket, with a zero
where nothing was counted (events.proto: a listed line with no entry counted zero). The classes are the
six of ``ObjectClass``: WindowReport does not say which classes a line counts, so a class a line ignores is
published as zero. Dwell buckets are those seen on the camera in the window (reports carry only non-zero
buckets), so an unseen bucket is not published rather than published as zero.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from vigie_aggregation.disclosure.table import Cell, LeafFigures, SensitivityRule, TableSpec
from vigie_aggregation.vocabulary import DIRECTION_NAMES, OBJECT_CLASS_NAMES

__all__ = [
    "CROSSINGS",
    "DWELL",
    "FAMILIES",
    "OCCUPANCY",
    "CameraWindowFigures",
    "family_leaves",
]

CROSSINGS = TableSpec(
    name="crossings",
    dimensions=("location", "direction", "object_class"),
    leaf_depths=(2, 1, 1),
    views=frozenset({(2, 1, 1), (2, 0, 1), (2, 1, 0), (2, 0, 0), (1, 0, 1), (1, 0, 0), (0, 0, 1), (0, 0, 0)}),
    sensitivity=SensitivityRule.SUM,
)
OCCUPANCY = TableSpec(
    name="occupancy",
    dimensions=("location", "object_class"),
    leaf_depths=(2, 1),
    views=frozenset({(2, 1), (2, 0)}),
    sensitivity=SensitivityRule.MAX,
)
DWELL = TableSpec(
    name="dwell",
    dimensions=("location", "object_class", "dwell"),
    leaf_depths=(2, 1, 1),
    views=frozenset({(2, 1, 1), (2, 0, 1), (2, 1, 0), (2, 0, 0)}),
    sensitivity=SensitivityRule.SUM,
)
FAMILIES: dict[str, TableSpec] = {spec.name: spec for spec in (CROSSINGS, OCCUPANCY, DWELL)}

_CLASSES = tuple(sorted(OBJECT_CLASS_NAMES))
_DIRECTIONS = tuple(sorted(DIRECTION_NAMES))


@dataclass(slots=True)
class CameraWindowFigures:
    """One camera's stored figures for one publication window (all parts summed)."""

    camera_id: str
    covered_seconds: float = 0.0
    frames: int = 0
    geometry_versions: tuple[str, ...] = ()
    line_ids: set[str] = field(default_factory=set)
    zone_ids: set[str] = field(default_factory=set)
    crossings: dict[tuple[str, int, int], int] = field(default_factory=dict)  # (line, direction, class)
    occupancy: dict[tuple[str, int], tuple[float, int]] = field(default_factory=dict)  # (zone, class)
    dwell: dict[tuple[str, int, str], int] = field(default_factory=dict)  # (zone, class, bucket)


def _count_leaf(count: int) -> LeafFigures:
    return LeafFigures(float(count), count)


def family_leaves(spec: TableSpec, cameras: Iterable[CameraWindowFigures]) -> dict[Cell, LeafFigures]:
    """The leaves of one family for one site's window, from its cameras' figures."""
    leaves: dict[Cell, LeafFigures] = {}
    for camera in cameras:
        c = camera.camera_id
        if spec is CROSSINGS:
            for line in sorted(camera.line_ids):
                for direction in _DIRECTIONS:
                    for object_class in _CLASSES:
                        count = camera.crossings.get((line, direction, object_class), 0)
                        leaves[((c, line), (str(direction),), (str(object_class),))] = _count_leaf(count)
        elif spec is OCCUPANCY:
            for zone in sorted(camera.zone_ids):
                for object_class in _CLASSES:
                    object_seconds, max_objects = camera.occupancy.get((zone, object_class), (0.0, 0))
                    leaves[((c, zone), (str(object_class),))] = LeafFigures(
                        object_seconds, max_objects, max_objects
                    )
        elif spec is DWELL:
            buckets = sorted({bucket for (_, _, bucket) in camera.dwell})
            for zone in sorted(camera.zone_ids):
                for object_class in _CLASSES:
                    for bucket in buckets:
                        count = camera.dwell.get((zone, object_class, bucket), 0)
                        leaves[((c, zone), (str(object_class),), (bucket,))] = _count_leaf(count)
        else:
            raise ValueError(f"unknown family {spec.name!r}")
    return leaves
