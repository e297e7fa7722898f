"""Build an ONNX graph from a parsed Darknet network and its weights.

The graph takes uint8 RGB images (NHWC, already letterboxed to the input size) so that only bytes
cross the wire, and returns decoded detections from every ``[yolo]`` layer, concatenated:
``boxes`` (x1, y1, x2, y2 in input pixels) and ``scores`` (objectness x class probability), for every
class or only for the classes asked for (``kept_classes``: the others are never computed nor returned).
Rows are ordered like OpenCV's Darknet importer: yolo layer, then cell row, cell column, anchor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

from vigie_models.darknet.cfg import (
    Convolutional,
    DarknetCfgError,
    DarknetNetwork,
    MaxPool,
    Route,
    Upsample,
    Yolo,
    parse_cfg,
)
from vigie_models.darknet.weights import DarknetWeights

# onnxruntime 1.19 (Triton 2.51's backend) reads up to opset 21 and IR version 10; 17 is widely supported.
OPSET = 17
IR_VERSION = 8
# Darknet's batch-norm epsilon, added to the variance before the square root when it folds batch norm
# into the convolutions for inference. OpenCV's importer uses 1e-6 instead; the difference shows in
# the fourth decimal of the scores.
BATCH_NORM_EPSILON = 1e-5
LEAKY_SLOPE = 0.1


@dataclass(frozen=True)
class DetectorIO:
    """Names of the exported graph's input and outputs."""

    images: str = "images"
    boxes: str = "boxes"
    scores: str = "scores"


@dataclass(frozen=True)
class _Tensor:
    """A graph value in NCHW with its static channel and spatial sizes (the batch is dynamic)."""

    name: str
    channels: int
    height: int
    width: int


