"""Aggregation benchmark: reports per second from NATS to the database, release time, API latency.

    .venv/bin/python bench/aggregation.py                       # SQLite and PostgreSQL (if reachable)
    .venv/bin/python bench/aggregation.py --database sqlite --reports 5000 --days 7

1. Ingest: ``--reports`` window reports (two lines, a zone and dwell buckets each, like ``random_report``)
   are published to EVENTS on a private nats-server, then the aggregation's consumer (the service's own
   ReportConsumer and store, batches of ``--batch``) stores them; reports/s = reports / time to store all.
2. Release: one day of one site (``--site-cameras`` cameras) released window by window, then the day, by
   the service's ReleaseJob on the same database: time per window release.
3. API: a realistic released table (``--cameras`` cameras in sites of ``--site-cameras``, ``--days`` days of
   20-minute windows, every crossing view, a third of the cells suppressed) is bulk-loaded, then
   ``--queries`` requests of five kinds go through the statistics API in process (ASGI: routing, token
   check, query, audit record, JSON or CSV encoding; no socket); p50 and p99 per kind.

PostgreSQL: ``VIGIE_BENCH_POSTGRES_URL`` (default postgresql://postgres@127.0.0.1:5432/test); each run
uses a schema of its own and drops it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sqlite3
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import nats
from nats.js.errors import NotFoundError
from opentelemetry import trace
from prometheus_client import CollectorRegistry

from vigie_aggregation.api.app import statistics_app
from vigie_aggregation.consumer import ReportConsumer
from vigie_aggregation.disclosure.noise import SystemNoise
from vigie_aggregation.metrics import AggregationMetrics
from vigie_aggregation.release import ReleaseJob
from vigie_aggregation.settings import AggregationSettings, CameraSiteConfig
from vigie_aggregation.sites import ConfigSiteDirectory
from vigie_aggregation.storage.store import StatisticsStore
from vigie_aggregation.synthetic import T0, random_report
from vigie_core.audit import AuditPublisher, MemoryAuditSink
from vigie_core.auth import AuthSettings, LocalTokenIssuer, TokenVerifier
from vigie_core.messaging import ensure_stream
from vigie_core.streams import EventsStream, events_subject
from vigie_embedded.nats import EmbeddedNats

W = 1200
DAY = 86_400
POSTGRES = os.environ.get("VIGIE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@dataclass(frozen=True)
class Database:
    kind: str
    url: str  # SQLAlchemy URL
    schema: str | None
    sqlite_path: Path | None = None


@asynccontextmanager
async def database(kind: str) -> AsyncIterator[Database]:
    if kind == "sqlite":
        folder = Path(tempfile.mkdtemp(prefix="vigie-bench-"))
        try:
            path = folder / "statistics.sqlite3"
            yield Database(kind, f"sqlite+aiosqlite:///{path}", None, path)
        finally:
            shutil.rmtree(folder)
        return
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    connection = await asyncpg.connect(POSTGRES)
    await connection.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield Database(kind, POSTGRES.replace("postgresql://", "postgresql+asyncpg://"), schema)
    finally:
        await connection.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await connection.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# -- 1. ingest ---------------------------------------------------------------------------------------


async def bench_ingest(db: Database, reports: int, cameras: int, batch: int) -> dict[str, float]:
    rng = random.Random(1)
    names = [f"cam-{i:03d}" for i in range(cameras)]
    messages = [random_report(names[i % cameras], T0 + (i // cameras) * W, rng) for i in range(reports)]
    with EmbeddedNats() as server:
        client = await nats.connect(server.url)
        js = client.jetstream()
        await ensure_stream(js, EventsStream().config())
        for start in range(0, len(messages), 500):
            await asyncio.gather(
                *(
                    js.publish(
                        events_subject(m.camera_id),
                        m.SerializeToString(),
                        headers={"Nats-Msg-Id": m.report_id},
                    )
                    for m in messages[start : start + 500]
                )
            )
        store = await StatisticsStore.open(db.url, schema_name=db.schema)
        stop = asyncio.Event()
        consumer = ReportConsumer(
            js,
            store,
            publication_window_s=W,
            site_of=lambda _: None,
            metrics=AggregationMetrics(CollectorRegistry()),
            tracer=trace.NoOpTracer(),
            stop=stop,
            fetch_batch=batch,
            fetch_timeout_s=0.2,
        )
        started = time.perf_counter()
        task = asyncio.create_task(consumer.run())
        while True:
            try:
                info = await js.consumer_info("EVENTS", "aggregation")
            except NotFoundError:  # the consumer is not created yet
                await asyncio.sleep(0.02)
                continue
            if info.num_pending == 0 and info.num_ack_pending == 0 and info.delivered.stream_seq >= reports:
                break
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - started
        stop.set()
        await task
        await store.close()
        await client.drain()
    return {"reports": reports, "seconds": elapsed, "reports_per_s": reports / elapsed}


# -- 2. release ---------------------------------------------------------------------------------------


async def bench_release(db: Database, site_cameras: int) -> dict[str, float]:
    rng = random.Random(2)
    names = [f"cam-{i:03d}" for i in range(site_cameras)]
    settings = AggregationSettings(cameras=[CameraSiteConfig(id=c, site="site-0") for c in names])
    store = await StatisticsStore.open(db.url, schema_name=db.schema)
    from vigie_aggregation.reports import parse_window_report

    parts = [
        parse_window_report(
            f"vigie.events.{c}",
            random_report(c, T0 + i * W, rng).SerializeToString(),
            None,
            publication_window_s=W,
            now=T0,
        )
        for i in range(DAY // W)
        for c in names
    ]
    await store.apply_parts(parts, now=T0)
    job = ReleaseJob(
        store,
        ConfigSiteDirectory(settings.cameras),
        settings,
        noise=SystemNoise(),
        clock=lambda: T0 + DAY + 600.0,
    )
    started = time.perf_counter()
    released = await job.run_once()
    elapsed = time.perf_counter() - started
    await store.close()
    return {"releases": released, "seconds": elapsed, "ms_per_release": 1000 * elapsed / released}


# -- 3. API -------------------------------------------------------------------------------------------

_PUBLISHED_COLUMNS = (
    "family",
    "granularity",
    "site_id",
    "level",
    "period_start",
    "camera_id",
    "item_id",
    "direction",
    "object_class",
    "dwell_bucket",
    "value",
    "max_objects",
    "suppressed",
    "reason",
)
_COVERAGE_COLUMNS = (
    "granularity",
    "site_id",
    "period_start",
    "camera_id",
    "period_seconds",
    "covered_seconds",
    "frames",
    "geometry_versions",
    "status",
)


def published_rows(cameras: int, site_cameras: int, days: int) -> Iterator[tuple[Any, ...]]:
    """Every crossing view of every window and day: 2 lines a camera, 2 directions, 6 classes."""
    rng = random.Random(3)
    for day in range(days):
        for granularity, starts in (
            (0, range(T0 + day * DAY, T0 + (day + 1) * DAY, W)),
            (1, [T0 + day * DAY]),
        ):
            for start in starts:
                for site in range(cameras // site_cameras):
                    site_id = f"site-{site}"
                    for c in range(site * site_cameras, (site + 1) * site_cameras):
                        camera = f"cam-{c:03d}"
                        for line in ("l1", "l2"):
                            for direction in (0, 1, 2):
                                for object_class in range(7):
                                    hidden = rng.random() < 0.33
                                    yield (
                                        1,
                                        granularity,
                                        site_id,
                                        2,
                                        start,
                                        camera,
                                        line,
                                        direction,
                                        object_class,
                                        "",
                                        float(rng.randint(0, 60)),
                                        None,
                                        hidden,
                                        "disclosure_control" if hidden else None,
                                    )
                        for object_class in range(7):
                            yield (
                                1,
                                granularity,
                                site_id,
                                1,
                                start,
                                camera,
                                "",
                                0,
                                object_class,
                                "",
                                float(rng.randint(0, 200)),
                                None,
                                False,
                                None,
                            )
                    for object_class in range(7):
                        yield (
                            1,
                            granularity,
                            site_id,
                            0,
                            start,
                            "",
                            "",
                            0,
                            object_class,
                            "",
                            float(rng.randint(0, 900)),
                            None,
                            False,
                            None,
                        )


def coverage_rows(cameras: int, site_cameras: int, days: int) -> Iterator[tuple[Any, ...]]:
    for day in range(days):
        for granularity, starts, seconds in (
            (0, range(T0 + day * DAY, T0 + (day + 1) * DAY, W), W),
            (1, [T0 + day * DAY], DAY),
        ):
            for start in starts:
                for c in range(cameras):
                    yield (
                        granularity,
                        f"site-{c // site_cameras}",
                        start,
                        f"cam-{c:03d}",
                        seconds,
                        seconds * 0.97,
                        5000,
                        "g1",
                        None,
                    )


async def load_table(db: Database, cameras: int, site_cameras: int, days: int) -> int:
    store = await StatisticsStore.open(db.url, schema_name=db.schema)  # runs the migrations
    await store.close()
    rows = 0
    if db.sqlite_path is not None:
        connection = sqlite3.connect(db.sqlite_path)
        marks = ",".join("?" * len(_PUBLISHED_COLUMNS))
        with connection:
            cursor = connection.executemany(
                f"INSERT INTO published_cells ({','.join(_PUBLISHED_COLUMNS)}) VALUES ({marks})",
                published_rows(cameras, site_cameras, days),
            )
            rows = cursor.rowcount
            marks = ",".join("?" * len(_COVERAGE_COLUMNS))
            connection.executemany(
                f"INSERT INTO published_coverage ({','.join(_COVERAGE_COLUMNS)}) VALUES ({marks})",
                coverage_rows(cameras, site_cameras, days),
            )
        connection.execute("ANALYZE")
        connection.close()
        return rows
    connection = await asyncpg.connect(POSTGRES, server_settings={"search_path": db.schema or "public"})
    published = list(published_rows(cameras, site_cameras, days))
    await connection.copy_records_to_table("published_cells", records=published, columns=_PUBLISHED_COLUMNS)
    await connection.copy_records_to_table(
        "published_coverage",
        records=list(coverage_rows(cameras, site_cameras, days)),
        columns=_COVERAGE_COLUMNS,
    )
    await connection.execute("ANALYZE")
    await connection.close()
    return len(published)


def iso(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


async def bench_api(db: Database, cameras: int, site_cameras: int, days: int, queries: int) -> dict[str, Any]:
    started = time.perf_counter()
    rows = await load_table(db, cameras, site_cameras, days)
    load_seconds = time.perf_counter() - started
    names = [f"cam-{i:03d}" for i in range(cameras)]
    settings = AggregationSettings(
        cameras=[CameraSiteConfig(id=c, site=f"site-{i // site_cameras}") for i, c in enumerate(names)]
    )
    store = await StatisticsStore.open(db.url, schema_name=db.schema, run_migrations=False)
    issuer = LocalTokenIssuer.generate()
    audit = AuditPublisher("aggregation", MemoryAuditSink())
    await audit.start()
    app = statistics_app(
        engine=store.engine,
        sites=ConfigSiteDirectory(settings.cameras),
        audit=audit,
        verifier=TokenVerifier(AuthSettings(), local_issuer=issuer),
        settings=settings,
    )
    token = issuer.mint("bench", ["stats:read"], ttl_s=3600)
    rng = random.Random(4)

    def query(kind: str) -> dict[str, Any]:
        day = T0 + rng.randrange(days) * DAY
        camera = rng.choice(names)
        site = f"site-{rng.randrange(cameras // site_cameras)}"
        common = {"motive": "benchmark"}
        if kind == "camera day, every line, direction and class, by window (page of 1000)":
            return {
                **common,
                "camera": camera,
                "from": iso(day),
                "to": iso(day + DAY),
                "direction": "each",
                "object_class": "each",
                "limit": 1000,
            }
        if kind == "site totals of a day by window":
            return {**common, "site": site, "level": "site", "from": iso(day), "to": iso(day + DAY)}
        if kind == "site, 30 days by day, each class":
            return {
                **common,
                "site": site,
                "level": "site",
                "granularity": "day",
                "object_class": "each",
                "from": iso(T0),
                "to": iso(T0 + days * DAY),
            }
        if kind == "camera persons, 7 days by window":
            start = T0 + rng.randrange(max(1, days - 7)) * DAY
            return {
                **common,
                "camera": camera,
                "level": "camera",
                "object_class": "person",
                "from": iso(start),
                "to": iso(start + 7 * DAY),
                "limit": 1000,
            }
        return {
            **common,
            "camera": camera,
            "from": iso(day),
            "to": iso(day + DAY),
            "format": "csv",
            "limit": 1000,
        }

    kinds = [
        "camera day, every line, direction and class, by window (page of 1000)",
        "site totals of a day by window",
        "site, 30 days by day, each class",
        "camera persons, 7 days by window",
        "CSV export of a camera day (page of 1000)",
    ]
    latencies: dict[str, list[float]] = {kind: [] for kind in kinds}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as client:
        headers = {"Authorization": f"Bearer {token}"}
        for kind in kinds:  # warm-up
            (await client.get("/crossings", params=query(kind), headers=headers)).raise_for_status()
        for i in range(queries):
            kind = kinds[i % len(kinds)]
            began = time.perf_counter()
            response = await client.get("/crossings", params=query(kind), headers=headers)
            latencies[kind].append(time.perf_counter() - began)
            response.raise_for_status()
    await audit.close()
    await store.close()
    every = [v for values in latencies.values() for v in values]
    return {
        "rows": rows,
        "load_seconds": load_seconds,
        "all": (percentile(every, 0.5) * 1000, percentile(every, 0.99) * 1000),
        **{kind: (percentile(v, 0.5) * 1000, percentile(v, 0.99) * 1000) for kind, v in latencies.items()},
    }


async def postgres_reachable() -> bool:
    try:
        connection = await asyncpg.connect(POSTGRES, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await connection.close()
    return True


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--reports", type=int, default=20_000, help="reports for the ingest benchmark")
    parser.add_argument("--batch", type=int, default=256, help="reports stored per transaction")
    parser.add_argument("--cameras", type=int, default=50)
    parser.add_argument("--site-cameras", type=int, default=5, help="cameras per site")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument(
        "--parts", default="ingest,release,api", help="which benchmarks to run, comma-separated"
    )
    args = parser.parse_args()
    kinds = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    if "postgresql" in kinds and not await postgres_reachable():
        print(f"PostgreSQL at {POSTGRES} is unreachable: skipped")
        kinds.remove("postgresql")
    print(
        f"cpus={os.cpu_count()} reports={args.reports} batch={args.batch} cameras={args.cameras} "
        f"site_cameras={args.site_cameras} days={args.days} queries={args.queries}"
    )
    for kind in kinds:
        parts = set(args.parts.split(","))
        if "ingest" in parts:
            async with database(kind) as db:
                ingest = await bench_ingest(db, args.reports, args.cameras, args.batch)
            print(
                f"[{kind}] ingest: {ingest['reports']} reports in {ingest['seconds']:.2f} s = "
                f"{ingest['reports_per_s']:.0f} reports/s (NATS -> database, exactly once)"
            )
        if "release" in parts:
            async with database(kind) as db:
                release = await bench_release(db, args.site_cameras)
            print(
                f"[{kind}] release: {release['releases']} releases (a day, {args.site_cameras} cameras) in "
                f"{release['seconds']:.1f} s = {release['ms_per_release']:.0f} ms per release"
            )
        if "api" in parts:
            async with database(kind) as db:
                api = await bench_api(db, args.cameras, args.site_cameras, args.days, args.queries)
            print(
                f"[{kind}] API on {api['rows']:,} published cells (loaded in {api['load_seconds']:.0f} s): "
                f"p50 {api['all'][0]:.1f} ms, p99 {api['all'][1]:.1f} ms over {args.queries} requests"
            )
            for name, value in api.items():
                if isinstance(value, tuple) and name != "all":
                    print(f"    {name}: p50 {value[0]:.1f} ms, p99 {value[1]:.1f} ms")


if __name__ == "__main__":
    asyncio.run(main())
