import numpy as np
import pytest

from vigie_inference.analysis import CameraTrackers, tracking_rules
from vigie_inference.detections import CountedClass, Detections
from vigie_inference.settings import InferenceSettings
from vigie_proto.v1.frames_pb2 import Frame
from vigie_proto.v1.policy_pb2 import CameraPolicy
from vigie_proto.v1.tracks_pb2 import ObjectClass


def _frame(sequence: int, run_id: str = "run-1", camera: str = "cam", t: float | None = None) -> Frame:
    frame = Frame(camera_id=camera, run_id=run_id, sequence=sequence)
    frame.captured_at.FromNanoseconds(int(1e9 * (1_700_000_000 + (sequence * 0.2 if t is None else t))))
    return frame


def _person(x: float) -> Detections:
    return Detections(
        boxes=np.array([[x, 0.2, x + 0.1, 0.6]], dtype=np.float32),
        scores=np.array([0.9], dtype=np.float32),
        classes=np.array([CountedClass.PERSON], dtype=np.int8),
    )


@pytest.fixture
def trackers() -> CameraTrackers:
    return CameraTrackers(InferenceSettings(camera_idle_s=10), model="yolov4_tiny/1")


def _walk(trackers: CameraTrackers, frames: range, run_id: str = "run-1") -> list[bytes]:
    ids: list[bytes] = []
    for i in frames:
        for message in trackers.analyse(_frame(i, run_id), _person(0.1 + 0.01 * i), now=float(i)).messages:
            ids += [o.track_id for o in message.objects]
    return ids


def test_a_walking_person_keeps_one_id(trackers: CameraTrackers) -> None:
    ids = _walk(trackers, range(10))
    assert len(set(ids)) == 1
    assert len(ids) >= 8, "confirmed after two hits, then reported every frame"


def test_a_new_run_ends_the_tracks_of_the_previous_one_once_confirmed(trackers: CameraTrackers) -> None:
    first = set(_walk(trackers, range(5)))
    pending = [trackers.analyse(_frame(i, "run-2"), _person(0.5), now=6.0 + i).messages for i in range(2)]
    assert all(m.run_id == "run-2" and not m.ended_track_ids for ms in pending for m in ms), "run-1 goes on"
    messages = trackers.analyse(_frame(2, "run-2"), _person(0.5), now=8.0).messages
    assert messages[0].run_id == "run-2"
    assert messages[1].run_id == "run-1"
    assert set(messages[1].ended_track_ids) == first
    assert len(messages) == 2


def test_a_stray_frame_of_another_run_does_not_end_the_real_runs_tracks(trackers: CameraTrackers) -> None:
    """A forged or replayed frame of another run (well formed) in the middle of a camera's run: it gets a
    tracker of its own, which never takes over; the person keeps one id in the real run."""
    ids: set[bytes] = set()
    for i in range(12):
        if i % 3 == 1:
            trackers.analyse(_frame(1000 + i, "forged"), _person(0.9), now=float(i))
        for message in trackers.analyse(_frame(i), _person(0.1 + 0.02 * i), now=float(i)).messages:
            assert not message.ended_track_ids
            ids |= {o.track_id for o in message.objects}
    assert len(ids) == 1


def test_a_redelivery_after_a_detector_failure_is_analysed(trackers: CameraTrackers) -> None:
    _walk(trackers, range(3))
    failed = [_frame(3), _frame(4)]
    assert all(trackers.in_order(f) for f in failed)
    trackers.resubmitted(failed)
    assert all(trackers.in_order(f) for f in failed), "the same frames, redelivered"
    assert trackers.analyse(_frame(3), _person(0.16), now=3.0).messages


def test_frames_out_of_order_are_refused(trackers: CameraTrackers) -> None:
    _walk(trackers, range(5))
    assert not trackers.in_order(_frame(3))
    assert trackers.in_order(_frame(5))
    assert not trackers.in_order(_frame(5)), "a frame submitted twice is refused the second time"
    assert trackers.analyse(_frame(2), _person(0.1), now=7.0).messages == []


