"""ByteTrack-style multi-object tracker with OC-SORT's and Hybrid-SORT's motion cues: one instance per
camera run, boxes and motion only (no appearance, no re-identification).

Each update (Zhang et al., "ByteTrack: Multi-Object Tracking by Associating Every Detection Box", 2022;
Cao et al., "Observation-Centric SORT", 2023; Yang et al., "Hybrid-SORT", 2024):

1. tracks last seen longer than `track_buffer_s` ago end, and every track's Kalman state is predicted
   to the frame's time;
2. confirmed tracks (visible or lost) are matched to the confident detections (score >=
   `high_threshold`) by 1 - HMIoU x score with the predicted box (IoU times the IoU of the vertical
   extents, Hybrid-SORT's height cue), plus `direction_weight` x how far the move from the track's last
   observed centre to the detection turns away from its heading (OC-SORT's observation-centric
   momentum): at 3-10 frames/s people move far between frames and boxes overlap little, so who is at
   which depth and who goes which way tell crossing people apart where overlap alone hesitates;
3. confirmed tracks still unmatched are matched to the uncertain detections (`low_threshold` <= score <
   `high_threshold`) by IoU: a partly hidden person scores low but is still the same person, which is
   ByteTrack's point. Unlike ByteTrack, lost tracks take part too (still only with a box overlapping
   their prediction by IoU >= 1 - `max_low_match_distance`): at 5 frames/s, a person hidden for a frame
   behind another usually comes back half hidden, with a low score, and would otherwise start a new id;
4. confirmed tracks seen at the previous frame and still unmatched are matched to the confident
   detections left by how far (squared Mahalanobis distance of centre and size under the Kalman
   filter's uncertainty) each lies from their predicted box, up to `motion_gate`: at 3 frames/s a
   walker seen side-on (2-3 box widths a second) or a car moves more than its own width between frames,
   their boxes no longer overlap, and every frame would otherwise start a new id. The filter's
   uncertainty sets the reach: wide for a track whose velocity is not known yet, narrow for a steady one;
5. tentative tracks are matched to the confident detections left, by overlap, then those still
   unmatched as in step 4 (their velocity is unknown, so their reach is wide); a tentative track that
   misses a frame is dropped, one matched `confirm_hits` frames in a row is confirmed and only then gets
   an id;
6. a lost track found again is re-updated along a straight virtual path from its last detection to
   this one, one Kalman step per missed frame (OC-SORT's observation-centric re-update), so that its
   velocity is the one it really had while hidden rather than the one it drifted with;
7. confident detections still unmatched with score >= `new_track_threshold` start tracks (confirmed at
   once from `confirm_score`, tentative below it), except where one covers a track of another class that
   this frame left unmatched: the detector relabelled that object (car/truck) for a frame.

Association is class-aware: a track keeps the class of the detection that started it and only ever
takes detections of that class, so the class reported for an id never changes (what the anonymiser
counts by). When the detector hesitates between classes (car/truck) for a frame, the track misses that
frame and is found again at the next, within `track_buffer_s`.

The camera's policy (`TrackingRules`, from the registry's `CameraPolicy`) bounds what is tracked:

- only the classes its purpose needs (docs/privacy.md rule 7): a detection of another class is discarded
  before step 2, so it never gets a track nor an id (`TrackerUpdate.discarded` counts them), and a track
  of a class no longer allowed (the policy changed) ends at step 1;
- for at most `track_max_s` from the capture time of its first frame (docs/privacy.md rule 14): a track
  reaching that age ends (its id in `TrackerUpdate.ended`, its class in `aged_out`). If its object is seen
  in that frame it goes on at once as a new track: a new random id, a Kalman state started afresh from
  this frame's detection, a new age; nothing of the old track carries over. Otherwise it simply ends.

Privacy: a track holds its Kalman state (current box and velocity), the box of its latest detection and
the Kalman state right after it (both replaced at each detection; step 6 needs them), class, last score,
the capture time of its first frame and counters, and, while it is tentative, the box of the detection
that started it (reported once with its first box, then forgotten) — no history of positions, no
appearance. Ids are 16
random bytes drawn at confirmation or renewal (128 bits make a repeat practically impossible, which is
what "never reused" rests on: no list of past ids is kept) and are dropped when the track ends, after
being reported once in `TrackerUpdate.ended` (or by `Tracker.end_all`).
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, model_validator

from vigie_inference.detections import CountedClass, Detections
from vigie_inference.tracking.association import (
    FORBIDDEN_COST,
    assign,
    direction_cost,
    height_modulated_iou,
    iou_matrix,
)
from vigie_inference.tracking.kalman import BoxKalmanFilter, MotionNoise, boxes_to_state, state_to_boxes

__all__ = ["Tracker", "TrackerParams", "TrackerUpdate", "TrackingRules", "VisibleTrack"]

TRACK_ID_BYTES = 16
# docs/privacy.md rule 14: pseudonymous data anonymous "at worst within 24 hours"; the registry refuses more.
TRACK_MAX_CEILING_S = 86_400.0


class TrackerParams(BaseModel):
    """Tracker settings. Defaults start from ByteTrack's (MOT17, 30 fps) and are tuned for 3-10 frames/s
    sampling on TUD-Campus and TUD-Stadtmitte with YOLOv4-tiny (bench/tracking.py gives the figures).

    high_threshold: detections scoring at least this take part in the first association (ByteTrack's
        track_thresh, 0.5; 0.6 here, better on both TUD sequences: YOLOv4-tiny scores a person half
        hidden by another around 0.5-0.6, and such a box belongs with the uncertain ones, matched after
        the confident ones had their pick and only to a track whose predicted box it overlaps well).
    low_threshold: detections scoring below this are ignored; those between it and high_threshold only
        keep confirmed tracks, visible or lost, alive (ByteTrack's fixed 0.1). Match
        `decode_detections`' score_threshold.
    new_track_threshold: an unmatched confident detection starts a track only from this score
        (ByteTrack's det_thresh = track_thresh + 0.1).
    max_match_distance: largest 1 - HMIoU x score (without the score when not fuse_score), plus the
        direction term, accepted in the first and tentative associations (ByteTrack's match_thresh,
        0.8). 0.9 here: at 3-5 frames/s a walker moves a third to a half of
        their box's width between frames, so the predicted and detected boxes overlap less than at
        30 fps, and the height and direction cues keep the looser overlap from pairing the wrong ones.
    max_low_match_distance: largest 1 - HMIoU, plus the direction term, for the uncertain detections
        (ByteTrack's fixed 0.5 on 1 - IoU).
    fuse_score: weigh HMIoU by the detection's score in the first and tentative associations, as
        ByteTrack does IoU for MOT17.
    confirm_hits: consecutive matched frames before a track started by a detection scoring below
        `confirm_score` is confirmed and reported. ByteTrack confirms at the second frame; 2 is kept
        because at 5 fps a third would hide every object for 0.6 s, longer than a fast vehicle takes to
        cross a counting line.
    confirm_score: a detection scoring at least this starts a track confirmed at once, reported from its
        first frame (None: never). At 3-5 frames/s a second frame costs every object 0.2-0.3 s of its
        path, and a tentative track, whose velocity is unknown, is the one most often paired with the
        wrong detection among people walking in a group; a detection this confident is rarely false (and
        a one-frame false one gets an id that ends unused: a single position crosses no line). Small or
        distant objects, scored lower (YOLOv4-tiny gives the sample film's pedestrians 0.5-0.65), still
        need `confirm_hits` frames.
    track_buffer_s: how long a lost track may be found again before it ends, in seconds so that 3 and
        25 frames/s behave alike. ByteTrack keeps 30 frames, 1 s at 30 fps; 3 s here covers a pedestrian
        hidden by a passing vehicle or a group; the direction and height cues, and the IoU with the
        extrapolated box, keep a long-lost track from being given to someone else.
    track_max_s: the longest a track may live (from the capture time of its first frame) when the camera's
        policy sets no limit (`TrackingRules.track_max_s` None: the policy is not followed, or its
        `track_max_seconds` is 0). 600 s is the registry's default (`DEFAULT_TRACK_MAX_S`,
        docs/privacy.md rule 14: anonymous within minutes).
    direction_weight: weight of the direction term in the first association (OC-SORT's inertia, 0.2):
        0 ignores headings, 1 makes a detection straight behind a moving track cost as much as no overlap.
    motion_gate: the largest squared Mahalanobis distance (centre and size, 4 degrees of freedom) at which
        a track seen at the previous frame takes a confident detection its predicted box does not overlap
        (step 4); 9.49 is chi-square's 95 % point, DeepSORT's gate. 0 turns step 4 off.
    measurement_noise, position_noise, velocity_noise, initial_velocity_noise: Kalman filter standard
        deviations as fractions of the box's size (see `MotionNoise`): ByteTrack's per-frame values
        (1/20, 1/20, 1/160, 10/160 per frame) at the 30 fps they were tuned for, expressed per second
        so that they hold at any sampling rate: 0.05, 0.05·√30, (30/160)·√30 and 10·30/160.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    high_threshold: float = Field(default=0.6, gt=0.0, le=1.0)
    low_threshold: float = Field(default=0.1, gt=0.0, le=1.0)
    new_track_threshold: float = Field(default=0.6, gt=0.0, le=1.0)
    max_match_distance: float = Field(default=0.9, gt=0.0, lt=1.0)
    max_low_match_distance: float = Field(default=0.5, gt=0.0, lt=1.0)
    fuse_score: bool = True
    confirm_hits: int = Field(default=2, ge=1, le=100)
    confirm_score: float | None = Field(default=0.7, gt=0.0, le=1.0)
    track_buffer_s: float = Field(default=3.0, gt=0.0, le=60.0)
    track_max_s: float = Field(default=600.0, ge=1.0, le=TRACK_MAX_CEILING_S)
    measurement_noise: float = Field(default=0.05, gt=0.0)
    position_noise: float = Field(default=0.27, gt=0.0)
    velocity_noise: float = Field(default=1.0, gt=0.0)
    initial_velocity_noise: float = Field(default=1.9, gt=0.0)
    direction_weight: float = Field(default=0.2, ge=0.0, le=1.0)
    motion_gate: float = Field(default=9.49, ge=0.0)

    @model_validator(mode="after")
    def _thresholds_ordered(self) -> Self:
        if self.low_threshold > self.high_threshold:
            raise ValueError(
                f"low_threshold ({self.low_threshold}) must not exceed high_threshold ({self.high_threshold})"
            )
        if self.new_track_threshold < self.high_threshold:
            raise ValueError(
                f"new_track_threshold ({self.new_track_threshold}) must be at least high_threshold "
                f"({self.high_threshold}): only confident detections start tracks"
            )
        return self


@dataclass(frozen=True, slots=True)
class TrackingRules:
    """What a camera's policy allows its tracker (`vigie_core.policy`: ``object_classes``,
    ``track_max_seconds``); the default allows every class for the tracker's own `track_max_s`.

    classes: the classes that may be tracked; detections of the others are discarded before tracking.
    track_max_s: the longest a track may live, seconds from the capture time of its first frame; None:
        `TrackerParams.track_max_s`.
    """

    classes: frozenset[CountedClass] = frozenset(CountedClass)
    track_max_s: float | None = None

    def __post_init__(self) -> None:
        if self.track_max_s is not None and not 0.0 < self.track_max_s <= TRACK_MAX_CEILING_S:
            raise ValueError(
                f"track_max_s: must be in (0, {TRACK_MAX_CEILING_S:.0f}] seconds, got {self.track_max_s}"
            )

    @property
    def every_class(self) -> bool:
        return len(self.classes) == len(CountedClass)

    def allows(self, classes: NDArray[np.int8]) -> NDArray[np.bool_]:
        """Which of these `CountedClass` codes may be tracked."""
        allowed = np.zeros(_MAX_CODE + 1, dtype=bool)
        allowed[[int(c) for c in self.classes]] = True
        return allowed[classes]


@dataclass(frozen=True, slots=True)
class VisibleTrack:
    """A confirmed track matched in this frame.

    box: x1, y1, x2, y2 normalised to the picture, clipped to [0, 1]: the Kalman filter's corrected box
    (as ByteTrack reports), not the raw detection, because it jitters less from frame to frame, so a
    box standing on a counting line crosses it back and forth less often. score: the score of the
    detection matched in this frame.
    first_box: only in the frame a track started tentative is first reported (confirmed): the box of the
    detection that started it, `confirm_hits` - 1 frames earlier or more, so that a crossing made while the
    track was being confirmed is not lost. One earlier box of this same track, reported once.
    """

    track_id: bytes
    object_class: CountedClass
    score: float
    box: tuple[float, float, float, float]
    first_box: tuple[float, float, float, float] | None = None


@dataclass(frozen=True, slots=True)
class TrackerUpdate:
    """What one frame changed: the confirmed tracks visible in it, and the ids of tracks that ended
    (each reported once, never to appear again).

    discarded: this frame's detections of classes the rules do not allow, by class (never tracked).
    aged_out: the classes of the tracks that ended because they reached `track_max_s` (one per track;
    their ids are in `ended`, and a renewed one's new id among `tracks`).
    """

    tracks: tuple[VisibleTrack, ...]
    ended: tuple[bytes, ...]
    discarded: Mapping[CountedClass, int] = field(default_factory=dict)
    aged_out: tuple[CountedClass, ...] = ()


# Track states, plain ints rather than an enum because they live in a numpy array.
_TENTATIVE = 0  # seen, not yet confirmed; has no id and is never reported
_TRACKED = 1  # confirmed and matched in the latest frame
_LOST = 2  # confirmed, unmatched since `last_seen`; may be found again within the buffer

# Floor on a box side (normalised) where a size divides, as in the Kalman filter.
_MIN_SIDE = 1e-4
# A new detection overlapping a just-lost track of another class this much is that object relabelled.
_RELABEL_IOU = 0.5
# At most this many Kalman steps along the virtual path of a lost track found again (`_reupdate`): as
# good as one per missed frame on the benchmarks, and a 3 s gap at 25 frames/s costs 4 steps, not 75.
_MAX_VIRTUAL_STEPS = 4

_CLASS_BY_CODE = {int(counted): counted for counted in CountedClass}
_MAX_CODE = max(_CLASS_BY_CODE)
_EVERY_CLASS = TrackingRules()


class Tracker:
    """Tracks the counted objects of one camera run. Not thread-safe; one instance per camera."""

    # The per-track arrays, one row per live track, kept in parallel (see `_keep`, `_start_tracks`).
    _ROWS = (
        "_mean",
        "_covariance",
        "_observed_mean",
        "_observed_covariance",
        "_observation",
        "_classes",
        "_scores",
        "_states",
        "_hits",
        "_last_seen",
        "_born",
        "_origin",
        "_first_report",
    )

    def __init__(self, params: TrackerParams | None = None) -> None:
        self._params = params if params is not None else TrackerParams()
        self._filter = BoxKalmanFilter(
            MotionNoise(
                measurement=self._params.measurement_noise,
                position=self._params.position_noise,
                velocity=self._params.velocity_noise,
                initial_velocity=self._params.initial_velocity_noise,
            )
        )
        self._last_timestamp: float | None = None
        self._interval = 0.0  # the usual time between frames (smoothed), for the virtual path's steps
        # One row per live track, in parallel arrays so that a frame is a few vectorised operations.
        self._mean = np.zeros((0, 8))
        self._covariance = np.zeros((0, 3, 4))
        # At the latest detection: the Kalman state just corrected by it, and its cx, cy, w, h.
        self._observed_mean = np.zeros((0, 8))
        self._observed_covariance = np.zeros((0, 3, 4))
        self._observation = np.zeros((0, 4))
        self._classes = np.zeros(0, dtype=np.int8)
        self._scores = np.zeros(0, dtype=np.float32)
        self._states = np.zeros(0, dtype=np.int8)
        self._hits = np.zeros(0, dtype=np.int32)
        self._last_seen = np.zeros(0)
        self._born = np.zeros(0)  # capture time of each track's first frame
        # The box of a tentative track's first detection, reported once with the track's first box (see
        # `VisibleTrack.first_box`); `_first_report`: the track is reported for the first time this frame.
        self._origin = np.zeros((0, 4))
        self._first_report = np.zeros(0, dtype=bool)
        self._ids: list[bytes | None] = []

    @property
    def params(self) -> TrackerParams:
        return self._params

    @property
    def live_tracks(self) -> int:
        """Confirmed tracks not yet ended (visible or lost)."""
        return sum(track_id is not None for track_id in self._ids)

    def update(
        self, detections: Detections, timestamp: float, rules: TrackingRules = _EVERY_CLASS
    ) -> TrackerUpdate:
        """Advance to a frame taken at `timestamp` (seconds, any clock, never decreasing) with its
        detections, all classes together, under the camera's policy in force at that time."""
        dt = self._advance_clock(timestamp)
        detections, discarded = _admit(detections, rules)
        ending = timestamp - self._last_seen > self._params.track_buffer_s
        if not rules.every_class:
            ending |= ~rules.allows(self._classes)
        ended = self._end_tracks(ending)
        self._predict(dt)

        matched_rows, matched_detections, unmatched_high = self._associate(detections)
        self._correct(matched_rows, matched_detections, detections, timestamp)
        params = self._params
        starting = self._not_relabelled(
            unmatched_high[detections.scores[unmatched_high] >= params.new_track_threshold],
            matched_rows,
            detections,
        )
        max_age = rules.track_max_s if rules.track_max_s is not None else params.track_max_s
        aged = (self._states[matched_rows] != _TENTATIVE) & (timestamp - self._born[matched_rows] > max_age)
        renewed = matched_rows[aged]
        aged_out: list[int] = self._classes[renewed].tolist()
        if renewed.size:
            ended += self._renew(renewed, matched_detections[aged], detections, timestamp)
        self._apply_transitions(matched_rows)
        # Lost tracks that reached the age: nothing to go on with, they end.
        too_old = (self._states == _LOST) & (timestamp - self._born > max_age)
        if too_old.any():
            aged_out += self._classes[too_old].tolist()
            ended += self._end_tracks(too_old)

        self._start_tracks(starting, detections, timestamp)
        return TrackerUpdate(
            tracks=self._visible_tracks(),
            ended=tuple(ended),
            discarded=discarded,
            aged_out=tuple(_CLASS_BY_CODE[code] for code in aged_out),
        )

    def end_all(self) -> tuple[bytes, ...]:
        """End every track (the camera's run ends, or its analysis pauses); return their ids, reported
        this once. The tracker is then empty and may start a new run, whose timestamps may start anew."""
        ended = self._end_tracks(np.ones(len(self._ids), dtype=bool))
        self._last_timestamp = None
        self._interval = 0.0
        return tuple(ended)

    def _advance_clock(self, timestamp: float) -> float:
        if not math.isfinite(timestamp):
            raise ValueError(f"timestamp: must be a finite number of seconds, got {timestamp}")
        previous = self._last_timestamp
        if previous is not None and timestamp < previous:
            raise ValueError(f"timestamp: frames must come in time order, got {timestamp} after {previous}")
        self._last_timestamp = timestamp
        dt = 0.0 if previous is None else timestamp - previous
        if dt > 0.0:
            self._interval = dt if self._interval == 0.0 else 0.9 * self._interval + 0.1 * dt
        return dt

    def _predict(self, dt: float) -> None:
        # As ByteTrack: a lost track keeps drifting with its last velocity but stops changing size,
        # which would otherwise grow or shrink it without bound while no detection corrects it.
        self._mean[self._states == _LOST, 6:8] = 0.0
        self._mean, self._covariance = self._filter.predict(self._mean, self._covariance, dt)

    def _associate(
        self, detections: Detections
    ) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.intp]]:
        """Steps 2-5 of the module's description: the matched track rows and, in the same order, their
        detections' rows; and the confident detections left unmatched."""
        params = self._params
        scores = detections.scores
        candidates = np.flatnonzero(scores >= params.low_threshold)
        confident = scores[candidates] >= params.high_threshold
        high, low = candidates[confident], candidates[~confident]
        track_boxes = state_to_boxes(self._mean)
        confirmed = np.flatnonzero(self._states != _TENTATIVE)
        tentative = np.flatnonzero(self._states == _TENTATIVE)

        # One similarity and penalty matrix for both associations of the confirmed tracks.
        similarity, penalty = self._pair_costs(track_boxes, confirmed, detections, candidates)
        first_similarity = similarity[:, confident]
        if params.fuse_score:
            first_similarity = first_similarity * scores[high][None, :]
        first = assign(1.0 - first_similarity + penalty[:, confident], params.max_match_distance)
        leftover = first.unmatched_rows
        second = assign(
            1.0 - similarity[leftover][:, ~confident] + penalty[leftover][:, ~confident],
            params.max_low_match_distance,
        )
        rows = [confirmed[first.rows], confirmed[leftover[second.rows]]]
        columns = [high[first.columns], low[second.columns]]
        high_left = high[first.unmatched_columns]
        unmatched = confirmed[leftover[second.unmatched_rows]]
        high_left = self._match_by_distance(
            unmatched[self._states[unmatched] == _TRACKED], detections, high_left, rows, columns
        )
        if tentative.size:
            third = assign(
                self._tentative_cost(track_boxes, tentative, detections, high_left), params.max_match_distance
            )
            rows.append(tentative[third.rows])
            columns.append(high_left[third.columns])
            high_left = self._match_by_distance(
                tentative[third.unmatched_rows], detections, high_left[third.unmatched_columns], rows, columns
            )
            # A tentative track matched by overlap or by distance: one more hit either way.
            self._hits[np.concatenate(rows[-2:])] += 1
        return np.concatenate(rows), np.concatenate(columns), high_left

    def _pair_costs(
        self,
        track_boxes: NDArray[np.float64],
        track_rows: NDArray[np.intp],
        detections: Detections,
        detection_rows: NDArray[np.intp],
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """For every pair of these tracks and detections: the HMIoU of the predicted and detected boxes,
        and what is added to 1 - HMIoU (x score) to make the pair's cost: `direction_weight` x the
        direction term, and `FORBIDDEN_COST` for a detection of another class. The same cues serve both
        associations: the uncertain detections need them most, as they may find lost tracks again."""
        shape = (track_rows.size, detection_rows.size)
        if track_rows.size == 0 or detection_rows.size == 0:
            return np.zeros(shape), np.zeros(shape)
        boxes = detections.boxes[detection_rows]
        similarity = height_modulated_iou(track_boxes[track_rows], boxes)
        other_class = self._classes[track_rows][:, None] != detections.classes[detection_rows][None, :]
        penalty = np.where(other_class, FORBIDDEN_COST, 0.0)
        if self._params.direction_weight > 0.0:
            # In each track's box sizes, so that headings compare alike along x and y whatever the
            # picture's shape (coordinates are normalised separately along each axis).
            sizes = np.maximum(self._mean[track_rows, 2:4], _MIN_SIDE)
            centres = (boxes[:, 0:2] + boxes[:, 2:4]) * 0.5
            moves = (centres[None, :, :] - self._observation[track_rows, None, 0:2]) / sizes[:, None, :]
            penalty += self._params.direction_weight * direction_cost(
                self._mean[track_rows, 4:6] / sizes, moves
            )
        return similarity, penalty

    def _match_by_distance(
        self,
        track_rows: NDArray[np.intp],
        detections: Detections,
        detection_rows: NDArray[np.intp],
        rows: list[NDArray[np.intp]],
        columns: list[NDArray[np.intp]],
    ) -> NDArray[np.intp]:
        """Step 4 (and its like for tentative tracks, whose velocity is unknown, hence whose reach is
        wide): match `track_rows` to `detection_rows` within `motion_gate`, append the pairs to `rows`
        and `columns`, and return the detections left."""
        if self._params.motion_gate <= 0.0 or track_rows.size == 0 or detection_rows.size == 0:
            rows.append(np.zeros(0, dtype=np.intp))
            columns.append(np.zeros(0, dtype=np.intp))
            return detection_rows
        near = assign(self._distance_cost(track_rows, detections, detection_rows), 1.0)
        rows.append(track_rows[near.rows])
        columns.append(detection_rows[near.columns])
        left: NDArray[np.intp] = detection_rows[near.unmatched_columns]
        return left

    def _distance_cost(
        self, track_rows: NDArray[np.intp], detections: Detections, detection_rows: NDArray[np.intp]
    ) -> NDArray[np.float64]:
        """Step 4: the squared Mahalanobis distance of each detection from each track's predicted box, as
        a fraction of `motion_gate` (so that 1 is the most accepted); other classes are forbidden."""
        if track_rows.size == 0 or detection_rows.size == 0:
            return np.zeros((track_rows.size, detection_rows.size))
        distance = self._filter.distances(
            self._mean[track_rows],
            self._covariance[track_rows],
            boxes_to_state(detections.boxes[detection_rows]),
        )
        cost = distance / self._params.motion_gate
        other_class = self._classes[track_rows][:, None] != detections.classes[detection_rows][None, :]
        cost[other_class] = FORBIDDEN_COST
        return cost

    def _tentative_cost(
        self,
        track_boxes: NDArray[np.float64],
        track_rows: NDArray[np.intp],
        detections: Detections,
        detection_rows: NDArray[np.intp],
    ) -> NDArray[np.float64]:
        """Tentative tracks (started below `confirm_score`) against the confident detections left: they
        have no heading yet, so 1 - HMIoU (x score) alone."""
        similarity, penalty = self._pair_costs(track_boxes, track_rows, detections, detection_rows)
        if self._params.fuse_score and detection_rows.size:
            similarity *= detections.scores[detection_rows][None, :]
        return 1.0 - similarity + penalty

    def _not_relabelled(
        self, detection_rows: NDArray[np.intp], matched_rows: NDArray[np.intp], detections: Detections
    ) -> NDArray[np.intp]:
        """The detections in `detection_rows` less those that overlap (IoU >= 0.5) the predicted box of a
        track of another class, visible at the previous frame and unmatched in this one: the detector
        hesitating between classes (car/truck) for a frame. Such a detection starts no track, which (from
        `confirm_score` on) would report the object twice for a frame, under two ids and classes; the
        track is found again at the next frame. A track lost earlier does not hold a detection back,
        so an object the detector now sees under another class gets its track one frame later."""
        if detection_rows.size == 0:
            return detection_rows
        unmatched = self._states == _TRACKED
        unmatched[matched_rows] = False
        rows = np.flatnonzero(unmatched)
        if rows.size == 0:
            return detection_rows
        overlap = iou_matrix(state_to_boxes(self._mean[rows]), detections.boxes[detection_rows])
        other_class = self._classes[rows][:, None] != detections.classes[detection_rows][None, :]
        relabelled: NDArray[np.bool_] = ((overlap >= _RELABEL_IOU) & other_class).any(axis=0)
        kept: NDArray[np.intp] = detection_rows[~relabelled]
        return kept

    def _correct(
        self,
        rows: NDArray[np.intp],
        detection_rows: NDArray[np.intp],
        detections: Detections,
        timestamp: float,
    ) -> None:
        if rows.size == 0:
            return
        measured = boxes_to_state(detections.boxes[detection_rows])
        refound = self._states[rows] == _LOST
        if refound.any():
            self._reupdate(rows[refound], measured[refound], timestamp)
        mean, covariance = self._filter.update(self._mean[rows], self._covariance[rows], measured)
        self._mean[rows] = self._observed_mean[rows] = mean
        self._covariance[rows] = self._observed_covariance[rows] = covariance
        self._observation[rows] = measured
        self._scores[rows] = detections.scores[detection_rows]
        self._last_seen[rows] = timestamp

    def _reupdate(self, rows: NDArray[np.intp], measured: NDArray[np.float64], timestamp: float) -> None:
        """OC-SORT's observation-centric re-update of lost tracks found again by `measured`: start over
        from the state the track had at its latest detection and run the filter along a straight
        virtual path from that detection to this one, one step per frame missed, up to this frame's
        time (whose real detection `_correct` then applies).

        Why: while lost, a track drifted with its old velocity and its uncertainty grew; corrected by
        one far-off detection, the Kalman gain would put most of the jump into its position and keep
        the old velocity, so the track would overshoot at the next frames, the error OC-SORT shows
        after occlusions. The virtual path gives it the velocity it had while hidden."""
        gap = timestamp - self._last_seen[rows]
        frames = np.rint(gap / self._interval) if self._interval > 0.0 else np.ones_like(gap)
        steps = np.clip(frames, 1, _MAX_VIRTUAL_STEPS)
        step_dt = gap / steps
        mean, covariance = self._observed_mean[rows], self._observed_covariance[rows]
        start = self._observation[rows]
        for step in range(1, int(steps.max()) + 1):
            mean, covariance = self._filter.predict(mean, covariance, np.where(step <= steps, step_dt, 0.0))
            virtual = step < steps  # the last step reaches this frame, corrected by the real detection
            if virtual.any():
                fraction = (step / steps[virtual])[:, None]
                path_point = start[virtual] + (measured[virtual] - start[virtual]) * fraction
                mean[virtual], covariance[virtual] = self._filter.update(
                    mean[virtual], covariance[virtual], path_point
                )
        self._mean[rows], self._covariance[rows] = mean, covariance

    def _renew(
        self,
        rows: NDArray[np.intp],
        detection_rows: NDArray[np.intp],
        detections: Detections,
        timestamp: float,
    ) -> list[bytes]:
        """The tracks in `rows` reached their max age while matched in this frame: end them (their ids
        are returned) and let their objects go on as new tracks, with new ids and a Kalman state started
        afresh from this frame's detections, so that nothing of the old track links to the new one."""
        self._mean[rows], self._covariance[rows] = self._filter.initiate(
            boxes_to_state(detections.boxes[detection_rows])
        )
        self._observed_mean[rows], self._observed_covariance[rows] = self._mean[rows], self._covariance[rows]
        self._born[rows] = timestamp
        ended = []
        for row in rows.tolist():
            track_id = self._ids[row]
            assert track_id is not None, "only confirmed tracks age out"
            ended.append(track_id)
            self._ids[row] = secrets.token_bytes(TRACK_ID_BYTES)
        return ended

    def _apply_transitions(self, matched_rows: NDArray[np.intp]) -> None:
        matched = np.zeros(len(self._ids), dtype=bool)
        matched[matched_rows] = True
        was_tentative = self._states == _TENTATIVE
        self._states[matched & ~was_tentative] = _TRACKED
        self._states[~matched & (self._states == _TRACKED)] = _LOST
        self._first_report[:] = False
        for row in np.flatnonzero(matched & was_tentative & (self._hits >= self._params.confirm_hits)):
            self._states[row] = _TRACKED
            self._ids[row] = secrets.token_bytes(TRACK_ID_BYTES)
            self._first_report[row] = True
        # A tentative track that misses a frame is most likely a false detection; it has no id to end.
        dropped = ~matched & was_tentative
        if dropped.any():
            self._keep(~dropped)

    def _start_tracks(
        self, detection_rows: NDArray[np.intp], detections: Detections, timestamp: float
    ) -> None:
        count = detection_rows.size
        if count == 0:
            return
        measured = boxes_to_state(detections.boxes[detection_rows])
        mean, covariance = self._filter.initiate(measured)
        scores = detections.scores[detection_rows]
        confirmed = np.full(count, self._params.confirm_hits <= 1)
        if self._params.confirm_score is not None:
            confirmed |= scores >= self._params.confirm_score
        new_rows: dict[str, NDArray[Any]] = {
            "_mean": mean,
            "_covariance": covariance,
            "_observed_mean": mean,
            "_observed_covariance": covariance,
            "_observation": measured,
            "_classes": detections.classes[detection_rows],
            "_scores": scores,
            "_states": np.where(confirmed, _TRACKED, _TENTATIVE).astype(np.int8),
            "_hits": np.ones(count, dtype=np.int32),
            "_last_seen": np.full(count, timestamp),
            "_born": np.full(count, timestamp),
            "_origin": np.clip(detections.boxes[detection_rows], 0.0, 1.0).astype(np.float64),
            "_first_report": np.zeros(count, dtype=bool),
        }
        for name in self._ROWS:
            setattr(self, name, np.concatenate((getattr(self, name), new_rows[name])))
        self._ids.extend(secrets.token_bytes(TRACK_ID_BYTES) if sure else None for sure in confirmed.tolist())

    def _end_tracks(self, ending: NDArray[np.bool_]) -> list[bytes]:
        """Forget the tracks in `ending`; return the ids of the confirmed ones among them."""
        if not ending.any():
            return []
        ended = [
            track_id
            for track_id, ends in zip(self._ids, ending.tolist(), strict=True)
            if ends and track_id is not None
        ]
        self._keep(~ending)
        return ended

    def _keep(self, keep: NDArray[np.bool_]) -> None:
        for name in self._ROWS:
            setattr(self, name, getattr(self, name)[keep])
        self._ids = [track_id for track_id, kept in zip(self._ids, keep.tolist(), strict=True) if kept]

    def _visible_tracks(self) -> tuple[VisibleTrack, ...]:
        rows = np.flatnonzero(self._states == _TRACKED)
        if rows.size == 0:
            return ()
        boxes = np.clip(state_to_boxes(self._mean[rows]), 0.0, 1.0).tolist()
        visible = []
        for row, code, score, box in zip(
            rows.tolist(), self._classes[rows].tolist(), self._scores[rows].tolist(), boxes, strict=True
        ):
            track_id = self._ids[row]
            assert track_id is not None, "a tracked track is confirmed, hence has an id"
            first = self._origin[row].tolist() if self._first_report[row] else None
            if first is not None:
                self._origin[row] = 0.0  # reported once, then forgotten: no earlier position is kept
            visible.append(
                VisibleTrack(
                    track_id=track_id,
                    object_class=_CLASS_BY_CODE[code],
                    score=score,
                    box=(box[0], box[1], box[2], box[3]),
                    first_box=None if first is None else (first[0], first[1], first[2], first[3]),
                )
            )
        return tuple(visible)


def _admit(detections: Detections, rules: TrackingRules) -> tuple[Detections, dict[CountedClass, int]]:
    """The detections the rules allow tracking, and how many of each other class were discarded."""
    if rules.every_class or len(detections) == 0:
        return detections, {}
    allowed = rules.allows(detections.classes)
    if allowed.all():
        return detections, {}
    counts = np.bincount(detections.classes[~allowed], minlength=_MAX_CODE + 1)
    discarded = {_CLASS_BY_CODE[code]: int(counts[code]) for code in np.flatnonzero(counts).tolist()}
    return detections.select(allowed), discarded
