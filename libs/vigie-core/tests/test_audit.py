"""The audit publishing helper every service uses: validation, headers, retries, buffer bounds, shutdown,
and (with a real nats-server) the AUDIT stream's de-duplication and an outage of the stream."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from vigie_core.audit import (
    AuditAction,
    AuditEvent,
    AuditOutcome,
    AuditPublisher,
    AuditPublishSettings,
    AuditUnavailableError,
    InvalidAuditEventError,
    MemoryAuditSink,
    action_from_name,
    action_name,
    new_audit_event,
    validate_audit_event,
)
from vigie_core.messaging import connect
from vigie_core.provision import provision_stream
from vigie_core.settings import NatsSettings
from vigie_core.streams import AuditStream, audit_subject
from vigie_embedded.nats import EmbeddedNats

FAST = AuditPublishSettings(
    retry_initial_s=0.005, retry_max_s=0.02, enqueue_timeout_s=0.05, drain_timeout_s=0.5
)
READ = AuditAction.AUDIT_ACTION_DATA_READ


def metric(registry: CollectorRegistry, name: str, labels: dict[str, str] | None = None) -> float:
    return registry.get_sample_value(name, labels or {}) or 0.0


def valid_event(**changes: Any) -> AuditEvent:
    event = new_audit_event(
        "aggregation",
        READ,
        actor="op-42",
        motive="monthly report",
        camera_ids=["north-gate"],
        records=[("statistics", "2026-03")],
        data_start=datetime(2026, 3, 1, tzinfo=UTC),
        data_end=datetime(2026, 4, 1, tzinfo=UTC),
        details={"format": "csv"},
    )
    for field, value in changes.items():
        if isinstance(value, list):
            del getattr(event, field)[:]
            getattr(event, field).extend(value)
        else:
            setattr(event, field, value)
    return event


def test_a_new_event_is_complete_and_valid() -> None:
    event = valid_event()
    assert uuid.UUID(event.event_id).version == 4
    assert event.service == "aggregation"
    assert event.outcome == AuditOutcome.AUDIT_OUTCOME_SUCCESS
    assert event.occurred_at.ToDatetime(tzinfo=UTC) > datetime.now(UTC) - timedelta(seconds=5)
    validate_audit_event(event, service="aggregation")
    assert action_name(READ) == "data_read"
    assert action_from_name("data_read") == READ


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"event_id": "42"}, "event_id"),
        ({"event_id": str(uuid.uuid4()).upper()}, "event_id"),
        ({"service": "agg regation"}, "service"),
        ({"actor": "jane.doe@city.example"}, "actor"),
        ({"actor": ""}, "actor"),
        ({"actor": "op 42"}, "actor"),
        ({"action": 0}, "action"),
        ({"action": 999}, "action"),
        ({"outcome": 0}, "outcome"),
        ({"motive": "   "}, "motive"),
        ({"motive": "x" * 1001}, "motive"),
        ({"camera_ids": ["north gate"]}, "camera_ids"),
        ({"details": {"k": "v" * 2000}}, "details"),
    ],
)
def test_a_bad_field_is_named(changes: dict[str, Any], field: str) -> None:
    event = valid_event()
    for name, value in changes.items():
        if name == "details":
            event.details.update(value)
        elif isinstance(value, list):
            del getattr(event, name)[:]
            getattr(event, name).extend(value)
        else:
            setattr(event, name, value)
    with pytest.raises(InvalidAuditEventError) as caught:
        validate_audit_event(event)
    assert caught.value.field == field


def test_an_event_from_another_service_and_an_inverted_window_are_refused() -> None:
    with pytest.raises(InvalidAuditEventError, match="published as service 'ingest'"):
        validate_audit_event(valid_event(), service="ingest")
    with pytest.raises(InvalidAuditEventError, match="start is after end"):
        new_audit_event(
            "aggregation",
            READ,
            actor="op-1",
            motive="m",
            data_start=datetime(2026, 2, 1, tzinfo=UTC),
            data_end=datetime(2026, 1, 1, tzinfo=UTC),
        )
    with pytest.raises(InvalidAuditEventError, match="timezone"):
        new_audit_event("aggregation", READ, actor="op-1", motive="m", occurred_at=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="known: config_create"):
        action_from_name("peek")


async def test_events_are_published_in_order_with_dedup_id_and_trace_context() -> None:
    sink, registry = MemoryAuditSink(), CollectorRegistry()
    publisher = AuditPublisher("aggregation", sink, settings=FAST, registry=registry)
    await publisher.start()
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("export") as span:
        events = [await publisher.record(READ, actor="op-1", motive=f"read {i}") for i in range(5)]
    await publisher.close()
    assert [m[0] for m in sink.messages] == [audit_subject("aggregation")] * 5
    assert [e.event_id for e in sink.events()] == [e.event_id for e in events]
    headers = sink.messages[0][2]
    assert headers["Nats-Msg-Id"] == events[0].event_id
    assert f"{span.get_span_context().trace_id:032x}" in headers["traceparent"]
    assert metric(registry, "vigie_audit_publisher_published_events_total") == 5


async def test_a_short_outage_loses_nothing_and_is_counted() -> None:
    sink, registry = MemoryAuditSink(), CollectorRegistry()
    sink.failures = 12
    publisher = AuditPublisher("aggregation", sink, settings=FAST, registry=registry)
    await publisher.start()
    events = [await publisher.record(READ, actor="op-1", motive=f"read {i}") for i in range(20)]
    stored = await publisher.record(READ, actor="op-1", motive="confirmed", confirm=True)
    await publisher.close()
    assert [e.event_id for e in sink.events()] == [e.event_id for e in [*events, stored]]
    assert metric(registry, "vigie_audit_publisher_failed_attempts_total") == 12
    assert metric(registry, "vigie_audit_publisher_lost_events_total", {"reason": "shutdown"}) == 0


class StuckSink:
    """NATS that never answers."""

    async def send(self, subject: str, payload: bytes, headers: dict[str, str]) -> None:
        raise ConnectionError("no NATS")


async def test_a_full_buffer_refuses_and_shutdown_counts_what_is_lost() -> None:
    registry = CollectorRegistry()
    settings = FAST.model_copy(update={"buffer_size": 3, "confirm_timeout_s": 0.05})
    publisher = AuditPublisher("aggregation", StuckSink(), settings=settings, registry=registry)
    await publisher.start()
    with pytest.raises(AuditUnavailableError, match="not stored within"):
        await publisher.record(READ, actor="op-1", motive="confirmed", confirm=True)
    for i in range(3):
        await publisher.record(READ, actor="op-1", motive=f"read {i}")
    with pytest.raises(AuditUnavailableError, match="buffer has been full"):
        await publisher.record(READ, actor="op-1", motive="one too many")
    assert metric(registry, "vigie_audit_publisher_lost_events_total", {"reason": "buffer_full"}) == 1
    await publisher.close()
    # The one being retried and the three buffered.
    assert metric(registry, "vigie_audit_publisher_lost_events_total", {"reason": "shutdown"}) == 4
    with pytest.raises(AuditUnavailableError, match="closing"):
        await publisher.record(READ, actor="op-1", motive="after close")


async def test_an_unstarted_publisher_refuses_instead_of_dropping() -> None:
    publisher = AuditPublisher("aggregation", MemoryAuditSink())
    with pytest.raises(AuditUnavailableError, match="not started"):
        await publisher.record(READ, actor="op-1", motive="m")
    with pytest.raises(ValueError, match="service name"):
        AuditPublisher("two words", MemoryAuditSink())


@pytest.mark.integration
@pytest.mark.provision(False)
async def test_events_wait_for_the_stream_and_duplicates_are_dropped(nats_server: EmbeddedNats) -> None:
    from vigie_core.audit import JetStreamAuditSink

    nc = await connect(NatsSettings(url=nats_server.url), "test")
    js = nc.jetstream()
    registry = CollectorRegistry()
    publisher = AuditPublisher("registry", JetStreamAuditSink(js, 0.5), settings=FAST, registry=registry)
    await publisher.start()
    # No AUDIT stream yet (the audit service is not up): the events wait in the buffer.
    events = [await publisher.record(READ, actor="op-1", motive=f"read {i}") for i in range(10)]
    await asyncio.sleep(0.2)
    assert metric(registry, "vigie_audit_publisher_failed_attempts_total") > 0
    await provision_stream(js, AuditStream().config())
    confirmed = await publisher.record(READ, actor="op-1", motive="confirmed", confirm=True)
    # A publisher's retry after a lost acknowledgement: same Nats-Msg-Id, dropped by the stream.
    await publisher.publish(events[3])
    await publisher.close()

    info = await js.stream_info("AUDIT")
    assert info.state.messages == 11
    subscription = await js.pull_subscribe("vigie.audit.*", durable="check", stream="AUDIT")
    received = [AuditEvent.FromString(m.data) for m in await subscription.fetch(20, timeout=2)]
    assert [e.event_id for e in received] == [e.event_id for e in [*events, confirmed]]
    await nc.close()
