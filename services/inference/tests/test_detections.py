from typing import Any

import numpy as np
import pytest

from vigie_inference.detections import COCO_TO_COUNTED, CountedClass, Detections, decode_detections
from vigie_inference.letterbox import LetterboxTransform
from vigie_models import COCO_NAMES, COUNTED_COCO_CLASSES, COUNTED_NAMES

ANCHORS = 2535
COCO_CLASSES = 80
COCO_INDEX = {"person": 0, "bicycle": 1, "car": 2, "bus": 5, "truck": 7, "dog": 16}

# A 416x234 frame from ingest, padded by 91 rows above and below.
FRAME = LetterboxTransform(
    scale=1.0, pad_x=0, pad_y=91, width=416, height=234, content_width=416, content_height=234
)
SQUARE = LetterboxTransform(
    scale=1.0, pad_x=0, pad_y=0, width=416, height=416, content_width=416, content_height=416
)


class RawOutputs:
    """The detector's outputs for one picture: every anchor scoring zero until set."""

    def __init__(self) -> None:
        self.boxes = np.zeros((ANCHORS, 4), dtype=np.float32)
        self.scores = np.zeros((ANCHORS, COCO_CLASSES), dtype=np.float32)
        self._next = 0

    def add(self, box: tuple[float, float, float, float], **scores: float) -> int:
        anchor = self._next
        self._next += 1
        self.boxes[anchor] = box
        for name, score in scores.items():
            self.scores[anchor, COCO_INDEX[name]] = score
        return anchor

    def decode(self, transform: LetterboxTransform = SQUARE, **options: Any) -> Detections:
        return decode_detections(self.boxes, self.scores, transform, **options)


def test_the_counted_classes_map_to_the_protobuf_codes() -> None:
    assert {coco: int(counted) for coco, counted in COCO_TO_COUNTED.items()} == {
        0: 1,
        1: 2,
        2: 3,
        3: 4,
        5: 5,
        7: 6,
    }


def test_nothing_detected_gives_empty_arrays_of_the_right_shapes() -> None:
    detections = RawOutputs().decode()

    assert len(detections) == 0
    assert detections.boxes.shape == (0, 4)
    assert detections.scores.shape == (0,)
    assert detections.classes.shape == (0,)


def test_no_anchors_at_all_is_not_an_error() -> None:
    detections = decode_detections(
        np.zeros((0, 4), dtype=np.float32), np.zeros((0, COCO_CLASSES), dtype=np.float32), SQUARE
    )

    assert len(detections) == 0


def test_a_dog_never_appears_even_when_confident() -> None:
    raw = RawOutputs()
    raw.add((10, 10, 50, 50), dog=0.99)

    assert len(raw.decode()) == 0


def test_an_anchor_keeps_its_best_counted_class_not_its_best_class() -> None:
    raw = RawOutputs()
    raw.add((10, 10, 50, 50), dog=0.95, person=0.3)
    raw.add((100, 100, 200, 200), car=0.6, truck=0.7)

    detections = raw.decode()

    assert detections.classes.tolist() == [CountedClass.TRUCK, CountedClass.PERSON]
    np.testing.assert_allclose(detections.scores, [0.7, 0.3])


def test_scores_at_the_threshold_are_kept_and_below_it_dropped() -> None:
    raw = RawOutputs()
    raw.add((10, 10, 50, 50), person=0.25)
    raw.add((100, 10, 150, 50), person=np.nextafter(np.float32(0.25), np.float32(0)))
    raw.add((200, 10, 250, 50), person=0.9)

    detections = raw.decode(score_threshold=0.25)

    np.testing.assert_allclose(detections.scores, [0.9, 0.25])


def test_the_low_scores_the_tracker_needs_are_kept_by_default() -> None:
    raw = RawOutputs()
    raw.add((10, 10, 50, 50), person=0.12)
    raw.add((100, 10, 150, 50), person=0.08)

    np.testing.assert_allclose(raw.decode().scores, [0.12])


def test_boxes_are_mapped_to_the_picture_and_normalised() -> None:
    raw = RawOutputs()
    raw.add((104, 91 + 117, 208, 91 + 234), person=0.9)

    detections = raw.decode(FRAME)

    np.testing.assert_allclose(detections.boxes, [[0.25, 0.5, 0.5, 1.0]], atol=1e-6)
    assert detections.boxes.dtype == np.float32


def test_a_box_partly_on_the_padding_is_clipped_and_one_wholly_on_it_dropped() -> None:
    raw = RawOutputs()
    raw.add((-20, 50, 100, 150), person=0.9)  # top part on the padding, left part outside
    raw.add((10, 0, 50, 80), car=0.8)  # wholly on the top padding

    detections = raw.decode(FRAME)

    np.testing.assert_allclose(detections.boxes, [[0.0, 0.0, 100 / 416, 59 / 234]], atol=1e-6)
    assert detections.classes.tolist() == [CountedClass.PERSON]


def test_nms_keeps_the_best_of_overlapping_boxes_of_one_class() -> None:
    raw = RawOutputs()
    raw.add((100, 100, 200, 300), person=0.7)
    raw.add((105, 100, 205, 300), person=0.9)  # IoU about 0.9 with the first
    raw.add((300, 100, 400, 300), person=0.5)  # apart

    detections = raw.decode()

    np.testing.assert_allclose(detections.scores, [0.9, 0.5])
    np.testing.assert_allclose(detections.boxes[0], np.array([105, 100, 205, 300]) / 416, atol=1e-6)


