"""A constant-velocity Kalman filter on boxes, batched over tracks, with time steps in seconds.

State per track: (cx, cy, w, h, vcx, vcy, vw, vh), box centre and size in normalised picture coordinates
and their velocities per second; the detector measures (cx, cy, w, h).

ByteTrack's filter (after SORT/DeepSORT) uses (cx, cy, aspect, h). Here the state has w and h instead,
as BoT-SORT's does, because boxes are normalised separately along x and y: an aspect ratio of
normalised sizes changes with the camera's picture shape, so a fixed noise on it would mean something
different per camera, whereas noise proportional to w on x and to h on y does not. Noise is expressed
per second (variances grow linearly with the time step) because sampling rates differ per camera and
frames can be skipped.

As in ByteTrack, the process, measurement and initial noises are diagonal, so each measured quantity
and its velocity never correlate with another: the 8x8 covariance is four independent 2x2 blocks. They
are stored as such, (T, 3, 4) arrays holding, per measured quantity, the variance of its value, the
covariance of value and velocity, and the variance of its velocity; the filter is then exactly the
8x8 one, in a few element-wise operations instead of batched matrix products and solves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["BoxKalmanFilter", "MotionNoise", "boxes_to_state", "state_to_boxes"]

FloatArray = NDArray[np.float64]

# Rows of the (T, 3, 4) covariance arrays.
VALUE_VARIANCE, CROSS_COVARIANCE, VELOCITY_VARIANCE = 0, 1, 2

# Floor on a box side (normalised) where sizes scale noise or make boxes: a collapsing prediction must
# neither zero the noise nor produce negative extents.
_MIN_SIDE = 1e-4


@dataclass(frozen=True, slots=True)
class MotionNoise:
    """Standard deviations, each as a fraction of the box's size along the same axis.

    measurement: of one measured centre coordinate or side.
    position: of the random walk of centre and size per √second, beyond the modelled velocity.
    velocity: of the random walk of velocity (per second) per √second.
    initial_velocity: of the velocity (per second) of a box seen for the first time.
    """

    measurement: float
    position: float
    velocity: float
    initial_velocity: float


def boxes_to_state(boxes: NDArray[np.floating[Any]]) -> FloatArray:
    """(N, 4) x1, y1, x2, y2 boxes to (N, 4) cx, cy, w, h."""
    boxes = np.asarray(boxes, dtype=np.float64)
    measured = np.empty_like(boxes)
    measured[:, 0:2] = (boxes[:, 0:2] + boxes[:, 2:4]) * 0.5
    measured[:, 2:4] = boxes[:, 2:4] - boxes[:, 0:2]
    return measured


def state_to_boxes(mean: FloatArray) -> FloatArray:
    """(N, >=4) states whose first columns are cx, cy, w, h to (N, 4) x1, y1, x2, y2 boxes."""
    half_size = np.maximum(mean[:, 2:4], _MIN_SIDE) * 0.5
    return np.concatenate((mean[:, 0:2] - half_size, mean[:, 0:2] + half_size), axis=1)


class BoxKalmanFilter:
    """Predict and update many tracks at once: (T, 8) means and (T, 3, 4) covariances (see module)."""

    def __init__(self, noise: MotionNoise) -> None:
        self._noise = noise

    def initiate(self, measurements: FloatArray) -> tuple[FloatArray, FloatArray]:
        """States of new tracks from their first (T, 4) cx, cy, w, h measurements."""
        count = len(measurements)
        mean = np.zeros((count, 8))
        mean[:, 0:4] = measurements
        sizes = _sizes(measurements)
        covariance = np.zeros((count, 3, 4))
        # Twice the measurement noise on position, as ByteTrack: the first box is all there is.
        covariance[:, VALUE_VARIANCE] = (2.0 * self._noise.measurement * sizes) ** 2
        covariance[:, VELOCITY_VARIANCE] = (self._noise.initial_velocity * sizes) ** 2
        return mean, covariance

    def predict(
        self, mean: FloatArray, covariance: FloatArray, dt: float | FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        """States `dt` seconds later: one step for every track, or a (T,) array of steps, one per track
        (0 leaves a track as it is), for the re-update along a virtual path (see `Tracker`)."""
        if isinstance(dt, np.ndarray):
            dt = dt[:, None]
        elif dt <= 0.0:
            return mean, covariance
        if len(mean) == 0:
            return mean, covariance
        sizes = _sizes(mean)
        value_var = covariance[:, VALUE_VARIANCE]
        cross = covariance[:, CROSS_COVARIANCE]
        velocity_var = covariance[:, VELOCITY_VARIANCE]
        predicted_mean = mean.copy()
        predicted_mean[:, 0:4] += dt * mean[:, 4:8]
        predicted = np.empty_like(covariance)
        # F P Fᵀ + Q for F = [[1, dt], [0, 1]] on each (value, velocity) pair.
        predicted[:, VALUE_VARIANCE] = (
            value_var + 2.0 * dt * cross + dt * dt * velocity_var + (self._noise.position * sizes) ** 2 * dt
        )
        predicted[:, CROSS_COVARIANCE] = cross + dt * velocity_var
        predicted[:, VELOCITY_VARIANCE] = velocity_var + (self._noise.velocity * sizes) ** 2 * dt
        return predicted_mean, predicted

    def update(
        self, mean: FloatArray, covariance: FloatArray, measurements: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        """States corrected by one (T, 4) cx, cy, w, h measurement each."""
        if len(mean) == 0:
            return mean, covariance
        value_var = covariance[:, VALUE_VARIANCE]
        cross = covariance[:, CROSS_COVARIANCE]
        velocity_var = covariance[:, VELOCITY_VARIANCE]
        innovation_var = value_var + (self._noise.measurement * _sizes(mean)) ** 2
        value_gain = value_var / innovation_var
        velocity_gain = cross / innovation_var
        innovation = measurements - mean[:, 0:4]
        corrected_mean = np.concatenate(
            (mean[:, 0:4] + value_gain * innovation, mean[:, 4:8] + velocity_gain * innovation), axis=1
        )
        corrected = np.empty_like(covariance)
        # P - K H P on each pair, with K = (value_gain, velocity_gain).
        corrected[:, VALUE_VARIANCE] = value_var * (1.0 - value_gain)
        corrected[:, CROSS_COVARIANCE] = cross * (1.0 - value_gain)
        corrected[:, VELOCITY_VARIANCE] = velocity_var - velocity_gain * cross
        return corrected_mean, corrected

    def distances(self, mean: FloatArray, covariance: FloatArray, measurements: FloatArray) -> FloatArray:
        """(T, D) squared Mahalanobis distances of (D, 4) cx, cy, w, h measurements from the (T,) tracks'
        predicted boxes: each difference in units of the standard deviation the filter expects for it
        (the box's uncertainty plus the detector's noise), squared and summed over the four quantities,
        so chi-square distributed with 4 degrees of freedom for a track's own detection."""
        expected_variance = covariance[:, VALUE_VARIANCE] + (self._noise.measurement * _sizes(mean)) ** 2
        difference = measurements[None, :, :] - mean[:, None, 0:4]
        distance: FloatArray = (difference**2 / expected_variance[:, None, :]).sum(axis=2)
        return distance


def _sizes(state: FloatArray) -> FloatArray:
    """(T, 4) w, h, w, h of each box: the scale of its noise on cx, cy, w, h respectively."""
    sides = np.maximum(np.abs(state[:, 2:4]), _MIN_SIDE)
    return np.concatenate((sides, sides), axis=1)
