"""The service with a real nats-server and a real database (SQLite, and PostgreSQL where there is one):
reports published twice are counted once, a restart mid-stream loses and doubles nothing, malformed
reports go to the dead-letter subject while the service carries on, and closed windows get published."""

from __future__ import annotations

import asyncio
import base64
import collections
import dataclasses
import functools
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig
from opentelemetry import trace
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from vigie_aggregation.consumer import DEADLETTER_STREAM, DEADLETTER_SUBJECT, DURABLE, ReportConsumer
from vigie_aggregation.metrics import AggregationMetrics
from vigie_aggregation.service import API_PREFIX, serve
from vigie_aggregation.settings import AggregationSettings, CameraSiteConfig, DisclosureSettings
from vigie_aggregation.storage import schema
from vigie_aggregation.storage.store import StatisticsStore
from vigie_aggregation.synthetic import T0, random_report, window_report
from vigie_core.audit import AuditPublishSettings
from vigie_core.auth import AuthSettings, LocalTokenIssuer
from vigie_core.settings import NatsSettings
from vigie_core.streams import events_subject
from vigie_embedded.nats import EmbeddedNats
from vigie_embedded.testing import offline_docs_problems, running_service
from vigie_proto.v1.audit_pb2 import AuditEvent
from vigie_proto.v1.events_pb2 import WindowReport

pytestmark = pytest.mark.integration

W = 1200
CAMERAS = ("cam-a", "cam-b", "cam-c")
# A test-only Ed25519 key (32 bytes, base64): tokens minted with it are accepted by the service.
KEY = base64.b64encode(bytes(range(32))).decode()


def make_settings(nats_url: str, database: Any, **changes: Any) -> AggregationSettings:
    return AggregationSettings(
        nats=NatsSettings(url=nats_url),
        database_url=database.url,
        database_schema=database.schema,
        cameras=[CameraSiteConfig(id=c, site="centre") for c in CAMERAS],
        disclosure=DisclosureSettings(threshold=5, release_delay_s=60),
        release_check_interval_s=0.1,
        fetch_timeout_s=0.1,
        fetch_batch=16,
        auth=AuthSettings(local_key=KEY),
        audit=AuditPublishSettings(drain_timeout_s=2, confirm_timeout_s=5),
        **changes,
    )


@pytest.fixture
async def js(nats_server: EmbeddedNats) -> AsyncIterator[JetStreamContext]:
    """A client of the server, where EVENTS and AUDIT are provisioned."""
    client: Client = await nats.connect(nats_server.url)
    stream = client.jetstream()
    try:
        yield stream
    finally:
        await client.drain()


async def publish(js: JetStreamContext, report: WindowReport, *, msg_id: bool = True) -> None:
    headers = {"Nats-Msg-Id": report.report_id} if msg_id else None
    await js.publish(events_subject(report.camera_id), report.SerializeToString(), headers=headers)


