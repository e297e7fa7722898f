"""From the detector's raw outputs to the few detections Vigie counts.

The YOLOv4-tiny export gives, per picture, 2535 candidate boxes (x1, y1, x2, y2 in model pixels) and
the scores (objectness x class probability) of the classes Vigie counts only, in `COCO_TO_COUNTED`'s
order (vigie_models.COUNTED_COCO_CLASSES): the model itself drops every other thing it could tell (dogs,
handbags, ...). A model giving all 80 COCO scores (an older repository, another detector in the same
layout) is read too: the other classes are dropped here, before anything else sees them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Final

import cv2
import numpy as np
from numpy.typing import NDArray

from vigie_inference.letterbox import LetterboxTransform

__all__ = ["COCO_TO_COUNTED", "CountedClass", "Detections", "decode_detections"]


class CountedClass(IntEnum):
    """The object classes Vigie counts; values are those of the protobuf enum `vigie.v1.ObjectClass`."""

    PERSON = 1
    BICYCLE = 2
    CAR = 3
    MOTORCYCLE = 4
    BUS = 5
    TRUCK = 6


COCO_TO_COUNTED: Final[dict[int, CountedClass]] = {
    0: CountedClass.PERSON,
    1: CountedClass.BICYCLE,
    2: CountedClass.CAR,
    3: CountedClass.MOTORCYCLE,
    5: CountedClass.BUS,
    7: CountedClass.TRUCK,
}
_COCO_COLUMNS: Final = np.array(list(COCO_TO_COUNTED), dtype=np.intp)
COCO_CLASS_COUNT: Final = 80
_COUNTED_CODES: Final = np.array([int(c) for c in COCO_TO_COUNTED.values()], dtype=np.int8)
_MIN_CODE: Final = min(CountedClass)
_MAX_CODE: Final = max(CountedClass)

DEFAULT_SCORE_THRESHOLD = 0.1  # ByteTrack's low threshold: its second association needs these
DEFAULT_IOU_THRESHOLD = 0.45  # the usual YOLOv4 NMS threshold
DEFAULT_MAX_DETECTIONS = 300


@dataclass(frozen=True, slots=True)
class Detections:
    """Detections of one picture, in descending score order when they come from `decode_detections`.

    boxes: (N, 4) float32, x1, y1, x2, y2 normalised to the picture (0 left/top, 1 right/bottom);
    scores: (N,) float32 in [0, 1]; classes: (N,) int8 `CountedClass` values.
    """

    boxes: NDArray[np.float32]
    scores: NDArray[np.float32]
    classes: NDArray[np.int8]

    def __post_init__(self) -> None:
        # Coerce rather than reject dtypes so that tests and callers can pass plain lists; no copy when
        # the arrays already have the right dtype.
        boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        classes = np.asarray(self.classes, dtype=np.int8).reshape(-1)
        if not len(boxes) == len(scores) == len(classes):
            raise ValueError(
                f"Detections: boxes, scores and classes must have the same length, "
                f"got {len(boxes)}, {len(scores)}, {len(classes)}"
            )
        if len(classes) and (classes.min() < _MIN_CODE or classes.max() > _MAX_CODE):
            raise ValueError(
                f"Detections.classes: values must be CountedClass codes, got {np.unique(classes)}"
            )
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "classes", classes)

    @classmethod
    def empty(cls) -> Detections:
        return cls(
            boxes=np.zeros((0, 4), dtype=np.float32),
            scores=np.zeros(0, dtype=np.float32),
            classes=np.zeros(0, dtype=np.int8),
        )

    def __len__(self) -> int:
        return len(self.scores)

    def select(self, which: NDArray[np.bool_] | NDArray[np.integer[Any]]) -> Detections:
        """The detections picked by a boolean mask or an index array."""
        return Detections(boxes=self.boxes[which], scores=self.scores[which], classes=self.classes[which])


def decode_detections(
    boxes: NDArray[np.floating[Any]],
    scores: NDArray[np.floating[Any]],
    transform: LetterboxTransform,
    *,
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    iou_threshold: float = DEFAULT_IOU_THRESHOLD,
    max_detections: int = DEFAULT_MAX_DETECTIONS,
) -> Detections:
    """Turn one picture's raw detector outputs into counted-class detections.

    boxes: (A, 4) x1, y1, x2, y2 in model pixels; scores: (A, 6), the counted classes' scores in
    `COCO_TO_COUNTED`'s order, or (A, 80), every COCO class's. Each anchor keeps its best
    counted class; anchors scoring below `score_threshold` go; boxes are mapped to the picture and
    clipped; then class-aware NMS drops a box overlapping a better one of the same class with IoU above
    `iou_threshold`. At most `max_detections` remain, best first.

    The default threshold is ByteTrack's low one (0.1), not a "confident detection" one: the tracker
    splits high from low scores itself (`TrackerParams.high_threshold`) and uses the low ones to keep
    partly hidden objects tracked.
    """
    if not 0.0 < score_threshold <= 1.0:
        raise ValueError(f"score_threshold: must be in (0, 1], got {score_threshold}")
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold: must be in (0, 1], got {iou_threshold}")
    if max_detections < 1:
        raise ValueError(f"max_detections: must be at least 1, got {max_detections}")
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes: expected shape (anchors, 4), got {boxes.shape}")
    columns = (len(COCO_TO_COUNTED), COCO_CLASS_COUNT)
    if scores.ndim != 2 or scores.shape[0] != boxes.shape[0] or scores.shape[1] not in columns:
        raise ValueError(
            f"scores: expected shape ({boxes.shape[0]}, {columns[0]} or {columns[1]}) matching boxes, "
            f"got {scores.shape}"
        )

    counted_scores = scores if scores.shape[1] == len(COCO_TO_COUNTED) else scores[:, _COCO_COLUMNS]
    best_scores = counted_scores.max(axis=1)
    candidates = np.flatnonzero(best_scores >= score_threshold)
    if candidates.size == 0:
        return Detections.empty()
    candidate_scores = best_scores[candidates].astype(np.float32, copy=False)
    candidate_classes = _COUNTED_CODES[counted_scores[candidates].argmax(axis=1)]
    candidate_boxes = transform.to_normalised(boxes[candidates])

    # A box lying wholly on the padding collapses to nothing once clipped to the picture.
    widths = candidate_boxes[:, 2] - candidate_boxes[:, 0]
    heights = candidate_boxes[:, 3] - candidate_boxes[:, 1]
    inside = (widths > 0.0) & (heights > 0.0)
    if not inside.all():
        candidate_boxes, candidate_scores = candidate_boxes[inside], candidate_scores[inside]
        candidate_classes, widths, heights = candidate_classes[inside], widths[inside], heights[inside]
        if candidate_boxes.size == 0:
            return Detections.empty()

    kept = _class_aware_nms(
        candidate_boxes, widths, heights, candidate_scores, candidate_classes, iou_threshold, max_detections
    )
    return Detections(
        boxes=candidate_boxes[kept], scores=candidate_scores[kept], classes=candidate_classes[kept]
    )


def _class_aware_nms(
    boxes: NDArray[np.float32],
    widths: NDArray[np.float32],
    heights: NDArray[np.float32],
    scores: NDArray[np.float32],
    classes: NDArray[np.int8],
    iou_threshold: float,
    max_detections: int,
) -> NDArray[np.intp]:
    """Indices kept by OpenCV's batched NMS, best score first.

    Pitfalls of `cv2.dnn.NMSBoxesBatched` handled here: it takes x, y, width, height; it keeps scores
    strictly above its own threshold (we threshold before, with >=, and pass 0 so it drops nothing
    more); it suppresses when IoU is strictly above `nms_threshold`; it separates classes by shifting
    boxes by class x (largest coordinate + 1), which lets classes collide when a coordinate is below -1,
    so boxes must be clipped to [0, 1] before (they are); and it returns an empty tuple, not an array,
    when nothing is kept.
    """
    xywh = np.empty_like(boxes)
    xywh[:, 0:2] = boxes[:, 0:2]
    xywh[:, 2] = widths
    xywh[:, 3] = heights
    # Lists, not arrays: OpenCV converts an array to its vector of boxes row by row, about three times
    # slower than a list (measured, OpenCV 4.11).
    kept = cv2.dnn.NMSBoxesBatched(
        xywh.tolist(), scores.tolist(), classes.tolist(), 0.0, iou_threshold, top_k=max_detections
    )
    return np.asarray(kept, dtype=np.intp).reshape(-1)
