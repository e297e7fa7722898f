import asyncio

import pytest
from nats.js.api import StorageType, StreamSource
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from vigie_core.health import Readiness
from vigie_core.messaging import (
    StreamConfigConflictError,
    StreamCopiesError,
    StreamNotProvisionedError,
    connect,
    context_from_headers,
    ensure_stream,
    trace_headers,
)
from vigie_core.provision import provision_stream
from vigie_core.settings import NatsSettings
from vigie_core.streams import FramesStream, TracksStream, frames_partition_filter, frames_subject
from vigie_embedded.nats import EmbeddedNats

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
    tracks = TracksStream().config()
    tracks.sources = [StreamSource(name="FRAMES")]
    await js.update_stream(tracks)
    with pytest.raises(StreamCopiesError, match="TRACKS copies messages from FRAMES") as refused:
        await ensure_stream(js, TracksStream().config())
    assert refused.value.copied == ["FRAMES"]
    # The provisioner puts it right.
    assert "sources removed: FRAMES" in (await provision_stream(js, TracksStream().config())).outcome
    assert not (await js.stream_info("TRACKS")).config.sources
    await ensure_stream(js, TracksStream().config())
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
