"""Model names, tensor names and shapes shared by the repository builder and the inference service."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

# Repository variants, identical in inputs and outputs: "onnx" for NVIDIA's Triton image (onnxruntime
# backend), "python" for the tritonserver bundled in nvidia-pytriton (python backend only).
Variant = Literal["onnx", "python"]
VARIANTS: tuple[Variant, ...] = ("onnx", "python")
MAX_BATCH_SIZE = 8
LABELS_FILENAME = "labels.txt"

# YOLOv4-tiny (people and vehicles).
YOLO_MODEL_NAME = "yolov4_tiny"
# uint8 [batch, height, width, 3], RGB, letterboxed by the caller into at most INPUT_SIZE x INPUT_SIZE:
# any height and width that are multiples of INPUT_MULTIPLE (the network's largest stride), so that a
# 16:9 frame is analysed as 416x288, the square less bands of padding (a third less of the model's work).
INPUT_NAME = "images"
INPUT_SIZE = 416
INPUT_MULTIPLE = 32
# float32 [batch, rows, 4]: x1, y1, x2, y2 in input pixels; rows = DETECTION_COUNT for a square input
# (3 anchors per cell of the two grids, at 1/32 and 1/16 of the input's sides).
BOXES_OUTPUT = "boxes"
# float32 [batch, rows, len(COUNTED_COCO_CLASSES)]: objectness x class probability of the
# classes Vigie counts only, in COUNTED_COCO_CLASSES' order (the model computes no other class's score).
SCORES_OUTPUT = "scores"
# 3 anchors on the 13x13 and the 26x26 grids of a 416x416 input.
DETECTION_COUNT = 3 * (INPUT_SIZE // 32) ** 2 + 3 * (INPUT_SIZE // 16) ** 2

# CenterFace (faces, for redaction), with the tensor names of its ONNX export:
# float32 input [batch, 3, height, width] (RGB, 0..255, sides multiples of 32), and outputs
# [batch, channels, height / 4, width / 4].
CENTERFACE_MODEL_NAME = "centerface"
CENTERFACE_INPUT_NAME = "input.1"
CENTERFACE_HEATMAP_OUTPUT = "537"
CENTERFACE_SCALE_OUTPUT = "538"
CENTERFACE_OFFSET_OUTPUT = "539"
CENTERFACE_LANDMARKS_OUTPUT = "540"

# The 80 COCO classes in the order of the detector's scores (Darknet's coco.names); the build checks
# that the downloaded coco.names says the same.
COCO_NAMES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorbike", "aeroplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "sofa", "pottedplant", "bed",
    "diningtable", "toilet", "tvmonitor", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip


# What Vigie counts, as indices into COCO_NAMES: person, bicycle, car, motorbike, bus, truck. The model's
# scores are these classes' only: nothing else the detector could tell (a dog, a handbag) leaves it, and
# each answer carries 60 KB of scores instead of 811 KB.
COUNTED_COCO_CLASSES: tuple[int, ...] = (0, 1, 2, 3, 5, 7)
COUNTED_NAMES: tuple[str, ...] = tuple(COCO_NAMES[i] for i in COUNTED_COCO_CLASSES)


def read_labels(model_dir: Path) -> tuple[str, ...]:
    """The class names a model directory of the repository ships (``<repo>/<variant>/<model>``)."""
    path = model_dir / LABELS_FILENAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} not found: build the model repository with 'make models'") from None
    return tuple(line.strip() for line in text.splitlines() if line.strip())
