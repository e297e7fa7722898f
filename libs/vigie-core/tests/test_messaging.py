import asyncio
from collections.abc import Callable

import pytest
from nats.js.api import AckPolicy, ConsumerConfig, StorageType, StreamSource
from nats.js.errors import BadRequestError
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from vigie_core.audit import AuditPublisher, AuditPublishSettings, MemoryAuditSink
from vigie_core.health import Readiness
from vigie_core.messaging import (
    DurablePull,
    StreamConfigConflictError,
    StreamCopiesError,
    StreamGuard,
    StreamNotProvisionedError,
    connect,
    context_from_headers,
    ensure_stream,
    publish_patiently,
    trace_headers,
)
from vigie_core.provision import provision_stream
from vigie_core.settings import NatsSettings
from vigie_core.streams import (
    AuditStream,
    EventsStream,
    FramesStream,
    TracksStream,
    frames_partition_filter,
    frames_subject,
)
from vigie_embedded.nats import EmbeddedNats
from vigie_proto.v1.audit_pb2 import AuditAction, AuditOutcome

pytestmark = pytest.mark.integration


@pytest.mark.provision(False)
async def test_streams_are_provisioned_idempotently(nats_server: EmbeddedNats) -> None:
    nc = await connect(NatsSettings(url=nats_server.url), "test")
    js = nc.jetstream()
    assert (await provision_stream(js, FramesStream().config())).outcome == "created"
    assert (await provision_stream(js, FramesStream().config())).outcome == "unchanged"
    await provision_stream(js, TracksStream().config())
    info = await js.stream_info("FRAMES")
    assert info.config.storage == StorageType.MEMORY
    assert info.config.max_age == pytest.approx(5.0)

    assert (await provision_stream(js, FramesStream(max_age_s=8.0).config())).outcome.startswith("updated")
    assert (await js.stream_info("FRAMES")).config.max_age == pytest.approx(8.0)
    await nc.close()


@pytest.mark.provision(False)
async def test_storage_change_is_refused_with_a_clear_error(nats_server: EmbeddedNats) -> None:
    nc = await connect(NatsSettings(url=nats_server.url), "test")
    js = nc.jetstream()
    config = TracksStream().config()
    config.storage = StorageType.FILE
    await js.add_stream(config)
    with pytest.raises(StreamConfigConflictError, match="storage"):
        await provision_stream(js, TracksStream().config())
    with pytest.raises(StreamConfigConflictError, match="stream TRACKS: storage is file, expected memory"):
        await ensure_stream(js, TracksStream().config())
    await nc.close()


@pytest.mark.provision(False)
async def test_a_service_waits_for_the_provisioner_and_says_so(nats_server: EmbeddedNats) -> None:
    nc = await connect(NatsSettings(url=nats_server.url), "test")
    js = nc.jetstream()
    readiness = Readiness()
    waiting = asyncio.create_task(
        ensure_stream(js, FramesStream().config(), readiness=readiness, retry_s=0.05)
    )
    await asyncio.sleep(0.3)
    assert not waiting.done()
    assert readiness.failures()["stream FRAMES"] == "waiting for the stream FRAMES (not provisioned)"
    await provision_stream(js, FramesStream(max_age_s=60).config())
    info = await asyncio.wait_for(waiting, 5)  # a longer retention is the provisioner's to decide
    assert info.config.max_age == pytest.approx(60)
    assert "stream FRAMES" not in readiness.failures()

    with pytest.raises(StreamNotProvisionedError, match="the stream TRACKS is missing"):
        await ensure_stream(js, TracksStream().config(), wait_s=0.2, retry_s=0.05)
    stop = asyncio.Event()
    stop.set()
    with pytest.raises(StreamNotProvisionedError):
        await ensure_stream(js, TracksStream().config(), stop=stop)
    await nc.close()


