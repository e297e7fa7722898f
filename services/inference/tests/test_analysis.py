import numpy as np
import pytest

from vigie_inference.analysis import CameraTrackers
from vigie_inference.detections import CountedClass, Detections
from vigie_inference.settings import InferenceSettings
from vigie_proto.v1.frames_pb2 import Frame


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
        for message in trackers.analyse(_frame(i, run_id), _person(0.1 + 0.01 * i), now=float(i)):
            ids += [o.track_id for o in message.objects]
    return ids


def test_a_walking_person_keeps_one_id(trackers: CameraTrackers) -> None:
    ids = _walk(trackers, range(10))
    assert len(set(ids)) == 1
    assert len(ids) >= 8, "confirmed after two hits, then reported every frame"


def test_a_new_run_ends_the_tracks_of_the_previous_one(trackers: CameraTrackers) -> None:
    first = set(_walk(trackers, range(5)))
    messages = trackers.analyse(_frame(0, "run-2"), _person(0.5), now=6.0)
    assert set(messages[0].ended_track_ids) == first
    assert messages[0].run_id == "run-1"
    assert messages[1].run_id == "run-2"


def test_frames_out_of_order_are_refused(trackers: CameraTrackers) -> None:
    _walk(trackers, range(5))
    assert not trackers.in_order(_frame(3))
    assert trackers.in_order(_frame(5))
    assert not trackers.in_order(_frame(5)), "a frame submitted twice is refused the second time"
    assert trackers.analyse(_frame(2), _person(0.1), now=7.0) == []


def test_idle_cameras_end_their_tracks_and_are_forgotten(trackers: CameraTrackers) -> None:
    ids = set(_walk(trackers, range(5)))
    assert trackers.expire_idle(now=8.0) == []
    [ended] = trackers.expire_idle(now=20.0)
    assert set(ended.ended_track_ids) == ids
    assert trackers.live_tracks() == 0
    assert trackers.end_all() == []


def test_started_counts_each_track_once(trackers: CameraTrackers) -> None:
    started: list[str] = []
    for i in range(6):
        for message in trackers.analyse(_frame(i), _person(0.1 + 0.01 * i), now=float(i)):
            started += trackers.started(message)
    assert started == ["person"]


def test_a_clock_stepping_back_restarts_the_tracker(trackers: CameraTrackers) -> None:
    ids = set(_walk(trackers, range(5)))
    messages = trackers.analyse(_frame(5, t=-100.0), _person(0.15), now=5.0)
    assert set(messages[0].ended_track_ids) == ids
