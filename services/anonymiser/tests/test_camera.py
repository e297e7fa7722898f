"""Windows, coverage, redeliveries, runs and geometry changes of one camera (no network)."""

from dataclasses import fields

import pytest

from vigie_anonymiser import (
    Anonymiser,
    CameraGeometryConfig,
    CountingParams,
    CrossingDirection,
    Dropped,
    LineConfig,
    ReportClosure,
)
from vigie_anonymiser.camera import NEW_RUN_AFTER
from vigie_anonymiser.synthetic import T0, FrameBuilder, camera_for, crossing_counts, feed

L2R = CrossingDirection.LEFT_TO_RIGHT
HORIZONTAL = LineConfig(id="h", start=(0.0, 0.5), end=(1.0, 0.5))


def walk_down(frames: FrameBuilder, number: int, x: float = 0.5) -> list:  # type: ignore[type-arg]
    return [frames.frame({number: (x, 0.3 + 0.02 * i)}) for i in range(21)]


def test_windows_are_aligned_and_closed_by_the_next_window_with_exact_coverage() -> None:
    # 20-minute windows; frames every 0.5 s from 10 s before a boundary to 10 s after it.
    frames = FrameBuilder(start=T0 + 1190, fps=2)
    observations = [frames.frame() for _ in range(41)]
    first, second = feed(camera_for([HORIZONTAL]), observations)
    assert (first.window_start, first.window_s, first.closed_by) == (T0, 1200, ReportClosure.WINDOW_ENDED)
    assert second.window_start == T0 + 1200
    assert second.closed_by is ReportClosure.CAMERA_IDLE
    assert first.covered_s == pytest.approx(10.0)
    assert second.covered_s == pytest.approx(10.0)
    assert first.frames + second.frames == 41


def test_gaps_longer_than_the_threshold_are_not_covered() -> None:
    frames = FrameBuilder(fps=1)
    observations = [frames.frame() for _ in range(11)]  # 10 s covered
    frames.sequence += 20  # 21 s without frames
    observations += [frames.frame() for _ in range(6)]  # 5 s covered
    (report,) = feed(camera_for([HORIZONTAL]), observations)
    assert report.covered_s == pytest.approx(15.0)


def test_redelivered_and_duplicated_messages_change_nothing() -> None:
    frames = FrameBuilder()
    observations = walk_down(frames, 1) + walk_down(frames, 2)
    once = feed(camera_for([HORIZONTAL]), observations)
    noisy = []
    for i, observation in enumerate(observations):
        noisy.append(observation)
        if i % 3 == 0:
            noisy.append(observation)  # an immediate copy
        if i % 7 == 0 and i > 10:
            noisy.append(observations[i - 10])  # a late redelivery
    camera = camera_for([HORIZONTAL])
    outcomes = [camera.process(o, 1.0) for o in noisy]
    assert sum(o.dropped is Dropped.DUPLICATE for o in outcomes) == len(noisy) - len(observations)
    twice = [r for o in outcomes for r in o.reports] + camera.close_idle()
    assert crossing_counts(twice) == crossing_counts(once) == {("h", L2R): 2}
    assert [r.report_id for r in twice] == [r.report_id for r in once]


def test_two_different_messages_with_one_sequence_both_count() -> None:
    """Inference's end-of-run message repeats the last frame's sequence; it is not a copy."""
    frames = FrameBuilder()
    walk = walk_down(frames, 1)
    frames.sequence -= 1
    end = frames.frame(ended=[1])
    camera = camera_for([HORIZONTAL])
    assert all(camera.process(o, 1.0).dropped is None for o in [*walk, end])
    assert camera.live_tracks == 0


def test_a_frame_missing_between_two_leaves_their_gap_uncovered_however_short() -> None:
    """Lost to a broker restart, a detector failure, an expired message: ingest numbered it, nobody counted
    it. Coverage says so, even within the gap coverage would otherwise bridge."""
    frames = FrameBuilder(fps=5)
    observations = [frames.frame() for _ in range(6)]  # 0..1 s
    frames.sequence += 2  # two frames lost: 0.4 s
    observations += [frames.frame() for _ in range(6)]  # 1.6..2.6 s
    (report,) = feed(camera_for([HORIZONTAL]), observations)
    assert report.covered_s == pytest.approx(1.0 + 1.0)


def test_a_new_run_takes_over_once_confirmed_then_the_old_one_is_stale() -> None:
    old = FrameBuilder(run_id="old")
    new = FrameBuilder(run_id="new", start=T0 + 60)
    camera = camera_for([HORIZONTAL])
    camera.process(old.frame(), 1.0)
    held = [camera.process(new.frame(), 1.0) for _ in range(NEW_RUN_AFTER - 1)]
    assert [o.frames for o in held] == [0] * (NEW_RUN_AFTER - 1), "held until its run is confirmed"
    assert camera.process(new.frame(), 1.0).frames == NEW_RUN_AFTER, "then counted, in order"
    assert camera.process(old.frame(), 1.0).dropped is Dropped.STALE_RUN


def test_a_stray_message_of_another_run_costs_itself_not_the_counting() -> None:
    """A forged, replayed or stray message of another run (well formed) in the middle of a camera's run is
    held, then discarded when the current run speaks again: the walker's crossing is counted once."""
    real = FrameBuilder(run_id="real")
    stray = FrameBuilder(run_id="forged", start=T0 + 3000)
    camera = camera_for([HORIZONTAL])
    outcomes = []
    for i, observation in enumerate(walk_down(real, 1)):
        if i % 3 == 1:  # a stray message every third one: never NEW_RUN_AFTER in a row
            outcomes.append(camera.process(stray.frame({9: (0.1, 0.9)}), 1.0))
        outcomes.append(camera.process(observation, 1.0))
    outcomes += [camera.process(real.frame(), 1.0)]
    reports = [r for o in outcomes for r in o.reports] + camera.close_idle()
    assert crossing_counts(reports) == {("h", L2R): 1}
    assert sum(o.abandoned for o in outcomes) == sum(1 for i in range(21) if i % 3 == 1)
    assert all(o.dropped is None for o in outcomes)


