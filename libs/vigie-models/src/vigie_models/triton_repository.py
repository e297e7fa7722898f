"""Triton model repository layout: ``<variant>/<model>/config.pbtxt`` and ``<variant>/<model>/1/``.

Both variants serve the same ``model.onnx`` with the same inputs and outputs, read from the ONNX graph
itself so that the configuration cannot drift from the model:

- ``onnx``: ``platform: "onnxruntime_onnx"``, for NVIDIA's Triton image in production;
- ``python``: ``backend: "python"`` with a ``model.py`` that runs onnxruntime on the CPU, for the
  tritonserver bundled in nvidia-pytriton (which has no onnxruntime backend).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import onnx
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from vigie_models._names import LABELS_FILENAME, MAX_BATCH_SIZE, Variant

MODEL_VERSION = "1"
# Parameter read by the python variant's model.py; same key as the onnxruntime backend's own.
INTRA_OP_THREADS_PARAMETER = "intra_op_thread_count"
DEFAULT_INTRA_OP_THREADS = 2

_TRITON_TYPES: dict[int, int] = {
    onnx.TensorProto.UINT8: mc.TYPE_UINT8,
    onnx.TensorProto.INT8: mc.TYPE_INT8,
    onnx.TensorProto.INT32: mc.TYPE_INT32,
    onnx.TensorProto.INT64: mc.TYPE_INT64,
    onnx.TensorProto.FLOAT16: mc.TYPE_FP16,
    onnx.TensorProto.FLOAT: mc.TYPE_FP32,
    onnx.TensorProto.DOUBLE: mc.TYPE_FP64,
    onnx.TensorProto.BOOL: mc.TYPE_BOOL,
}


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output as Triton sees it: dims without the batch dimension, -1 if dynamic."""

    name: str
    data_type: int  # model_config_pb2.DataType
    dims: tuple[int, ...]

    @property
    def data_type_name(self) -> str:
        return str(mc.DataType.Name(self.data_type))


def _tensor_spec(value: onnx.ValueInfoProto) -> TensorSpec:
    tensor_type = value.type.tensor_type
    if tensor_type.elem_type not in _TRITON_TYPES:
        raise ValueError(f"tensor {value.name!r}: ONNX type {tensor_type.elem_type} has no Triton mapping")
    dims = [dim.dim_value if dim.HasField("dim_value") else -1 for dim in tensor_type.shape.dim]
    if not dims or dims[0] != -1:
        raise ValueError(f"tensor {value.name!r}: the first dimension must be a dynamic batch, got {dims}")
    return TensorSpec(value.name, _TRITON_TYPES[tensor_type.elem_type], tuple(dims[1:]))


@dataclass(frozen=True)
class RepositoryModel:
    """One model to lay out in both variants."""

    name: str
    onnx_model: onnx.ModelProto
    labels: tuple[str, ...] | None = None
    labels_output: str | None = None  # the output whose last dimension the labels name

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        initializers = {initializer.name for initializer in self.onnx_model.graph.initializer}
        return tuple(_tensor_spec(v) for v in self.onnx_model.graph.input if v.name not in initializers)

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return tuple(_tensor_spec(value) for value in self.onnx_model.graph.output)


def model_config(
    model: RepositoryModel,
    variant: Variant,
    *,
    max_batch_size: int = MAX_BATCH_SIZE,
    intra_op_threads: int = DEFAULT_INTRA_OP_THREADS,
) -> mc.ModelConfig:
    config = mc.ModelConfig(name=model.name, max_batch_size=max_batch_size)
    if variant == "onnx":
        # Instance kind left to Triton: the GPU when the production image has one, else the CPU.
        config.platform = "onnxruntime_onnx"
    else:
        config.backend = "python"
        config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=1)
        config.parameters[INTRA_OP_THREADS_PARAMETER].string_value = str(intra_op_threads)
    for spec in model.inputs:
        config.input.add(name=spec.name, data_type=spec.data_type, dims=spec.dims)
    for spec in model.outputs:
        output = config.output.add(name=spec.name, data_type=spec.data_type, dims=spec.dims)
        if model.labels is not None and spec.name == model.labels_output:
            output.label_filename = LABELS_FILENAME
    config.dynamic_batching.SetInParent()
    return config


def config_text(config: mc.ModelConfig) -> str:
    return str(text_format.MessageToString(config, use_short_repeated_primitives=True))


def parse_config_text(text: str) -> mc.ModelConfig:
    return text_format.Parse(text, mc.ModelConfig())


def python_backend_model_source() -> bytes:
    """The generic ``model.py`` that serves any ``model.onnx`` beside it with onnxruntime."""
    return resources.files("vigie_models.python_backend").joinpath("model.py").read_bytes()


def write_model(
    variant_root: Path, model: RepositoryModel, variant: Variant, onnx_bytes: bytes
) -> list[Path]:
    """Write one model's folder under ``variant_root``; return the files written."""
    model_dir = variant_root / model.name
    version_dir = model_dir / MODEL_VERSION
    version_dir.mkdir(parents=True, exist_ok=True)
    files = {
        model_dir / "config.pbtxt": config_text(model_config(model, variant)).encode(),
        version_dir / "model.onnx": onnx_bytes,
    }
    if model.labels is not None:
        files[model_dir / LABELS_FILENAME] = "".join(f"{label}\n" for label in model.labels).encode()
    if variant == "python":
        files[version_dir / "model.py"] = python_backend_model_source()
    for path, content in files.items():
        path.write_bytes(content)
    return sorted(files)
