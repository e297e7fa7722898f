"""The store on SQLite and on PostgreSQL: at most once per report id, merging rules in SQL, late parts,
retention, and two replicas storing the same reports at once."""

from __future__ import annotations

import asyncio

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, IntegrityError

from vigie_aggregation.reports import WindowPart, parse_window_report
from vigie_aggregation.storage import schema
from vigie_aggregation.storage.cells import Granularity
from vigie_aggregation.storage.store import ReleaseRecord, StatisticsStore
from vigie_aggregation.synthetic import T0, window_report
from vigie_proto.v1.events_pb2 import WindowReport

W = 1200


def part(report: WindowReport) -> WindowPart:
    return parse_window_report(
        f"vigie.events.{report.camera_id}", report.SerializeToString(), None, publication_window_s=W, now=T0
    )


def two_parts() -> list[WindowPart]:
    return [
        part(
            window_report(
                "cam-a",
                T0,
                part=0,
                zones=("z1",),
                crossings={("l1", 1, 1): 3},
                occupancy={("z1", 1): (100.0, 4)},
                dwell={("z1", 1, 0, 60): 2},
                covered_seconds=500,
            )
        ),
        part(
            window_report(
                "cam-a",
                T0,
                part=1,
                zones=("z1",),
                crossings={("l1", 1, 1): 5},
                occupancy={("z1", 1): (50.0, 7)},
                dwell={("z1", 1, 0, 60): 1},
                covered_seconds=600,
            )
        ),
    ]


async def test_a_report_is_stored_at_most_once_and_parts_merge_by_the_rules(
    any_store: StatisticsStore,
) -> None:
    first, second = two_parts()
    result = await any_store.apply_parts([first, first], now=T0)
    assert (result.applied, result.duplicates) == ([first.report_id], [first.report_id])
    assert (await any_store.apply_parts([first, second], now=T0)).duplicates == [first.report_id]
    assert (await any_store.apply_parts([first, second], now=T0)).applied == []
    [figures] = await any_store.camera_window_figures({"cam-a"}, T0)
    assert figures.crossings == {("l1", 1, 1): 8}
    assert figures.occupancy == {("z1", 1): (150.0, 7)}  # object-seconds add up, the maximum is the max
    assert figures.dwell == {("z1", 1, "0-60"): 3}
    assert (figures.covered_seconds, figures.line_ids, figures.zone_ids) == (1100.0, {"l1"}, {"z1"})


async def test_a_part_stored_after_its_window_was_released_is_reported_late(
    any_store: StatisticsStore,
) -> None:
    first, second = two_parts()
    await any_store.apply_parts([first], now=T0)
    await any_store.save_release(ReleaseRecord("centre", Granularity.WINDOW, T0, T0, {}, []))
    result = await any_store.apply_parts([second], now=T0, site_of=lambda _: "centre")
    assert result.late == [second.report_id]


async def test_two_replicas_storing_the_same_reports_count_them_once(any_store: StatisticsStore) -> None:
    reports = [
        part(window_report(f"cam-{i % 3}", T0 + (i // 3) * W, crossings={("l1", 1, 1): 1})) for i in range(60)
    ]

    async def replica(batch: list[WindowPart]) -> None:
        while True:
            try:
                await any_store.apply_parts(batch, now=T0)
                return
            except (IntegrityError, DBAPIError):  # the other replica stored one of them first: retry
                await asyncio.sleep(0.01)

    await asyncio.gather(replica(reports[:40]), replica(reports[20:]), replica(reports[::-1]))
    c = schema.crossing_buckets
    async with any_store.engine.connect() as conn:
        total = sum(row[0] for row in await conn.execute(select(c.c.count)))
    assert total == 60


async def test_retention_deletes_what_is_older_than_the_cutoff(any_store: StatisticsStore) -> None:
    old = part(window_report("cam-a", T0 - 400 * 86_400, crossings={("l1", 1, 1): 3}))
    recent = part(window_report("cam-a", T0, crossings={("l1", 1, 1): 4}))
    await any_store.apply_parts([old, recent], now=T0)
    counts = await any_store.count_before(T0 - 365 * 86_400)
    assert counts["applied_reports"] == 1
    assert counts["crossing_buckets"] == 1
    deleted = await any_store.delete_before(T0 - 365 * 86_400)
    assert deleted == counts
    [figures] = await any_store.camera_window_figures({"cam-a"}, T0)
    assert figures.crossings == {("l1", 1, 1): 4}
    assert await any_store.camera_window_figures({"cam-a"}, old.window_start) == []
