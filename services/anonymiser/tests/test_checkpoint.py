"""A camera's state saved and taken up by another instance: the counting goes on as if nothing happened."""

import math
import random
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vigie_anonymiser import LineConfig, ReportClosure
from vigie_anonymiser.camera import NEW_RUN_AFTER, Anonymiser, CameraAnonymiser
from vigie_anonymiser.checkpoint import CheckpointError, decode_state, encode_state, removed_camera
from vigie_anonymiser.config import CountingParams, ZoneConfig
from vigie_anonymiser.observations import TrackObservation
from vigie_anonymiser.synthetic import FrameBuilder, SceneSpec, camera_for, synthetic_scene
from vigie_anonymiser.windows import WindowReport

HORIZONTAL = LineConfig(id="h", start=(0.05, 0.6), end=(0.95, 0.6))
SQUARE = ZoneConfig(id="z", polygon=[(0.3, 0.3), (0.7, 0.3), (0.7, 0.7), (0.3, 0.7)])


# A window boundary within the scenes.
WINDOW = {"reporting_window_s": 60, "reporting_window_justification": "tests", "dwell_time": True}


def fresh() -> CameraAnonymiser:
    return camera_for([HORIZONTAL], [SQUARE], **WINDOW)


def run(
    observations: list[TrackObservation], restarts: list[int], redelivered: int = 0
) -> list[WindowReport]:
    """Count `observations`, moving to a new instance (through an encoded checkpoint) before each index
    of `restarts`; the new instance first gets the `redelivered` messages before that index again (the
    predecessor saved them but its acknowledgements were lost)."""
    camera = fresh()
    reports: list[WindowReport] = []
    for i, observation in enumerate(observations):
        if i in restarts:
            saved = decode_state(encode_state(camera.snapshot()))
            camera = fresh()
            reports += camera.restore(saved, received_at=2.0)
            for again in observations[max(0, i - redelivered) : i]:
                outcome = camera.process(again, received_at=2.0)
                assert outcome.dropped is not None
                assert not outcome.reports
        reports += camera.process(observation, received_at=1.0).reports
    return reports + camera.close_idle()


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    restarts=st.lists(st.integers(1, 10_000), min_size=1, max_size=6),
    redelivered=st.integers(0, 12),
)
def test_restarts_through_checkpoints_change_no_report(
    seed: int, restarts: list[int], redelivered: int
) -> None:
    scene = synthetic_scene(
        random.Random(seed),
        [fresh().geometry.lines[0]],
        SceneSpec(duration_s=90, walkers=10, lingerers=3),
    )
    observations = scene.observations
    at = sorted({r % len(observations) for r in restarts} - {0})
    # Every figure of every part identical, its id included: a restart is invisible.
    assert run(observations, at, redelivered) == run(observations, [])


def test_messages_held_for_a_new_run_survive_a_restart() -> None:
    """Held messages were acknowledged: the checkpoint carries them until their run is confirmed."""
    first = FrameBuilder(run_id="run-1")
    second = FrameBuilder(run_id="run-2", start=first.start + 30)
    walk = [first.frame({1: (0.5, 0.3 + 0.02 * i)}) for i in range(10)]
    new_run = [second.frame({2: (0.5, 0.5 + 0.02 * i)}) for i in range(10)]
    observations = walk + new_run
    for restart in range(len(walk) + 1, len(walk) + NEW_RUN_AFTER):
        assert run(observations, [restart]) == run(observations, [])


def test_paused_time_until_further_notice_survives_a_restart() -> None:
    camera = fresh()
    camera.paused.pause(100.0, math.inf)
    camera.paused.policy_version = 7
    restored = fresh()
    restored.restore(decode_state(encode_state(camera.snapshot())), received_at=0.0)
    assert restored.paused.intervals == ((100.0, math.inf),)
    assert restored.paused.policy_version == 7


def test_a_geometry_changed_while_down_closes_the_saved_part() -> None:
    frames = FrameBuilder()
    camera = fresh()
    for i in range(10):
        camera.process(frames.frame({1: (0.5, 0.3 + 0.01 * i)}), 1.0)
    saved = decode_state(encode_state(camera.snapshot()))
    moved = LineConfig(id="h", start=(0.05, 0.4), end=(0.95, 0.4))
    now = camera_for([moved], [SQUARE], **WINDOW)
    (part,) = now.restore(saved, received_at=1.0)
    assert part.closed_by is ReportClosure.GEOMETRY_CHANGED
    assert part.frames == 10
    assert now.live_tracks == 1, "the track goes on, its side of the new line to be established"


def test_reports_not_yet_published_are_restored_first_and_a_removed_camera_keeps_them() -> None:
    frames = FrameBuilder()
    camera = fresh()
    for _ in range(5):
        camera.process(frames.frame(), 1.0)
    (waiting,) = camera.stop()
    state = decode_state(encode_state(camera.snapshot([waiting])))
    assert fresh().restore(state, 0.0) == [waiting]
    assert Anonymiser([], CountingParams()).restore(state, 0.0) == [waiting]
    gone = decode_state(encode_state(removed_camera("cam", [waiting])))
    assert Anonymiser([], CountingParams()).restore(gone, 0.0) == [waiting]


def test_a_camera_no_longer_counted_has_its_open_part_reported_as_removed() -> None:
    frames = FrameBuilder()
    camera = fresh()
    for _ in range(5):
        camera.process(frames.frame(), 1.0)
    state = decode_state(encode_state(camera.snapshot()))
    (part,) = Anonymiser([], CountingParams()).restore(state, 0.0)
    assert (part.closed_by, part.frames) == (ReportClosure.CAMERA_REMOVED, 5)


@pytest.mark.parametrize("data", [b"", b"garbage", b"{}", b'{"format": 2}', b"\xff" * 40])
def test_what_is_not_a_checkpoint_is_refused_without_quoting_it(data: bytes) -> None:
    with pytest.raises(CheckpointError) as error:
        decode_state(data)
    assert "garbage" not in str(error.value)


def test_a_checkpoint_of_another_format_is_refused() -> None:
    state = replace(fresh().snapshot(), format=99)
    with pytest.raises(CheckpointError, match="format 99"):
        decode_state(encode_state(state))
