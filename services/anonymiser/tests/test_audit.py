"""What the anonymiser records in the audit journal: its configuration, each change of a camera's geometry
version, and TRACKS messages carrying data they must not (a boundary fault); and that it keeps counting
while the AUDIT stream is missing. Read back from the AUDIT stream of a real nats-server."""

import asyncio
import functools
from collections.abc import Callable

import nats
import pytest
from nats.js import JetStreamContext
from nats.js.api import StreamSource

from vigie_anonymiser import CameraGeometryConfig, ConfigGeometrySource, LineConfig
from vigie_anonymiser.service import serve
from vigie_anonymiser.settings import AnonymiserSettings
from vigie_anonymiser.synthetic import FrameBuilder, to_track_frame
from vigie_core.audit import AuditAction, AuditEvent, AuditOutcome, AuditPublishSettings, settings_digest
from vigie_core.lifecycle import ServiceRuntime
from vigie_core.messaging import StreamCopiesError
from vigie_core.policy import PolicySettings
from vigie_core.provision import provision_stream
from vigie_core.streams import (
    CheckpointStream,
    DeadLetterStream,
    EventsStream,
    FramesStream,
    TracksStream,
    tracks_subject,
)
from vigie_embedded.nats import EmbeddedNats
from vigie_embedded.testing import running_service
from vigie_proto.v1.frames_pb2 import PIXEL_FORMAT_RGB24, Frame

# No registry in this test: the static configuration only (vigie_core.policy).
STATIC_ONLY = PolicySettings(enabled=False)

pytestmark = pytest.mark.integration

CAMERA = CameraGeometryConfig(id="cam", lines=[LineConfig(id="h", start=(0.0, 0.5), end=(1.0, 0.5))])
MOVED = CAMERA.model_copy(update={"lines": [LineConfig(id="h", start=(0.0, 0.6), end=(1.0, 0.6))]})
GATE = CameraGeometryConfig(id="gate", lines=[LineConfig(id="v", start=(0.5, 0.0), end=(0.5, 1.0))])
FAST = AuditPublishSettings(retry_initial_s=0.01, retry_max_s=0.05, drain_timeout_s=0.3)


class AuditReader:
    """Reads the AUDIT stream as the audit service would (one durable pull consumer)."""

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js
        self.events: list[AuditEvent] = []

    async def next(self, within_s: float = 15.0) -> AuditEvent:
        subscription = await self._js.pull_subscribe("vigie.audit.>", durable="test-reader", stream="AUDIT")
        deadline = asyncio.get_running_loop().time() + within_s
        while asyncio.get_running_loop().time() < deadline:
            try:
                (message,) = await subscription.fetch(1, timeout=0.5)
            except TimeoutError:
                continue
            await message.ack()
            self.events.append(AuditEvent.FromString(message.data))
            return self.events[-1]
        raise AssertionError(f"no audit event after {len(self.events)}")


async def wait_for(condition: Callable[[], bool], what: str, within_s: float = 15) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def metric(runtime: ServiceRuntime, name: str, **labels: str) -> float:
    return runtime.registry.get_sample_value(name, labels) or 0.0


def pixels_on_tracks(camera: str) -> bytes:
    """What a mistaken publisher might put on TRACKS: a frame, with its pixels."""
    frame = Frame(
        camera_id=camera, run_id="run", sequence=1, width=8, height=8, pixel_format=PIXEL_FORMAT_RGB24
    )
    frame.pixels = bytes(8 * 8 * 3)
    frame.captured_at.FromSeconds(1_700_000_000)
    return frame.SerializeToString()


