"""The camera page's geometry form: counting lines and zones as rows of fields, read back into declarations.

Each row is ``line-N-id``, ``line-N-points`` (``x,y x,y``: two points in the picture's normalised
coordinates, 0 to 1 from the top left), ``line-N-directions``, ``line-N-classes`` (kept as declared) and
``line-N-delete``; zones the same with ``zone-N-`` and three points or more. The drawing script fills the
same fields, so the form works without it. Errors name the row's field and are said in words by the
console's catalogue (``field.<code>``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from vigie_core.shapes import MIN_LINE_LENGTH, MIN_POLYGON_AREA, is_simple_polygon, line_length, polygon_area
from vigie_registry.declaration import LineDeclaration, ZoneDeclaration

__all__ = ["FieldError", "GeometryForm", "ShapeRow", "points_text", "read_geometry_form", "rows_of"]

Kind = Literal["line", "zone"]
DIRECTIONS = ("both", "left_to_right", "right_to_left")
MAX_ROWS = 32
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ROW_FIELD = re.compile(r"^(line|zone)-(\d{1,2})-(id|points|directions|classes|delete)$")
_NUMBER = re.compile(r"^\d+(\.\d+)?$")


@dataclass(frozen=True, slots=True)
class FieldError:
    """A catalogue key under ``field.`` and its values."""

    code: str
    values: Mapping[str, object] = field(default_factory=dict)


@dataclass(slots=True)
class ShapeRow:
    kind: Kind
    index: int
    id: str = ""
    points: str = ""
    directions: str = "both"
    classes: str = ""
    delete: bool = False
    errors: dict[str, FieldError] = field(default_factory=dict)

    @property
    def blank(self) -> bool:
        return not self.id.strip() and not self.points.strip()

    def name(self, part: str) -> str:
        return f"{self.kind}-{self.index}-{part}"


@dataclass(slots=True)
class GeometryForm:
    lines: list[ShapeRow]
    zones: list[ShapeRow]

    @property
    def valid(self) -> bool:
        return not any(row.errors for row in (*self.lines, *self.zones))

    def declarations(
        self,
    ) -> tuple[list[LineDeclaration], list[ZoneDeclaration], list[ShapeRow], list[ShapeRow]]:
        """What the valid form declares, and the rows kept (in order: a rule's index is one of them)."""
        kept_lines = [r for r in self.lines if not r.delete and not r.blank]
        kept_zones = [r for r in self.zones if not r.delete and not r.blank]
        lines = [
            LineDeclaration(
                id=r.id,
                start=_points(r.points)[0],
                end=_points(r.points)[1],
                directions=r.directions,  # checked in read_geometry_form
                classes=r.classes.split(),
            )
            for r in kept_lines
        ]
        zones = [
            ZoneDeclaration(id=r.id, polygon=_points(r.points), classes=r.classes.split()) for r in kept_zones
        ]
        return lines, zones, kept_lines, kept_zones


def points_text(points: Sequence[Sequence[float]]) -> str:
    return " ".join(f"{x:.4g},{y:.4g}" for x, y in points)


def rows_of(lines: Sequence[LineDeclaration], zones: Sequence[ZoneDeclaration]) -> GeometryForm:
    """The form of what is declared, with one blank row of each kind for a new line and a new zone."""
    line_rows = [
        ShapeRow(
            "line", i, line.id, points_text((line.start, line.end)), line.directions, " ".join(line.classes)
        )
        for i, line in enumerate(lines)
    ]
    zone_rows = [
        ShapeRow("zone", i, zone.id, points_text(zone.polygon), "both", " ".join(zone.classes))
        for i, zone in enumerate(zones)
    ]
    line_rows.append(ShapeRow("line", len(line_rows)))
    zone_rows.append(ShapeRow("zone", len(zone_rows)))
    return GeometryForm(line_rows, zone_rows)


def _points(text: str) -> list[tuple[float, float]]:
    """``x,y x,y ...`` as points; ValueError when a pair is not two numbers from 0 to 1."""
    found = []
    for pair in text.replace(";", " ").split():
        x, comma, y = pair.partition(",")
        if not comma or not _NUMBER.match(x) or not _NUMBER.match(y):
            raise ValueError(pair)
        point = (float(x), float(y))
        if not (0 <= point[0] <= 1 and 0 <= point[1] <= 1):
            raise ValueError(pair)
        found.append(point)
    return found


def _check(row: ShapeRow) -> None:
    if not _ID.match(row.id):
        row.errors["id"] = FieldError("bad_id")
    try:
        points = _points(row.points)
    except ValueError as error:
        row.errors["points"] = FieldError("bad_point", {"pair": str(error)[:40]})
        return
    if row.kind == "line":
        if row.directions not in DIRECTIONS:
            row.errors["directions"] = FieldError("bad_direction")
        if len(points) != 2:
            row.errors["points"] = FieldError("line_points", {"n": len(points)})
        elif line_length(points[0], points[1]) < MIN_LINE_LENGTH:
            row.errors["points"] = FieldError("line_short")
        return
    if not 3 <= len(points) <= 64:
        row.errors["points"] = FieldError("zone_points", {"n": len(points)})
    elif not is_simple_polygon(points):
        row.errors["points"] = FieldError("zone_crossing")
    elif polygon_area(points) < MIN_POLYGON_AREA:
        row.errors["points"] = FieldError("zone_area")


def read_geometry_form(fields: Mapping[str, str]) -> GeometryForm:
    """The rows the form posted, each checked; blank rows (no id, no points) are left out of the
    declaration but kept to show the form again."""
    rows: dict[tuple[str, int], ShapeRow] = {}
    for name, value in fields.items():
        match = _ROW_FIELD.match(name)
        if match is None:
            continue
        kind, index, part = match.group(1), int(match.group(2)), match.group(3)
        if index >= MAX_ROWS + 1:
            continue
        row = rows.setdefault((kind, index), ShapeRow(kind, index))  # type: ignore[arg-type]
        if part == "delete":
            row.delete = bool(value)
        else:
            setattr(row, part, value.strip())
    lines = [rows[k] for k in sorted(rows) if k[0] == "line"]
    zones = [rows[k] for k in sorted(rows) if k[0] == "zone"]
    for group in (lines, zones):
        seen: set[str] = set()
        for row in group:
            if row.delete or row.blank:
                continue
            _check(row)
            if row.id in seen and "id" not in row.errors:
                row.errors["id"] = FieldError("duplicate_id", {"id": row.id})
            seen.add(row.id)
        if sum(1 for r in group if not r.delete and not r.blank) > MAX_ROWS:
            group[-1].errors["id"] = FieldError("too_many", {"n": MAX_ROWS})
    return GeometryForm(lines, zones)
