"""The release job on a real database: windows then the day, frozen, and the same as the pure pipeline."""

from __future__ import annotations

import random

from sqlalchemy import select

from vigie_aggregation.disclosure import DayReleases, Table, day_leaves
from vigie_aggregation.disclosure.noise import SystemNoise
from vigie_aggregation.families import FAMILIES
from vigie_aggregation.publication import published_cells
from vigie_aggregation.release import ReleaseJob
from vigie_aggregation.reports import parse_window_report
from vigie_aggregation.settings import AggregationSettings, CameraSiteConfig
from vigie_aggregation.sites import ConfigSiteDirectory
from vigie_aggregation.storage import schema
from vigie_aggregation.storage.cells import FAMILY_CODES, Granularity, RowKey, cell_from_row
from vigie_aggregation.storage.store import StatisticsStore
from vigie_aggregation.synthetic import T0, random_report

W = 1200


def settings(**changes: object) -> AggregationSettings:
    return AggregationSettings(
        cameras=[CameraSiteConfig(id="cam-a", site="centre"), CameraSiteConfig(id="cam-b", site="centre")],
        **changes,  # type: ignore[arg-type]
    )


async def stored_cells(store: StatisticsStore, granularity: int) -> dict[tuple[str, int], dict]:  # type: ignore[type-arg]
    p = schema.published_cells
    found: dict[tuple[str, int], dict] = {}  # type: ignore[type-arg]
    async with store.engine.connect() as conn:
        for row in await conn.execute(select(p).where(p.c.granularity == granularity)):
            family = {v: k for k, v in FAMILY_CODES.items()}[row.family]
            key = RowKey(row.camera_id, row.item_id, row.direction, row.object_class, row.dwell_bucket)
            cell = cell_from_row(FAMILIES[family], key)
            found.setdefault((family, int(row.period_start)), {})[cell] = (
                float(row.value),
                bool(row.suppressed),
            )
    return found


async def test_a_day_is_released_window_by_window_then_whole_and_matches_the_pure_pipeline(
    sqlite_store: StatisticsStore,
) -> None:
    rng = random.Random(7)
    store = sqlite_store
    windows = 6  # figures in the first six windows of the day, nothing after
    parts = []
    for i in range(windows):
        for camera in ("cam-a", "cam-b"):
            report = random_report(camera, T0 + i * W, rng)
            parts.append(
                parse_window_report(
                    f"vigie.events.{camera}", report.SerializeToString(), None, publication_window_s=W, now=T0
                )
            )
    await store.apply_parts(parts, now=T0)
    now = [T0 + 3 * W + 400.0]
    job = ReleaseJob(
        store, ConfigSiteDirectory(settings().cameras), settings(), noise=SystemNoise(), clock=lambda: now[0]
    )

    assert await job.run_once() == 3  # windows 0 to 2 are closed and past the release delay
    assert await job.run_once() == 0  # nothing more is due; nothing is released twice
    now[0] = T0 + 86_400 + 400.0
    assert await job.run_once() == 69 + 1  # the rest of the day's windows (most empty), then the day

    window_cells = await stored_cells(store, Granularity.WINDOW)
    day_cells = await stored_cells(store, Granularity.DAY)
    # The pure pipeline on the same figures gives the same publication.
    for name, spec in FAMILIES.items():
        releases = DayReleases(spec, threshold=11, windows_per_day=72)
        tables = []
        for i in range(72):
            start = T0 + i * W
            figures = await store.camera_window_figures({"cam-a", "cam-b"}, start)
            from vigie_aggregation.families import family_leaves

            table = Table(spec, family_leaves(spec, figures))
            tables.append(table)
            protection = releases.release_window(start, table, has_next_window=i < 71)
            expected = {
                c.cell: (c.value, c.suppressed) for c in published_cells(table, protection.suppressed)
            }
            assert window_cells.get((name, start), {}) == expected, (name, i)
        day = Table(spec, day_leaves(spec, [t.leaves for t in tables]))
        protection = releases.release_day(day)
        expected = {c.cell: (c.value, c.suppressed) for c in published_cells(day, protection.suppressed)}
        assert day_cells[(name, T0)] == expected
    suppressed = sum(s for cells in window_cells.values() for _, s in cells.values())
    assert suppressed > 0
