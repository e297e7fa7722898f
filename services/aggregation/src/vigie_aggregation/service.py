"""The aggregation service: EVENTS in, disclosure-controlled statistics out (HTTP API and /metrics).

Start-up: open the database and run its migrations (waiting for the database as long as it takes), connect
to NATS, start the audit publisher, mount the statistics API under ``/v1`` of the service's HTTP port
(beside ``/metrics``, ``/healthz`` and ``/readyz``), set up the dead-letter stream, wait for EVENTS (the
anonymiser creates it), then run three loops until SIGTERM: the consumer (stores reports exactly once), the
release job (publishes closed windows and days once EVENTS is drained) and the retention job. A loop's
failure is logged and retried, never fatal. Stopping lets the consumer finish its batch; what is fetched
and not stored is handed back to EVENTS.

A database outage, at start or later, is waited out: readiness ``database`` is red while the database does
not answer (probed every 2 s), the consumer keeps its batch in hand and retries it with back-off, and the
service goes on by itself when the database is back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from nats.js import JetStreamContext

from vigie_aggregation.api.app import statistics_app
from vigie_aggregation.consumer import (
    DURABLE,
    EVENTS_STREAM,
    ReportConsumer,
    deadletter_stream,
    sleep_or_stop,
)
from vigie_aggregation.disclosure.noise import NoiseSource, SystemNoise
from vigie_aggregation.metrics import AggregationMetrics, PublishedFigures, SiteWindow
from vigie_aggregation.release import ReleaseJob
from vigie_aggregation.retention import RetentionJob
from vigie_aggregation.settings import AggregationSettings
from vigie_aggregation.sites import ConfigSiteDirectory, SiteDirectory
from vigie_aggregation.storage.cells import Granularity
from vigie_aggregation.storage.store import StatisticsStore
from vigie_core.audit import AuditAction, AuditUnavailableError, connect_with_audit
from vigie_core.auth import TokenVerifier
from vigie_core.database import DatabaseHealth, DatabaseWaitStoppedError, is_unreachable, watch_database
from vigie_core.lag import start_consumer_lag
from vigie_core.lifecycle import ServiceRuntime
from vigie_core.messaging import stream_guard

__all__ = ["API_PREFIX", "serve"]

logger = logging.getLogger("vigie.aggregation")

API_PREFIX = "/api/statistics/v1"  # the path the chart's Ingress routes to the service
ACTOR = "service:aggregation"


async def restore_published(
    store: StatisticsStore, sites: SiteDirectory, published: PublishedFigures, window_s: int
) -> None:
    """Put each site's latest released window back on /metrics after a restart."""
    for site_id in sites.sites():
        start = await store.released_until(site_id, Granularity.WINDOW)
        if start is None:
            continue
        cells, coverage = await store.released_window(site_id, start)
        published.update(SiteWindow(site_id, start, window_s, cells, coverage))


async def _every(
    name: str,
    interval_s: float,
    stop: asyncio.Event,
    step: Callable[[], Awaitable[object]],
    database: DatabaseHealth,
) -> None:
    while not stop.is_set():
        try:
            await step()
        except Exception as error:  # a loop must outlive any one failure; the next run retries
            if is_unreachable(error):
                database.failed(error)
                logger.warning("%s: the database is unreachable; retrying in %.0fs", name, interval_s)
            else:
                logger.exception("%s failed; retrying in %.0fs", name, interval_s)
        await sleep_or_stop(stop, interval_s)


