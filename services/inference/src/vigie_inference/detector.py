"""The detector behind one small interface: Triton over asyncio gRPC in production, onnxruntime
in-process for the single-process baseline and tests."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.grpc.aio import InferenceServerClient

from vigie_models import BOXES_OUTPUT, INPUT_NAME, SCORES_OUTPUT

# A batch of letterboxed RGB images, NHWC uint8.
ImageBatch = npt.NDArray[np.uint8]
FloatArray = npt.NDArray[np.float32]


class DetectorError(RuntimeError):
    """The detector could not analyse a batch (server down, model not loaded...)."""


class Detector(Protocol):
    name: str

    async def ready(self) -> str | None:
        """None when ready, else why not."""

    async def detect(self, images: ImageBatch) -> tuple[FloatArray, FloatArray]:
        """Raw boxes [N, A, 4] (model pixels) and scores [N, A, classes]."""

    async def close(self) -> None: ...


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

    async def detect(self, images: ImageBatch) -> tuple[FloatArray, FloatArray]:
        request = InferInput(INPUT_NAME, list(images.shape), "UINT8")
        request.set_data_from_numpy(images)
        try:
            result = await self._client.infer(self._model, [request], self._version, outputs=self._outputs)
        except Exception as error:
            raise DetectorError(f"Triton inference failed: {error}") from error
        boxes, scores = result.as_numpy(BOXES_OUTPUT), result.as_numpy(SCORES_OUTPUT)
        if boxes is None or scores is None:
            raise DetectorError("Triton response lacks the boxes or scores output")
        return boxes, scores

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

    async def ready(self) -> str | None:
        return None

    def detect_sync(self, images: ImageBatch) -> tuple[FloatArray, FloatArray]:
        boxes, scores = self._session.run([BOXES_OUTPUT, SCORES_OUTPUT], {INPUT_NAME: images})
        return boxes, scores

    async def detect(self, images: ImageBatch) -> tuple[FloatArray, FloatArray]:
        return await asyncio.to_thread(self.detect_sync, images)

    async def close(self) -> None:
        return None
