"""One tracker per camera run, fed in order; turns tracker updates into TrackFrame messages.

A camera's tracker lives as long as its ingest run (``run_id``): a new run (ingest restarted, source
reconnected with a new run) ends every track of the old one once it has brought a few frames in a row
(:data:`NEW_RUN_AFTER`), so that a stray or forged frame of another run cannot end the real run's tracks. A
camera run that sends nothing for ``camera_idle_s`` has its tracks ended and its tracker dropped, so no
state outlives its use.

Each frame is tracked under the rules of its camera's policy in force at its capture time
(:func:`tracking_rules`: the classes its purpose needs, the longest a track may live), so a policy change
takes effect at the camera's next analysed frame.
"""

from __future__ import annotations

from dataclasses import dataclass

from vigie_inference.detections import CountedClass, Detections
from vigie_inference.settings import InferenceSettings
from vigie_inference.tracker import TRACK_MAX_CEILING_S, Tracker, TrackerUpdate, TrackingRules, VisibleTrack
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


# How many frames in a row a new run of a camera must bring, without its current run bringing any in
# between, before it replaces that run (whose tracks then end): a stray, replayed or forged frame of another
# run costs itself, never the tracks of the camera's real run. Ingest's new run after a reconnection is
# confirmed within a second; until then the old run's tracks wait (they end with it, or idle).
NEW_RUN_AFTER = 3


@dataclass(slots=True)
class CameraRun:
    run_id: str
    tracker: Tracker
    last_submitted: int = -1
    last_sequence: int = -1
    last_seen: float = 0.0
    camera_id: str = ""
    # When the run's last frame was captured (nanoseconds): not the frame itself, whose pixels would stay in
    # memory for as long as the run (a frame's worth per camera) for the sake of a timestamp.
    last_captured_ns: int = 0
    # Frames in a row of this run while another is the camera's current one.
    in_a_row: int = 0