async def wait_for(condition: Callable[[], Any], timeout_s: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        if await condition():
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def crossing_totals(settings: AggregationSettings) -> dict[tuple[str, int, str, int, int], int]:
    store = await StatisticsStore.open(
        settings.database_url.get_secret_value(), schema_name=settings.database_schema, run_migrations=False
    )
    try:
        c = schema.crossing_buckets
        async with store.engine.connect() as conn:
            rows = await conn.execute(
                select(
                    c.c.camera_id, c.c.window_start, c.c.line_id, c.c.direction, c.c.object_class, c.c.count
                )
            )
            return {(r[0], int(r[1]), r[2], int(r[3]), int(r[4])): int(r[5]) for r in rows}
    finally:
        await store.close()


async def applied(settings: AggregationSettings) -> int:
    store = await StatisticsStore.open(
        settings.database_url.get_secret_value(), schema_name=settings.database_schema, run_migrations=False
    )
    try:
        async with store.engine.connect() as conn:
            return int(
                (await conn.execute(select(func.count()).select_from(schema.applied_reports))).scalar_one()
            )
    finally:
        await store.close()


def expected_totals(reports: list[WindowReport]) -> dict[tuple[str, int, str, int, int], int]:
    totals: collections.Counter[tuple[str, int, str, int, int]] = collections.Counter()
    for report in reports:
        for c in report.crossings:
            totals[
                (report.camera_id, report.window_start.seconds, c.line_id, c.direction, c.object_class)
            ] += c.count
    return dict(totals)


async def test_reports_published_twice_are_counted_once_and_a_restart_loses_nothing(
    nats_server: EmbeddedNats, js: JetStreamContext, database: Any
) -> None:
    rng = random.Random(3)
    settings = make_settings(nats_server.url, database)
    body = functools.partial(serve, clock=lambda: float(T0))
    first = [random_report(camera, T0 + i * W, rng) for i in range(24) for camera in CAMERAS]
    for report in first:
        await publish(js, report)
    async with running_service("aggregation", settings, body):
        # Stop mid-stream: as soon as some batches are stored, well before all of them.
        await wait_for(lambda: _at_least(settings, 16))
    stored_at_stop = await applied(settings)
    # Wherever the stop landed (usually mid-stream), the second run must end with every report once.
    assert 16 <= stored_at_stop <= len(first)

    second = [random_report(camera, T0 + (24 + i) * W, rng) for i in range(6) for camera in CAMERAS]
    for report in second:
        await publish(js, report)
    for report in first[:10]:
        await publish(js, report)  # same Nats-Msg-Id: JetStream drops it
    for report in first[10:20] + second[:5]:
        await publish(js, report, msg_id=False)  # a copy JetStream cannot recognise: the database does
    async with running_service("aggregation", settings, body):
        await wait_for(lambda: _at_least(settings, len(first) + len(second)))
        await asyncio.sleep(0.5)  # let the copies arrive too
    assert await applied(settings) == len(first) + len(second)
    assert await crossing_totals(settings) == expected_totals(first + second)


async def _at_least(settings: AggregationSettings, n: int) -> bool:
    try:
        return await applied(settings) >= n
    except Exception:  # the tables may not exist yet
        return False


def sample(text: str, name: str, **labels: str) -> float | None:
    """One sample of a Prometheus exposition, or None."""
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and all(found.labels.get(k) == v for k, v in labels.items()):
                return float(found.value)
    return None


@dataclasses.dataclass(frozen=True)
class SqliteFile:
    url: str
    schema: str | None = None


async def test_a_malformed_report_is_set_aside_and_the_service_carries_on(
    nats_server: EmbeddedNats, js: JetStreamContext, tmp_path: Path
) -> None:
    settings = make_settings(nats_server.url, SqliteFile(f"sqlite+aiosqlite:///{tmp_path}/s.sqlite3"))
    wrong_subject = window_report("cam-a", T0)
    unknown_line = window_report("cam-b", T0, crossings={("nowhere", 1, 1): 3})
    good = window_report("cam-c", T0, crossings={("l1", 1, 1): 12})
    async with running_service(
        "aggregation", settings, functools.partial(serve, clock=lambda: float(T0))
    ) as runtime:
        await js.publish(events_subject("cam-a"), b"\xff\xfe not a protobuf")
        await js.publish(events_subject("cam-b"), wrong_subject.SerializeToString())
        await publish(js, unknown_line)
        await publish(js, good)
        await wait_for(lambda: _at_least(settings, 1))
        async with httpx.AsyncClient() as http:
            metrics = (await http.get(f"{runtime.http_url}/metrics")).text
        info = await js.stream_info(DEADLETTER_STREAM)
        assert info.state.messages == 3
        fields = []
        for sequence in (1, 2, 3):
            message = await js.get_msg(DEADLETTER_STREAM, sequence)
            assert message.subject == DEADLETTER_SUBJECT
            assert message.headers is not None
            fields.append(message.headers["Vigie-Field"])
            assert message.headers["Vigie-Reason"]
        assert fields == ["message", "camera_id", "crossings[0].line_id"]
        assert sample(metrics, "vigie_aggregation_reports_deadlettered_total", field="crossings") == 1
    assert await crossing_totals(settings) == {("cam-c", T0, "l1", 1, 1): 12}


async def test_closed_windows_are_published_on_the_api_and_metrics_and_each_read_is_audited(
    nats_server: EmbeddedNats, js: JetStreamContext, tmp_path: Path
) -> None:
    settings = make_settings(nats_server.url, SqliteFile(f"sqlite+aiosqlite:///{tmp_path}/s.sqlite3"))
    for i in range(4):
        for camera in CAMERAS:
            await publish(
                js, window_report(camera, T0 + i * W, crossings={("l1", 1, 1): 20 + i, ("l1", 2, 5): 1})
            )
    clock = [float(T0 + 3 * W + 100)]  # windows 0 to 2 are closed and past the release delay; 3 is not
    token = LocalTokenIssuer.from_settings(settings.auth).mint("operator-7", ["stats:read"])
    async with running_service(
        "aggregation", settings, functools.partial(serve, clock=lambda: clock[0])
    ) as runtime:
        api = f"{runtime.http_url}{API_PREFIX}"
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http:

            async def released() -> bool:
                text = (await http.get(f"{runtime.http_url}/metrics")).text
                return sample(text, "vigie_published_window_start_seconds", site="centre") == T0 + 2 * W

            await wait_for(released)
            assert await offline_docs_problems(http, api) == []
            response = await http.get(
                f"{api}/crossings",
                params={
                    "site": "centre",
                    "level": "site",
                    "from": "2023-11-15T00:00:00Z",
                    "to": "2023-11-16T00:00:00+00:00",
                    "motive": "monthly mobility report",
                },
            )
            metrics = (await http.get(f"{runtime.http_url}/metrics")).text
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert [i["period_start"] for i in items] == [
        "2023-11-15T00:00:00Z",
        "2023-11-15T00:20:00Z",
        "2023-11-15T00:40:00Z",
    ]
    assert all(i["count"] == 3 * (20 + n) + 3 or i["suppressed"] for n, i in enumerate(items))
    assert all(i["coverage"]["ratio"] == 1.0 for i in items)
    assert sample(metrics, "vigie_published_site_crossings", site="centre", object_class="person") == 3 * 22
    assert sample(metrics, "vigie_published_coverage_ratio", site="centre", camera="cam-a") == 1.0
    # The bus crossings (1 per camera, 3 in the site) are below the threshold of 5: never published.
    assert sample(metrics, "vigie_published_site_crossings", site="centre", object_class="bus") is None
    bus = {"camera": "cam-a", "direction": "right_to_left", "object_class": "bus"}
    assert sample(metrics, "vigie_published_line_crossings", **bus) is None
    info = await js.stream_info("AUDIT")
    events = [
        AuditEvent.FromString((await js.get_msg("AUDIT", n)).data)
        for n in range(info.state.first_seq, info.state.last_seq + 1)
    ]
    exports = [e for e in events if e.actor == "service:aggregation"]
    # Each window put on /metrics is an export to the monitoring, recorded once.
    assert [r.id for e in exports for r in e.records] == [f"window:centre:{T0 + i * W}" for i in range(3)]
    event = events[-1]
    assert (event.actor, event.motive, sorted(event.camera_ids)) == (
        "operator-7",
        "monthly mobility report",
        list(CAMERAS),
    )


async def test_reports_stored_but_not_acknowledged_before_a_crash_are_not_counted_again(
    nats_server: EmbeddedNats, js: JetStreamContext, database: Any
) -> None:
    """The sharpest restart: the batch is committed, then the process dies before acknowledging it."""
    store = await StatisticsStore.open(database.url, schema_name=database.schema)
    reports = [
        window_report(c, T0 + i * W, crossings={("l1", 1, 1): 2 + i}) for i in range(5) for c in CAMERAS
    ]
    for report in reports:
        await publish(js, report)
    stop = asyncio.Event()

    def consumer() -> ReportConsumer:
        return ReportConsumer(
            js,
            store,
            publication_window_s=W,
            site_of=lambda _: "centre",
            metrics=AggregationMetrics(CollectorRegistry()),
            tracer=trace.NoOpTracer(),
            stop=stop,
            fetch_batch=100,
            ack_wait_s=1.0,
        )

    async def no_ack() -> None:  # the process died before this reached the server
        return None

    try:
        subscription = await js.pull_subscribe(
            "vigie.events.*",
            durable=DURABLE,
            stream="EVENTS",
            config=ConsumerConfig(durable_name=DURABLE, ack_policy=AckPolicy.EXPLICIT, ack_wait=1.0),
        )
        messages = await subscription.fetch(100, timeout=5)
        assert len(messages) == len(reports)
        for message in messages:
            message.ack = no_ack  # type: ignore[method-assign]
        first = await consumer().process(messages)
        assert first is not None
        assert len(first.applied) == len(reports)
        redelivered: list[Any] = []
        while len(redelivered) < len(reports):  # after ack_wait, JetStream delivers them again
            redelivered += await subscription.fetch(100, timeout=5)
        assert all(m.metadata.num_delivered == 2 for m in redelivered)
        second = await consumer().process(redelivered)
        assert second is not None
        assert (second.applied, len(second.duplicates)) == ([], len(reports))
        [figures] = await store.camera_window_figures({"cam-a"}, T0 + 4 * W)
        assert figures.crossings == {("l1", 1, 1): 6}
        await subscription.unsubscribe()
    finally:
        await store.close()
