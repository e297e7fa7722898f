"""The detector behind one small interface: Triton over asyncio gRPC in production, onnxruntime
in-process for the single-process baseline and tests; and CenterFace on Triton, for scene views."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np
import numpy.typing as npt
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.grpc.aio import InferenceServerClient

from vigie_inference.scene_view import decode_centerface
from vigie_models import (
    BOXES_OUTPUT,
    CENTERFACE_HEATMAP_OUTPUT,
    CENTERFACE_INPUT_NAME,
    CENTERFACE_MODEL_NAME,
    CENTERFACE_OFFSET_OUTPUT,
    CENTERFACE_SCALE_OUTPUT,
    INPUT_MULTIPLE,
    INPUT_NAME,
    SCORES_OUTPUT,
)

# A batch of letterboxed RGB images of one size, NHWC uint8.
ImageBatch = npt.NDArray[np.uint8]
FloatArray = npt.NDArray[np.float32]


class DetectorError(RuntimeError):
    """The detector could not analyse a batch (server down, model not loaded...)."""


@dataclass(frozen=True, slots=True)
class ModelIdentity:
    """Which model answers: its name, the version that serves requests, and how it runs; and the pictures
    it takes: ``input_multiple`` when any height and width that are multiples of it (a picture is then
    padded only up to the next multiple), None when only the fixed square."""

    name: str
    version: str
    platform: str = ""
    input_multiple: int | None = None

    @property
    def label(self) -> str:
        """``<name>/<version>``: what TrackFrame.model carries to the anonymiser's reports."""
        return f"{self.name}/{self.version}"


class DetectorOutput(NamedTuple):
    """Raw boxes [N, A, 4] (model pixels) and scores [N, A, classes], and the model version that
    computed them ("" when the detector cannot say)."""

    boxes: FloatArray
    scores: FloatArray
    model_version: str = ""


class Detector(Protocol):
    name: str

    async def ready(self) -> str | None:
        """None when ready, else why not."""

    async def model(self) -> ModelIdentity:
        """The model and the version that answers requests now (raises DetectorError if unknown)."""

    async def detect(self, images: ImageBatch) -> DetectorOutput: ...

    async def close(self) -> None: ...


def _input_multiple(shape: list[int]) -> int | None:
    """INPUT_MULTIPLE for an images input [batch, height, width, 3] whose height and width are free (-1),
    else None (a fixed size)."""
    return INPUT_MULTIPLE if len(shape) == 4 and shape[1] == -1 and shape[2] == -1 else None


class TritonDetector:
    def __init__(self, url: str, model_name: str, model_version: str = "") -> None:
        self._client = InferenceServerClient(url)
        self._model = model_name
        self._version = model_version
        self._outputs = [InferRequestedOutput(BOXES_OUTPUT), InferRequestedOutput(SCORES_OUTPUT)]
        self.name = f"{model_name}/{model_version or 'latest'}"

    async def ready(self) -> str | None:
        try:
            if await self._client.is_model_ready(self._model, self._version):
                return None
            return f"model {self._model} is not ready on Triton"
        except Exception as error:  # tritonclient raises its own and gRPC errors
            return f"Triton unreachable: {error}"

    async def model(self) -> ModelIdentity:
        """From Triton's model metadata: the version asked for, or else the highest version loaded, which
        is the one Triton routes requests without a version to."""
        try:
            metadata = await self._client.get_model_metadata(self._model, self._version)
        except Exception as error:
            raise DetectorError(f"Triton has no metadata for model {self._model}: {error}") from error
        versions = [str(v) for v in metadata.versions]
        if self._version:
            version = self._version
        elif versions:
            version = max(versions, key=lambda v: (len(v), v))  # numeric order of digit strings
        else:
            raise DetectorError(f"Triton reports no loaded version of model {self._model}")
        images = [list(tensor.shape) for tensor in metadata.inputs if tensor.name == INPUT_NAME]
        return ModelIdentity(
            name=metadata.name or self._model,
            version=version,
            platform=metadata.platform,
            input_multiple=_input_multiple(images[0] if images else []),
        )

    async def detect(self, images: ImageBatch) -> DetectorOutput:
        request = InferInput(INPUT_NAME, list(images.shape), "UINT8")
        request.set_data_from_numpy(images)
        try:
            result = await self._client.infer(self._model, [request], self._version, outputs=self._outputs)
        except Exception as error:
            raise DetectorError(f"Triton inference failed: {error}") from error
        boxes, scores = result.as_numpy(BOXES_OUTPUT), result.as_numpy(SCORES_OUTPUT)
        if boxes is None or scores is None:
            raise DetectorError("Triton response lacks the boxes or scores output")
        # The version that actually answered: it changes when Triton loads a new one.
        return DetectorOutput(boxes, scores, str(result.get_response().model_version))

    async def close(self) -> None:
        await self._client.close()