def test_a_new_run_ends_the_old_tracks_and_picks_them_up_where_they_stand() -> None:
    """Ingest reconnected: new run, new ids, the same people at the same places — no double count."""
    old = FrameBuilder(run_id="old")
    before = [old.frame({1: (0.5, 0.3 + 0.02 * i)}) for i in range(14)]  # crossed, now at 0.56
    new = FrameBuilder(run_id="new", start=old.time + 1)
    after = [new.frame({7: (0.5, 0.56 - 0.004 * i)}) for i in range(10)]  # drifts up to 0.52
    assert crossing_counts(feed(camera_for([HORIZONTAL]), before + after)) == {("h", L2R): 1}


def test_report_ids_are_deterministic_and_distinct_per_part() -> None:
    def run() -> list[str]:
        frames = FrameBuilder(start=T0 + 1100)
        camera = camera_for([HORIZONTAL])
        ids = [r.report_id for o in walk_down(frames, 1) for r in camera.process(o, 1.0).reports]
        ids += [r.report_id for r in camera.stop()]  # a part closed early
        frames.sequence += 470  # 94 s later: 2 s before the next window
        ids += [r.report_id for o in walk_down(frames, 2) for r in camera.process(o, 1.0).reports]
        return ids + [r.report_id for r in camera.close_idle()]

    first, second = run(), run()
    assert first == second
    assert len(set(first)) == len(first) == 3
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in first)


def test_stopping_reports_but_does_not_finish_live_tracks() -> None:
    frames = FrameBuilder()
    camera = camera_for([HORIZONTAL])
    # Track 1 crossed: its crossing is reported, and the track lives on for the next instance.
    for observation in [frames.frame({1: (0.5, 0.3 + 0.02 * i)}) for i in range(12)]:
        camera.process(observation, 1.0)
    (report,) = camera.stop()
    assert report.closed_by is ReportClosure.SERVICE_STOPPING
    assert crossing_counts([report]) == {("h", L2R): 1}
    assert camera.live_tracks == 1


def test_idle_cameras_are_closed_and_their_tracks_finished() -> None:
    anonymiser = Anonymiser([camera_for([HORIZONTAL]).geometry], CountingParams())
    frames = FrameBuilder()
    for observation in [frames.frame({1: (0.5, 0.3 + 0.02 * i)}) for i in range(12)]:  # ends just past
        anonymiser.process(observation, received_at=100.0)
    assert anonymiser.close_idle(now=130.0, idle_s=60) == []
    (report,) = anonymiser.close_idle(now=161.0, idle_s=60)
    assert report.closed_by is ReportClosure.CAMERA_IDLE
    assert crossing_counts([report]) == {("h", L2R): 1}
    assert anonymiser.close_idle(now=300.0, idle_s=60) == []


def test_tracks_unseen_for_their_ttl_are_forgotten() -> None:
    frames = FrameBuilder(fps=1)
    camera = camera_for([HORIZONTAL], params=CountingParams(track_ttl_s=5))
    camera.process(frames.frame({1: (0.5, 0.3)}), 1.0)
    for _ in range(5):
        camera.process(frames.frame(), 1.0)
    assert camera.live_tracks == 1
    camera.process(frames.frame(), 1.0)
    assert camera.live_tracks == 0


def test_a_geometry_change_closes_the_part_and_counts_with_the_new_lines() -> None:
    config = CameraGeometryConfig(id="cam", lines=[HORIZONTAL])
    anonymiser = Anonymiser([config.to_geometry()], CountingParams())
    frames = FrameBuilder()
    for observation in walk_down(frames, 1):
        anonymiser.process(observation)
    moved = config.model_copy(update={"lines": [LineConfig(id="h2", start=(0.0, 0.5), end=(1.0, 0.5))]})
    (old,) = anonymiser.set_geometry("cam", moved.to_geometry())
    assert old.closed_by is ReportClosure.GEOMETRY_CHANGED
    assert old.geometry_version == config.version() != moved.version()
    assert crossing_counts([old]) == {("h", L2R): 1}
    assert anonymiser.set_geometry("cam", moved.to_geometry()) == []  # unchanged: nothing to do
    for observation in walk_down(frames, 2):
        anonymiser.process(observation)
    (removed,) = anonymiser.set_geometry("cam", None)
    assert removed.closed_by is ReportClosure.CAMERA_REMOVED
    assert removed.line_ids == ("h2",)
    assert crossing_counts([removed]) == {("h2", L2R): 1}
    assert anonymiser.process(frames.frame()).dropped is Dropped.NO_GEOMETRY
    assert anonymiser.stop() == []


def test_a_report_holds_no_track_and_no_fine_time() -> None:
    frames = FrameBuilder(start=T0 + 123.456)
    (report,) = feed(camera_for([HORIZONTAL]), walk_down(frames, 0xABCDEF))
    assert report.window_start == T0
    names = {f.name for f in fields(report)}
    assert not names & {"track_id", "box", "point", "captured_at", "sequence", "run_id", "time"}
    values = [getattr(report, name) for name in names]
    assert not any(isinstance(v, bytes) for v in values)
