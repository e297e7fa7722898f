"""Matching tracks to detections by box overlap, with a maintained assignment solver (lap.lapjv)."""

from __future__ import annotations

from typing import Any, NamedTuple

import lap
import numpy as np
from numpy.typing import NDArray

__all__ = ["Assignment", "assign", "iou_matrix"]

# Cost of a pair that must never be matched (other class). Finite, above any IoU distance in [0, 1].
FORBIDDEN_COST = 10.0


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
