"""What every service records the same way through vigie_core.audit: its configuration (a digest without
secrets), repeated automatic events (throttled), and the permission violations the NATS server reports on
its connection, the latter against a real secured nats-server with the platform's permissions."""

import asyncio
from typing import Any

import pytest
from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, SecretStr

from vigie_core.audit import (
    AuditAction,
    AuditEvent,
    AuditOutcome,
    AuditPublisher,
    AuditPublishSettings,
    AuditUnavailableError,
    MemoryAuditSink,
    connect_with_audit,
    record_configuration,
    redact_url,
    service_actor,
    settings_digest,
)
from vigie_core.lifecycle import service_runtime
from vigie_core.messaging import PermissionViolation, permission_violation
from vigie_core.settings import NatsSettings, ServiceSettings
from vigie_embedded.nats import EmbeddedNats

FAST = AuditPublishSettings(
    retry_initial_s=0.005, retry_max_s=0.02, enqueue_timeout_s=0.05, drain_timeout_s=0.5
)
VIOLATION = AuditAction.AUDIT_ACTION_PERMISSION_VIOLATION


# -- what nats-py reports -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            'nats: permissions violation for publish to "vigie.tracks.cam-1"',
            PermissionViolation("publish", "vigie.tracks.cam-1"),
        ),
        (
            "nats: 'Permissions Violation for Subscription to \"vigie.frames.>\"'",
            PermissionViolation("subscription", "vigie.frames.>"),
        ),
        (
            'nats: permissions violation for subscription to "a.b" using queue "workers"',
            PermissionViolation("subscription", "a.b", "workers"),
        ),
        ("nats: slow consumer, messages dropped on connection 1", None),
        ("nats: authorization violation", None),
    ],
)
def test_permission_violations_are_told_from_other_errors(
    error: str, expected: PermissionViolation | None
) -> None:
    assert permission_violation(Exception(error)) == expected


# -- configuration digest -----------------------------------------------------------------------------


class Camera(BaseModel):
    id: str
    url: str


class Settings(BaseModel):
    cameras: list[Camera]
    nats: NatsSettings
    fps: float = 5.0


def settings(**changes: Any) -> Settings:
    base: dict[str, Any] = {
        "cameras": [Camera(id="gare", url="rtsp://admin:s3cret@10.0.0.7:554/stream1")],
        "nats": NatsSettings(url="nats://vigie:natspw@nats:4222", password=SecretStr("hunter2")),
    }
    return Settings(**(base | changes))


def test_the_digest_leaves_secrets_out_and_changes_with_anything_else() -> None:
    digest = settings_digest(settings())
    assert len(digest) == 64
    assert set(digest) <= set("0123456789abcdef")
    assert settings_digest(settings()) == digest, "deterministic"
    # Passwords (in URLs or SecretStr) do not count: changing only them keeps the digest.
    same = settings(
        cameras=[Camera(id="gare", url="rtsp://admin:other@10.0.0.7:554/stream1")],
        nats=NatsSettings(url="nats://vigie:changed@nats:4222", password=SecretStr("changed")),
    )
    cluster = settings(nats=NatsSettings(url="nats://a:pw1@n1:4222,nats://b:pw2@n2:4222"))
    assert settings_digest(cluster) == settings_digest(
        settings(nats=NatsSettings(url="nats://a:other@n1:4222,nats://b:other@n2:4222"))
    )
    assert settings_digest(cluster) != settings_digest(
        settings(nats=NatsSettings(url="nats://a:pw1@n1:4222,nats://b:pw2@n3:4222"))
    )
    assert settings_digest(same) == digest
    # Everything else does.
    for changed in (
        settings(fps=2.0),
        settings(cameras=[Camera(id="gare", url="rtsp://admin:s3cret@10.0.0.8:554/stream1")]),
        settings(cameras=[Camera(id="gare-nord", url="rtsp://admin:s3cret@10.0.0.7:554/stream1")]),
        settings(nats=NatsSettings(url="nats://vigie:natspw@nats:4222", user="ingest")),
    ):
        assert settings_digest(changed) != digest
    assert redact_url("rtsp://admin:s3cret@[::1]:554/s") == "rtsp://admin:***@[::1]:554/s"
    assert redact_url("http://cam/mjpeg") == "http://cam/mjpeg"


async def test_the_configuration_is_recorded_as_a_digest_by_the_service_itself() -> None:
    sink = MemoryAuditSink()
    publisher = AuditPublisher("ingest", sink, settings=FAST)
    await publisher.start()
    await record_configuration(
        publisher, settings(), camera_ids=["gare"], records=[("geometry", "gare:abc")], details={"n": "1"}
    )
    await publisher.close()
    (event,) = sink.events()
    assert event.action == AuditAction.AUDIT_ACTION_CONFIG_UPDATE
    assert event.actor == service_actor("ingest") == "service:ingest"
    assert event.outcome == AuditOutcome.AUDIT_OUTCOME_SUCCESS
    assert list(event.camera_ids) == ["gare"]
    digest = settings_digest(settings())
    assert dict(event.details) == {"n": "1", "change": "service_started", "config_sha256": digest}
    assert [(r.kind, r.id) for r in event.records] == [
        ("service_configuration", f"ingest:{digest[:16]}"),
        ("geometry", "gare:abc"),
    ]
    wire = sink.messages[0][1]
    for secret in (b"s3cret", b"natspw", b"hunter2", b"10.0.0.7"):
        assert secret not in wire