class _GraphBuilder:
    """Collects nodes and initializers; each node has one output named after the node."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def constant(self, name: str, array: npt.NDArray[Any]) -> str:
        self.initializers.append(numpy_helper.from_array(array, name=name))
        return name

    def node(self, op_type: str, inputs: list[str], name: str, **attributes: Any) -> str:
        self.nodes.append(helper.make_node(op_type, inputs, [name], name=name, **attributes))
        return name


def _convolutional(
    graph: _GraphBuilder,
    index: int,
    layer: Convolutional,
    x: _Tensor,
    weights: DarknetWeights,
    batch_norm_epsilon: float,
) -> _Tensor:
    if x.channels % layer.groups:
        raise DarknetCfgError(
            f"layer {index}: {x.channels} input channels not divisible by groups={layer.groups}"
        )
    shape = (layer.filters, x.channels // layer.groups, layer.size, layer.size)
    what = f"layer {index} (convolutional)"
    # Darknet stores biases, then batch-norm scales, means and variances, then the kernel.
    bias = weights.take(layer.filters, what)
    if layer.batch_normalize:
        scale = weights.take(layer.filters, what)
        mean = weights.take(layer.filters, what)
        variance = weights.take(layer.filters, what)
    kernel = weights.take(int(np.prod(shape)), what).reshape(shape)
    if layer.batch_normalize:
        # Fold y = scale * (conv(x) - mean) / sqrt(variance + eps) + bias into the convolution,
        # in double precision like Darknet's own fusing.
        factor = scale.astype(np.float64) / np.sqrt(variance.astype(np.float64) + batch_norm_epsilon)
        kernel = kernel * factor[:, None, None, None]
        bias = bias - mean * factor
    prefix = f"conv_{index}"
    output = graph.node(
        "Conv",
        [
            x.name,
            graph.constant(f"{prefix}.weight", kernel.astype(np.float32)),
            graph.constant(f"{prefix}.bias", bias.astype(np.float32)),
        ],
        prefix,
        kernel_shape=[layer.size, layer.size],
        strides=[layer.stride, layer.stride],
        pads=[layer.padding] * 4,
        group=layer.groups,
    )
    if layer.activation == "leaky":
        output = graph.node("LeakyRelu", [output], f"{prefix}_leaky", alpha=LEAKY_SLOPE)
    elif layer.activation == "relu":
        output = graph.node("Relu", [output], f"{prefix}_relu")
    elif layer.activation == "logistic":
        output = graph.node("Sigmoid", [output], f"{prefix}_logistic")
    height = (x.height + 2 * layer.padding - layer.size) // layer.stride + 1
    width = (x.width + 2 * layer.padding - layer.size) // layer.stride + 1
    return _Tensor(output, layer.filters, height, width)


def _maxpool(graph: _GraphBuilder, index: int, layer: MaxPool, x: _Tensor) -> _Tensor:
    before = layer.padding // 2
    after = layer.padding - before
    output = graph.node(
        "MaxPool",
        [x.name],
        f"maxpool_{index}",
        kernel_shape=[layer.size, layer.size],
        strides=[layer.stride, layer.stride],
        pads=[before, before, after, after],
    )
    height = (x.height + layer.padding - layer.size) // layer.stride + 1
    width = (x.width + layer.padding - layer.size) // layer.stride + 1
    return _Tensor(output, x.channels, height, width)


def _route(graph: _GraphBuilder, index: int, layer: Route, outputs: list[_Tensor]) -> _Tensor:
    parts: list[_Tensor] = []
    for position, reference in enumerate(layer.layers):
        source = index + reference if reference < 0 else reference
        if not 0 <= source < index:
            raise DarknetCfgError(f"layer {index} (route): layer {reference} is not an earlier layer")
        x = outputs[source]
        if layer.groups > 1:
            # Darknet's CSP blocks take one channel group of the input (e.g. the second half).
            size = x.channels // layer.groups
            start = size * layer.group_id
            name = graph.node(
                "Slice",
                [
                    x.name,
                    graph.constant(f"route_{index}_{position}.starts", np.array([start], np.int64)),
                    graph.constant(f"route_{index}_{position}.ends", np.array([start + size], np.int64)),
                    graph.constant(f"route_{index}_{position}.axes", np.array([1], np.int64)),
                ],
                f"route_{index}_{position}_group",
            )
            x = _Tensor(name, size, x.height, x.width)
        parts.append(x)
    if any((part.height, part.width) != (parts[0].height, parts[0].width) for part in parts):
        sizes = [f"{part.height}x{part.width}" for part in parts]
        raise DarknetCfgError(f"layer {index} (route): inputs of different spatial sizes {sizes}")
    if len(parts) == 1:
        return parts[0]
    name = graph.node("Concat", [part.name for part in parts], f"route_{index}", axis=1)
    return _Tensor(name, sum(part.channels for part in parts), parts[0].height, parts[0].width)


def _upsample(graph: _GraphBuilder, index: int, layer: Upsample, x: _Tensor) -> _Tensor:
    scales = np.array([1, 1, layer.stride, layer.stride], np.float32)
    output = graph.node(
        "Resize",
        [x.name, "", graph.constant(f"upsample_{index}.scales", scales)],
        f"upsample_{index}",
        mode="nearest",
        coordinate_transformation_mode="asymmetric",
        nearest_mode="floor",
    )
    if layer.scale != 1.0:
        scale = graph.constant(f"upsample_{index}.scale", np.array(layer.scale, np.float32))
        output = graph.node("Mul", [output, scale], f"upsample_{index}_scaled")
    return _Tensor(output, x.channels, x.height * layer.stride, x.width * layer.stride)


def _yolo(
    graph: _GraphBuilder,
    index: int,
    layer: Yolo,
    x: _Tensor,
    input_width: int,
    input_height: int,
    kept_classes: tuple[int, ...] | None = None,
) -> tuple[str, str, int]:
    """Decode one yolo layer into ``boxes`` [N, rows, 4] and ``scores`` [N, rows, classes], and ``rows``;
    ``kept_classes``: only these classes' scores, in this order."""
    anchors = layer.masked_anchors
    count = len(anchors)
    attributes = 5 + layer.classes
    if x.channels != count * attributes:
        raise DarknetCfgError(
            f"layer {index} (yolo): input has {x.channels} channels, expected "
            f"{count} anchors x (5 + {layer.classes} classes) = {count * attributes}"
        )
    rows = x.height * x.width * count  # at the nominal input size
    prefix = f"yolo_{index}"

    def const(name: str, array: npt.NDArray[Any]) -> str:
        return graph.constant(f"{prefix}.{name}", array)

    # Nothing below depends on the grid's size, only on its stride (input pixels per cell), so that one
    # graph serves any input whose sides are multiples of the network's largest stride.
    # [N, A*(5+C), H, W] -> [N, A, 5+C, H*W] -> [N, H*W, A, 5+C]
    split_anchors = graph.node(
        "Reshape",
        [x.name, const("anchor_shape", np.array([0, count, attributes, -1], np.int64))],
        f"{prefix}_anchors",
    )
    cells_last = graph.node("Transpose", [split_anchors], f"{prefix}_cells", perm=[0, 3, 1, 2])
    graph.nodes.append(
        helper.make_node(
            "Split",
            [cells_last, const("split", np.array([2, 2, 1, layer.classes], np.int64))],
            [f"{prefix}_txy", f"{prefix}_twh", f"{prefix}_tobj", f"{prefix}_tcls"],
            name=f"{prefix}_split",
            axis=3,
        )
    )

    # Each cell's (column, row), [1, H*W, 1, 2], from the feature map's own shape.
    shape = graph.node("Shape", [x.name], f"{prefix}_shape")
    height = graph.node("Gather", [shape, const("height_axis", np.array(2, np.int64))], f"{prefix}_h")
    width = graph.node("Gather", [shape, const("width_axis", np.array(3, np.int64))], f"{prefix}_w")
    zero, one = const("zero", np.array(0, np.int64)), const("one", np.array(1, np.int64))
    columns = graph.node("Range", [zero, width, one], f"{prefix}_columns")
    rows_range = graph.node("Range", [zero, height, one], f"{prefix}_rows_range")
    grid_shape = graph.node(
        "Concat",
        [
            graph.node("Unsqueeze", [height, const("axis0", np.array([0], np.int64))], f"{prefix}_h1"),
            graph.node("Unsqueeze", [width, const("axis0b", np.array([0], np.int64))], f"{prefix}_w1"),
        ],
        f"{prefix}_grid_shape",
        axis=0,
    )
    grid_x = graph.node(
        "Expand",
        [
            graph.node("Unsqueeze", [columns, const("axis_x", np.array([0], np.int64))], f"{prefix}_gx"),
            grid_shape,
        ],
        f"{prefix}_grid_x",
    )
    grid_y = graph.node(
        "Expand",
        [
            graph.node("Unsqueeze", [rows_range, const("axis_y", np.array([1], np.int64))], f"{prefix}_gy"),
            grid_shape,
        ],
        f"{prefix}_grid_y",
    )
    last = const("axis_last", np.array([2], np.int64))
    grid = graph.node(
        "Concat",
        [
            graph.node("Unsqueeze", [grid_x, last], f"{prefix}_grid_x1"),
            graph.node("Unsqueeze", [grid_y, last], f"{prefix}_grid_y1"),
        ],
        f"{prefix}_grid",
        axis=2,
    )
    cells = graph.node(
        "Reshape",
        [
            graph.node("Cast", [grid], f"{prefix}_grid_float", to=TensorProto.FLOAT),
            const("cells_shape", np.array([1, -1, 1, 2], np.int64)),
        ],
        f"{prefix}_cell_xy",
    )

    # Centre: (cell + sigmoid(t) * scale_x_y - (scale_x_y - 1) / 2) * stride, in input pixels.
    stride = np.array([input_width / x.width, input_height / x.height], np.float32)
    shifted = graph.node(
        "Add",
        [cells, const("cell_shift", np.array(0.5 * (1.0 - layer.scale_x_y), np.float32))],
        f"{prefix}_shifted",
    )
    offset = graph.node("Mul", [shifted, const("stride", stride)], f"{prefix}_offset")
    sigmoid_xy = graph.node("Sigmoid", [f"{prefix}_txy"], f"{prefix}_sigmoid_xy")
    scaled_xy = graph.node(
        "Mul", [sigmoid_xy, const("xy_scale", stride * layer.scale_x_y)], f"{prefix}_scaled_xy"
    )
    centre = graph.node("Add", [scaled_xy, offset], f"{prefix}_centre")

    # Size: exp(t) * anchor, anchors already in input pixels ([1, 1, A, 2], one per anchor of every cell).
    anchor_sizes = np.array(anchors, np.float32).reshape(1, 1, count, 2)
    exp_wh = graph.node("Exp", [f"{prefix}_twh"], f"{prefix}_exp_wh")
    size = graph.node("Mul", [exp_wh, const("anchor_sizes", anchor_sizes)], f"{prefix}_size")
    half = graph.node("Mul", [size, const("half", np.array(0.5, np.float32))], f"{prefix}_half")
    top_left = graph.node("Sub", [centre, half], f"{prefix}_top_left")
    bottom_right = graph.node("Add", [centre, half], f"{prefix}_bottom_right")
    corners = graph.node("Concat", [top_left, bottom_right], f"{prefix}_corners", axis=3)
    # [N, H*W, A, k] -> [N, H*W*A, k]: rows by cell row, cell column, anchor.
    boxes = graph.node(
        "Reshape", [corners, const("box_rows", np.array([0, -1, 4], np.int64))], f"{prefix}_boxes"
    )

    objectness = graph.node("Sigmoid", [f"{prefix}_tobj"], f"{prefix}_objectness")
    class_logits = f"{prefix}_tcls"
    kept = layer.classes if kept_classes is None else len(kept_classes)
    if kept_classes is not None:
        class_logits = graph.node(
            "Gather",
            [class_logits, const("kept_classes", np.array(kept_classes, np.int64))],
            f"{prefix}_kept_classes",
            axis=3,
        )
    class_probability = graph.node("Sigmoid", [class_logits], f"{prefix}_class_probability")
    products = graph.node("Mul", [objectness, class_probability], f"{prefix}_products")
    scores = graph.node(
        "Reshape", [products, const("score_rows", np.array([0, -1, kept], np.int64))], f"{prefix}_scores"
    )
    return boxes, scores, rows


