"""A detector that fails: frames are not lost silently, the service keeps running and recovers."""

import asyncio

import httpx
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
from vigie_inference.detector import DetectorError, DetectorOutput, ImageBatch, ModelIdentity
from vigie_inference.service import serve
from vigie_inference.settings import InferenceSettings
from vigie_models import DETECTION_COUNT
from vigie_proto.v1.frames_pb2 import PIXEL_FORMAT_RGB24, Frame
from vigie_proto.v1.tracks_pb2 import TrackFrame

# No registry in this test: the static configuration only (vigie_core.policy).
STATIC_ONLY = PolicySettings(enabled=False)

pytestmark = pytest.mark.integration


class FlakyDetector:
    """Fails while `failing` is set, like a Triton that went away; sees nothing otherwise."""

    name = "flaky"

    def __init__(self) -> None:
        self.failing = True

    async def ready(self) -> str | None:
        return "Triton unreachable" if self.failing else None

    async def model(self) -> ModelIdentity:
        if self.failing:
            raise DetectorError("Triton unreachable")
        return ModelIdentity("flaky", "1")

    async def detect(self, images: ImageBatch) -> DetectorOutput:
        if self.failing:
            raise DetectorError("Triton inference failed: connection refused")
        boxes = np.zeros((len(images), DETECTION_COUNT, 4), dtype=np.float32)
        return DetectorOutput(boxes, np.zeros((len(images), DETECTION_COUNT, 80), dtype=np.float32), "1")

    async def close(self) -> None:
        return None


def _frame(sequence: int) -> bytes:
    frame = Frame(camera_id="cam", run_id="run", sequence=sequence, width=8, height=8)
    frame.pixel_format = PIXEL_FORMAT_RGB24
    frame.pixels = bytes(8 * 8 * 3)
    frame.captured_at.FromNanoseconds(1_700_000_000_000_000_000 + sequence * 200_000_000)
    return frame.SerializeToString()


async def test_the_service_waits_for_the_detector_and_then_analyses(nats_server: EmbeddedNats) -> None:
    nc = await connect(NatsSettings(url=nats_server.url), "test")
    js = nc.jetstream()
    await provision_stream(js, FramesStream(max_age_s=60).config())
    analysed: list[int] = []

    async def on_tracks(msg) -> None:  # type: ignore[no-untyped-def]
        analysed.append(TrackFrame.FromString(msg.data).sequence)

    await nc.subscribe("vigie.tracks.*", cb=on_tracks)
    detector = FlakyDetector()

    async def body(runtime: ServiceRuntime) -> None:
        await serve(runtime, detector)

    settings = InferenceSettings(nats={"url": nats_server.url}, policy=STATIC_ONLY)
    async with running_service("inference", settings, body) as runtime, httpx.AsyncClient() as client:
        for sequence in range(3):
            await js.publish(frames_subject("cam"), _frame(sequence))
        await asyncio.sleep(1.5)
        not_ready = await client.get(f"{runtime.http_url}/readyz")
        assert not_ready.status_code == 503
        assert not_ready.json()["reasons"]["detector"] == "Triton unreachable"
        assert analysed == [], "nothing is analysed while the detector is down"

        detector.failing = False
        for _ in range(100):
            if len(analysed) == 3:
                break
            await asyncio.sleep(0.1)
        assert sorted(analysed) == [0, 1, 2], "frames waiting in FRAMES are analysed once it is back"
        assert (await client.get(f"{runtime.http_url}/readyz")).status_code == 200
    await nc.close()
