"""What inference records in the audit journal: its configuration, the model version that answers (at
start-up and on every change, from a stand-in and from a real tritonserver), and frames that name another
camera than their subject (a boundary fault). Read back from the AUDIT stream of a real nats-server."""

import asyncio
from collections.abc import Callable

import numpy as np
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from vigie_core.audit import (
    AuditAction,
    AuditEvent,
    AuditOutcome,
    AuditPublisher,
    AuditPublishSettings,
    AuditUnavailableError,
    MemoryAuditSink,
    settings_digest,
)
from vigie_core.lifecycle import ServiceRuntime
from vigie_core.messaging import connect
from vigie_core.policy import PolicySettings
from vigie_core.provision import provision_stream
from vigie_core.settings import NatsSettings
from vigie_core.streams import FramesStream, frames_subject
from vigie_embedded.nats import EmbeddedNats
from vigie_embedded.testing import running_service
from vigie_embedded.triton import EmbeddedTriton
from vigie_inference.detector import DetectorOutput, ImageBatch, ModelIdentity, TritonDetector
from vigie_inference.model_audit import ServedModel
from vigie_inference.service import serve
from vigie_inference.settings import InferenceSettings
from vigie_models import DETECTION_COUNT
from vigie_proto.v1.frames_pb2 import PIXEL_FORMAT_RGB24, Frame
from vigie_proto.v1.tracks_pb2 import TrackFrame

# No registry in this test: the static configuration only (vigie_core.policy).
STATIC_ONLY = PolicySettings(enabled=False)

MODEL_CHANGE = AuditAction.AUDIT_ACTION_MODEL_VERSION_CHANGE
FAST = AuditPublishSettings(retry_initial_s=0.01, retry_max_s=0.05, enqueue_timeout_s=0.05, drain_timeout_s=2)


# -- the model in use, without a network ---------------------------------------------------------------


async def test_the_model_version_is_recorded_at_start_and_on_each_change_only() -> None:
    sink = MemoryAuditSink()
    audit = AuditPublisher("inference", sink, settings=FAST)
    await audit.start()
    cameras = ["cam-a"]
    served = ServedModel(audit, partition=2, cameras=lambda: cameras)
    assert await served.identified(ModelIdentity("yolov4_tiny", "1", "python"))
    await served.answered_by("1", "yolov4_tiny")  # the same version: nothing new
    await served.answered_by("", "yolov4_tiny")  # a detector that cannot say: nothing to check
    cameras.append("cam-b")
    await served.answered_by("2", "yolov4_tiny")
    await audit.close()

    first, second = sink.events()
    assert [e.action for e in sink.events()] == [MODEL_CHANGE, MODEL_CHANGE]
    assert {e.actor for e in sink.events()} == {"service:inference"}
    assert dict(first.details) == {
        "model": "yolov4_tiny",
        "version": "1",
        "previous_version": "",
        "partition": "2",
        "platform": "python",
    }
    assert [(r.kind, r.id) for r in first.records] == [("model", "yolov4_tiny/1")]
    assert (second.details["version"], second.details["previous_version"]) == ("2", "1")
    assert second.details["platform"] == "python", "the platform is kept across a version change"
    assert list(second.camera_ids) == ["cam-a", "cam-b"]
    assert served.current == ModelIdentity("yolov4_tiny", "2", "python")


async def test_a_version_change_that_cannot_be_audited_is_tried_again() -> None:
    class StuckSink:
        async def send(self, subject: str, payload: bytes, headers: dict[str, str]) -> None:
            raise ConnectionError("no NATS")

    stuck = FAST.model_copy(update={"buffer_size": 1, "drain_timeout_s": 0.1})
    audit = AuditPublisher("inference", StuckSink(), settings=stuck)
    await audit.start()
    served = ServedModel(audit, partition=0)
    assert await served.identified(ModelIdentity("m", "1"))  # buffered: taken
    await asyncio.sleep(0.05)  # the sender holds it, retrying; the next one fills the buffer
    assert await served.identified(ModelIdentity("m", "2"))
    assert not await served.identified(ModelIdentity("m", "3")), "the buffer is full: refused"
    assert served.current == ModelIdentity("m", "2"), "not taken as in force"
    with pytest.raises(AuditUnavailableError):
        await audit.record(MODEL_CHANGE, actor="service:inference", motive="still full")
    await audit.close()


# -- the service, with a real nats-server ------------------------------------------------------------


class VersionedDetector:
    """A stand-in for Triton whose version can change under the service, as when Triton loads another."""

    name = "yolo/latest"

    def __init__(self) -> None:
        self.version = "1"

    async def ready(self) -> str | None:
        return None

    async def model(self) -> ModelIdentity:
        return ModelIdentity("yolo", self.version, "onnxruntime")

    async def detect(self, images: ImageBatch) -> DetectorOutput:
        boxes = np.zeros((len(images), DETECTION_COUNT, 4), dtype=np.float32)
        scores = np.zeros((len(images), DETECTION_COUNT, 80), dtype=np.float32)
        return DetectorOutput(boxes, scores, self.version)

    async def close(self) -> None:
        return None


def frame(camera: str, sequence: int, *, side: int = 8) -> bytes:
    message = Frame(camera_id=camera, run_id="run", sequence=sequence, width=side, height=side)
    message.pixel_format = PIXEL_FORMAT_RGB24
    message.pixels = bytes(side * side * 3)
    message.captured_at.FromNanoseconds(1_700_000_000_000_000_000 + sequence * 200_000_000)
    return message.SerializeToString()


