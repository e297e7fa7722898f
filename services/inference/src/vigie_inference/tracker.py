"""ByteTrack-style multi-object tracker: one instance per camera run, boxes and motion only.

Each update (Zhang et al., "ByteTrack: Multi-Object Tracking by Associating Every Detection Box", 2022):

1. tracks last seen longer than `track_buffer_s` ago end, and every track's Kalman state is predicted
   to the frame's time;
2. confirmed tracks (visible or lost) are matched to the confident detections (score >=
   `high_threshold`) by IoU with the predicted box;
3. confirmed tracks visible at the previous frame and still unmatched are matched to the uncertain
   detections (`low_threshold` <= score < `high_threshold`): a partly hidden person scores low but is
   still the same person, which is ByteTrack's point;
4. tentative tracks are matched to the confident detections left; a tentative track that misses a
   frame is dropped, one matched `confirm_hits` frames in a row is confirmed and only then gets an id;
5. confident detections still unmatched with score >= `new_track_threshold` start tentative tracks.

Association is class-aware: a track keeps the class of the detection that started it and only ever
takes detections of that class, so the class reported for an id never changes (what the anonymiser
counts by). When the detector hesitates between classes (car/truck) for a frame, the track misses that
frame and is found again at the next, within `track_buffer_s`.

The camera's policy (`TrackingRules`, from the registry's `CameraPolicy`) bounds what is tracked:

- only the classes its purpose needs (PRIVACY.md rule 7): a detection of another class is discarded
  before step 2, so it never gets a track nor an id (`TrackerUpdate.discarded` counts them), and a track
  of a class no longer allowed (the policy changed) ends at step 1;
- for at most `track_max_s` from the capture time of its first frame (PRIVACY.md rule 14): a track
  reaching that age ends (its id in `TrackerUpdate.ended`, its class in `aged_out`). If its object is seen
  in that frame it goes on at once as a new track: a new random id, a Kalman state started afresh from
  this frame's detection, a new age; nothing of the old track carries over. Otherwise it simply ends.

Privacy: a track holds its Kalman state (current box and velocity), class, last score, the capture time
of its first frame and counters — no history of positions, no appearance. Ids are 16 random bytes drawn
at confirmation or renewal (128 bits make a repeat practically impossible, which is what "never reused"
rests on: no list of past ids is kept) and are dropped when the track ends, after being reported once in
`TrackerUpdate.ended` (or by `Tracker.end_all`).
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Self

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, model_validator

from vigie_inference.detections import CountedClass, Detections
from vigie_inference.tracking.association import FORBIDDEN_COST, assign, iou_matrix
from vigie_inference.tracking.kalman import BoxKalmanFilter, MotionNoise, boxes_to_state, state_to_boxes

__all__ = ["Tracker", "TrackerParams", "TrackerUpdate", "TrackingRules", "VisibleTrack"]

TRACK_ID_BYTES = 16
# PRIVACY.md rule 14: pseudonymous data anonymous "at worst within 24 hours"; the registry refuses more.
TRACK_MAX_CEILING_S = 86_400.0


class TrackerParams(BaseModel):
    """Tracker settings. Defaults are ByteTrack's (MOT17, 30 fps) adapted to 5-10 fps sampling.

    high_threshold: detections scoring at least this take part in the first association (ByteTrack's
        track_thresh, 0.5).
    low_threshold: detections scoring below this are ignored; those between it and high_threshold only
        keep visible tracks alive (ByteTrack's fixed 0.1). Match `decode_detections`' score_threshold.
    new_track_threshold: an unmatched confident detection starts a track only from this score
        (ByteTrack's det_thresh = track_thresh + 0.1).
    max_match_distance: largest 1 - IoU (1 - IoU x score when fuse_score) accepted in the first and
        tentative associations (ByteTrack's match_thresh, 0.8). ByteTrack uses 0.7 for tentative tracks;
        here it is 0.8 too because at 5-10 fps a newly seen object, whose velocity is not yet known, moves
        further between frames than at 30 fps.
    max_low_match_distance: largest 1 - IoU for the uncertain detections (ByteTrack's fixed 0.5).
    fuse_score: weigh IoU by the detection's score in the first and tentative associations, as
        ByteTrack does for MOT17.
    confirm_hits: consecutive matched frames before a track is confirmed and reported. ByteTrack
        confirms at the second frame; 2 is kept because at 5 fps a third would hide every object for
        0.6 s, longer than a fast vehicle takes to cross a counting line.
    track_buffer_s: how long a lost track may be found again before it ends. ByteTrack keeps 30 frames,
        1 s at 30 fps; 2 s here (10 frames at 5 fps, 20 at 10 fps) covers a pedestrian hidden by a
        passing vehicle, while a longer buffer lets the extrapolated box drift onto someone else and
        keeps ids alive longer than counting needs.
    track_max_s: the longest a track may live (from the capture time of its first frame) when the camera's
        policy sets no limit (`TrackingRules.track_max_s` None: the policy is not followed, or its
        `track_max_seconds` is 0). 600 s is the registry's default (`DEFAULT_TRACK_MAX_S`, PRIVACY.md
        rule 14: anonymous within minutes).
    measurement_noise, position_noise, velocity_noise, initial_velocity_noise: Kalman filter standard
        deviations as fractions of the box's size (see `MotionNoise`): ByteTrack's per-frame values
        (1/20, 1/20, 1/160, 10/160 per frame) at the 30 fps they were tuned for, expressed per second
        so that they hold at any sampling rate: 0.05, 0.05·√30, (30/160)·√30 and 10·30/160.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    high_threshold: float = Field(default=0.5, gt=0.0, le=1.0)
    low_threshold: float = Field(default=0.1, gt=0.0, le=1.0)
    new_track_threshold: float = Field(default=0.6, gt=0.0, le=1.0)
    max_match_distance: float = Field(default=0.8, gt=0.0, lt=1.0)
    max_low_match_distance: float = Field(default=0.5, gt=0.0, lt=1.0)
    fuse_score: bool = True
    confirm_hits: int = Field(default=2, ge=1, le=100)
    track_buffer_s: float = Field(default=2.0, gt=0.0, le=60.0)
    track_max_s: float = Field(default=600.0, ge=1.0, le=TRACK_MAX_CEILING_S)
    measurement_noise: float = Field(default=0.05, gt=0.0)
    position_noise: float = Field(default=0.27, gt=0.0)
    velocity_noise: float = Field(default=1.0, gt=0.0)
    initial_velocity_noise: float = Field(default=1.9, gt=0.0)

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
    """

    track_id: bytes
    object_class: CountedClass
    score: float
    box: tuple[float, float, float, float]


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

_CLASS_BY_CODE = {int(counted): counted for counted in CountedClass}
_MAX_CODE = max(_CLASS_BY_CODE)
_EVERY_CLASS = TrackingRules()


class Tracker:
    """Tracks the counted objects of one camera run. Not thread-safe; one instance per camera."""

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
        # One row per live track, in parallel arrays so that a frame is a few vectorised operations.
        self._mean = np.zeros((0, 8))
        self._covariance = np.zeros((0, 3, 4))
        self._classes = np.zeros(0, dtype=np.int8)
        self._scores = np.zeros(0, dtype=np.float32)
        self._states = np.zeros(0, dtype=np.int8)
        self._hits = np.zeros(0, dtype=np.int32)
        self._last_seen = np.zeros(0)
        self._born = np.zeros(0)  # capture time of each track's first frame
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

        params = self._params
        scores = detections.scores
        high = np.flatnonzero(scores >= params.high_threshold)
        low = np.flatnonzero((scores >= params.low_threshold) & (scores < params.high_threshold))
        track_boxes = state_to_boxes(self._mean)
        confirmed = np.flatnonzero(self._states != _TENTATIVE)
        tentative = np.flatnonzero(self._states == _TENTATIVE)

        first = assign(
            self._cost(track_boxes, confirmed, detections, high, fuse_score=params.fuse_score),
            params.max_match_distance,
        )
        leftover = confirmed[first.unmatched_rows]
        leftover_visible = leftover[self._states[leftover] == _TRACKED]
        second = assign(
            self._cost(track_boxes, leftover_visible, detections, low, fuse_score=False),
            params.max_low_match_distance,
        )
        high_left = high[first.unmatched_columns]
        third = assign(
            self._cost(track_boxes, tentative, detections, high_left, fuse_score=params.fuse_score),
            params.max_match_distance,
        )

        matched_rows = np.concatenate(
            (confirmed[first.rows], leftover_visible[second.rows], tentative[third.rows])
        )
        matched_detections = np.concatenate(
            (high[first.columns], low[second.columns], high_left[third.columns])
        )
        self._correct(matched_rows, matched_detections, detections, timestamp)
        self._hits[tentative[third.rows]] += 1
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

        unmatched_high = high_left[third.unmatched_columns]
        self._start_tracks(
            unmatched_high[scores[unmatched_high] >= params.new_track_threshold], detections, timestamp
        )
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
        return tuple(ended)

    def _advance_clock(self, timestamp: float) -> float:
        if not math.isfinite(timestamp):
            raise ValueError(f"timestamp: must be a finite number of seconds, got {timestamp}")
        previous = self._last_timestamp
        if previous is not None and timestamp < previous:
            raise ValueError(f"timestamp: frames must come in time order, got {timestamp} after {previous}")
        self._last_timestamp = timestamp
        return 0.0 if previous is None else timestamp - previous

    def _predict(self, dt: float) -> None:
        # As ByteTrack: a lost track keeps drifting with its last velocity but stops changing size,
        # which would otherwise grow or shrink it without bound while no detection corrects it.
        self._mean[self._states == _LOST, 6:8] = 0.0
        self._mean, self._covariance = self._filter.predict(self._mean, self._covariance, dt)

    def _cost(
        self,
        track_boxes: NDArray[np.float64],
        track_rows: NDArray[np.intp],
        detections: Detections,
        detection_rows: NDArray[np.intp],
        *,
        fuse_score: bool,
    ) -> NDArray[np.float64]:
        if track_rows.size == 0 or detection_rows.size == 0:
            return np.zeros((track_rows.size, detection_rows.size))
        similarity = iou_matrix(track_boxes[track_rows], detections.boxes[detection_rows])
        if fuse_score:
            similarity *= detections.scores[detection_rows][None, :]
        cost = 1.0 - similarity
        other_class = self._classes[track_rows][:, None] != detections.classes[detection_rows][None, :]
        cost[other_class] = FORBIDDEN_COST
        return cost

    def _correct(
        self,
        rows: NDArray[np.intp],
        detection_rows: NDArray[np.intp],
        detections: Detections,
        timestamp: float,
    ) -> None:
        if rows.size == 0:
            return
        self._mean[rows], self._covariance[rows] = self._filter.update(
            self._mean[rows], self._covariance[rows], boxes_to_state(detections.boxes[detection_rows])
        )
        self._scores[rows] = detections.scores[detection_rows]
        self._last_seen[rows] = timestamp

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
        for row in np.flatnonzero(matched & was_tentative & (self._hits >= self._params.confirm_hits)):
            self._states[row] = _TRACKED
            self._ids[row] = secrets.token_bytes(TRACK_ID_BYTES)
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
        mean, covariance = self._filter.initiate(boxes_to_state(detections.boxes[detection_rows]))
        confirmed = self._params.confirm_hits <= 1
        self._mean = np.concatenate((self._mean, mean))
        self._covariance = np.concatenate((self._covariance, covariance))
        self._classes = np.concatenate((self._classes, detections.classes[detection_rows]))
        self._scores = np.concatenate((self._scores, detections.scores[detection_rows]))
        state = _TRACKED if confirmed else _TENTATIVE
        self._states = np.concatenate((self._states, np.full(count, state, dtype=np.int8)))
        self._hits = np.concatenate((self._hits, np.ones(count, dtype=np.int32)))
        self._last_seen = np.concatenate((self._last_seen, np.full(count, timestamp)))
        self._born = np.concatenate((self._born, np.full(count, timestamp)))
        self._ids.extend(secrets.token_bytes(TRACK_ID_BYTES) if confirmed else None for _ in range(count))

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
        self._mean = self._mean[keep]
        self._covariance = self._covariance[keep]
        self._classes = self._classes[keep]
        self._scores = self._scores[keep]
        self._states = self._states[keep]
        self._hits = self._hits[keep]
        self._last_seen = self._last_seen[keep]
        self._born = self._born[keep]
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
            visible.append(
                VisibleTrack(
                    track_id=track_id,
                    object_class=_CLASS_BY_CODE[code],
                    score=score,
                    box=(box[0], box[1], box[2], box[3]),
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