def test_idle_cameras_end_their_tracks_and_are_forgotten(trackers: CameraTrackers) -> None:
    ids = set(_walk(trackers, range(5)))
    assert trackers.expire_idle(now=8.0) == []
    [ended] = trackers.expire_idle(now=20.0)
    assert set(ended.ended_track_ids) == ids
    assert trackers.camera_ids == []
    assert trackers.end_all() == []


def test_a_clock_stepping_back_restarts_the_tracker(trackers: CameraTrackers) -> None:
    ids = set(_walk(trackers, range(5)))
    messages = trackers.analyse(_frame(5, t=-100.0), _person(0.15), now=5.0).messages
    assert set(messages[0].ended_track_ids) == ids


def _policy(*classes: int, track_max_s: int = 600) -> CameraPolicy:
    return CameraPolicy(camera_id="cam", object_classes=classes, track_max_seconds=track_max_s)


def test_the_rules_follow_the_policy_classes_and_max_age() -> None:
    rules = tracking_rules(_policy(ObjectClass.OBJECT_CLASS_PERSON, ObjectClass.OBJECT_CLASS_BICYCLE))
    assert rules.classes == {CountedClass.PERSON, CountedClass.BICYCLE}
    assert rules.track_max_s == 600.0
    assert tracking_rules(_policy()).classes == frozenset(), "no class listed: none tracked"
    assert tracking_rules(_policy(ObjectClass.OBJECT_CLASS_UNSPECIFIED)).classes == frozenset()
    assert tracking_rules(_policy(track_max_s=0)).track_max_s is None, "0: the service's own maximum"
    assert tracking_rules(_policy(track_max_s=10 * 86_400)).track_max_s == 86_400.0


def _person_and_car(x: float) -> Detections:
    return Detections(
        boxes=np.array([[x, 0.2, x + 0.1, 0.6], [0.7 - x, 0.6, 0.9 - x, 0.75]], dtype=np.float32),
        scores=np.array([0.9, 0.8], dtype=np.float32),
        classes=np.array([CountedClass.PERSON, CountedClass.CAR], dtype=np.int8),
    )


def test_a_policy_change_applies_from_the_next_frame(trackers: CameraTrackers) -> None:
    everything = tracking_rules(_policy(*(int(c) for c in CountedClass)))
    persons = tracking_rules(_policy(ObjectClass.OBJECT_CLASS_PERSON))
    analyses = [
        trackers.analyse(
            _frame(i), _person_and_car(0.1 + 0.01 * i), float(i), everything if i < 5 else persons
        )
        for i in range(10)
    ]

    messages = [m for analysis in analyses for m in analysis.messages]
    cars = {
        o.track_id for m in messages[:5] for o in m.objects if o.object_class == ObjectClass.OBJECT_CLASS_CAR
    }
    assert len(cars) == 1
    assert set(messages[5].ended_track_ids) == cars
    assert all(o.object_class == ObjectClass.OBJECT_CLASS_PERSON for m in messages[5:] for o in m.objects)


def test_tracks_reaching_their_max_age_are_reported_ended_under_a_new_id(trackers: CameraTrackers) -> None:
    rules = tracking_rules(_policy(ObjectClass.OBJECT_CLASS_PERSON, track_max_s=1))
    analyses = [trackers.analyse(_frame(i), _person(0.1 + 0.01 * i), float(i), rules) for i in range(8)]

    renewed = [i for i, analysis in enumerate(analyses) if any(m.ended_track_ids for m in analysis.messages)]
    assert renewed == [6], "born at 0 s, frames every 0.2 s: older than 1 s at 1.2 s"
    [renewal] = analyses[6].messages
    [old] = renewal.ended_track_ids
    [new] = [o.track_id for o in renewal.objects]
    assert old != new
