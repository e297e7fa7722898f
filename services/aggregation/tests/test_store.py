"""The store on SQLite and on PostgreSQL: at most once per report id, merging rules in SQL, late parts,
retention, and two replicas storing the same reports at once."""

from __future__ import annotations

import asyncio
from importlib import resources
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from vigie_aggregation.families import CROSSINGS, family_leaves
from vigie_aggregation.reports import WindowPart, parse_window_report
from vigie_aggregation.storage import schema
from vigie_aggregation.storage.cells import Granularity
from vigie_aggregation.storage.store import ReleaseRecord, StatisticsStore
from vigie_aggregation.synthetic import T0, window_report
from vigie_aggregation.vocabulary import ALL_CLASSES, ALL_DIRECTIONS
from vigie_core.database import make_engine
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


async def test_the_classes_of_a_line_or_zone_are_the_union_over_parts_stored_apart(
    any_store: StatisticsStore,
) -> None:
    persons = window_report(
        "cam-a",
        T0,
        part=0,
        zones=("z1",),
        crossings={("l1", 1, 1): 3},
        object_classes=(1,),
        dwell_bucket_seconds=(60,),
    )
    await any_store.apply_parts([part(persons)], now=T0)
    [figures] = await any_store.camera_window_figures({"cam-a"}, T0)
    assert (figures.line_classes, figures.zone_classes) == ({"l1": {1}}, {"z1": {1}})
    assert figures.dwell_buckets == {"0-60", "60-"}
    assert figures.geometry_versions == ("g1",), "a dwell bucket is not a geometry version"
    # Later in the window the purpose also counts bicycles (a new geometry), the zone bicycles only.
    wider = window_report(
        "cam-a",
        T0,
        part=1,
        zones=("z1",),
        object_classes=(1, 2),
        member_classes={"z1": (2,)},
        geometry_version="g2",
    )
    await any_store.apply_parts([part(wider)], now=T0)
    [figures] = await any_store.camera_window_figures({"cam-a"}, T0)
    assert (figures.line_classes, figures.zone_classes) == ({"l1": {1, 2}}, {"z1": {1, 2}})
    # A part that does not say which classes it counted counted all six.
    await any_store.apply_parts([part(window_report("cam-a", T0, part=2))], now=T0)
    [figures] = await any_store.camera_window_figures({"cam-a"}, T0)
    assert figures.line_classes == {"l1": ALL_CLASSES}
    assert figures.crossings == {("l1", 1, 1): 3}


async def test_the_directions_of_a_line_are_the_union_over_parts_stored_apart(
    any_store: StatisticsStore,
) -> None:
    one_way = window_report(
        "cam-a", T0, part=0, lines=("l1", "l2"), crossings={("l1", 1, 1): 3}, one_way_lines={"l1": 1}
    )
    await any_store.apply_parts([part(one_way)], now=T0)
    [figures] = await any_store.camera_window_figures({"cam-a"}, T0)
    assert figures.line_directions == {"l1": {1}, "l2": ALL_DIRECTIONS}
    leaves = family_leaves(CROSSINGS, [figures])
    assert {(line, int(d)) for ((_, line), (d,), _) in leaves} == {("l1", 1), ("l2", 1), ("l2", 2)}
    # Later in the window the line is made one-way the other way (a new geometry): both were counted.
    other_way = window_report(
        "cam-a", T0, part=1, lines=("l1",), one_way_lines={"l1": 2}, geometry_version="g2"
    )
    await any_store.apply_parts([part(other_way)], now=T0)
    [figures] = await any_store.camera_window_figures({"cam-a"}, T0)
    assert figures.line_directions == {"l1": ALL_DIRECTIONS, "l2": ALL_DIRECTIONS}
    assert figures.crossings == {("l1", 1, 1): 3}


def _upgrade_to(connection: Connection, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(resources.files("vigie_aggregation") / "migrations"))
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


async def _stored_at_revision(database: Any, revision: str, *rows: str) -> None:
    """A database migrated to ``revision`` only, holding camera cam-a's window T0 and ``rows`` (SQL with the
    parameters :camera and :window), as a service of that revision stored it."""
    engine = make_engine(database.url, schema_name=database.schema)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade_to, revision)
            window = {"camera": "cam-a", "window": T0}
            await conn.execute(
                text(
                    "INSERT INTO camera_windows (camera_id, window_start, covered_seconds, frames, parts) "
                    "VALUES (:camera, :window, 1200.0, 100, 1)"
                ),
                window,
            )
            for row in rows:
                await conn.execute(text(row), window)
    finally:
        await engine.dispose()


async def test_figures_stored_before_the_classes_were_reported_keep_meaning_all_six(
    database: Any,
) -> None:
    """Revision 0002 on a database of revision 0001 (SQLite, then PostgreSQL)."""
    await _stored_at_revision(
        database,
        "0001",
        "INSERT INTO window_members (camera_id, window_start, kind, member_id) "
        "VALUES (:camera, :window, 'line', 'l1'), (:camera, :window, 'geom', 'g0')",
        "INSERT INTO crossing_buckets (camera_id, window_start, line_id, direction, "
        "object_class, count) VALUES (:camera, :window, 'l1', 1, 1, 4)",
    )
    store = await StatisticsStore.open(database.url, schema_name=database.schema)
    try:
        [figures] = await store.camera_window_figures({"cam-a"}, T0)
        assert (figures.line_ids, figures.line_classes) == ({"l1"}, {})
        leaves = family_leaves(CROSSINGS, [figures])
        assert {int(object_class) for _, _, (object_class,) in leaves} == ALL_CLASSES
        # A part with persons only, after the upgrade, in the same window: the union is still all six.
        later = window_report("cam-a", T0, part=1, crossings={("l1", 1, 1): 2}, object_classes=(1,))
        await store.apply_parts([part(later)], now=T0)
        [figures] = await store.camera_window_figures({"cam-a"}, T0)
        assert figures.line_classes == {}
        assert figures.crossings == {("l1", 1, 1): 6}
        assert figures.geometry_versions == ("g0", "g1")
    finally:
        await store.close()


async def test_lines_stored_before_the_directions_were_reported_keep_meaning_both(database: Any) -> None:
    """Revision 0003 on a database of revision 0002 (SQLite, then PostgreSQL)."""
    await _stored_at_revision(
        database,
        "0002",
        "INSERT INTO window_members (camera_id, window_start, kind, member_id, object_classes) "
        "VALUES (:camera, :window, 'line', 'l1', 2), (:camera, :window, 'geom', 'g0', NULL)",
    )
    store = await StatisticsStore.open(database.url, schema_name=database.schema)
    try:
        [figures] = await store.camera_window_figures({"cam-a"}, T0)
        assert (figures.line_classes, figures.line_directions) == ({"l1": {1}}, {})
        leaves = family_leaves(CROSSINGS, [figures])
        assert {int(direction) for _, (direction,), _ in leaves} == ALL_DIRECTIONS
        # A one-way part after the upgrade, in the same window: the union is still both directions.
        later = window_report(
            "cam-a", T0, part=1, crossings={("l1", 1, 1): 2}, object_classes=(1,), one_way_lines={"l1": 1}
        )
        await store.apply_parts([part(later)], now=T0)
        [figures] = await store.camera_window_figures({"cam-a"}, T0)
        assert figures.line_directions == {}
        assert figures.crossings == {("l1", 1, 1): 2}
    finally:
        await store.close()