async def serve(
    runtime: ServiceRuntime,
    *,
    noise: NoiseSource | None = None,
    clock: Callable[[], float] = time.time,
    sites: SiteDirectory | None = None,
) -> None:
    """The service's body: run until asked to stop."""
    settings = runtime.settings
    assert isinstance(settings, AggregationSettings)
    stop = runtime.stop_requested
    sites = sites or ConfigSiteDirectory(settings.cameras)

    store = await StatisticsStore.open(
        settings.database_url.get_secret_value(), schema_name=settings.database_schema, run_migrations=False
    )
    runtime.exit_stack.push_async_callback(store.close)
    database = watch_database(runtime, store.engine)
    metrics = AggregationMetrics(runtime.registry)
    published = PublishedFigures()
    runtime.registry.register(published)
    try:
        await database.retry(store.migrate, stop=stop, what="migrating the statistics database")
        await database.retry(
            lambda: restore_published(store, sites, published, settings.disclosure.window_s),
            stop=stop,
            what="restoring the published figures",
        )
    except DatabaseWaitStoppedError:
        return

    nc, audit = await connect_with_audit(runtime, settings.nats, settings.audit, "vigie-aggregation")
    js: JetStreamContext = nc.jetstream()
    runtime.app.mount(
        API_PREFIX,
        statistics_app(
            engine=store.engine,
            sites=sites,
            audit=audit,
            verifier=TokenVerifier.from_settings(settings.auth),
            settings=settings,
            metrics=metrics,
        ),
    )
    # The provisioner creates the dead letters, which the aggregation writes, and EVENTS, which it reads
    # (ReportConsumer.wait_for_stream), both in the aggregation's account: checked at start and then
    # continuously, above all that they copy from nowhere.
    guard = stream_guard(runtime, audit)
    await guard.bind(js, deadletter_stream(settings.deadletter_max_age_s))

    consumer = ReportConsumer(
        js,
        store,
        publication_window_s=settings.disclosure.window_s,
        site_of=sites.site_of,
        metrics=metrics,
        tracer=runtime.tracer,
        stop=stop,
        fetch_batch=settings.fetch_batch,
        fetch_timeout_s=settings.fetch_timeout_s,
        ack_wait_s=settings.ack_wait_s,
        clock=clock,
        database=database,
    )
    runtime.readiness.add("nats", lambda: None if nc.is_connected else "not connected to NATS")
    runtime.readiness.add("storage", lambda: consumer.storage_problem)
    if not await consumer.wait_for_stream(guard):
        return
    start_consumer_lag(runtime, js, EVENTS_STREAM, DURABLE)

    async def expose(window: SiteWindow) -> None:
        """Put a released window on /metrics: an export of statistics to the monitoring, audited first."""
        try:
            await audit.record(
                AuditAction.AUDIT_ACTION_DATA_EXPORT,
                actor=ACTOR,
                motive="latest released window published on /metrics for the dashboards",
                camera_ids=[row.camera_id for row in window.coverage],
                records=[("statistics", f"window:{window.site_id}:{window.period_start}")],
                data_start=datetime.fromtimestamp(window.period_start, UTC),
                data_end=datetime.fromtimestamp(window.period_start + window.period_seconds, UTC),
                details={"recipient": "prometheus", "site": window.site_id},
            )
        except AuditUnavailableError as error:
            logger.warning(
                "site %s: window not put on /metrics, it cannot be audited now (%s)", window.site_id, error
            )
            return
        published.update(window)

    releases = ReleaseJob(
        store,
        sites,
        settings,
        noise=noise or SystemNoise(),
        metrics=metrics,
        clock=clock,
        on_window=expose,
    )
    retention = RetentionJob(
        store, audit, retention_days=settings.retention_days, metrics=metrics, clock=clock
    )

    async def release_when_drained() -> None:
        if await consumer.caught_up():
            await releases.run_once()

    runtime.readiness.mark_started()
    logger.info(
        "aggregating %d camera(s) in %d site(s); statistics API on %s%s",
        sum(len(c) for c in sites.sites().values()),
        len(sites.sites()),
        runtime.http_url,
        API_PREFIX,
    )
    await asyncio.gather(
        consumer.run(),
        _every("release", settings.release_check_interval_s, stop, release_when_drained, database),
        _every("retention", settings.retention_check_interval_s, stop, retention.run_once, database),
    )
