"""What the statistics API reads: released cells only, filtered and paged by key (keyset pagination).

Pages are ordered by (period, site, camera, line or zone, direction, class, dwell bucket). Released
periods never change, so a cursor (the key of the last row served) gives stable pages.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import ColumnElement, and_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncEngine

from vigie_aggregation.storage import schema
from vigie_aggregation.storage.cells import FAMILY_CODES

__all__ = [
    "CellQuery",
    "CoverageFigures",
    "InvalidCursorError",
    "PageKey",
    "StoredCell",
    "decode_cursor",
    "encode_cursor",
    "fetch_cells",
    "fetch_coverage",
]

Level = Literal["site", "camera", "item"]
# A selector: "all" (the total over the dimension), "each" (every value), or one value.
PageKey = tuple[int, str, str, str, int, int, str]


class InvalidCursorError(ValueError):
    pass


def encode_cursor(key: PageKey) -> str:
    return (
        base64.urlsafe_b64encode(json.dumps(list(key), separators=(",", ":")).encode()).decode().rstrip("=")
    )


# A cursor comes back from the client: only what this API issues is taken, each part within what its
# column holds (period_start BIGINT, direction and object_class SMALLINT, ids and buckets short tokens),
# so that a forged one gets a 422, never a database error.
_PERIOD_MAX = 2**63 - 1
_CODE_MAX = 2**15 - 1
_CURSOR_TEXT = re.compile(r"^[A-Za-z0-9_-]{0,64}$")


def decode_cursor(text: str) -> PageKey:
    try:
        raw = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        period, site, camera, item, direction, object_class, bucket = raw
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise InvalidCursorError("not a cursor this API issued") from None
    numbers = ((period, _PERIOD_MAX), (direction, _CODE_MAX), (object_class, _CODE_MAX))
    if not all(type(n) is int and 0 <= n <= bound for n, bound in numbers) or not all(
        isinstance(t, str) and _CURSOR_TEXT.fullmatch(t) for t in (site, camera, item, bucket)
    ):
        raise InvalidCursorError("not a cursor this API issued")
    return (period, site, camera, item, direction, object_class, bucket)


@dataclass(frozen=True, slots=True)
class CellQuery:
    family: str
    granularity: int
    level: Level
    start: int  # periods starting at or after
    end: int  # and before
    site_id: str | None = None
    camera_ids: tuple[str, ...] = ()
    items: tuple[str, ...] = ()
    direction: int | Literal["all", "each"] = "all"
    object_class: int | Literal["all", "each"] = "all"
    dwell_bucket: str | Literal["all", "each"] = "all"


@dataclass(frozen=True, slots=True)
class StoredCell:
    site_id: str
    period_start: int
    camera_id: str
    item_id: str
    direction: int
    object_class: int
    dwell_bucket: str
    value: float
    max_objects: int | None
    suppressed: bool
    reason: str | None

    @property
    def key(self) -> PageKey:
        return (
            self.period_start,
            self.site_id,
            self.camera_id,
            self.item_id,
            self.direction,
            self.object_class,
            self.dwell_bucket,
        )


def _selector(column: Any, value: int | str, total: int | str) -> ColumnElement[bool]:
    if value == "all":
        return column == total  # type: ignore[no-any-return]
    if value == "each":
        return column != total  # type: ignore[no-any-return]
    return column == value  # type: ignore[no-any-return]


async def fetch_cells(
    engine: AsyncEngine, query: CellQuery, *, after: PageKey | None, limit: int
) -> list[StoredCell]:
    """Up to ``limit`` cells after the key ``after``, in page order."""
    p = schema.published_cells
    conditions: list[ColumnElement[bool]] = [
        p.c.family == FAMILY_CODES[query.family],
        p.c.granularity == query.granularity,
        p.c.period_start >= query.start,
        p.c.period_start < query.end,
    ]
    if query.site_id is not None:
        conditions.append(p.c.site_id == query.site_id)
    if query.camera_ids:
        conditions.append(p.c.camera_id.in_(query.camera_ids))
    conditions.append(p.c.level == {"site": 0, "camera": 1, "item": 2}[query.level])
    if query.items:
        conditions.append(p.c.item_id.in_(query.items))
    conditions.append(_selector(p.c.direction, query.direction, 0))
    conditions.append(_selector(p.c.object_class, query.object_class, 0))
    conditions.append(_selector(p.c.dwell_bucket, query.dwell_bucket, ""))
    order = (
        p.c.period_start,
        p.c.site_id,
        p.c.camera_id,
        p.c.item_id,
        p.c.direction,
        p.c.object_class,
        p.c.dwell_bucket,
    )
    if after is not None:
        conditions.append(tuple_(*order) > tuple_(*after))
    statement = (
        select(*order, p.c.value, p.c.max_objects, p.c.suppressed, p.c.reason)
        .where(and_(*conditions))
        .order_by(*order)
        .limit(limit)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(statement)).all()
    return [
        StoredCell(
            site_id=row.site_id,
            period_start=int(row.period_start),
            camera_id=row.camera_id,
            item_id=row.item_id,
            direction=int(row.direction),
            object_class=int(row.object_class),
            dwell_bucket=row.dwell_bucket,
            value=float(row.value),
            max_objects=None if row.max_objects is None else int(row.max_objects),
            suppressed=bool(row.suppressed),
            reason=row.reason,
        )
        for row in rows
    ]


@dataclass(frozen=True, slots=True)
class CoverageFigures:
    """How much of a period was analysed, for one camera or summed over a site's cameras."""

    period_seconds: int
    covered_seconds: float
    cameras: int
    withheld_cameras: tuple[str, ...] = ()

    @property
    def ratio(self) -> float:
        if self.period_seconds <= 0:
            return 0.0
        return min(1.0, self.covered_seconds / self.period_seconds)


