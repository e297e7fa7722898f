"""The retention job (audited deletion) and the privacy budget at release time."""

from __future__ import annotations

from sqlalchemy import select

from vigie_aggregation.disclosure.noise import SystemNoise
from vigie_aggregation.publication import REASON_BUDGET
from vigie_aggregation.release import STATUS_BUDGET, ReleaseJob
from vigie_aggregation.reports import WindowPart, parse_window_report
from vigie_aggregation.retention import RetentionJob
from vigie_aggregation.settings import AggregationSettings, CameraSiteConfig, NoiseSettings
from vigie_aggregation.sites import ConfigSiteDirectory
from vigie_aggregation.storage import schema
from vigie_aggregation.storage.store import StatisticsStore
from vigie_aggregation.synthetic import T0, window_report
from vigie_core.audit import AuditPublisher, AuditPublishSettings, MemoryAuditSink, action_name, outcome_name
from vigie_proto.v1.events_pb2 import WindowReport

W = 1200
DAY = 86_400
QUICK = AuditPublishSettings(
    confirm_timeout_s=0.3, drain_timeout_s=0.3, retry_initial_s=0.01, retry_max_s=0.02
)


def part(report: WindowReport) -> WindowPart:
    return parse_window_report(
        f"vigie.events.{report.camera_id}", report.SerializeToString(), None, publication_window_s=W, now=T0
    )


async def test_retention_deletes_expired_statistics_after_recording_the_deletion(
    sqlite_store: StatisticsStore,
) -> None:
    await sqlite_store.apply_parts(
        [part(window_report("cam-a", T0 - 30 * DAY)), part(window_report("cam-a", T0))], now=T0
    )
    sink = MemoryAuditSink()
    audit = AuditPublisher("aggregation", sink, settings=QUICK)
    await audit.start()
    try:
        job = RetentionJob(sqlite_store, audit, retention_days=7, clock=lambda: T0 + 3600.0)
        sink.failures = 1_000  # the journal is unreachable: nothing may be deleted unaudited
        assert await job.run_once() == {}
        assert await sqlite_store.camera_window_figures({"cam-a"}, T0 - 30 * DAY)
        sink.failures = 0
        deleted = await job.run_once()
        assert deleted["applied_reports"] == 1
        assert deleted["camera_windows"] == 1
        assert await sqlite_store.camera_window_figures({"cam-a"}, T0 - 30 * DAY) == []
        assert await sqlite_store.camera_window_figures({"cam-a"}, T0)
        assert await job.run_once() == {}  # nothing left to delete, nothing recorded
    finally:
        await audit.close()
    [event] = [e for e in sink.events() if outcome_name(e.outcome) == "success"]
    assert action_name(event.action) == "retention_deletion"
    assert event.actor == "service:aggregation"
    assert "7 days" in event.motive
    assert event.details["rows.applied_reports"] == "1"
    assert event.data_time_range.end.ToSeconds() == T0 - 7 * DAY


async def test_a_camera_over_its_privacy_budget_is_withheld_and_the_ledger_says_why(
    sqlite_store: StatisticsStore,
) -> None:
    settings = AggregationSettings(
        cameras=[CameraSiteConfig(id="cam-a", site="centre"), CameraSiteConfig(id="cam-b", site="centre")],
        noise=NoiseSettings(enabled=True, epsilon_per_window=1.0, budget_epsilon=2.0),
    )
    parts = [
        part(window_report(camera, T0 + i * W, crossings={("l1", 1, 1): 50, ("l1", 2, 3): 40}))
        for i in range(3)
        for camera in ("cam-a", "cam-b")
    ]
    await sqlite_store.apply_parts(parts, now=T0)
    job = ReleaseJob(
        sqlite_store,
        ConfigSiteDirectory(settings.cameras),
        settings,
        noise=SystemNoise(),
        clock=lambda: T0 + 3 * W + 400.0,
    )
    assert await job.run_once() == 3
    ledger, cells, coverage = schema.privacy_budget_ledger, schema.published_cells, schema.published_coverage
    async with sqlite_store.engine.connect() as conn:
        spent = (await conn.execute(select(ledger.c.camera_id, ledger.c.window_start))).all()
        third = T0 + 2 * W
        withheld = (
            await conn.execute(
                select(cells.c.camera_id, cells.c.reason).where(
                    cells.c.period_start == third, cells.c.suppressed.is_(True)
                )
            )
        ).all()
        statuses = (
            await conn.execute(
                select(coverage.c.camera_id, coverage.c.status).where(coverage.c.period_start == third)
            )
        ).all()
        site_total = (
            await conn.execute(
                select(cells.c.value).where(cells.c.period_start == T0, cells.c.camera_id == "")
            )
        ).all()
    # Two windows of 1.0 each fit the budget of 2.0; the third window is refused for both cameras.
    assert sorted(spent) == sorted((c, T0 + i * W) for i in range(2) for c in ("cam-a", "cam-b"))
    assert {reason for _, reason in withheld} == {REASON_BUDGET}
    assert {camera for camera, _ in withheld} == {"cam-a", "cam-b"}
    assert sorted(statuses) == [("cam-a", STATUS_BUDGET), ("cam-b", STATUS_BUDGET)]
    # Published figures are noisy: whole numbers, near the truth but not always equal to it.
    assert all(value == int(value) and value >= 0 for (value,) in site_total)
