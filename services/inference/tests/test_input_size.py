"""The pictures inference sends the detector: padded only to the next multiple of the model's stride when the
model takes any size, to its square otherwise; one batch per size."""

import asyncio

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
from vigie_proto.v1.frames_pb2 import PIXEL_FORMAT_RGB24, Frame
from vigie_proto.v1.tracks_pb2 import TrackFrame

pytestmark = pytest.mark.integration


class RecordingDetector:
    """Sees nothing; records the shape of every batch it is sent."""

    name = "recording"

    def __init__(self, input_multiple: int | None) -> None:
        self.input_multiple = input_multiple
        self.shapes: list[tuple[int, ...]] = []

    async def ready(self) -> str | None:
        return None

    async def model(self) -> ModelIdentity:
        return ModelIdentity("recording", "1", input_multiple=self.input_multiple)

    async def detect(self, images: ImageBatch) -> DetectorOutput:
        self.shapes.append(images.shape)
        height, width = images.shape[1:3]
        rows = 3 * (height // 32) * (width // 32) + 3 * (height // 16) * (width // 16)
        empty = np.zeros((len(images), rows, 4), np.float32), np.zeros((len(images), rows, 6), np.float32)
        return DetectorOutput(*empty, "1")

    async def close(self) -> None:
        return None


def _frame(camera: str, sequence: int, width: int, height: int) -> bytes:
    frame = Frame(camera_id=camera, run_id="run", sequence=sequence, width=width, height=height)
    frame.pixel_format = PIXEL_FORMAT_RGB24
    frame.pixels = bytes(width * height * 3)
    frame.captured_at.FromNanoseconds(1_700_000_000_000_000_000 + sequence * 200_000_000)
    return frame.SerializeToString()


@pytest.mark.parametrize(
    ("input_multiple", "wide_shape"), [(32, (288, 416)), (None, (416, 416))], ids=["any-size", "square"]
)
async def test_each_picture_goes_at_the_size_the_model_takes(
    nats_server: EmbeddedNats, input_multiple: int | None, wide_shape: tuple[int, int]
) -> None:
    nc = await connect(NatsSettings(url=nats_server.url), "test")
    js = nc.jetstream()
    await provision_stream(js, FramesStream(max_age_s=60).config())
    analysed: list[tuple[str, int]] = []

    async def on_tracks(msg) -> None:  # type: ignore[no-untyped-def]
        message = TrackFrame.FromString(msg.data)
        analysed.append((message.camera_id, message.sequence))

    await nc.subscribe("vigie.tracks.*", cb=on_tracks)
    # Published before the service starts, so that its first fetches hold both sizes together.
    for sequence in range(4):
        await js.publish(frames_subject("wide"), _frame("wide", sequence, 416, 234))
        await js.publish(frames_subject("square"), _frame("square", sequence, 416, 416))
    detector = RecordingDetector(input_multiple)

    async def body(runtime: ServiceRuntime) -> None:
        await serve(runtime, detector)

    settings = InferenceSettings(nats={"url": nats_server.url}, policy=PolicySettings(enabled=False))
    async with running_service("inference", settings, body):
        for _ in range(100):
            if len(analysed) == 8:
                break
            await asyncio.sleep(0.1)
    await nc.close()

    # (Each camera's run also ends when the service stops: a message for its last frame again.)
    assert set(analysed) == {(c, s) for c in ("wide", "square") for s in range(4)}
    # Every batch holds pictures of one size; the 16:9 ones are padded only to the model's stride.
    assert {shape[1:] for shape in detector.shapes} == {(*wide_shape, 3), (416, 416, 3)}
    assert sum(shape[0] for shape in detector.shapes) == 8
