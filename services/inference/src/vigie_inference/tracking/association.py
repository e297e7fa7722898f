"""Matching tracks to detections by box overlap and motion, with a maintained assignment solver
(lap.lapjv)."""

from __future__ import annotations

from typing import Any, NamedTuple

import lap
import numpy as np
from numpy.typing import NDArray

__all__ = ["Assignment", "assign", "direction_cost", "height_modulated_iou", "iou_matrix"]

# Cost of a pair that must never be matched (other class). Finite, above any IoU distance in [0, 1].
FORBIDDEN_COST = 10.0
# Below these (box sizes per second, box sizes) a heading is mostly detection jitter (`direction_cost`).
_MIN_HEADING_SPEED = 0.5
_MIN_HEADING_MOVE = 0.1


class Assignment(NamedTuple):
    """Matched (row, column) pairs and what stayed unmatched, as index arrays into the cost matrix."""

    rows: NDArray[np.intp]
    columns: NDArray[np.intp]
    unmatched_rows: NDArray[np.intp]
    unmatched_columns: NDArray[np.intp]


def iou_matrix(first: NDArray[np.floating[Any]], second: NDArray[np.floating[Any]]) -> NDArray[np.float64]:
    """IoU of every box in (T, 4) `first` with every box in (D, 4) `second`, boxes as x1, y1, x2, y2."""
    first = np.asarray(first, dtype=np.float64)
    second = np.asarray(second, dtype=np.float64)
    top_left = np.maximum(first[:, None, 0:2], second[None, :, 0:2])
    bottom_right = np.minimum(first[:, None, 2:4], second[None, :, 2:4])
    overlap_sides = np.clip(bottom_right - top_left, 0.0, None)
    intersection: NDArray[np.float64] = overlap_sides[:, :, 0] * overlap_sides[:, :, 1]
    first_area = (first[:, 2] - first[:, 0]) * (first[:, 3] - first[:, 1])
    second_area = (second[:, 2] - second[:, 0]) * (second[:, 3] - second[:, 1])
    union = first_area[:, None] + second_area[None, :] - intersection
    iou = np.zeros_like(intersection)
    np.divide(intersection, union, out=iou, where=union > 0.0)
    return iou


def height_modulated_iou(
    first: NDArray[np.floating[Any]], second: NDArray[np.floating[Any]]
) -> NDArray[np.float64]:
    """IoU of every box in (T, 4) `first` with every box in (D, 4) `second`, times the IoU of their vertical
    extents (Hybrid-SORT's HMIoU, Yang et al. 2024).

    Why: two people who cross or walk side by side overlap sideways, but unless they stand at the same
    distance from the camera their boxes differ in height and in where their feet are; the vertical
    factor keeps a track on the person at its own depth where plain IoU hesitates. A box and itself
    still score 1."""
    first = np.asarray(first, dtype=np.float64)
    second = np.asarray(second, dtype=np.float64)
    vertical_overlap = np.minimum(first[:, None, 3], second[None, :, 3]) - np.maximum(
        first[:, None, 1], second[None, :, 1]
    )
    np.clip(vertical_overlap, 0.0, None, out=vertical_overlap)
    intersection = np.minimum(first[:, None, 2], second[None, :, 2]) - np.maximum(
        first[:, None, 0], second[None, :, 0]
    )
    np.clip(intersection, 0.0, None, out=intersection)
    intersection *= vertical_overlap
    first_height = first[:, 3] - first[:, 1]
    second_height = second[:, 3] - second[:, 1]
    union = (first[:, 2] - first[:, 0]) * first_height
    union = union[:, None] + ((second[:, 2] - second[:, 0]) * second_height)[None, :] - intersection
    # The union of two overlapping extents; for disjoint ones it is too small, but then the overlap is 0.
    vertical_union = first_height[:, None] + second_height[None, :] - vertical_overlap
    similarity: NDArray[np.float64] = np.zeros_like(intersection)
    np.divide(intersection * vertical_overlap, union * vertical_union, out=similarity, where=union > 0.0)
    return similarity


def direction_cost(velocities: NDArray[np.float64], moves: NDArray[np.float64]) -> NDArray[np.float64]:
    """How far each move from a track's last detection to a candidate detection turns away from the
    track's heading: 0 straight on, 1 straight back (OC-SORT's observation-centric momentum, Cao et al.
    2023), (T, D).

    velocities: (T, 2) each track's centre velocity; moves: (T, D, 2) from each track's last detected
    centre to each detection's centre; both in the track's box sizes (per second). Why: at 3-10 frames/s
    two people crossing each other move far between frames, and boxes alone cannot say who is who; their
    headings can. The angle counts in full only when both the track's speed (half a box a second) and the
    move (a tenth of a box) are large enough for a direction to mean something; below, it fades to 0."""
    move_lengths = np.hypot(moves[:, :, 0], moves[:, :, 1])
    speeds = np.hypot(velocities[:, 0], velocities[:, 1])
    dot = moves[:, :, 0] * velocities[:, 0, None] + moves[:, :, 1] * velocities[:, 1, None]
    # Where a length is 0 so is the dot product: the angle is then a right one, and its confidence 0.
    cosine = dot / np.maximum(move_lengths * speeds[:, None], 1e-12)
    angle: NDArray[np.float64] = np.arccos(np.clip(cosine, -1.0, 1.0)) / np.pi
    confidence = np.minimum(speeds / _MIN_HEADING_SPEED, 1.0)[:, None] * np.minimum(
        move_lengths / _MIN_HEADING_MOVE, 1.0
    )
    cost: NDArray[np.float64] = angle * confidence
    return cost


def assign(cost: NDArray[np.float64], max_cost: float) -> Assignment:
    """Minimum-total-cost one-to-one matching that never pairs a row and a column costing more than
    `max_cost` (they stay unmatched instead)."""
    row_count, column_count = cost.shape
    if row_count == 0 or column_count == 0 or not (cost <= max_cost).any():
        return Assignment(
            rows=np.zeros(0, dtype=np.intp),
            columns=np.zeros(0, dtype=np.intp),
            unmatched_rows=np.arange(row_count, dtype=np.intp),
            unmatched_columns=np.arange(column_count, dtype=np.intp),
        )
    # cost_limit lets lapjv leave a row and a column unmatched for max_cost in all, so a pair dearer than
    # that is never worth choosing; checking again keeps the promise whatever lapjv does at the limit.
    column_of_row, _ = lap.lapjv(cost, extend_cost=True, cost_limit=max_cost, return_cost=False)
    rows = np.flatnonzero(column_of_row >= 0)
    columns = column_of_row[rows].astype(np.intp)
    acceptable = cost[rows, columns] <= max_cost
    rows, columns = rows[acceptable], columns[acceptable]
    row_matched = np.zeros(row_count, dtype=bool)
    row_matched[rows] = True
    column_matched = np.zeros(column_count, dtype=bool)
    column_matched[columns] = True
    return Assignment(
        rows=rows,
        columns=columns,
        unmatched_rows=np.flatnonzero(~row_matched),
        unmatched_columns=np.flatnonzero(~column_matched),
    )
