"""The aggregation's storage: buckets written exactly once per report, releases frozen once published.

Storing reports. One transaction per batch: the report ids already in ``applied_reports`` are skipped, the
new ones inserted (a primary key: a copy stored by another replica at the same moment makes the transaction
fail and the batch is retried, finding it stored), and their figures added to the buckets with upserts that
apply the merging rules in SQL (``count + excluded.count``, ``max(max_objects, excluded.max_objects)``).
Rows are written in key order so that concurrent replicas take row locks in the same order.

Releases. A release (one site's window or day) is written in one transaction that starts with its
``releases`` row: if another replica released it first, the primary key refuses it
(:class:`AlreadyReleasedError`) and nothing is written twice.

SQLite allows one writer at a time; a lock serialises this process's writers so they queue here rather
than in SQLite's busy handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, delete, func, insert, or_, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from vigie_aggregation.buckets import merge_parts
from vigie_aggregation.disclosure.certificates import Certificate
from vigie_aggregation.disclosure.day import DayState
from vigie_aggregation.disclosure.protection import Obligation, WindowPattern
from vigie_aggregation.disclosure.table import Cell, LeafFigures, SensitivityRule, TableSpec
from vigie_aggregation.families import FAMILIES, CameraWindowFigures
from vigie_aggregation.publication import REASON_BUDGET, REASON_DISCLOSURE, PublishedCell
from vigie_aggregation.reports import WindowPart
from vigie_aggregation.storage import schema
from vigie_aggregation.storage.cells import (
    FAMILY_CODES,
    FAMILY_NAMES,
    Granularity,
    RowKey,
    cell_from_row,
    row_key,
)
from vigie_core.database import make_engine, migrate

__all__ = [
    "AlreadyReleasedError",
    "ApplyResult",
    "CoverageRow",
    "FamilyState",
    "ReleaseRecord",
    "StatisticsStore",
    "cell_to_json",
]

# Rows per IN (...) list, well under SQLite's and PostgreSQL's parameter limits.
_IN_CHUNK = 400


class AlreadyReleasedError(RuntimeError):
    """Another replica (or an earlier run) released this period first."""


@dataclass(frozen=True, slots=True)
class ApplyResult:
    applied: list[str]  # report ids stored now
    duplicates: list[str]  # report ids stored before (or twice in the batch), skipped
    late: list[str]  # stored, but their window was already released: never published


@dataclass(frozen=True, slots=True)
class CoverageRow:
    camera_id: str
    period_seconds: int
    covered_seconds: float
    frames: int
    geometry_versions: str
    status: str | None = None


@dataclass(slots=True)
class FamilyState:
    """What one family's window release leaves to the next releases of the same day."""

    certificates: dict[Cell, Certificate] = field(default_factory=dict)
    next_window: list[Obligation] = field(default_factory=list)
    day: set[Cell] = field(default_factory=set)


@dataclass(slots=True)
class ReleaseRecord:
    site_id: str
    granularity: int
    period_start: int
    released_at: int
    cells: dict[str, list[PublishedCell]]  # by family name
    coverage: list[CoverageRow]
    states: dict[str, FamilyState] = field(default_factory=dict)
    budget: list[tuple[str, int, float]] = field(default_factory=list)  # (camera, budget period, epsilon)
    note: dict[str, Any] = field(default_factory=dict)


def cell_to_json(cell: Cell) -> list[list[str]]:
    return [list(node) for node in cell]


def _cell_from_json(value: Sequence[Sequence[str]]) -> Cell:
    return tuple(tuple(node) for node in value)


def _state_to_json(states: Mapping[str, FamilyState], note: Mapping[str, Any]) -> str:
    return json.dumps(
        {
            "families": {
                name: {
                    "certificates": [
                        [cell_to_json(cell), certificate.to_json()]
                        for cell, certificate in sorted(state.certificates.items())
                    ],
                    "next": [
                        [[cell_to_json(c) for c in o.cells], [cell_to_json(c) for c in o.corners]]
                        for o in state.next_window
                    ],
                    "day": [cell_to_json(c) for c in sorted(state.day)],
                }
                for name, state in states.items()
            },
            **note,
        },
        separators=(",", ":"),
    )