class AuditReader:
    """Reads the AUDIT stream as the audit service would (one durable pull consumer)."""

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js
        self.events: list[AuditEvent] = []

    async def until(self, count: int, within_s: float = 15.0) -> list[AuditEvent]:
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
        assert len(self.events) >= count, f"{len(self.events)} audit events, expected {count}"
        return self.events


async def wait_for(condition: Callable[[], bool], what: str, within_s: float = 15) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def observer(nats_url: str) -> tuple[Client, JetStreamContext, list[TrackFrame]]:
    nc = await connect(NatsSettings(url=nats_url), "test")
    js = nc.jetstream()
    await provision_stream(js, FramesStream(max_age_s=60).config())
    tracks: list[TrackFrame] = []

    async def on_tracks(msg) -> None:  # type: ignore[no-untyped-def]
        tracks.append(TrackFrame.FromString(msg.data))

    await nc.subscribe("vigie.tracks.*", cb=on_tracks)
    return nc, js, tracks


@pytest.mark.integration
async def test_inference_records_its_configuration_model_changes_and_mislabelled_frames(
    nats_server: EmbeddedNats,
) -> None:
    nc, js, tracks = await observer(nats_server.url)
    detector = VersionedDetector()

    async def body(runtime: ServiceRuntime) -> None:
        await serve(runtime, detector)

    settings = InferenceSettings(nats={"url": nats_server.url}, audit=FAST, policy=STATIC_ONLY)
    reader = AuditReader(js)
    async with running_service("inference", settings, body) as runtime:
        config, started = await reader.until(2)
        for sequence in range(3):
            await js.publish(frames_subject("cam"), frame("cam", sequence))
        await wait_for(lambda: len(tracks) == 3, "the first frames to be analysed")

        detector.version = "2"  # Triton now answers from version 2
        for sequence in range(3, 6):
            await js.publish(frames_subject("cam"), frame("cam", sequence))
        changed = (await reader.until(3))[2]

        # A frame of camera "cam-b" published on camera "cam-a"'s subject, three times.
        for sequence in range(3):
            await js.publish(frames_subject("cam-a"), frame("cam-b", sequence))
        fault = (await reader.until(4))[3]
        await wait_for(
            lambda: (
                runtime.registry.get_sample_value(
                    "vigie_inference_frames_dropped_total", {"reason": "mislabelled"}
                )
                == 3
            ),
            "the three mislabelled frames to be dropped",
        )
    await asyncio.sleep(0.2)
    assert (await js.stream_info("AUDIT")).state.messages == 0, "nothing else was recorded"
    assert {t.camera_id for t in tracks} == {"cam"}, "a mislabelled frame is never analysed"

    assert config.action == AuditAction.AUDIT_ACTION_CONFIG_UPDATE
    assert (config.service, config.actor) == ("inference", "service:inference")
    assert config.details["config_sha256"] == settings_digest(settings)
    assert (config.details["partition"], config.details["model_version"]) == ("0", "latest")

    assert started.action == MODEL_CHANGE
    assert (started.details["model"], started.details["version"]) == ("yolo", "1")
    assert started.details["previous_version"] == ""
    assert list(started.camera_ids) == []
    assert changed.action == MODEL_CHANGE
    assert (changed.details["version"], changed.details["previous_version"]) == ("2", "1")
    assert [(r.kind, r.id) for r in changed.records] == [("model", "yolo/2")]
    assert list(changed.camera_ids) == ["cam"]

    assert fault.action == AuditAction.AUDIT_ACTION_BOUNDARY_FAULT
    assert fault.outcome == AuditOutcome.AUDIT_OUTCOME_DENIED
    assert fault.actor == "service:inference"
    assert list(fault.camera_ids) == ["cam-a", "cam-b"]
    assert fault.details["subject"] == "vigie.frames.0.cam-a"
    assert (fault.details["frame_camera"], fault.details["subject_camera"]) == ("cam-b", "cam-a")
    assert "repeats" not in fault.details, "the repeats come with the next event of this kind"
    await nc.close()


@pytest.mark.integration
async def test_the_version_triton_serves_is_recorded_from_its_metadata(
    nats_server: EmbeddedNats, triton_server: EmbeddedTriton
) -> None:
    detector = TritonDetector(triton_server.grpc_url, "yolov4_tiny")
    identity = await detector.model()
    await detector.close()
    assert (identity.name, identity.version) == ("yolov4_tiny", "1")
    assert identity.platform, "Triton says how the model runs"

    nc, js, tracks = await observer(nats_server.url)
    settings = InferenceSettings(
        nats={"url": nats_server.url}, triton_url=triton_server.grpc_url, audit=FAST, policy=STATIC_ONLY
    )
    reader = AuditReader(js)
    async with running_service("inference", settings, serve):
        _, started = await reader.until(2, within_s=60)
        for sequence in range(2):
            await js.publish(frames_subject("cam"), frame("cam", sequence, side=64))
        await wait_for(lambda: len(tracks) == 2, "Triton's answers", within_s=60)
    await asyncio.sleep(0.2)
    # Triton answered from the version recorded at start-up: no other event.
    assert (await js.stream_info("AUDIT")).state.messages == 0
    assert started.action == MODEL_CHANGE
    assert dict(started.details) == {
        "model": "yolov4_tiny",
        "version": "1",
        "previous_version": "",
        "partition": "0",
        "platform": identity.platform,
    }
    await nc.close()
