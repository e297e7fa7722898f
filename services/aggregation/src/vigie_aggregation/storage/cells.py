"""Cells of the disclosure tables as rows of ``published_cells``, and back."""

from __future__ import annotations

from dataclasses import dataclass

from vigie_aggregation.disclosure.table import Cell, TableSpec
from vigie_aggregation.families import CROSSINGS, DWELL, OCCUPANCY

__all__ = ["FAMILY_CODES", "FAMILY_NAMES", "Granularity", "RowKey", "cell_from_row", "row_key"]

FAMILY_CODES: dict[str, int] = {CROSSINGS.name: 1, OCCUPANCY.name: 2, DWELL.name: 3}
FAMILY_NAMES: dict[int, str] = {code: name for name, code in FAMILY_CODES.items()}


class Granularity:
    WINDOW = 0
    DAY = 1


@dataclass(frozen=True, slots=True)
class RowKey:
    """The cell columns of a ``published_cells`` row ('' and 0 stand for the total over a dimension)."""

    camera_id: str
    item_id: str
    direction: int
    object_class: int
    dwell_bucket: str

    @property
    def level(self) -> int:
        """0: a site total, 1: a camera total, 2: a line or zone (the ``level`` column)."""
        return 2 if self.item_id else 1 if self.camera_id else 0


def _single(node: tuple[str, ...]) -> str:
    return node[0] if node else ""


def row_key(spec: TableSpec, cell: Cell) -> RowKey:
    location = cell[0]
    camera = location[0] if len(location) >= 1 else ""
    item = location[1] if len(location) >= 2 else ""
    if spec is CROSSINGS:
        _, direction, object_class = cell
        return RowKey(camera, item, int(_single(direction) or 0), int(_single(object_class) or 0), "")
    if spec is OCCUPANCY:
        _, object_class = cell
        return RowKey(camera, item, 0, int(_single(object_class) or 0), "")
    if spec is DWELL:
        _, object_class, dwell = cell
        return RowKey(camera, item, 0, int(_single(object_class) or 0), _single(dwell))
    raise ValueError(f"unknown family {spec.name!r}")


def cell_from_row(spec: TableSpec, key: RowKey) -> Cell:
    location: tuple[str, ...] = ()
    if key.camera_id:
        location = (key.camera_id, key.item_id) if key.item_id else (key.camera_id,)
    object_class: tuple[str, ...] = (str(key.object_class),) if key.object_class else ()
    if spec is CROSSINGS:
        direction: tuple[str, ...] = (str(key.direction),) if key.direction else ()
        return (location, direction, object_class)
    if spec is OCCUPANCY:
        return (location, object_class)
    if spec is DWELL:
        dwell: tuple[str, ...] = (key.dwell_bucket,) if key.dwell_bucket else ()
        return (location, object_class, dwell)
    raise ValueError(f"unknown family {spec.name!r}")