class CameraTrackers:
    """The trackers of every camera run: one per (camera, run), the camera's current run and the runs that
    may replace it (:data:`NEW_RUN_AFTER`)."""

    def __init__(self, settings: InferenceSettings, model: str) -> None:
        self._params = settings.tracker
        self._idle_s = settings.camera_idle_s
        self._model = model
        self._runs: dict[str, dict[str, CameraRun]] = {}
        self._current: dict[str, str] = {}

    def in_order(self, frame: Frame) -> bool:
        """Whether the frame comes after every frame of its camera run already submitted; records it."""
        run = self._runs.get(frame.camera_id, {}).get(frame.run_id)
        if run is None:
            return True
        if frame.sequence <= run.last_submitted:
            return False
        run.last_submitted = frame.sequence
        return True

    def resubmitted(self, frames: list[Frame]) -> None:
        """These frames were not analysed (the detector failed) and will come again: forget their
        submission, so that their redelivery is not taken for a late duplicate."""
        for frame in frames:
            run = self._runs.get(frame.camera_id, {}).get(frame.run_id)
            if run is not None:
                run.last_submitted = min(run.last_submitted, max(run.last_sequence, frame.sequence - 1))

    def analyse(
        self, frame: Frame, detections: Detections, now: float, rules: TrackingRules | None = None
    ) -> FrameAnalysis:
        """The tracks of this frame under `rules` (default: every class, the tracker's own max age), followed
        by the end of the camera's other runs when this frame's run takes over."""
        rules = rules if rules is not None else TrackingRules()
        messages: list[TrackFrame] = []
        runs = self._runs.setdefault(frame.camera_id, {})
        run = runs.get(frame.run_id)
        if run is None:
            run = CameraRun(frame.run_id, Tracker(self._params), last_submitted=frame.sequence)
            runs[frame.run_id] = run
        if frame.sequence <= run.last_sequence:
            return FrameAnalysis(messages)  # a late redelivery: the tracker has moved past it
        run.last_sequence = frame.sequence
        run.last_submitted = max(run.last_submitted, frame.sequence)
        run.last_seen = now
        run.camera_id = frame.camera_id
        run.last_captured_ns = frame.captured_at.ToNanoseconds()
        timestamp = frame.captured_at.ToNanoseconds() / 1e9
        try:
            update = run.tracker.update(detections, timestamp, rules)
        except ValueError:
            # The camera's clock stepped back: the motion model cannot bridge that, start afresh.
            messages.append(self._end(run))
            run.tracker = Tracker(self._params)
            update = run.tracker.update(detections, timestamp, rules)
        messages.append(self._message(frame, update))
        messages += self._follow_runs(frame.camera_id, run)
        return FrameAnalysis(messages)

    def _follow_runs(self, camera_id: str, run: CameraRun) -> list[TrackFrame]:
        """Which run is the camera's current one after a frame of ``run``; the other runs' ends if it takes
        over."""
        runs = self._runs[camera_id]
        current = self._current.get(camera_id)
        if current is None or current not in runs:
            self._current[camera_id] = run.run_id
            current = run.run_id
        if run.run_id == current:
            for other in runs.values():
                other.in_a_row = 0  # the current run spoke: the others start again from nothing
            return []
        run.in_a_row += 1
        if run.in_a_row < NEW_RUN_AFTER:
            return []
        self._current[camera_id] = run.run_id
        run.in_a_row = 0
        return [self._end(runs.pop(other)) for other in [r for r in runs if r != run.run_id]]

    def expire_idle(self, now: float) -> list[TrackFrame]:
        ended = []
        for camera, runs in list(self._runs.items()):
            for run_id in [r for r, run in runs.items() if now - run.last_seen > self._idle_s]:
                ended.append(self._end(runs.pop(run_id)))
            if not runs:
                del self._runs[camera]
                self._current.pop(camera, None)
        return ended

    def end_camera(self, camera_id: str) -> list[TrackFrame]:
        """End every track of the camera, every run of it (its analysis stops: a pause, a policy change); the
        messages that say so, none when the camera had no tracker. Its next frame starts a new tracker."""
        self._current.pop(camera_id, None)
        return [self._end(run) for run in self._runs.pop(camera_id, {}).values()]

    def end_all(self) -> list[TrackFrame]:
        ended = [self._end(run) for runs in self._runs.values() for run in runs.values()]
        self._runs.clear()
        self._current.clear()
        return ended

    @property
    def camera_ids(self) -> list[str]:
        """The cameras with a tracker now."""
        return sorted(self._runs)

    def _end(self, run: CameraRun) -> TrackFrame:
        message = TrackFrame(
            camera_id=run.camera_id,
            run_id=run.run_id,
            sequence=run.last_sequence,
            model=self._model,
            ended_track_ids=run.tracker.end_all(),
        )
        message.captured_at.FromNanoseconds(run.last_captured_ns)
        return message

    def _message(self, frame: Frame, update: TrackerUpdate) -> TrackFrame:
        message = TrackFrame(
            camera_id=frame.camera_id,
            run_id=frame.run_id,
            sequence=frame.sequence,
            model=self._model,
            ended_track_ids=update.ended,
            objects=[_tracked_object(track) for track in update.tracks],
        )
        message.captured_at.CopyFrom(frame.captured_at)
        return message


def _tracked_object(track: VisibleTrack) -> TrackedObject:
    tracked = TrackedObject(
        track_id=track.track_id,
        object_class=ObjectClass.ValueType(track.object_class),
        score=track.score,
        box=Box(x1=track.box[0], y1=track.box[1], x2=track.box[2], y2=track.box[3]),
    )
    if track.first_box is not None:
        x1, y1, x2, y2 = track.first_box
        tracked.first_box.CopyFrom(Box(x1=x1, y1=y1, x2=x2, y2=y2))
    return tracked
