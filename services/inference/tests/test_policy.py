"""A running inference replica follows the policy bucket of a secured nats-server (inference connects as
its own user; the policy is written as the registry's user): a pause drops the frame in flight at Triton
and every frame captured during the pause, ends the camera's tracks, and analysis resumes after it; a
replica that cannot read the policy analyses nothing and says so; only the classes the policy lists are
tracked, each track for no longer than its track_max_seconds, and a change of either applies live."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import av
import httpx
import nats
import numpy as np
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from vigie_core.lifecycle import ServiceRuntime
from vigie_core.policy import PolicySettings
from vigie_core.provision import ProvisionSettings, provision_stream
from vigie_core.streams import FramesStream, frames_subject
from vigie_embedded.nats import EmbeddedNats
from vigie_embedded.policies import PolicyBucketWriter, camera_policy
from vigie_embedded.testing import ServiceConnections, following, running_service
from vigie_embedded.triton import EmbeddedTriton
from vigie_inference.detector import DetectorOutput, ImageBatch, ModelIdentity
from vigie_inference.service import serve
from vigie_inference.settings import InferenceSettings
from vigie_models import DETECTION_COUNT
from vigie_proto.v1.frames_pb2 import PIXEL_FORMAT_RGB24, Frame
from vigie_proto.v1.policy_pb2 import CameraPolicy
from vigie_proto.v1.tracks_pb2 import ObjectClass, TrackFrame

pytestmark = [pytest.mark.integration, pytest.mark.provision(frames_max_age_s=60)]

CAMERA = "parvis"


class HeldDetector:
    """Sees one person in every frame; ``hold()`` keeps the next request in flight until ``release()``."""

    name = "held"

    def __init__(self) -> None:
        self._open = asyncio.Event()
        self._open.set()
        self.in_flight = asyncio.Event()
        self.requests = 0

    def hold(self) -> None:
        self._open.clear()
        self.in_flight.clear()

    def release(self) -> None:
        self._open.set()

    async def ready(self) -> str | None:
        return None

    async def model(self) -> ModelIdentity:
        return ModelIdentity(self.name, "1")

    async def detect(self, images: ImageBatch) -> DetectorOutput:
        self.requests += 1
        self.in_flight.set()
        await self._open.wait()
        boxes = np.zeros((len(images), DETECTION_COUNT, 4), dtype=np.float32)
        scores = np.zeros((len(images), DETECTION_COUNT, 80), dtype=np.float32)
        boxes[:, 0] = [180, 120, 240, 300]
        scores[:, 0, 0] = 0.9
        return DetectorOutput(boxes, scores, "1")

    async def close(self) -> None:
        return None


@pytest.fixture
async def tracks(as_service: ServiceConnections) -> AsyncIterator[list[TrackFrame]]:
    """What inference publishes on TRACKS, as the anonymiser reads it."""
    js = await as_service.js("anonymiser")
    async with following(js, "TRACKS", "vigie.tracks.>", TrackFrame.FromString) as received:
        yield received


def settings(server: EmbeddedNats, **policy: object) -> InferenceSettings:
    credentials = server.credentials("inference")
    return InferenceSettings(
        nats={"url": server.url, "user": credentials.user, "password": credentials.password},
        policy=PolicySettings.model_validate(policy),
    )


async def registry_writer(server: EmbeddedNats) -> PolicyBucketWriter:
    credentials = server.credentials("registry")
    return await PolicyBucketWriter.open(server.url, credentials.user, credentials.password)


class Camera:
    """Frames of one camera run, captured now, published to FRAMES (as ingest does)."""

    def __init__(self, js: JetStreamContext) -> None:
        self.js = js
        self.sequence = 0

    @classmethod
    async def of(cls, as_service: ServiceConnections) -> Camera:
        return cls(await as_service.js("ingest"))

    async def publish(self, count: int = 1) -> None:
        for _ in range(count):
            frame = Frame(
                camera_id=CAMERA,
                run_id="run",
                sequence=self.sequence,
                width=416,
                height=234,
                pixel_format=PIXEL_FORMAT_RGB24,
                pixels=bytes(416 * 234 * 3),
            )
            frame.captured_at.FromNanoseconds(time.time_ns())
            await self.js.publish(frames_subject(CAMERA), frame.SerializeToString())
            self.sequence += 1
            await asyncio.sleep(0.05)


async def tracks_of(client: Client) -> list[TrackFrame]:
    received: list[TrackFrame] = []

    async def on_tracks(message) -> None:  # type: ignore[no-untyped-def]
        received.append(TrackFrame.FromString(message.data))

    await client.subscribe("vigie.tracks.>", cb=on_tracks)
    return received


def metric(runtime: ServiceRuntime, name: str, **labels: str) -> float:
    return runtime.registry.get_sample_value(name, labels) or 0.0


async def until(condition: Callable[[], bool], within_s: float = 10) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_a_pause_drops_frames_in_flight_and_during_it_ends_tracks_and_then_lifts(
    secured_nats_server: EmbeddedNats, as_service: ServiceConnections, tracks: list[TrackFrame]
) -> None:
    writer = await registry_writer(secured_nats_server)
    await writer.put(camera_policy(CAMERA))
    detector = HeldDetector()
    received = tracks
    camera = await Camera.of(as_service)

    async def body(runtime: ServiceRuntime) -> None:
        await serve(runtime, detector)

    try:
        async with running_service("inference", settings(secured_nats_server), body) as inference:
            await camera.publish(4)
            await until(lambda: metric(inference, "vigie_inference_frames_total", camera=CAMERA) == 4)
            before = {o.track_id for m in received for o in m.objects}
            assert len(before) == 1, "one person, tracked"

            # A frame reaches Triton; the objection comes while it is there.
            detector.hold()
            await camera.publish()
            await asyncio.wait_for(detector.in_flight.wait(), 5)
            updates = metric(inference, "vigie_policy_updates_total")
            paused_at = time.time()
            await writer.put(camera_policy(CAMERA, version=2, paused_until=paused_at + 3))
            await until(lambda: metric(inference, "vigie_policy_updates_total") > updates)
            detector.release()
            await until(
                lambda: (
                    metric(inference, "vigie_inference_frames_dropped_total", reason="objection_pause") == 1
                )
            )
            # Frames captured during the pause: dropped before Triton sees them.
            requests = detector.requests
            await camera.publish(3)
            await until(
                lambda: (
                    metric(inference, "vigie_inference_frames_dropped_total", reason="objection_pause") == 4
                )
            )
            assert detector.requests == requests
            assert metric(inference, "vigie_inference_frames_total", camera=CAMERA) == 4
            last = metric(inference, "vigie_inference_last_frame_analysed_timestamp_seconds", camera=CAMERA)
            assert last < paused_at
            # The tracks ended with the pause, once.
            ends = [m for m in received if m.ended_track_ids and not m.objects]
            assert [set(m.ended_track_ids) for m in ends] == [before]
            assert not [m for m in received if m.sequence >= 4 and m.objects]

            # The pause ends by itself: new frames are analysed, under a new track id.
            await asyncio.sleep(max(0.0, paused_at + 3.2 - time.time()))
            await camera.publish(4)
            await until(lambda: metric(inference, "vigie_inference_frames_total", camera=CAMERA) == 8)
            after = {o.track_id for m in received if m.sequence >= 8 for o in m.objects}
            assert after
            assert not after & before
    finally:
        await writer.close()


@pytest.mark.provision(False)
async def test_a_replica_that_cannot_read_the_policy_analyses_nothing_and_says_so(
    secured_nats_server: EmbeddedNats, as_service: ServiceConnections
) -> None:
    # Every stream inference uses, and no policy bucket.
    secured_nats_server.provision(ProvisionSettings(frames_max_age_s=60), only=["FRAMES", "TRACKS", "AUDIT"])
    detector = HeldDetector()
    camera = await Camera.of(as_service)

    async def body(runtime: ServiceRuntime) -> None:
        await serve(runtime, detector)

    service = settings(secured_nats_server, startup_wait_s=0.2)
    async with running_service("inference", service, body) as inference, httpx.AsyncClient() as http:
        await until(lambda: metric(inference, "vigie_policy_watch_failures_total") >= 1)
        await camera.publish(3)
        reason = "policy_unavailable"
        await until(lambda: metric(inference, "vigie_inference_frames_dropped_total", reason=reason) == 3)
        assert detector.requests == 0
        ready = await http.get(f"{inference.http_url}/readyz")
        assert ready.status_code == 503
        assert "policy" in ready.json()["reasons"]

        secured_nats_server.provision(ProvisionSettings(frames_max_age_s=60))  # the bucket, at last
        writer = await registry_writer(secured_nats_server)
        try:
            await writer.put(camera_policy(CAMERA))
            await until(lambda: metric(inference, "vigie_policy_synced") == 1)
            await camera.publish(2)
            await until(lambda: metric(inference, "vigie_inference_frames_total", camera=CAMERA) == 2)
            assert (await http.get(f"{inference.http_url}/readyz")).status_code == 200
        finally:
            await writer.close()


class PersonAndCarDetector(HeldDetector):
    """Sees a person and a car in every frame."""

    async def detect(self, images: ImageBatch) -> DetectorOutput:
        output = await super().detect(images)
        output.boxes[:, 1] = [250, 200, 400, 300]
        output.scores[:, 1, 2] = 0.8  # COCO class 2: car
        return output


def with_rules(policy: CameraPolicy, *classes: ObjectClass.ValueType, track_max_s: int = 600) -> CameraPolicy:
    if classes:
        del policy.object_classes[:]
        policy.object_classes.extend(classes)
    policy.track_max_seconds = track_max_s
    return policy


async def test_only_the_classes_of_the_policy_are_tracked_and_no_longer_than_it_allows(
    secured_nats_server: EmbeddedNats, as_service: ServiceConnections, tracks: list[TrackFrame]
) -> None:
    writer = await registry_writer(secured_nats_server)
    person, car = ObjectClass.OBJECT_CLASS_PERSON, ObjectClass.OBJECT_CLASS_CAR
    await writer.put(with_rules(camera_policy(CAMERA), person, track_max_s=1))
    received = tracks
    camera = await Camera.of(as_service)

    async def body(runtime: ServiceRuntime) -> None:
        await serve(runtime, PersonAndCarDetector())

    def objects(since: int, object_class: int) -> list[bytes]:
        return [
            o.track_id
            for m in received
            if m.sequence >= since
            for o in m.objects
            if o.object_class == object_class
        ]

    async def analysed(inference: ServiceRuntime, count: int) -> None:  # and its tracks received
        await until(lambda: metric(inference, "vigie_inference_frames_total", camera=CAMERA) == count)
        await until(lambda: any(m.sequence == count - 1 for m in received))

    async def change(inference: ServiceRuntime, policy: CameraPolicy) -> None:
        updates = metric(inference, "vigie_policy_updates_total")
        await writer.put(policy)
        await until(lambda: metric(inference, "vigie_policy_updates_total") > updates)

    try:
        async with running_service("inference", settings(secured_nats_server), body) as inference:
            # Persons only, a track may live 1 s: the car is never tracked, the person's id changes.
            await camera.publish(30)  # 1.5 s at least
            await analysed(inference, 30)
            assert objects(0, car) == []
            persons = list(dict.fromkeys(objects(0, person)))
            assert len(persons) >= 2, "renewed after 1 s"
            ended = {t for m in received for t in m.ended_track_ids}
            assert set(persons[:-1]) <= ended

            # Cars allowed from now on: tracked from the next frames.
            await change(inference, with_rules(camera_policy(CAMERA, version=2)))
            await camera.publish(4)
            await analysed(inference, 34)
            cars = set(objects(30, car))
            assert len(cars) == 1

            # Persons only again: the car's track ends with the next frame, and no car comes back.
            await change(inference, with_rules(camera_policy(CAMERA, version=3), person))
            await camera.publish(3)
            await analysed(inference, 37)
            [first_after] = [m for m in received if m.sequence == 34]
            assert set(first_after.ended_track_ids) == cars
            assert objects(34, car) == []
    finally:
        await writer.close()


async def test_real_detections_of_classes_the_policy_does_not_list_never_reach_tracks(
    audit_stream: EmbeddedNats, triton_server: EmbeddedTriton, sample_video: Path
) -> None:
    # The sample film's first frames show people and cars: CAMERA may count people only; the same frames
    # from a camera that may count cars too show that the detector does see the cars CAMERA never tracks.
    everything = "parvis-all"
    person, car = ObjectClass.OBJECT_CLASS_PERSON, ObjectClass.OBJECT_CLASS_CAR
    client = await nats.connect(audit_stream.url)
    await provision_stream(client.jetstream(), FramesStream(partitions=1, max_age_s=60).config())
    writer = await PolicyBucketWriter.open(audit_stream.url)
    await writer.put(with_rules(camera_policy(CAMERA), person))
    await writer.put(with_rules(camera_policy(everything), person, car))
    received = await tracks_of(client)
    service = InferenceSettings(nats={"url": audit_stream.url}, triton_url=triton_server.grpc_url)
    frames = 6
    try:
        async with running_service("inference", service, serve) as inference:
            with av.open(str(sample_video)) as video:
                for sequence, picture in zip(range(frames), video.decode(video=0), strict=False):
                    pixels = picture.to_ndarray(format="rgb24", width=416, height=234).tobytes()
                    for camera_id in (CAMERA, everything):
                        frame = Frame(
                            camera_id=camera_id,
                            run_id="film",
                            sequence=sequence,
                            width=416,
                            height=234,
                            pixel_format=PIXEL_FORMAT_RGB24,
                            pixels=pixels,
                        )
                        frame.captured_at.FromNanoseconds(time.time_ns())
                        await client.jetstream().publish(frames_subject(camera_id), frame.SerializeToString())
            await until(
                lambda: (
                    metric(inference, "vigie_inference_frames_total", camera=CAMERA) == frames
                    and metric(inference, "vigie_inference_frames_total", camera=everything) == frames
                ),
                within_s=60,
            )
            await until(
                lambda: {m.camera_id for m in received if m.sequence == frames - 1} == {CAMERA, everything}
            )
    finally:
        await writer.close()
        await client.close()

    tracked = [o for m in received if m.camera_id == CAMERA for o in m.objects]
    assert tracked, "the people were tracked"
    assert {o.object_class for o in tracked} == {person}
    allowed = {o.object_class for m in received if m.camera_id == everything for o in m.objects}
    assert allowed == {person, car}, "the detector saw the cars CAMERA's policy discarded"


async def test_a_broker_restart_is_waited_out_and_analysis_resumes(
    secured_nats_server: EmbeddedNats, as_service: ServiceConnections, tracks: list[TrackFrame]
) -> None:
    """The broker is killed and comes back (FRAMES, TRACKS and their consumers, in memory, lost; the
    policy, on disk, kept): inference does not exit, says so on /readyz meanwhile, binds its consumer
    again and analyses the frames published afterwards."""
    writer = await registry_writer(secured_nats_server)
    await writer.put(camera_policy(CAMERA))
    await writer.close()
    camera = await Camera.of(as_service)

    async def body(runtime: ServiceRuntime) -> None:
        await serve(runtime, HeldDetector())

    async with running_service("inference", settings(secured_nats_server), body) as inference:
        await camera.publish(3)
        await until(lambda: metric(inference, "vigie_inference_frames_total", camera=CAMERA) == 3)
        await asyncio.get_running_loop().run_in_executor(None, lambda: secured_nats_server.restart(kill=True))
        async with httpx.AsyncClient() as http:
            for _ in range(200):  # the clients reconnect by themselves (within seconds)
                if (await http.get(f"{inference.http_url}/readyz")).status_code == 200:
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("inference never ready again")
        camera.js = await as_service.js("ingest")
        await camera.publish(3)
        await until(lambda: metric(inference, "vigie_inference_frames_total", camera=CAMERA) == 6)
        await until(lambda: any(m.sequence == 5 for m in tracks))
        assert not inference.stop_requested.is_set(), "the service went on, it did not exit"