def test_nms_keeps_overlapping_boxes_of_different_classes() -> None:
    raw = RawOutputs()
    raw.add((100, 100, 200, 300), person=0.9)
    raw.add((100, 100, 200, 300), bicycle=0.8)  # a cyclist: the person and the bicycle both count
    raw.add((100, 100, 200, 300), car=0.7)

    detections = raw.decode()

    assert sorted(detections.classes.tolist()) == [
        CountedClass.PERSON,
        CountedClass.BICYCLE,
        CountedClass.CAR,
    ]


def test_nms_keeps_different_classes_apart_even_for_boxes_beyond_the_picture() -> None:
    # OpenCV separates classes by shifting boxes by class x (largest coordinate + 1): unclipped
    # negative coordinates would let a person box land on a car box. Clipping first prevents it.
    raw = RawOutputs()
    raw.add((-300, -300, 40, 40), person=0.9)
    raw.add((-300, -300, 40, 40), car=0.8)

    assert len(raw.decode()) == 2


def test_nms_iou_threshold_is_exclusive() -> None:
    raw = RawOutputs()
    raw.add((0, 0, 100, 100), person=0.9)
    raw.add((0, 0, 100, 50), person=0.8)  # IoU exactly 0.5

    assert len(raw.decode(iou_threshold=0.5)) == 2
    assert len(raw.decode(iou_threshold=0.49)) == 1


def test_at_most_max_detections_remain_best_first() -> None:
    raw = RawOutputs()
    scores = np.linspace(0.2, 0.95, 400)
    for i, score in enumerate(scores):
        x, y = 20 * (i % 20), 20 * (i // 20)
        raw.add((x, y, x + 10, y + 10), person=float(score))

    detections = raw.decode(max_detections=300)

    assert len(detections) == 300
    np.testing.assert_allclose(detections.scores, np.sort(scores)[::-1][:300], rtol=1e-6)


def test_decoding_all_anchors_at_once_is_vectorised_over_random_outputs() -> None:
    rng = np.random.default_rng(3)
    corners = rng.uniform(-20, 436, (ANCHORS, 2)).astype(np.float32)
    sizes = rng.uniform(1, 120, (ANCHORS, 2)).astype(np.float32)
    boxes = np.concatenate((corners, corners + sizes), axis=1)
    scores = (rng.uniform(0, 1, (ANCHORS, COCO_CLASSES)) ** 8).astype(np.float32)

    detections = decode_detections(boxes, scores, FRAME)

    assert 0 < len(detections) <= 300
    assert (detections.boxes >= 0).all()
    assert (detections.boxes <= 1).all()
    assert (detections.boxes[:, 2:] > detections.boxes[:, :2]).all()
    assert (detections.scores >= 0.1).all()
    assert (np.diff(detections.scores) <= 0).all()
    assert set(detections.classes.tolist()) <= {int(c) for c in CountedClass}


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"score_threshold": 0.0}, "score_threshold"),
        ({"iou_threshold": 1.5}, "iou_threshold"),
        ({"max_detections": 0}, "max_detections"),
    ],
)
def test_rejects_bad_options_naming_them(options: dict[str, float], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        RawOutputs().decode(**options)


def test_the_model_gives_the_counted_classes_in_the_decoders_order() -> None:
    assert tuple(COCO_TO_COUNTED) == COUNTED_COCO_CLASSES
    assert COUNTED_NAMES == ("person", "bicycle", "car", "motorbike", "bus", "truck")
    assert [COCO_NAMES[i] for i in COUNTED_COCO_CLASSES] == list(COUNTED_NAMES)


def test_the_counted_only_layout_decodes_like_the_full_coco_one() -> None:
    raw = RawOutputs()
    raw.add((10, 10, 50, 120), person=0.9, dog=0.95)
    raw.add((200, 100, 300, 160), car=0.3, truck=0.6)
    raw.add((100, 200, 140, 260), bicycle=0.05)  # under the threshold
    raw.add((300, 300, 400, 400), dog=0.99)  # not a counted class: nothing

    full = raw.decode(FRAME)
    counted = decode_detections(raw.boxes, raw.scores[:, COUNTED_COCO_CLASSES], FRAME)

    assert len(full) == 2
    np.testing.assert_array_equal(counted.boxes, full.boxes)
    np.testing.assert_array_equal(counted.scores, full.scores)
    np.testing.assert_array_equal(counted.classes, full.classes)
    assert list(counted.classes) == [CountedClass.PERSON, CountedClass.TRUCK]


def test_rejects_outputs_of_the_wrong_shape() -> None:
    with pytest.raises(ValueError, match="boxes"):
        decode_detections(np.zeros((10, 5)), np.zeros((10, 80)), SQUARE)
    with pytest.raises(ValueError, match="scores"):
        decode_detections(np.zeros((10, 4)), np.zeros((11, 80)), SQUARE)
    with pytest.raises(ValueError, match="scores"):
        decode_detections(np.zeros((10, 4)), np.zeros((10, 5)), SQUARE)


def test_detections_built_by_hand_are_coerced_and_checked() -> None:
    detections = Detections(boxes=[[0.1, 0.1, 0.2, 0.2]], scores=[0.5], classes=[CountedClass.CAR])

    assert detections.boxes.dtype == np.float32
    assert detections.classes.dtype == np.int8
    assert len(detections.select(np.array([True]))) == 1
    with pytest.raises(ValueError, match="same length"):
        Detections(boxes=[[0.1, 0.1, 0.2, 0.2]], scores=[0.5, 0.6], classes=[1])
    with pytest.raises(ValueError, match="CountedClass"):
        Detections(boxes=[[0.1, 0.1, 0.2, 0.2]], scores=[0.5], classes=[16])
