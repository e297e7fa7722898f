"""Vigie's model repository: what the models are called and what they take and return.

Code that calls the models imports these names instead of repeating strings. Building the repository
(``python -m vigie_models build``) lives in :mod:`vigie_models.build`, which needs ``onnx``; importing
this package does not.
"""

from vigie_models._names import (
    BOXES_OUTPUT,
    CENTERFACE_HEATMAP_OUTPUT,
    CENTERFACE_INPUT_NAME,
    CENTERFACE_LANDMARKS_OUTPUT,
    CENTERFACE_MODEL_NAME,
    CENTERFACE_OFFSET_OUTPUT,
    CENTERFACE_SCALE_OUTPUT,
    COCO_NAMES,
    COUNTED_COCO_CLASSES,
    COUNTED_NAMES,
    DETECTION_COUNT,
    INPUT_MULTIPLE,
    INPUT_NAME,
    INPUT_SIZE,
    LABELS_FILENAME,
    MAX_BATCH_SIZE,
    SCORES_OUTPUT,
    VARIANTS,
    YOLO_MODEL_NAME,
    Variant,
    read_labels,
)

__all__ = [
    "BOXES_OUTPUT",
    "CENTERFACE_HEATMAP_OUTPUT",
    "CENTERFACE_INPUT_NAME",
    "CENTERFACE_LANDMARKS_OUTPUT",
    "CENTERFACE_MODEL_NAME",
    "CENTERFACE_OFFSET_OUTPUT",
    "CENTERFACE_SCALE_OUTPUT",
    "COCO_NAMES",
    "COUNTED_COCO_CLASSES",
    "COUNTED_NAMES",
    "DETECTION_COUNT",
    "INPUT_MULTIPLE",
    "INPUT_NAME",
    "INPUT_SIZE",
    "LABELS_FILENAME",
    "MAX_BATCH_SIZE",
    "SCORES_OUTPUT",
    "VARIANTS",
    "YOLO_MODEL_NAME",
    "Variant",
    "read_labels",
]