async def test_a_stream_that_copies_from_another_is_refused(nats_server: EmbeddedNats) -> None:
    nc = await connect(NatsSettings(url=nats_server.url), "test")
    js = nc.jetstream()
    events = EventsStream().config()
    events.sources = [StreamSource(name="TRACKS")]  # track ids on disk, where the aggregation reads
    await js.update_stream(events)
    with pytest.raises(StreamCopiesError, match="EVENTS copies messages from TRACKS") as refused:
        await ensure_stream(js, EventsStream().config())
    assert refused.value.copied == ["TRACKS"]
    # The provisioner puts it right.
    assert "sources removed: TRACKS" in (await provision_stream(js, EventsStream().config())).outcome
    assert not (await js.stream_info("EVENTS")).config.sources
    await ensure_stream(js, EventsStream().config())
    await nc.close()


async def test_no_stream_may_copy_frames_they_do_not_fit(nats_server: EmbeddedNats) -> None:
    """The server itself refuses a copy into a stream whose messages are smaller than the source's: TRACKS
    (and AUDIT) cannot be made to hold frames even by whoever configures streams."""
    nc = await connect(NatsSettings(url=nats_server.url), "test")
    js = nc.jetstream()
    for config in (TracksStream().config(), AuditStream().config()):
        config.sources = [StreamSource(name="FRAMES")]
        with pytest.raises(BadRequestError, match="max message size"):
            await js.update_stream(config)
    await nc.close()


@pytest.mark.provision(frames_partitions=3)
async def test_every_frame_of_a_camera_lands_in_one_partition(nats_server: EmbeddedNats) -> None:
    nc = await connect(NatsSettings(url=nats_server.url), "test")
    js = nc.jetstream()
    cameras = [f"camera-{i}" for i in range(12)]
    for round_ in range(3):
        for camera in cameras:
            await js.publish(frames_subject(camera), str(round_).encode())
    seen: dict[str, list[tuple[int, bytes]]] = {}
    for partition in range(3):
        sub = await js.pull_subscribe(
            frames_partition_filter(partition), durable=f"p{partition}", stream="FRAMES"
        )
        for msg in await sub.fetch(100, timeout=1):
            camera = msg.subject.rsplit(".", 1)[1]
            seen.setdefault(camera, []).append((partition, msg.data))
    assert sorted(seen) == sorted(cameras)
    for camera, deliveries in seen.items():
        assert len({p for p, _ in deliveries}) == 1, camera
        assert [d for _, d in deliveries] == [b"0", b"1", b"2"], "frames of a camera stay in order"
    assert len({deliveries[0][0] for deliveries in seen.values()}) > 1, "cameras spread over partitions"
    await nc.close()


async def test_trace_context_crosses_nats_in_headers(nats_server: EmbeddedNats) -> None:
    provider = TracerProvider()
    tracer = provider.get_tracer("test")
    nc = await connect(NatsSettings(url=nats_server.url), "test")
    received: asyncio.Queue[dict[str, str]] = asyncio.Queue()

    async def handler(msg) -> None:  # type: ignore[no-untyped-def]
        await received.put(msg.headers or {})

    await nc.subscribe("test.trace", cb=handler)
    with tracer.start_as_current_span("publish") as span:
        await nc.publish("test.trace", b"x", headers=trace_headers({"k": "v"}))
        sent_trace_id = span.get_span_context().trace_id
    headers = await asyncio.wait_for(received.get(), 5)
    assert headers["k"] == "v"
    with tracer.start_as_current_span("consume", context=context_from_headers(headers)) as child:
        assert child.get_span_context().trace_id == sent_trace_id
    assert trace.get_current_span() is trace.INVALID_SPAN
    await nc.close()