def _state_from_json(text: str) -> dict[str, FamilyState]:
    document = json.loads(text)
    states = {}
    for name, raw in document.get("families", {}).items():
        states[name] = FamilyState(
            certificates={
                _cell_from_json(cell): Certificate.from_json(certificate)
                for cell, certificate in raw["certificates"]
            },
            next_window=[
                Obligation(
                    tuple(_cell_from_json(c) for c in cells), tuple(_cell_from_json(c) for c in corners)
                )
                for cells, corners in raw["next"]
            ],
            day={_cell_from_json(c) for c in raw["day"]},
        )
    return states


def _chunks(items: Sequence[Any], size: int = _IN_CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _is_leaf_row(spec: TableSpec, key: RowKey) -> bool:
    cell = cell_from_row(spec, key)
    return tuple(len(node) for node in cell) == spec.leaf_depths


class StatisticsStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._dialect = engine.dialect.name
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(
        cls, url: str, *, schema_name: str | None = None, run_migrations: bool = True
    ) -> StatisticsStore:
        store = cls(make_engine(url, schema_name=schema_name))
        if run_migrations:
            await store.migrate()
        return store

    async def migrate(self) -> None:
        """Bring the tables to the latest migration (idempotent)."""
        await migrate(self._engine, "vigie_aggregation")

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    async def close(self) -> None:
        await self._engine.dispose()

    @contextlib.asynccontextmanager
    async def _writing(self) -> AsyncIterator[AsyncConnection]:
        if self._dialect == "sqlite":
            async with self._write_lock, self._engine.begin() as conn:
                yield conn
        else:
            async with self._engine.begin() as conn:
                yield conn

    # -- reports -------------------------------------------------------------------------------------

    def _insert(self, table: Table) -> Any:
        return postgresql.insert(table) if self._dialect == "postgresql" else sqlite.insert(table)

    def _greatest(self, a: Any, b: Any) -> Any:
        return func.greatest(a, b) if self._dialect == "postgresql" else func.max(a, b)

    async def apply_parts(
        self,
        parts: Sequence[WindowPart],
        *,
        now: int,
        site_of: Callable[[str], str | None] = lambda _: None,
    ) -> ApplyResult:
        """Store the parts whose report id is new, in one transaction; the others are duplicates."""
        first: dict[str, WindowPart] = {}
        duplicates: list[str] = []
        for part in parts:
            if part.report_id in first:
                duplicates.append(part.report_id)
            else:
                first[part.report_id] = part
        async with self._writing() as conn:
            existing: set[str] = set()
            for chunk in _chunks(sorted(first)):
                result = await conn.execute(
                    select(schema.applied_reports.c.report_id).where(
                        schema.applied_reports.c.report_id.in_(chunk)
                    )
                )
                existing.update(result.scalars())
            new = [p for p in first.values() if p.report_id not in existing]
            duplicates.extend(sorted(existing))
            if new:
                await self._store(conn, new, now)
            late = await self._late(conn, new, site_of)
        return ApplyResult([p.report_id for p in new], duplicates, late)

    async def _store(self, conn: AsyncConnection, parts: Sequence[WindowPart], now: int) -> None:
        await conn.execute(
            insert(schema.applied_reports),
            [
                {
                    "report_id": p.report_id,
                    "camera_id": p.camera_id,
                    "window_start": p.window_start,
                    "closed_by": p.closed_by,
                    "geometry_version": p.geometry_version,
                    "received_at": now,
                }
                for p in sorted(parts, key=lambda p: p.report_id)
            ],
        )
        increments = merge_parts(parts)
        windows = schema.camera_windows
        stmt = self._insert(windows)
        await conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[windows.c.camera_id, windows.c.window_start],
                set_={
                    "covered_seconds": windows.c.covered_seconds + stmt.excluded.covered_seconds,
                    "frames": windows.c.frames + stmt.excluded.frames,
                    "parts": windows.c.parts + stmt.excluded.parts,
                },
            ),
            [
                {
                    "camera_id": camera,
                    "window_start": window,
                    "covered_seconds": figures.covered_seconds,
                    "frames": figures.frames,
                    "parts": figures.parts,
                }
                for (camera, window), figures in sorted(increments.windows.items())
            ],
        )
        if increments.members:
            members = schema.window_members
            stmt = self._insert(members)
            await conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[
                        members.c.camera_id,
                        members.c.window_start,
                        members.c.kind,
                        members.c.member_id,
                    ],
                    # The union of the classes and of the directions; NULL (all six classes, both directions:
                    # stored before reports said) absorbs any.
                    set_={
                        "object_classes": members.c.object_classes.bitwise_or(stmt.excluded.object_classes),
                        "directions": members.c.directions.bitwise_or(stmt.excluded.directions),
                    },
                ),
                [
                    {
                        "camera_id": c,
                        "window_start": w,
                        "kind": kind,
                        "member_id": m,
                        "object_classes": (
                            schema.class_mask(classes)
                            if (classes := increments.member_classes.get((c, w, kind, m))) is not None
                            else None
                        ),
                        "directions": (
                            schema.direction_mask(directions)
                            if (directions := increments.line_directions.get((c, w, kind, m))) is not None
                            else None
                        ),
                    }
                    for c, w, kind, m in sorted(increments.members)
                ],
            )
        if increments.crossings:
            table = schema.crossing_buckets
            stmt = self._insert(table)
            await conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[
                        table.c.camera_id,
                        table.c.window_start,
                        table.c.line_id,
                        table.c.direction,
                        table.c.object_class,
                    ],
                    set_={"count": table.c.count + stmt.excluded.count},
                ),
                [
                    {
                        "camera_id": c,
                        "window_start": w,
                        "line_id": line,
                        "direction": d,
                        "object_class": k,
                        "count": n,
                    }
                    for (c, w, line, d, k), n in sorted(increments.crossings.items())
                ],
            )
        if increments.occupancy:
            table = schema.occupancy_buckets
            stmt = self._insert(table)
            await conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[
                        table.c.camera_id,
                        table.c.window_start,
                        table.c.zone_id,
                        table.c.object_class,
                    ],
                    set_={
                        "object_seconds": table.c.object_seconds + stmt.excluded.object_seconds,
                        "max_objects": self._greatest(table.c.max_objects, stmt.excluded.max_objects),
                    },
                ),
                [
                    {
                        "camera_id": c,
                        "window_start": w,
                        "zone_id": zone,
                        "object_class": k,
                        "object_seconds": figures.object_seconds,
                        "max_objects": figures.max_objects,
                    }
                    for (c, w, zone, k), figures in sorted(increments.occupancy.items())
                ],
            )
        if increments.dwell:
            table = schema.dwell_buckets
            stmt = self._insert(table)
            await conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[
                        table.c.camera_id,
                        table.c.window_start,
                        table.c.zone_id,
                        table.c.object_class,
                        table.c.dwell_bucket,
                    ],
                    set_={"count": table.c.count + stmt.excluded.count},
                ),
                [
                    {
                        "camera_id": c,
                        "window_start": w,
                        "zone_id": zone,
                        "object_class": k,
                        "dwell_bucket": bucket,
                        "count": n,
                    }
                    for (c, w, zone, k, bucket), n in sorted(increments.dwell.items())
                ],
            )

    async def _late(
        self, conn: AsyncConnection, parts: Sequence[WindowPart], site_of: Callable[[str], str | None]
    ) -> list[str]:
        by_window: dict[tuple[str, int], list[str]] = {}
        for part in parts:
            site = site_of(part.camera_id)
            if site is not None:
                by_window.setdefault((site, part.window_start), []).append(part.report_id)
        if not by_window:
            return []
        released: set[tuple[str, int]] = set()
        r = schema.releases
        for chunk in _chunks(sorted(by_window)):
            result = await conn.execute(
                select(r.c.site_id, r.c.period_start).where(
                    r.c.granularity == Granularity.WINDOW, tuple_(r.c.site_id, r.c.period_start).in_(chunk)
                )
            )
            released.update((site, int(start)) for site, start in result)
        return sorted(report for key in released for report in by_window[key])

    # -- what a release reads ------------------------------------------------------------------------

    async def released_until(self, site_id: str, granularity: int) -> int | None:
        """The start of the site's latest released period of this granularity."""
        r = schema.releases
        async with self._engine.connect() as conn:
            value = (
                await conn.execute(
                    select(func.max(r.c.period_start)).where(
                        r.c.site_id == site_id, r.c.granularity == granularity
                    )
                )
            ).scalar_one()
        return None if value is None else int(value)

    async def first_window(self, cameras: Iterable[str]) -> int | None:
        """The earliest window any of these cameras has figures for."""
        ids = sorted(cameras)
        if not ids:
            return None
        w = schema.camera_windows
        found: list[int] = []
        async with self._engine.connect() as conn:
            for chunk in _chunks(ids):
                value = (
                    await conn.execute(select(func.min(w.c.window_start)).where(w.c.camera_id.in_(chunk)))
                ).scalar_one()
                if value is not None:
                    found.append(int(value))
        return min(found) if found else None

    async def windows_with_figures(self, cameras: Iterable[str], start: int, end: int) -> set[int]:
        """The windows from ``start`` to before ``end`` for which any of these cameras has figures."""
        ids = sorted(cameras)
        w = schema.camera_windows
        found: set[int] = set()
        async with self._engine.connect() as conn:
            for chunk in _chunks(ids):
                result = await conn.execute(
                    select(w.c.window_start)
                    .distinct()
                    .where(w.c.camera_id.in_(chunk), w.c.window_start >= start, w.c.window_start < end)
                )
                found.update(int(v) for v in result.scalars())
        return found

    async def camera_window_figures(
        self, cameras: Iterable[str], window_start: int
    ) -> list[CameraWindowFigures]:
        """The stored figures of these cameras for one window (cameras without figures are left out)."""
        ids = sorted(cameras)
        figures: dict[str, CameraWindowFigures] = {}
        versions: dict[str, set[str]] = {}
        w, m = schema.camera_windows, schema.window_members
        c, o, d = schema.crossing_buckets, schema.occupancy_buckets, schema.dwell_buckets
        async with self._engine.connect() as conn:
            for chunk in _chunks(ids):
                for camera_id, covered, frames in await conn.execute(
                    select(w.c.camera_id, w.c.covered_seconds, w.c.frames).where(
                        w.c.window_start == window_start, w.c.camera_id.in_(chunk)
                    )
                ):
                    figures[camera_id] = CameraWindowFigures(
                        camera_id, covered_seconds=float(covered), frames=int(frames)
                    )
                for camera_id, kind, member, mask, directions in await conn.execute(
                    select(m.c.camera_id, m.c.kind, m.c.member_id, m.c.object_classes, m.c.directions).where(
                        m.c.window_start == window_start, m.c.camera_id.in_(chunk)
                    )
                ):
                    camera = figures.get(camera_id)
                    if camera is None:
                        continue
                    if kind == "line":
                        camera.line_ids.add(member)
                        if mask is not None:
                            camera.line_classes[member] = schema.mask_classes(int(mask))
                        if directions is not None:
                            camera.line_directions[member] = schema.mask_directions(int(directions))
                    elif kind == "zone":
                        camera.zone_ids.add(member)
                        if mask is not None:
                            camera.zone_classes[member] = schema.mask_classes(int(mask))
                    elif kind == "dwel":
                        camera.dwell_buckets.add(member)
                    else:
                        versions.setdefault(camera_id, set()).add(member)
                for camera_id, line, direction, object_class, count in await conn.execute(
                    select(c.c.camera_id, c.c.line_id, c.c.direction, c.c.object_class, c.c.count).where(
                        c.c.window_start == window_start, c.c.camera_id.in_(chunk)
                    )
                ):
                    if camera_id in figures:
                        figures[camera_id].crossings[(line, int(direction), int(object_class))] = int(count)
                for camera_id, zone, object_class, object_seconds, max_objects in await conn.execute(
                    select(
                        o.c.camera_id, o.c.zone_id, o.c.object_class, o.c.object_seconds, o.c.max_objects
                    ).where(o.c.window_start == window_start, o.c.camera_id.in_(chunk))
                ):
                    if camera_id in figures:
                        figures[camera_id].occupancy[(zone, int(object_class))] = (
                            float(object_seconds),
                            int(max_objects),
                        )
                for camera_id, zone, object_class, bucket, count in await conn.execute(
                    select(d.c.camera_id, d.c.zone_id, d.c.object_class, d.c.dwell_bucket, d.c.count).where(
                        d.c.window_start == window_start, d.c.camera_id.in_(chunk)
                    )
                ):
                    if camera_id in figures:
                        figures[camera_id].dwell[(zone, int(object_class), bucket)] = int(count)
        for camera_id, found in versions.items():
            if camera_id in figures:
                figures[camera_id].geometry_versions = tuple(sorted(found))
        return [figures[camera] for camera in sorted(figures)]

    async def day_state(
        self, site_id: str, day_start: int, before: int, window_s: int
    ) -> dict[str, DayState]:
        """The state the next window release of the day needs, rebuilt from the day's earlier releases."""
        r, p = schema.releases, schema.published_cells
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(r.c.period_start, r.c.state)
                    .where(
                        r.c.site_id == site_id,
                        r.c.granularity == Granularity.WINDOW,
                        r.c.period_start >= day_start,
                        r.c.period_start < before,
                    )
                    .order_by(r.c.period_start)
                )
            ).all()
            suppressed = (
                await conn.execute(
                    select(
                        p.c.family,
                        p.c.period_start,
                        p.c.camera_id,
                        p.c.item_id,
                        p.c.direction,
                        p.c.object_class,
                        p.c.dwell_bucket,
                        p.c.value,
                    ).where(
                        p.c.site_id == site_id,
                        p.c.granularity == Granularity.WINDOW,
                        p.c.period_start >= day_start,
                        p.c.period_start < before,
                        p.c.suppressed.is_(True),
                        # Only disclosure control's own suppressions protect anything; cells withheld for
                        # the privacy budget are in no published total.
                        p.c.reason == REASON_DISCLOSURE,
                    )
                )
            ).all()
        values: dict[tuple[int, int], dict[Cell, float]] = {}
        for row in suppressed:
            spec = FAMILIES[FAMILY_NAMES[int(row.family)]]
            key = RowKey(row.camera_id, row.item_id, row.direction, row.object_class, row.dwell_bucket)
            values.setdefault((int(row.family), int(row.period_start)), {})[cell_from_row(spec, key)] = float(
                row.value
            )
        states = {name: DayState() for name in FAMILIES}
        for period_start, text in rows:
            stored = _state_from_json(text)
            for name, state in states.items():
                family = stored.get(name, FamilyState())
                state.windows.append(
                    WindowPattern(
                        int(period_start),
                        values.get((FAMILY_CODES[name], int(period_start)), {}),
                        family.certificates,
                    )
                )
                state.day_owed |= family.day
                # Obligations bind the window right after; a gap (never with contiguous releases) voids them.
                state.next_window = list(family.next_window) if int(period_start) + window_s == before else []
        return states

    async def day_window_leaves(
        self, site_id: str, family: str, day_start: int, day_end: int
    ) -> list[dict[Cell, LeafFigures]]:
        """The leaves each released window of the day published (suppressed or not), for the day's sums."""
        spec = FAMILIES[family]
        p = schema.published_cells
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(
                        p.c.period_start,
                        p.c.camera_id,
                        p.c.item_id,
                        p.c.direction,
                        p.c.object_class,
                        p.c.dwell_bucket,
                        p.c.value,
                        p.c.max_objects,
                    ).where(
                        p.c.family == FAMILY_CODES[family],
                        p.c.granularity == Granularity.WINDOW,
                        p.c.site_id == site_id,
                        p.c.period_start >= day_start,
                        p.c.period_start < day_end,
                        p.c.level == 2,
                        or_(p.c.reason.is_(None), p.c.reason != REASON_BUDGET),
                    )
                )
            ).all()
        windows: dict[int, dict[Cell, LeafFigures]] = {}
        for row in rows:
            key = RowKey(row.camera_id, row.item_id, row.direction, row.object_class, row.dwell_bucket)
            if not _is_leaf_row(spec, key):
                continue
            value = float(row.value)
            maximum = None if row.max_objects is None else int(row.max_objects)
            sensitivity = (maximum or 0) if spec.sensitivity is SensitivityRule.MAX else round(value)
            windows.setdefault(int(row.period_start), {})[cell_from_row(spec, key)] = LeafFigures(
                value, sensitivity, maximum
            )
        return [windows[start] for start in sorted(windows)]

    async def day_coverage(self, site_id: str, day_start: int, day_end: int) -> list[CoverageRow]:
        """Each camera's coverage summed over the released windows of the day."""
        c = schema.published_coverage
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(
                        c.c.camera_id,
                        func.sum(c.c.period_seconds),
                        func.sum(c.c.covered_seconds),
                        func.sum(c.c.frames),
                    )
                    .where(
                        c.c.granularity == Granularity.WINDOW,
                        c.c.site_id == site_id,
                        c.c.period_start >= day_start,
                        c.c.period_start < day_end,
                        c.c.status.is_(None),
                    )
                    .group_by(c.c.camera_id)
                )
            ).all()
            versions = (
                await conn.execute(
                    select(c.c.camera_id, c.c.geometry_versions).where(
                        c.c.granularity == Granularity.WINDOW,
                        c.c.site_id == site_id,
                        c.c.period_start >= day_start,
                        c.c.period_start < day_end,
                    )
                )
            ).all()
        by_camera: dict[str, set[str]] = {}
        for camera, text in versions:
            by_camera.setdefault(camera, set()).update(v for v in text.split(",") if v)
        return [
            CoverageRow(
                camera,
                day_end - day_start,
                float(covered or 0.0),
                int(frames or 0),
                ",".join(sorted(by_camera.get(camera, set())))[:400],
            )
            for camera, _, covered, frames in sorted(rows)
        ]

    async def budget_spent(self, cameras: Iterable[str], budget_period_start: int) -> dict[str, float]:
        ledger = schema.privacy_budget_ledger
        ids = sorted(cameras)
        spent: dict[str, float] = {}
        async with self._engine.connect() as conn:
            for chunk in _chunks(ids):
                for camera, total in await conn.execute(
                    select(ledger.c.camera_id, func.sum(ledger.c.epsilon))
                    .where(ledger.c.camera_id.in_(chunk), ledger.c.budget_period_start == budget_period_start)
                    .group_by(ledger.c.camera_id)
                ):
                    spent[camera] = float(total)
        return spent

    # -- writing a release ---------------------------------------------------------------------------

    async def save_release(self, release: ReleaseRecord) -> None:
        """Write a release in one transaction; :class:`AlreadyReleasedError` if it exists already."""
        try:
            async with self._writing() as conn:
                await conn.execute(
                    insert(schema.releases),
                    {
                        "site_id": release.site_id,
                        "granularity": release.granularity,
                        "period_start": release.period_start,
                        "released_at": release.released_at,
                        "state": _state_to_json(release.states, release.note),
                    },
                )
                rows = []
                for family, cells in release.cells.items():
                    spec = FAMILIES[family]
                    for cell in cells:
                        key = row_key(spec, cell.cell)
                        rows.append(
                            {
                                "family": FAMILY_CODES[family],
                                "granularity": release.granularity,
                                "site_id": release.site_id,
                                "level": key.level,
                                "period_start": release.period_start,
                                "camera_id": key.camera_id,
                                "item_id": key.item_id,
                                "direction": key.direction,
                                "object_class": key.object_class,
                                "dwell_bucket": key.dwell_bucket,
                                "value": cell.value,
                                "max_objects": cell.max_objects,
                                "suppressed": cell.suppressed,
                                "reason": cell.reason,
                            }
                        )
                if rows:
                    await conn.execute(insert(schema.published_cells), rows)
                if release.coverage:
                    await conn.execute(
                        insert(schema.published_coverage),
                        [
                            {
                                "granularity": release.granularity,
                                "site_id": release.site_id,
                                "period_start": release.period_start,
                                "camera_id": c.camera_id,
                                "period_seconds": c.period_seconds,
                                "covered_seconds": c.covered_seconds,
                                "frames": c.frames,
                                "geometry_versions": c.geometry_versions,
                                "status": c.status,
                            }
                            for c in release.coverage
                        ],
                    )
                if release.budget:
                    await conn.execute(
                        insert(schema.privacy_budget_ledger),
                        [
                            {
                                "camera_id": camera,
                                "window_start": release.period_start,
                                "budget_period_start": period,
                                "epsilon": epsilon,
                            }
                            for camera, period, epsilon in release.budget
                        ],
                    )
        except IntegrityError as error:
            raise AlreadyReleasedError(
                f"site {release.site_id} period {release.period_start} (granularity {release.granularity}) "
                "is released already"
            ) from error

    async def released_window(
        self, site_id: str, period_start: int
    ) -> tuple[dict[str, list[PublishedCell]], list[CoverageRow]]:
        """What a released window published (to restore the /metrics gauges at start-up)."""
        p, c = schema.published_cells, schema.published_coverage
        cells: dict[str, list[PublishedCell]] = {name: [] for name in FAMILIES}
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(p).where(
                    p.c.site_id == site_id,
                    p.c.granularity == Granularity.WINDOW,
                    p.c.period_start == period_start,
                )
            )
            for row in rows:
                name = FAMILY_NAMES[int(row.family)]
                key = RowKey(row.camera_id, row.item_id, row.direction, row.object_class, row.dwell_bucket)
                cells[name].append(
                    PublishedCell(
                        cell_from_row(FAMILIES[name], key),
                        float(row.value),
                        None if row.max_objects is None else int(row.max_objects),
                        bool(row.suppressed),
                        row.reason,
                    )
                )
            coverage = [
                CoverageRow(
                    row.camera_id,
                    int(row.period_seconds),
                    float(row.covered_seconds),
                    int(row.frames),
                    row.geometry_versions,
                    row.status,
                )
                for row in await conn.execute(
                    select(c).where(
                        c.c.site_id == site_id,
                        c.c.granularity == Granularity.WINDOW,
                        c.c.period_start == period_start,
                    )
                )
            ]
        return cells, coverage

    # -- retention -----------------------------------------------------------------------------------

    async def count_before(self, cutoff: int) -> dict[str, int]:
        """How many rows of each table are dated before ``cutoff``."""
        counts = {}
        async with self._engine.connect() as conn:
            for table, column in schema.DATED_TABLES:
                counts[table.name] = int(
                    (
                        await conn.execute(
                            select(func.count()).select_from(table).where(table.c[column] < cutoff)
                        )
                    ).scalar_one()
                )
        return counts

    async def delete_before(self, cutoff: int) -> dict[str, int]:
        """Delete every row dated before ``cutoff``, in one transaction; the rows deleted per table."""
        deleted = {}
        async with self._writing() as conn:
            for table, column in schema.DATED_TABLES:
                result = await conn.execute(delete(table).where(table.c[column] < cutoff))
                deleted[table.name] = int(result.rowcount)
        return deleted
