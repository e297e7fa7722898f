"""One tracker per camera run, fed in order; turns tracker updates into TrackFrame messages.

A camera's tracker lives as long as its ingest run (``run_id``): a new run (ingest restarted, source
reconnected with a new run) ends every track of the old one. A camera that sends nothing for
``camera_idle_s`` has its tracks ended and its tracker dropped, so no state outlives its use.

Each frame is tracked under the rules of its camera's policy in force at its capture time
(:func:`tracking_rules`: the classes its purpose needs, the longest a track may live), so a policy change
takes effect at the camera's next analysed frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vigie_inference.detections import CountedClass, Detections
from vigie_inference.settings import InferenceSettings
from vigie_inference.tracker import TRACK_MAX_CEILING_S, Tracker, TrackerUpdate, TrackingRules
from vigie_proto.v1.frames_pb2 import Frame
from vigie_proto.v1.policy_pb2 import CameraPolicy
from vigie_proto.v1.tracks_pb2 import Box, ObjectClass, TrackedObject, TrackFrame

_COUNTED_CODES = frozenset(int(c) for c in CountedClass)


def tracking_rules(policy: CameraPolicy) -> TrackingRules:
    """What a camera's policy allows its tracker: only the classes it lists (``object_classes``: none
    listed, none tracked), for at most ``track_max_seconds`` (0: the tracker's own ``track_max_s``)."""
    classes = frozenset(CountedClass(c) for c in policy.object_classes if c in _COUNTED_CODES)
    # The registry refuses more than 24 hours; a bad entry must not stretch the limit either.
    track_max_s = min(float(policy.track_max_seconds), TRACK_MAX_CEILING_S)
    return TrackingRules(classes, track_max_s or None)


@dataclass(frozen=True, slots=True)
class FrameAnalysis:
    """What analysing one frame gives: the messages to publish, in order. Nothing else leaves: how many
    objects a frame held, tracked or discarded, is TRACKS' alone, never a metric or a log line (a
    per-camera head count at scrape resolution is what the reporting window exists to hide)."""

    messages: list[TrackFrame]


@dataclass(slots=True)
class CameraRun:
    run_id: str
    tracker: Tracker
    last_submitted: int = -1
    last_sequence: int = -1
    last_seen: float = 0.0
    last_frame: Frame = field(default_factory=Frame)


class CameraTrackers:
    def __init__(self, settings: InferenceSettings, model: str) -> None:
        self._params = settings.tracker
        self._idle_s = settings.camera_idle_s
        self._model = model
        self._runs: dict[str, CameraRun] = {}

    def in_order(self, frame: Frame) -> bool:
        """Whether the frame comes after every frame of its camera run already submitted; records it."""
        run = self._runs.get(frame.camera_id)
        if run is None or run.run_id != frame.run_id:
            return True
        if frame.sequence <= run.last_submitted:
            return False
        run.last_submitted = frame.sequence
        return True

    def analyse(
        self, frame: Frame, detections: Detections, now: float, rules: TrackingRules | None = None
    ) -> FrameAnalysis:
        """The tracks of this frame under `rules` (default: every class, the tracker's own max age),
        preceded by the end of the camera's previous run if it changed."""
        rules = rules if rules is not None else TrackingRules()
        messages: list[TrackFrame] = []
        run = self._runs.get(frame.camera_id)
        if run is not None and run.run_id != frame.run_id:
            messages.append(self._end(run))
            run = None
        if run is None:
            run = CameraRun(frame.run_id, Tracker(self._params), last_submitted=frame.sequence)
            self._runs[frame.camera_id] = run
        if frame.sequence <= run.last_sequence:
            return FrameAnalysis(messages)  # a late redelivery: the tracker has moved past it
        run.last_sequence = frame.sequence
        run.last_submitted = max(run.last_submitted, frame.sequence)
        run.last_seen = now
        run.last_frame = frame
        timestamp = frame.captured_at.ToNanoseconds() / 1e9
        try:
            update = run.tracker.update(detections, timestamp, rules)
        except ValueError:
            # The camera's clock stepped back: the motion model cannot bridge that, start afresh.
            messages.append(self._end(run))
            run.tracker = Tracker(self._params)
            update = run.tracker.update(detections, timestamp, rules)
        messages.append(self._message(frame, update))
        return FrameAnalysis(messages)

    def expire_idle(self, now: float) -> list[TrackFrame]:
        idle = [camera for camera, run in self._runs.items() if now - run.last_seen > self._idle_s]
        return [self._end(self._runs.pop(camera)) for camera in idle]

    def end_camera(self, camera_id: str) -> TrackFrame | None:
        """End every track of the camera (its analysis stops: a pause, a policy change); the message that
        says so, or None when the camera had no tracker. Its next frame starts a new tracker."""
        run = self._runs.pop(camera_id, None)
        return None if run is None else self._end(run)

    def end_all(self) -> list[TrackFrame]:
        ended = [self._end(run) for run in self._runs.values()]
        self._runs.clear()
        return ended

    @property
    def camera_ids(self) -> list[str]:
        """The cameras with a tracker now."""
        return sorted(self._runs)

    def _end(self, run: CameraRun) -> TrackFrame:
        message = TrackFrame(
            camera_id=run.last_frame.camera_id,
            run_id=run.run_id,
            sequence=run.last_sequence,
            model=self._model,
            ended_track_ids=run.tracker.end_all(),
        )
        message.captured_at.CopyFrom(run.last_frame.captured_at)
        return message

    def _message(self, frame: Frame, update: TrackerUpdate) -> TrackFrame:
        message = TrackFrame(
            camera_id=frame.camera_id,
            run_id=frame.run_id,
            sequence=frame.sequence,
            model=self._model,
            ended_track_ids=update.ended,
            objects=[
                TrackedObject(
                    track_id=track.track_id,
                    object_class=ObjectClass.ValueType(track.object_class),
                    score=track.score,
                    box=Box(x1=track.box[0], y1=track.box[1], x2=track.box[2], y2=track.box[3]),
                )
                for track in update.tracks
            ],
        )
        message.captured_at.CopyFrom(frame.captured_at)
        return message