async def until(condition: Callable[[], bool], within_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_a_stream_changed_behind_a_services_back_is_noticed_within_seconds(
    nats_server: EmbeddedNats,
) -> None:
    """Checked at start is not enough: a stream given sources later (by whoever could configure it) turns the
    binding service's readiness red, raises the boundary metric and is journaled as a boundary fault within
    one check interval; deleted, it is reported missing; provisioned again, all clears."""
    nc = await connect(NatsSettings(url=nats_server.url), "test")
    js = nc.jetstream()
    readiness, registry, stop = Readiness(), CollectorRegistry(), asyncio.Event()
    sink = MemoryAuditSink()
    audit = AuditPublisher("anonymiser", sink, settings=AuditPublishSettings(retry_max_s=0.02))
    await audit.start()
    guard = StreamGuard(readiness=readiness, registry=registry, stop=stop, audit=audit, interval_s=0.1)
    await guard.bind(js, EventsStream().config())
    fault = lambda: registry.get_sample_value("vigie_stream_fault", {"stream": "EVENTS"})  # noqa: E731
    assert fault() == 0
    assert "stream EVENTS" not in readiness.failures()

    events = EventsStream().config()
    events.sources = [StreamSource(name="TRACKS")]
    await js.update_stream(events)
    started = asyncio.get_running_loop().time()
    await until(lambda: fault() == 1)
    assert asyncio.get_running_loop().time() - started < 2.0
    assert "copies messages from TRACKS" in readiness.failures()["stream EVENTS"]
    await until(lambda: bool(sink.messages))
    (event,) = sink.events()
    assert event.action == AuditAction.AUDIT_ACTION_BOUNDARY_FAULT
    assert event.outcome == AuditOutcome.AUDIT_OUTCOME_DENIED
    assert event.details["stream"] == "EVENTS"
    assert event.details["copies_from"] == "TRACKS"

    # Checked again and again: one fault, one event (not one per check).
    await asyncio.sleep(0.3)
    assert len(sink.events()) == 1

    await provision_stream(js, EventsStream().config())  # the provisioner puts it right
    await until(lambda: fault() == 0)
    assert "stream EVENTS" not in readiness.failures()

    await js.delete_stream("EVENTS")
    await until(lambda: fault() == 1)
    assert "missing" in readiness.failures()["stream EVENTS"]
    await provision_stream(js, EventsStream().config())
    await until(lambda: "stream EVENTS" not in readiness.failures())
    assert len(sink.events()) == 1, "a missing stream is not a boundary fault"

    stop.set()
    await guard.close()
    await audit.close()
    await nc.close()


@pytest.mark.provision(frames_max_age_s=60)
async def test_a_durable_pull_waits_out_a_broker_restart_and_binds_again(
    secured_nats_server: EmbeddedNats,
) -> None:
    """A restart loses FRAMES and its consumer (memory): the puller says so on readiness, waits, and binds
    again once the stream is back; a publish made while the broker is down is stored once it is back."""
    server = secured_nats_server
    inference, ingest = await server.client("inference"), await server.client("ingest")
    readiness, stop = Readiness(), asyncio.Event()
    frames = DurablePull(
        inference.jetstream(),
        stream="FRAMES",
        subject="vigie.frames.>",
        config=ConsumerConfig(durable_name="inference-0", ack_policy=AckPolicy.EXPLICIT),
        readiness=readiness,
        stop=stop,
        retry_initial_s=0.05,
        retry_max_s=0.2,
    )
    assert await frames.bind()
    await ingest.jetstream().publish(frames_subject("cam"), b"before")
    assert [m.data for m in await frames.fetch(1, timeout_s=2)] == [b"before"]

    await asyncio.get_running_loop().run_in_executor(None, lambda: server.restart(kill=True))
    # The publisher retries until the stream is back; the puller binds again meanwhile.
    stored = await publish_patiently(ingest.jetstream(), frames_subject("cam"), b"after", within_s=10)
    assert stored
    received: list[bytes] = []
    for _ in range(100):
        received += [m.data for m in await frames.fetch(1, timeout_s=0.2)]
        if received:
            break
    assert received == [b"after"]
    assert frames.rebinds == 1
    assert "consumer inference-0" not in readiness.failures()

    stop.set()
    await frames.close()
    assert await frames.fetch(1, timeout_s=0.1) == [], "stopped: nothing, and no new binding"
    for client in (inference, ingest):
        await client.close()


async def test_a_publish_gives_up_when_the_broker_stays_away(nats_server: EmbeddedNats) -> None:
    nc = await connect(NatsSettings(url=nats_server.url), "test")
    js = nc.jetstream()
    await js.delete_stream("FRAMES")
    started = asyncio.get_running_loop().time()
    assert not await publish_patiently(js, frames_subject("cam"), b"x", within_s=0.5, timeout_s=0.1)
    assert asyncio.get_running_loop().time() - started < 3
    await nc.close()