class OnnxRuntimeDetector:
    """The same model.onnx in onnxruntime, in this process (baseline, tests)."""

    def __init__(self, model_path: Path, threads: int = 2) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        self.name = f"{model_path.parent.parent.name}/onnxruntime"
        # A Triton repository layout: <model>/<version>/model.onnx.
        (images,) = [tensor.shape for tensor in self._session.get_inputs() if tensor.name == INPUT_NAME]
        self._identity = ModelIdentity(
            model_path.parent.parent.name,
            model_path.parent.name,
            "onnxruntime",
            input_multiple=_input_multiple([d if isinstance(d, int) else -1 for d in images]),
        )

    async def ready(self) -> str | None:
        return None

    @property
    def identity(self) -> ModelIdentity:
        return self._identity

    async def model(self) -> ModelIdentity:
        return self._identity

    def detect_sync(self, images: ImageBatch) -> tuple[FloatArray, FloatArray]:
        boxes, scores = self._session.run([BOXES_OUTPUT, SCORES_OUTPUT], {INPUT_NAME: images})
        return boxes, scores

    async def detect(self, images: ImageBatch) -> DetectorOutput:
        boxes, scores = await asyncio.to_thread(self.detect_sync, images)
        return DetectorOutput(boxes, scores, self._identity.version)

    async def close(self) -> None:
        return None


class TritonFaceDetector:
    """CenterFace on Triton, for the final check of scene views (:mod:`.scene_view`): one picture a request,
    its faces as normalised boxes and scores."""

    def __init__(self, url: str, model_name: str = CENTERFACE_MODEL_NAME, model_version: str = "") -> None:
        self._client = InferenceServerClient(url)
        self._model = model_name
        self._version = model_version
        self._outputs = [
            InferRequestedOutput(name)
            for name in (CENTERFACE_HEATMAP_OUTPUT, CENTERFACE_SCALE_OUTPUT, CENTERFACE_OFFSET_OUTPUT)
        ]

    async def detect(self, picture: ImageBatch, threshold: float) -> tuple[FloatArray, FloatArray]:
        """The faces of one RGB picture (H x W x 3, uint8) scoring above ``threshold``."""
        height, width = picture.shape[:2]
        # CenterFace takes sides that are multiples of 32: padded right and bottom only, so its
        # coordinates are the picture's.
        padded = np.zeros((1, 3, -(-height // 32) * 32, -(-width // 32) * 32), np.float32)
        padded[0, :, :height, :width] = picture.transpose(2, 0, 1)
        request = InferInput(CENTERFACE_INPUT_NAME, list(padded.shape), "FP32")
        request.set_data_from_numpy(padded)
        try:
            result = await self._client.infer(self._model, [request], self._version, outputs=self._outputs)
        except Exception as error:  # tritonclient raises its own and gRPC errors
            raise DetectorError(f"Triton face detection failed: {error}") from error
        heatmap = result.as_numpy(CENTERFACE_HEATMAP_OUTPUT)
        scale = result.as_numpy(CENTERFACE_SCALE_OUTPUT)
        offset = result.as_numpy(CENTERFACE_OFFSET_OUTPUT)
        if heatmap is None or scale is None or offset is None:
            raise DetectorError("Triton response lacks one of CenterFace's outputs")
        return decode_centerface(heatmap[0], scale[0], offset[0], width, height, threshold)

    async def close(self) -> None:
        await self._client.close()