def _preprocess(graph: _GraphBuilder, images: str, size: int, channels: int) -> _Tensor:
    """uint8 NHWC in 0..255 -> float32 NCHW in 0..1, what Darknet networks are trained on."""
    as_float = graph.node("Cast", [images], "images_float", to=TensorProto.FLOAT)
    scaled = graph.node(
        "Div", [as_float, graph.constant("pixel_scale", np.array(255.0, np.float32))], "images_01"
    )
    nchw = graph.node("Transpose", [scaled], "images_nchw", perm=[0, 3, 1, 2])
    return _Tensor(nchw, channels, size, size)


def network_to_onnx(
    network: DarknetNetwork,
    weights: DarknetWeights,
    *,
    input_size: int = 416,
    model_name: str = "yolov4_tiny",
    io: DetectorIO = DetectorIO(),  # frozen, so safe as a default
    batch_norm_epsilon: float = BATCH_NORM_EPSILON,
    kept_classes: Sequence[int] | None = None,
    any_size: bool = False,
) -> onnx.ModelProto:
    """Convert a parsed network; ``input_size`` overrides the cfg's width and height (square input).

    ``any_size``: the graph takes images of any height and width that are multiples of the network's
    largest stride (32 for YOLOv4-tiny), not only ``input_size`` squares; the number of rows out follows
    (3 per cell of each yolo layer's grid). A 16:9 picture 416 wide then needs no more than 416x288, not
    416x416: a third less of the model's work, spent on bands of padding.

    ``kept_classes``: the class indices whose scores the graph returns, in this order (default: all). The
    others are dropped before their sigmoid: a fraction of the work, and of the bytes of every answer
    (YOLOv4-tiny at 416: 60 KB of scores for 6 classes instead of 811 KB for 80).
    """
    if input_size <= 0 or input_size % 32:
        raise ValueError(f"input_size must be a positive multiple of 32, got {input_size}")
    kept = None if kept_classes is None else tuple(int(c) for c in kept_classes)
    graph = _GraphBuilder()
    x = _preprocess(graph, io.images, input_size, network.channels)
    outputs: list[_Tensor] = []
    decoded: list[tuple[str, str, int]] = []
    classes: set[int] = set()
    for index, layer in enumerate(network.layers):
        if isinstance(layer, Convolutional):
            x = _convolutional(graph, index, layer, x, weights, batch_norm_epsilon)
        elif isinstance(layer, MaxPool):
            x = _maxpool(graph, index, layer, x)
        elif isinstance(layer, Route):
            x = _route(graph, index, layer, outputs)
        elif isinstance(layer, Upsample):
            x = _upsample(graph, index, layer, x)
        else:
            # A yolo layer passes its input on unchanged for any route that refers to it.
            if kept is not None and (not kept or min(kept) < 0 or max(kept) >= layer.classes):
                raise DarknetCfgError(
                    f"layer {index} (yolo): kept_classes must be some of its {layer.classes} classes, "
                    f"got {kept}"
                )
            decoded.append(_yolo(graph, index, layer, x, input_size, input_size, kept))
            classes.add(layer.classes)
        outputs.append(x)
    weights.ensure_consumed()
    if not decoded:
        raise DarknetCfgError("the network has no [yolo] layer")
    if len(classes) != 1:
        raise DarknetCfgError(f"yolo layers disagree on the number of classes: {sorted(classes)}")
    (class_count,) = classes

    boxes, scores, layer_rows = zip(*decoded, strict=True)
    graph.node("Concat", list(boxes), io.boxes, axis=1)
    graph.node("Concat", list(scores), io.scores, axis=1)
    rows: int | str = "rows" if any_size else sum(layer_rows)
    height: int | str = "height" if any_size else input_size
    width: int | str = "width" if any_size else input_size
    onnx_graph = helper.make_graph(
        graph.nodes,
        model_name,
        inputs=[
            helper.make_tensor_value_info(
                io.images, TensorProto.UINT8, ["batch", height, width, network.channels]
            )
        ],
        outputs=[
            helper.make_tensor_value_info(io.boxes, TensorProto.FLOAT, ["batch", rows, 4]),
            helper.make_tensor_value_info(
                io.scores, TensorProto.FLOAT, ["batch", rows, class_count if kept is None else len(kept)]
            ),
        ],
        initializer=graph.initializers,
    )
    model = helper.make_model(
        onnx_graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="vigie_models.darknet",
        ir_version=IR_VERSION,
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def darknet_to_onnx(
    cfg_text: str,
    weights: bytes,
    *,
    input_size: int = 416,
    model_name: str = "yolov4_tiny",
    io: DetectorIO = DetectorIO(),  # frozen, so safe as a default
    batch_norm_epsilon: float = BATCH_NORM_EPSILON,
    kept_classes: Sequence[int] | None = None,
    any_size: bool = False,
) -> onnx.ModelProto:
    """Convert a Darknet cfg and its weights into a checked ONNX model (``kept_classes``, ``any_size``: see
    :func:`network_to_onnx`)."""
    return network_to_onnx(
        parse_cfg(cfg_text),
        DarknetWeights(weights),
        input_size=input_size,
        model_name=model_name,
        io=io,
        batch_norm_epsilon=batch_norm_epsilon,
        kept_classes=kept_classes,
        any_size=any_size,
    )
