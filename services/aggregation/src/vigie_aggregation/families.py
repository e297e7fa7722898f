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

Leaves are what was measured, and only that (events.proto). A configured line contributes a leaf for
each direction and each class it counted, a zone one for each class it counted and, when stays were
measured, each dwell bucket of its camera, with a zero where nothing was counted (a listed line with no
entry counted zero). A class a line or zone did not count has no leaf, hence no figure at all, not even a
zero: a pedestrian-flow camera (persons only) publishes no figure for cars or buses, and its totals over
classes are totals over the classes it counted. Likewise a one-way line (``one_way_lines``) has no leaf for
the direction it does not count, and its totals over directions are totals over the direction it counted.
Over the parts of a window, the lines, zones, each one's classes, each line's directions and the dwell
buckets are the union of the parts'. A line or zone stored before reports said which classes they counted
(absent from ``line_classes``/``zone_classes``) counted all six, and a line stored before reports said
which directions it counted (absent from ``line_directions``) counted both, as such reports meant.

Dwell buckets are those the camera's reports listed (``dwell_bucket_seconds``), with those seen in its
dwell entries (all that is known of a report that does not list them), so a listed bucket nobody fell in is
published as zero.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from vigie_aggregation.disclosure.table import Cell, LeafFigures, SensitivityRule, TableSpec
from vigie_aggregation.vocabulary import ALL_CLASSES, ALL_DIRECTIONS

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
    # The classes each line or zone counted; one missing here counted all six (stored before reports said).
    line_classes: dict[str, frozenset[int]] = field(default_factory=dict)
    zone_classes: dict[str, frozenset[int]] = field(default_factory=dict)
    # The directions each line counted; one missing here counted both (stored before reports said).
    line_directions: dict[str, frozenset[int]] = field(default_factory=dict)
    # The dwell buckets the camera's reports listed (vocabulary.dwell_bucket_key).
    dwell_buckets: set[str] = field(default_factory=set)


def _count_leaf(count: int) -> LeafFigures:
    return LeafFigures(float(count), count)


def family_leaves(spec: TableSpec, cameras: Iterable[CameraWindowFigures]) -> dict[Cell, LeafFigures]:
    """The leaves of one family for one site's window, from its cameras' figures."""
    leaves: dict[Cell, LeafFigures] = {}
    for camera in cameras:
        c = camera.camera_id
        if spec is CROSSINGS:
            for line in sorted(camera.line_ids):
                line_classes = sorted(camera.line_classes.get(line, ALL_CLASSES))
                for direction in sorted(camera.line_directions.get(line, ALL_DIRECTIONS)):
                    for object_class in line_classes:
                        count = camera.crossings.get((line, direction, object_class), 0)
                        leaves[((c, line), (str(direction),), (str(object_class),))] = _count_leaf(count)
        elif spec is OCCUPANCY:
            for zone in sorted(camera.zone_ids):
                for object_class in sorted(camera.zone_classes.get(zone, ALL_CLASSES)):
                    object_seconds, max_objects = camera.occupancy.get((zone, object_class), (0.0, 0))
                    leaves[((c, zone), (str(object_class),))] = LeafFigures(
                        object_seconds, max_objects, max_objects
                    )
        elif spec is DWELL:
            buckets = sorted(camera.dwell_buckets | {bucket for (_, _, bucket) in camera.dwell})
            for zone in sorted(camera.zone_ids):
                for object_class in sorted(camera.zone_classes.get(zone, ALL_CLASSES)):
                    for bucket in buckets:
                        count = camera.dwell.get((zone, object_class, bucket), 0)
                        leaves[((c, zone), (str(object_class),), (bucket,))] = _count_leaf(count)
        else:
            raise ValueError(f"unknown family {spec.name!r}")
    return leaves