# -- throttling -----------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_repeated_automatic_event_is_recorded_once_per_interval_with_its_repeats() -> None:
    sink, registry, clock = MemoryAuditSink(), CollectorRegistry(), Clock()
    publisher = AuditPublisher(
        "anonymiser",
        sink,
        settings=FAST.model_copy(update={"repeat_interval_s": 60}),
        registry=registry,
        clock=clock,
    )
    await publisher.start()
    fault = AuditAction.AUDIT_ACTION_BOUNDARY_FAULT

    async def fault_on(camera: str) -> AuditEvent | None:
        return await publisher.record_throttled(
            ("fault", camera), fault, motive="m", camera_ids=[camera], details={"k": "v"}
        )

    assert await fault_on("a") is not None
    assert await fault_on("b") is not None, "another key is recorded at once"
    for _ in range(4):
        clock.now += 10
        assert await fault_on("a") is None
    clock.now += 30  # 70 s after the first
    later = await fault_on("a")
    await publisher.close()

    assert later is not None
    assert [(list(e.camera_ids), dict(e.details)) for e in sink.events()] == [
        (["a"], {"k": "v"}),
        (["b"], {"k": "v"}),
        (["a"], {"k": "v", "repeats": "4"}),
    ]
    assert all(e.actor == "service:anonymiser" for e in sink.events())
    assert registry.get_sample_value("vigie_audit_publisher_repeats_total", {"action": "boundary_fault"}) == 4


async def test_an_event_that_could_not_be_buffered_is_not_taken_as_recorded() -> None:
    class StuckSink:
        async def send(self, subject: str, payload: bytes, headers: dict[str, str]) -> None:
            raise ConnectionError("no NATS")

    publisher = AuditPublisher("inference", StuckSink(), settings=FAST.model_copy(update={"buffer_size": 1}))
    await publisher.start()
    await publisher.record(VIOLATION, actor="service:inference", motive="fills the buffer")
    await asyncio.sleep(0.05)  # the sender holds the first one, retrying
    await publisher.record(VIOLATION, actor="service:inference", motive="fills the buffer")
    with pytest.raises(AuditUnavailableError):
        await publisher.record_throttled("k", VIOLATION, motive="refused")
    with pytest.raises(AuditUnavailableError):  # not suppressed as a repeat: tried again
        await publisher.record_throttled("k", VIOLATION, motive="refused")
    await publisher.close()


# -- permission violations on a real secured nats-server -----------------------------------------------


class AuditReader:
    """Reads the AUDIT stream as the audit service would (one durable pull consumer)."""

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js
        self.events: list[AuditEvent] = []

    async def until(self, count: int, within_s: float = 10.0) -> list[AuditEvent]:
        subscription = await self._js.pull_subscribe("vigie.audit.>", durable="test-reader", stream="AUDIT")
        deadline = asyncio.get_running_loop().time() + within_s
        while len(self.events) < count and asyncio.get_running_loop().time() < deadline:
            try:
                messages = await subscription.fetch(count - len(self.events), timeout=0.5)
            except TimeoutError:
                continue
            for message in messages:
                self.events.append(AuditEvent.FromString(message.data))
                await message.ack()
        return self.events


@pytest.mark.integration
async def test_a_service_stepping_outside_its_nats_permissions_is_recorded_as_denied(
    secured_nats_server: EmbeddedNats,
) -> None:
    server = secured_nats_server
    # The journal's reader, as the audit service reads AUDIT in its own account.
    auditor = await server.client("audit")
    js = auditor.jetstream()
    credentials = server.credentials("ingest")
    service_nats = NatsSettings(url=server.url, user=credentials.user, password=credentials.password)
    settings = ServiceSettings(nats=service_nats)

    async with service_runtime("ingest", settings) as runtime:
        nc, audit = await connect_with_audit(runtime, service_nats, FAST, "vigie-ingest")
        # Ingest may publish frames, never tracks; it may subscribe to its own inbox only.
        for _ in range(3):
            await nc.publish("vigie.tracks.gare", b"not allowed")
        await nc.subscribe("vigie.frames.>")
        await nc.publish("vigie.audit.aggregation", b"someone else's journal subject")
        await nc.flush()
        events = await AuditReader(js).until(3)
        await asyncio.sleep(0.3)  # nothing more comes: the repeats were counted, not recorded
        assert runtime.registry.get_sample_value(
            "vigie_audit_publisher_repeats_total", {"action": "permission_violation"}
        ) == pytest.approx(2)
        assert nc.is_connected, "a refused operation does not cost the service its connection"
        assert audit.buffered == 0
    assert (await js.stream_info("AUDIT")).state.messages == 0, "all three read, nothing else"

    assert [e.action for e in events] == [VIOLATION] * 3
    assert {e.service for e in events} == {"ingest"}
    assert {e.actor for e in events} == {"service:ingest"}
    assert {e.outcome for e in events} == {AuditOutcome.AUDIT_OUTCOME_DENIED}
    assert all("vigie_core.permissions" in e.motive for e in events)
    assert sorted((e.details["operation"], e.details["subject"]) for e in events) == [
        ("publish", "vigie.audit.aggregation"),
        ("publish", "vigie.tracks.gare"),
        ("subscription", "vigie.frames.>"),
    ]
    assert {e.details["nats_user"] for e in events} == {"ingest"}
    await auditor.close()