async def fetch_coverage(
    engine: AsyncEngine, granularity: int, periods: Sequence[tuple[str, int]]
) -> dict[tuple[str, int, str], CoverageFigures]:
    """Coverage by (site, period, camera), plus the site's sum under camera ''."""
    c = schema.published_coverage
    found: dict[tuple[str, int, str], CoverageFigures] = {}
    wanted = sorted(set(periods))
    if not wanted:
        return found
    totals: dict[tuple[str, int], list[float]] = {}
    withheld: dict[tuple[str, int], list[str]] = {}
    wanted_set = set(wanted)
    sites = sorted({site for site, _ in wanted})
    first, last = min(p for _, p in wanted), max(p for _, p in wanted)
    async with engine.connect() as conn:
        # A range of the primary key per site (a list of (site, period) pairs would not use the index).
        rows = await conn.execute(
            select(
                c.c.site_id,
                c.c.period_start,
                c.c.camera_id,
                c.c.period_seconds,
                c.c.covered_seconds,
                c.c.status,
            ).where(
                c.c.granularity == granularity,
                c.c.site_id.in_(sites),
                c.c.period_start >= first,
                c.c.period_start <= last,
            )
        )
        for site, period, camera, period_seconds, covered, status in rows:
            key = (site, int(period))
            if key not in wanted_set:
                continue
            covered_here = float(covered) if status is None else 0.0
            found[(site, int(period), camera)] = CoverageFigures(
                int(period_seconds), covered_here, 1, (camera,) if status else ()
            )
            total = totals.setdefault(key, [0.0, 0.0, 0.0])
            total[0] += int(period_seconds)
            total[1] += covered_here
            total[2] += 1
            if status is not None:
                withheld.setdefault(key, []).append(camera)
    for (site, period), (period_seconds, covered, cameras) in totals.items():
        found[(site, period, "")] = CoverageFigures(
            int(period_seconds), covered, int(cameras), tuple(sorted(withheld.get((site, period), [])))
        )
    return found
