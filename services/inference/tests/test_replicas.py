"""Two inference replicas share FRAMES: every camera's frames reach one tracker, in order."""

import asyncio
from collections import defaultdict

import numpy as np
import pytest

from vigie_core.lifecycle import ServiceRuntime
from vigie_core.messaging import connect
from vigie_core.policy import PolicySettings
from vigie_core.provision import provision_stream
from vigie_core.settings import NatsSettings
from vigie_core.streams import FramesStream, frames_subject
from vigie_embedded.nats import EmbeddedNats
from vigie_embedded.testing import running_service
from vigie_inference.detector import DetectorOutput, ImageBatch, ModelIdentity
from vigie_inference.service import serve
from vigie_inference.settings import InferenceSettings
from vigie_models import DETECTION_COUNT
from vigie_proto.v1.frames_pb2 import PIXEL_FORMAT_RGB24, Frame
from vigie_proto.v1.tracks_pb2 import TrackFrame

# No registry in this test: the static configuration only (vigie_core.policy).
STATIC_ONLY = PolicySettings(enabled=False)

pytestmark = pytest.mark.integration


class OnePersonDetector:
    """A stand-in for Triton that sees one person in the middle of every frame."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def ready(self) -> str | None:
        return None

    async def model(self) -> ModelIdentity:
        return ModelIdentity(self.name, "1")

    async def detect(self, images: ImageBatch) -> DetectorOutput:
        boxes = np.zeros((len(images), DETECTION_COUNT, 4), dtype=np.float32)
        scores = np.zeros((len(images), DETECTION_COUNT, 80), dtype=np.float32)
        boxes[:, 0] = [180, 120, 240, 300]
        scores[:, 0, 0] = 0.9
        return DetectorOutput(boxes, scores, "1")

    async def close(self) -> None:
        return None


def _replica(detector: OnePersonDetector):  # type: ignore[no-untyped-def]
    async def body(runtime: ServiceRuntime) -> None:
        await serve(runtime, detector)

    return body


async def test_each_camera_is_tracked_by_one_replica_in_order(nats_server: EmbeddedNats) -> None:
    nc = await connect(NatsSettings(url=nats_server.url), "test")
    js = nc.jetstream()
    await provision_stream(js, FramesStream(partitions=2, max_age_s=60).config())
    cameras = [f"camera-{i}" for i in range(6)]
    frames_per_camera = 15
    received: dict[str, list[TrackFrame]] = defaultdict(list)

    async def on_tracks(msg) -> None:  # type: ignore[no-untyped-def]
        message = TrackFrame.FromString(msg.data)
        received[message.camera_id].append(message)

    await nc.subscribe("vigie.tracks.*", cb=on_tracks)
    settings = [
        InferenceSettings(
            nats={"url": nats_server.url}, partition=k, partitions=2, max_in_flight=3, policy=STATIC_ONLY
        )
        for k in (0, 1)
    ]
    async with (
        running_service("inference-0", settings[0], _replica(OnePersonDetector("replica-0"))),
        running_service("inference-1", settings[1], _replica(OnePersonDetector("replica-1"))),
    ):
        for sequence in range(frames_per_camera):
            for camera in cameras:
                frame = Frame(
                    camera_id=camera,
                    run_id="run",
                    sequence=sequence,
                    width=416,
                    height=234,
                    pixel_format=PIXEL_FORMAT_RGB24,
                    pixels=bytes(416 * 234 * 3),
                )
                frame.captured_at.FromNanoseconds(1_700_000_000_000_000_000 + sequence * 200_000_000)
                await js.publish(frames_subject(camera), frame.SerializeToString())
        for _ in range(300):  # up to 15 s
            if all(len({m.sequence for m in received[c]}) == frames_per_camera for c in cameras):
                break
            await asyncio.sleep(0.05)
    await nc.close()

    replicas_used = set()
    for camera in cameras:
        messages = [m for m in received[camera] if m.objects]
        # Reported from its first frame: the detector's 0.9 is above the tracker's confirm_score.
        assert [m.sequence for m in messages] == list(range(frames_per_camera)), camera
        assert len({m.model for m in messages}) == 1, f"{camera} was tracked by two replicas"
        assert len({o.track_id for m in messages for o in m.objects}) == 1, "one person, one id"
        replicas_used |= {m.model for m in messages}
    assert replicas_used == {"replica-0", "replica-1"}


async def test_a_replica_expecting_other_partitions_refuses_to_start(nats_server: EmbeddedNats) -> None:
    nc = await connect(NatsSettings(url=nats_server.url), "test")
    await provision_stream(nc.jetstream(), FramesStream(partitions=2).config())
    await nc.close()
    settings = InferenceSettings(nats={"url": nats_server.url}, partition=0, partitions=3, policy=STATIC_ONLY)
    with pytest.raises(RuntimeError, match="FRAMES is split into 2 partitions but inference expects 3"):
        async with running_service("inference", settings, _replica(OnePersonDetector("x"))) as runtime:
            await asyncio.wait_for(runtime.stop_requested.wait(), 10)