async def test_the_anonymiser_records_its_configuration_geometry_changes_and_boundary_faults(
    nats_server: EmbeddedNats,
) -> None:
    client = await nats.connect(nats_server.url)
    js = client.jetstream()
    source = ConfigGeometrySource([CAMERA])
    settings = AnonymiserSettings(
        nats={"url": nats_server.url}, cameras=[CAMERA], camera_idle_s=600, audit=FAST, policy=STATIC_ONLY
    )
    reader = AuditReader(js)

    async with running_service(
        "anonymiser", settings, functools.partial(serve, geometry_source=source)
    ) as service:
        started = await reader.next()
        source.put(MOVED)
        moved = await reader.next()
        source.put(MOVED)  # the same geometry again: nothing changes, nothing is recorded
        source.put(GATE)
        created = await reader.next()
        source.remove("cam")
        deleted = await reader.next()

        for _ in range(2):
            await js.publish(tracks_subject("gate"), pixels_on_tracks("gate"))
        fault = await reader.next()
        await wait_for(
            lambda: metric(service, "vigie_anonymiser_boundary_faults_total") == 2, "both to be refused"
        )
        # And counting goes on.
        await js.publish(
            tracks_subject("gate"),
            to_track_frame(FrameBuilder(camera_id="gate").frame({1: (0.4, 0.5)})).SerializeToString(),
        )
        await wait_for(
            lambda: metric(service, "vigie_anonymiser_frames_total", camera="gate") == 1, "a good frame"
        )
    await asyncio.sleep(0.2)
    assert (await js.stream_info("AUDIT")).state.messages == 0, "nothing else was recorded"
    dead = await js.stream_info("DEADLETTER_ANONYMISER")
    assert dead.state.messages == 0, "what a boundary fault carried is kept nowhere"

    assert started.action == AuditAction.AUDIT_ACTION_CONFIG_UPDATE
    assert (started.service, started.actor) == ("anonymiser", "service:anonymiser")
    assert list(started.camera_ids) == ["cam"]
    digest = settings_digest(settings)
    assert [(r.kind, r.id) for r in started.records] == [
        ("service_configuration", f"anonymiser:{digest[:16]}"),
        ("geometry", f"cam:{CAMERA.version()}"),
    ]
    assert started.details["config_sha256"] == digest
    assert (started.details["partition"], started.details["cameras"]) == ("0", "1")

    changes = [
        (e.action, list(e.camera_ids), e.details["from"], e.details["to"]) for e in (moved, created, deleted)
    ]
    assert changes == [
        (AuditAction.AUDIT_ACTION_CONFIG_UPDATE, ["cam"], CAMERA.version(), MOVED.version()),
        (AuditAction.AUDIT_ACTION_CONFIG_CREATE, ["gate"], "", GATE.version()),
        (AuditAction.AUDIT_ACTION_CONFIG_DELETE, ["cam"], MOVED.version(), ""),
    ]
    assert [(r.kind, r.id) for r in moved.records] == [("geometry", f"cam:{MOVED.version()}")]
    assert {e.actor for e in (moved, created, deleted)} == {"service:anonymiser"}
    assert {e.details["field"] for e in (moved, created, deleted)} == {"geometry"}

    assert fault.action == AuditAction.AUDIT_ACTION_BOUNDARY_FAULT
    assert fault.outcome == AuditOutcome.AUDIT_OUTCOME_DENIED
    assert list(fault.camera_ids) == ["gate"]
    assert fault.details["stream"] == "TRACKS"
    assert fault.details["subject"] == "vigie.tracks.0.gate"
    assert fault.details["unknown_fields"] == "7,8,9,10"
    assert int(fault.details["unknown_bytes"]) > 8 * 8 * 3
    await client.close()


@pytest.mark.provision(False)
async def test_counting_goes_on_while_the_audit_stream_is_missing(nats_server: EmbeddedNats) -> None:
    client = await nats.connect(nats_server.url)
    js = client.jetstream()
    # Every stream the anonymiser binds, and no AUDIT: the audit stream is lost (deleted by hand, say).
    for stream in (TracksStream(), EventsStream(), DeadLetterStream("anonymiser"), CheckpointStream()):
        await provision_stream(js, stream.config())
    settings = AnonymiserSettings(
        nats={"url": nats_server.url}, cameras=[CAMERA], camera_idle_s=600, audit=FAST, policy=STATIC_ONLY
    )
    frames = FrameBuilder()
    async with running_service("anonymiser", settings, serve) as service:
        for i in range(20):
            await js.publish(
                tracks_subject("cam"),
                to_track_frame(frames.frame({1: (0.5, 0.3 + 0.03 * i)})).SerializeToString(),
            )
        await wait_for(
            lambda: metric(service, "vigie_anonymiser_frames_total", camera="cam") == 20, "counting"
        )
        assert metric(service, "vigie_audit_publisher_failed_attempts_total") > 0
        assert metric(service, "vigie_audit_publisher_published_events_total") == 0, (
            "the start-up event waits"
        )
    # Stopped with AUDIT still missing: the event that never reached it is counted, not silently dropped.
    assert metric(service, "vigie_audit_publisher_lost_events_total", reason="shutdown") == 1
    await client.close()


async def test_the_anonymiser_refuses_an_events_stream_that_copies_frames(nats_server: EmbeddedNats) -> None:
    """Whoever could configure EVENTS (file storage) could make it source FRAMES: pixels on disk, readable
    by the aggregation. No service may configure a stream any more; the anonymiser also refuses to bind an
    EVENTS that copies from anywhere, and says so in the journal."""
    client = await nats.connect(nats_server.url)
    js = client.jetstream()
    events = EventsStream().config()
    events.sources = [StreamSource(name="FRAMES")]
    events.max_msg_size = FramesStream().max_msg_size  # a frame must fit
    await js.update_stream(events)
    settings = AnonymiserSettings(
        nats={"url": nats_server.url}, cameras=[CAMERA], camera_idle_s=600, audit=FAST, policy=STATIC_ONLY
    )
    reader = AuditReader(js)
    with pytest.raises(StreamCopiesError, match="EVENTS copies messages from FRAMES"):
        async with running_service("anonymiser", settings, serve) as service:
            await wait_for(lambda: service.stop_requested.is_set(), "the anonymiser to stop")
    while (event := await reader.next()).action != AuditAction.AUDIT_ACTION_BOUNDARY_FAULT:
        pass
    assert event.outcome == AuditOutcome.AUDIT_OUTCOME_DENIED
    assert (event.details["stream"], event.details["copies_from"]) == ("EVENTS", "FRAMES")
    await client.close()
