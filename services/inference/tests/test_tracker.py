from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from vigie_inference.detections import CountedClass, Detections
from vigie_inference.tracker import Tracker, TrackerParams, TrackerUpdate, TrackingRules
from vigie_inference.tracking.association import (
    FORBIDDEN_COST,
    assign,
    direction_cost,
    height_modulated_iou,
    iou_matrix,
)
from vigie_inference.tracking.kalman import BoxKalmanFilter, MotionNoise

FPS = 10.0
Box = tuple[float, float, float, float]


def detections(
    boxes: Sequence[Box],
    scores: float | Sequence[float] = 0.9,
    classes: CountedClass | Sequence[CountedClass] = CountedClass.PERSON,
) -> Detections:
    count = len(boxes)
    score_list = [scores] * count if isinstance(scores, float) else list(scores)
    class_list = [classes] * count if isinstance(classes, CountedClass) else list(classes)
    return Detections(
        boxes=np.array(boxes, dtype=np.float32).reshape(-1, 4), scores=score_list, classes=class_list
    )


def person_at(x: float, y: float = 0.4, width: float = 0.06, height: float = 0.2) -> Box:
    return (x, y, x + width, y + height)


def ids_of(update: TrackerUpdate) -> list[bytes]:
    return [track.track_id for track in update.tracks]


def test_a_single_moving_box_keeps_one_id_over_50_frames() -> None:
    tracker = Tracker()
    updates = [tracker.update(detections([person_at(0.1 + 0.012 * i)]), i / FPS) for i in range(50)]

    reported = [ids_of(update) for update in updates]  # from its first frame: it scores >= confirm_score
    assert all(len(ids) == 1 for ids in reported)
    assert len({ids[0] for ids in reported}) == 1
    assert all(update.ended == () for update in updates)
    last = updates[-1].tracks[0]
    assert last.object_class is CountedClass.PERSON
    assert last.score == pytest.approx(0.9)
    np.testing.assert_allclose(last.box, person_at(0.1 + 0.012 * 49), atol=0.01)


def test_tentative_tracks_are_not_reported_until_confirmed() -> None:
    tracker = Tracker(TrackerParams(confirm_hits=3, confirm_score=None))
    box = [person_at(0.5)]

    assert tracker.update(detections(box), 0.0).tracks == ()
    assert tracker.update(detections(box), 0.1).tracks == ()
    assert len(tracker.update(detections(box), 0.2).tracks) == 1
    assert tracker.live_tracks == 1


def test_a_track_confirmed_over_frames_reports_where_it_started_once() -> None:
    # Scoring below confirm_score, the walker is confirmed at its second frame: that message also carries
    # the box of its first detection, so that a line crossed in between is not lost; never again after.
    tracker = Tracker()
    first, second, third = (person_at(0.3 + 0.05 * i) for i in range(3))
    assert tracker.update(detections([first], scores=0.6), 0.0).tracks == ()
    (confirmed,) = tracker.update(detections([second], scores=0.6), 0.2).tracks
    assert confirmed.first_box == pytest.approx(first, abs=1e-6)
    (later,) = tracker.update(detections([third], scores=0.6), 0.4).tracks
    assert later.track_id == confirmed.track_id
    assert later.first_box is None


def test_a_track_confirmed_at_once_has_no_earlier_box() -> None:
    (track,) = Tracker().update(detections([person_at(0.3)], scores=0.9), 0.0).tracks
    assert track.first_box is None


def test_a_false_detection_for_one_frame_is_never_reported_nor_ended() -> None:
    tracker = Tracker()
    first = tracker.update(detections([person_at(0.5)], scores=0.65), 0.0)  # below confirm_score
    rest = [tracker.update(detections([]), i / FPS) for i in range(1, 40)]

    assert first.tracks == ()
    assert all(update.tracks == () and update.ended == () for update in rest)
    assert tracker.end_all() == ()


def test_confirm_hits_of_one_reports_a_track_at_its_first_frame() -> None:
    tracker = Tracker(TrackerParams(confirm_hits=1))

    assert len(tracker.update(detections([person_at(0.5)]), 0.0).tracks) == 1


def test_two_crossing_people_keep_their_ids_through_the_crossing() -> None:
    tracker = Tracker()
    left_to_right: set[bytes] = set()
    right_to_left: set[bytes] = set()
    for i in range(60):
        x = 0.1 + 0.012 * i  # they meet at frame 29
        update = tracker.update(
            detections([person_at(x, y=0.40), person_at(0.8 - 0.012 * i, y=0.43)], scores=[0.9, 0.8]),
            i / FPS,
        )
        for track in update.tracks:
            moving_right = abs(track.box[0] - x) < abs(track.box[0] - (0.8 - 0.012 * i))
            (left_to_right if moving_right else right_to_left).add(track.track_id)
        assert update.ended == ()

    assert len(left_to_right) == 1
    assert len(right_to_left) == 1
    assert left_to_right != right_to_left


def test_an_occlusion_shorter_than_the_buffer_keeps_the_id() -> None:
    tracker = Tracker(TrackerParams(track_buffer_s=2.0))
    seen: list[bytes] = []
    for i in range(60):
        hidden = 20 <= i < 35  # 1.5 s behind something, still walking
        frame = detections([] if hidden else [person_at(0.1 + 0.01 * i)])
        update = tracker.update(frame, i / FPS)
        assert update.ended == ()
        if hidden:
            assert update.tracks == ()
        seen.extend(ids_of(update))

    assert len(set(seen)) == 1
    assert len(seen) == 60 - 15


def test_an_occlusion_longer_than_the_buffer_ends_the_id_once_and_a_new_one_follows() -> None:
    tracker = Tracker(TrackerParams(track_buffer_s=2.0))
    box = [person_at(0.5)]
    before = {tid for i in range(10) for tid in ids_of(tracker.update(detections(box), i / FPS))}
    gap = [tracker.update(detections([]), i / FPS) for i in range(10, 40)]  # 3 s
    after = [tracker.update(detections(box), i / FPS) for i in range(40, 50)]

    ended = [tid for update in gap + after for tid in update.ended]
    assert ended == list(before)
    # Ended when more than 2 s had passed since the last sighting at 0.9 s, not before.
    ending_frame = next(i for i, update in enumerate(gap, start=10) if update.ended)
    assert ending_frame == 30
    later = {tid for update in after for tid in ids_of(update)}
    assert len(later) == 1
    assert later.isdisjoint(before)


def test_low_score_detections_keep_a_visible_track_alive() -> None:
    params = TrackerParams(track_buffer_s=0.5)
    tracker = Tracker(params)
    ids = [ids_of(tracker.update(detections([person_at(0.1 + 0.01 * i)]), i / FPS)) for i in range(5)]
    # Partly hidden for 3 s: the detector is unsure, far longer than the buffer would forgive.
    for i in range(5, 35):
        update = tracker.update(detections([person_at(0.1 + 0.01 * i)], scores=0.3), i / FPS)
        assert ids_of(update) == ids[-1]
        assert update.tracks[0].score == pytest.approx(0.3)
        assert update.ended == ()


def test_low_score_detections_alone_never_start_a_track() -> None:
    tracker = Tracker()

    updates = [tracker.update(detections([person_at(0.5)], scores=0.45), i / FPS) for i in range(20)]

    assert all(update.tracks == () for update in updates)
    assert tracker.live_tracks == 0


def test_low_score_detections_find_a_lost_track_again_where_it_is_predicted() -> None:
    # Unlike ByteTrack: at 5 fps a person hidden for a frame usually comes back half hidden, scored low.
    tracker = Tracker(TrackerParams(track_buffer_s=0.5))
    ids = [ids_of(tracker.update(detections([person_at(0.5)]), i / FPS)) for i in range(5)]
    assert tracker.update(detections([]), 0.5).tracks == ()

    update = tracker.update(detections([person_at(0.5)], scores=0.3), 0.6)

    assert ids_of(update) == ids[-1]


def test_low_score_clutter_away_from_a_lost_track_neither_revives_it_nor_starts_a_track() -> None:
    tracker = Tracker(TrackerParams(track_buffer_s=0.5))
    for i in range(5):
        tracker.update(detections([person_at(0.5)]), i / FPS)
    tracker.update(detections([]), 0.5)

    updates = [tracker.update(detections([person_at(0.2)], scores=0.3), t) for t in (0.6, 0.7, 0.8)]

    assert all(update.tracks == () for update in updates)


def test_association_is_class_aware() -> None:
    tracker = Tracker()
    box = [person_at(0.5)]
    person_ids = {tid for i in range(5) for tid in ids_of(tracker.update(detections(box), i / FPS))}

    updates = [tracker.update(detections(box, classes=CountedClass.CAR), i / FPS) for i in range(5, 10)]

    car_tracks = [track for update in updates for track in update.tracks]
    assert car_tracks
    assert all(track.object_class is CountedClass.CAR for track in car_tracks)
    assert person_ids.isdisjoint(track.track_id for track in car_tracks)


def test_a_one_frame_class_flicker_does_not_change_the_id() -> None:
    tracker = Tracker()
    classes = [CountedClass.CAR] * 10 + [CountedClass.TRUCK] + [CountedClass.CAR] * 10
    updates = [
        tracker.update(detections([(0.1 + 0.01 * i, 0.5, 0.3 + 0.01 * i, 0.6)], classes=cls), i / FPS)
        for i, cls in enumerate(classes)
    ]

    reported = [track for update in updates for track in update.tracks]
    assert {track.track_id for track in reported} == {reported[0].track_id}
    assert {track.object_class for track in reported} == {CountedClass.CAR}
    assert updates[10].tracks == ()


def test_irregular_sampling_keeps_one_id() -> None:
    tracker = Tracker()
    rng = np.random.default_rng(5)
    timestamps = np.cumsum(rng.uniform(0.05, 0.4, 40))
    seen = {
        tid
        for t in timestamps
        for tid in ids_of(tracker.update(detections([person_at(0.05 + 0.1 * t)]), float(t)))
    }

    assert len(seen) == 1


def test_ids_are_16_random_bytes_never_repeated_across_1000_tracks() -> None:
    tracker = Tracker(TrackerParams(track_buffer_s=0.5))
    reported: list[bytes] = []
    ended: list[bytes] = []
    t = 0.0
    for _ in range(100):
        crowd = [person_at(0.09 * k) for k in range(10)]
        for _ in range(2):
            reported.extend(ids_of(tracker.update(detections(crowd), t)))
            t += 0.1
        t += 1.0
        ended.extend(tracker.update(detections([]), t).ended)

    assert len(reported) == 2000  # each reported at both its frames
    assert len(set(reported)) == 1000
    assert all(isinstance(tid, bytes) and len(tid) == 16 for tid in reported)
    assert sorted(ended) == sorted(set(reported))


def test_end_all_ends_confirmed_tracks_once_and_resets() -> None:
    tracker = Tracker(TrackerParams(confirm_score=None))
    for i in range(3):
        tracker.update(detections([person_at(0.1), person_at(0.6)]), i / FPS)
    tracker.update(detections([person_at(0.1), person_at(0.85, y=0.1)]), 0.3)  # 2nd lost, 3rd tentative
    assert tracker.live_tracks == 2

    ended = tracker.end_all()

    assert len(ended) == 2
    assert tracker.live_tracks == 0
    assert tracker.end_all() == ()
    # A new run may restart its clock.
    assert tracker.update(detections([person_at(0.1)]), 0.0).tracks == ()
    assert len(tracker.update(detections([person_at(0.1)]), 0.1).tracks) == 1


def test_boxes_stay_within_the_picture_while_leaving_it() -> None:
    tracker = Tracker()
    for i in range(30):
        x = 0.8 + 0.01 * i
        frame = detections([(x, 0.1, min(x + 0.1, 1.0), 0.3)]) if x < 1.0 else detections([])
        for track in tracker.update(frame, i / FPS).tracks:
            assert all(0.0 <= value <= 1.0 for value in track.box)


def test_time_must_not_go_backwards() -> None:
    tracker = Tracker()
    tracker.update(detections([person_at(0.5)]), 10.0)

    with pytest.raises(ValueError, match="time order"):
        tracker.update(detections([person_at(0.5)]), 9.0)
    with pytest.raises(ValueError, match="finite"):
        tracker.update(detections([person_at(0.5)]), float("nan"))
    # The rejected frames changed nothing: the track is confirmed by its second frame.
    assert len(tracker.update(detections([person_at(0.5)]), 10.1).tracks) == 1


@pytest.mark.parametrize(
    "fields",
    [
        {"low_threshold": 0.6, "high_threshold": 0.5},
        {"new_track_threshold": 0.4},
        {"confirm_hits": 0},
        {"track_buffer_s": 0.0},
        {"max_match_distance": 1.0},
        {"track_bufer_s": 3.0},
    ],
)
def test_params_reject_bad_values(fields: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        TrackerParams.model_validate(fields)


def test_iou_matrix() -> None:
    first = np.array([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.5, 0.5]])
    second = np.array([[0.0, 0.0, 1.0, 0.5], [2.0, 2.0, 3.0, 3.0], [0.0, 0.0, 0.0, 0.0]])

    np.testing.assert_allclose(iou_matrix(first, second), [[0.5, 0.0, 0.0], [0.5, 0.0, 0.0]])


def test_height_modulated_iou_is_iou_times_the_iou_of_the_vertical_extents() -> None:
    first = np.array([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.5, 0.5]])
    second = np.array(
        [[0.0, 0.0, 1.0, 0.5], [2.0, 2.0, 3.0, 3.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.5, 0.5]]
    )

    np.testing.assert_allclose(
        height_modulated_iou(first, second), [[0.25, 0.0, 0.0, 0.125], [0.5, 0.0, 0.0, 1.0]]
    )


def test_direction_cost_weighs_the_turn_by_how_clear_the_headings_are() -> None:
    velocities = np.array([[1.0, 0.0], [0.1, 0.0]])  # box sizes a second: a walker, a hesitant one
    moves = np.array([[[0.5, 0.0], [-0.5, 0.0], [0.0, 0.5], [0.02, 0.0]]] * 2)

    cost = direction_cost(velocities, moves)

    np.testing.assert_allclose(cost[0], [0.0, 1.0, 0.5, 0.0], atol=1e-9)
    np.testing.assert_allclose(cost[1], [0.0, 0.2, 0.1, 0.0], atol=1e-9)  # 0.1 / 0.5 of the turn


def test_the_kalman_filter_predicts_each_track_by_its_own_step() -> None:
    kalman = BoxKalmanFilter(MotionNoise(measurement=0.05, position=0.27, velocity=1.0, initial_velocity=1.9))
    mean, covariance = kalman.initiate(np.array([[0.2, 0.5, 0.05, 0.2], [0.6, 0.5, 0.05, 0.2]]))
    mean[:, 4] = 0.1

    together = kalman.predict(mean, covariance, np.array([0.2, 0.0]))
    alone = kalman.predict(mean[:1], covariance[:1], 0.2)

    np.testing.assert_allclose(together[0][0], alone[0][0])
    np.testing.assert_allclose(together[1][0], alone[1][0])
    np.testing.assert_allclose(together[0][1], mean[1])
    np.testing.assert_allclose(together[1][1], covariance[1])


def test_assign_matches_as_many_as_possible_never_above_the_limit() -> None:
    cost = np.array([[0.1, 0.3], [0.2, FORBIDDEN_COST], [0.9, 0.85]])

    assignment = assign(cost, 0.8)

    # Row 0 gives up its best column so that row 1 gets one; row 2 has nothing under the limit.
    assert set(zip(assignment.rows.tolist(), assignment.columns.tolist(), strict=True)) == {(0, 1), (1, 0)}
    assert assignment.unmatched_rows.tolist() == [2]
    assert assignment.unmatched_columns.tolist() == []


def test_assign_handles_empty_matrices() -> None:
    assert assign(np.zeros((0, 3)), 0.8).unmatched_columns.tolist() == [0, 1, 2]
    assert assign(np.zeros((2, 0)), 0.8).unmatched_rows.tolist() == [0, 1]


def _full_covariance(blocks: np.ndarray) -> np.ndarray:
    """The 8x8 covariance of one track from its (3, 4) per-quantity blocks."""
    full = np.zeros((8, 8))
    for k in range(4):
        full[k, k], full[k, k + 4], full[k + 4, k + 4] = blocks[0, k], blocks[1, k], blocks[2, k]
        full[k + 4, k] = blocks[1, k]
    return full


def test_the_kalman_filter_equals_the_textbook_8x8_filter() -> None:
    noise = MotionNoise(measurement=0.05, position=0.27, velocity=1.0, initial_velocity=1.9)
    kalman = BoxKalmanFilter(noise)
    rng = np.random.default_rng(7)
    measurements = [np.array([[0.5, 0.4, 0.1, 0.3]]) + rng.normal(0, 0.01, (1, 4)) for _ in range(6)]
    mean, blocks = kalman.initiate(measurements[0])
    full_mean, full_cov = mean[0].copy(), _full_covariance(blocks[0])
    observation = np.hstack((np.eye(4), np.zeros((4, 4))))
    for measured, dt in zip(measurements[1:], [0.1, 0.25, 0.0, 0.1, 0.5], strict=True):
        mean, blocks = kalman.predict(mean, blocks, dt)
        mean, blocks = kalman.update(mean, blocks, measured)

        sizes = np.tile(np.maximum(np.abs(full_mean[2:4]), 1e-4), 2)
        if dt > 0:
            transition = np.eye(8)
            transition[0:4, 4:8] = dt * np.eye(4)
            process = np.diag(np.concatenate(((0.27 * sizes) ** 2, (1.0 * sizes) ** 2)) * dt)
            full_mean = transition @ full_mean
            full_cov = transition @ full_cov @ transition.T + process
        sizes = np.tile(np.maximum(np.abs(full_mean[2:4]), 1e-4), 2)
        innovation_cov = observation @ full_cov @ observation.T + np.diag((0.05 * sizes) ** 2)
        gain = full_cov @ observation.T @ np.linalg.inv(innovation_cov)
        full_mean = full_mean + gain @ (measured[0] - observation @ full_mean)
        full_cov = (np.eye(8) - gain @ observation) @ full_cov

        np.testing.assert_allclose(mean[0], full_mean, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(_full_covariance(blocks[0]), full_cov, rtol=1e-9, atol=1e-12)


_box = st.tuples(st.floats(0.0, 0.95), st.floats(0.0, 0.95), st.floats(0.01, 0.3), st.floats(0.01, 0.3)).map(
    lambda b: (b[0], b[1], min(b[0] + b[2], 1.0), min(b[1] + b[3], 1.0))
)
_detection = st.tuples(_box, st.floats(0.0, 1.0), st.sampled_from(list(CountedClass)))
_frame = st.tuples(st.floats(0.0, 1.5), st.lists(_detection, max_size=12))


@settings(max_examples=60, deadline=None)
@given(frames=st.lists(_frame, max_size=40), confirm_hits=st.integers(1, 3))
def test_random_detections_never_break_the_id_rules(
    frames: list[tuple[float, list[tuple[Box, float, CountedClass]]]], confirm_hits: int
) -> None:
    tracker = Tracker(TrackerParams(confirm_hits=confirm_hits, track_buffer_s=1.0))
    live: set[bytes] = set()
    ended: set[bytes] = set()
    t = 0.0
    for dt, frame in frames:
        t += dt
        update = tracker.update(
            detections([d[0] for d in frame], [d[1] for d in frame], [d[2] for d in frame]), t
        )
        visible = ids_of(update)
        assert len(visible) == len(set(visible)) <= len(frame)
        assert ended.isdisjoint(visible)
        assert set(update.ended) <= live  # only reported ids end, once
        assert len(update.ended) == len(set(update.ended))
        assert set(update.ended).isdisjoint(visible)
        live -= set(update.ended)
        ended |= set(update.ended)
        live |= set(visible)
        assert tracker.live_tracks == len(live)
        for track in update.tracks:
            assert len(track.track_id) == 16
            assert 0.0 <= track.box[0] <= track.box[2] <= 1.0
            assert 0.0 <= track.box[1] <= track.box[3] <= 1.0
            assert track.score >= tracker.params.low_threshold
            assert isinstance(track.object_class, CountedClass)
    final = tracker.end_all()
    assert set(final) == live
    assert len(final) == len(live)


# -- the camera's policy: classes and max age ---------------------------------------------------------

EVERY_CLASS = TrackingRules()
PERSONS_ONLY = TrackingRules(frozenset({CountedClass.PERSON}))


def car_at(x: float, y: float = 0.7) -> Box:
    return (x, y, x + 0.2, y + 0.12)


def test_a_class_the_policy_does_not_list_never_gets_a_track() -> None:
    tracker = Tracker()
    updates = [
        tracker.update(
            detections(
                [person_at(0.1 + 0.01 * i), car_at(0.6 - 0.01 * i)],
                classes=[CountedClass.PERSON, CountedClass.CAR],
            ),
            i / FPS,
            PERSONS_ONLY,
        )
        for i in range(20)
    ]

    reported = [track for update in updates for track in update.tracks]
    assert len(reported) == 20
    assert {track.object_class for track in reported} == {CountedClass.PERSON}
    assert len({track.track_id for track in reported}) == 1
    assert all(update.discarded == {CountedClass.CAR: 1} for update in updates)
    assert tracker.live_tracks == 1


def test_no_class_listed_tracks_nothing() -> None:
    tracker = Tracker()
    nothing = TrackingRules(frozenset())
    updates = [tracker.update(detections([person_at(0.5)]), i / FPS, nothing) for i in range(5)]

    assert all(update.tracks == () for update in updates)
    assert updates[0].discarded == {CountedClass.PERSON: 1}


def test_tracks_of_a_class_no_longer_allowed_end_at_once_and_come_back_under_new_ids() -> None:
    tracker = Tracker()

    def frame(i: int, rules: TrackingRules = EVERY_CLASS) -> TrackerUpdate:
        boxes = [person_at(0.1 + 0.01 * i), car_at(0.6 - 0.01 * i)]
        both = detections(boxes, classes=[CountedClass.PERSON, CountedClass.CAR])
        return tracker.update(both, i / FPS, rules)

    before = [frame(i) for i in range(5)][-1]
    ids = {track.object_class: track.track_id for track in before.tracks}
    assert set(ids) == {CountedClass.PERSON, CountedClass.CAR}

    changed = frame(5, PERSONS_ONLY)  # the policy changed: persons only
    assert changed.ended == (ids[CountedClass.CAR],)
    assert ids_of(changed) == [ids[CountedClass.PERSON]], "the person's track goes on"
    assert changed.aged_out == ()
    assert all(ids_of(frame(i, PERSONS_ONLY)) == [ids[CountedClass.PERSON]] for i in range(6, 10))

    again = [frame(i) for i in range(10, 13)]  # cars allowed again
    cars = {t.track_id for update in again for t in update.tracks if t.object_class is CountedClass.CAR}
    assert len(cars) == 1
    assert ids[CountedClass.CAR] not in cars


def test_a_track_reaching_its_max_age_ends_and_its_object_goes_on_under_a_new_id() -> None:
    tracker = Tracker()
    rules = TrackingRules(track_max_s=2.0)
    updates = [tracker.update(detections([person_at(0.1 + 0.005 * i)]), i / FPS, rules) for i in range(50)]

    # Reported at every frame from its confirmation on, without a gap at the renewals.
    assert all(len(update.tracks) == 1 for update in updates[1:])
    ids = [update.tracks[0].track_id for update in updates[1:]]
    first, second, third = dict.fromkeys(ids)
    # Born at 0.0 s, so older than 2 s at 2.1 s; the new one, born at 2.1 s, at 4.2 s.
    assert ids.index(second) == 21 - 1
    assert ids.index(third) == 42 - 1
    assert updates[21].ended == (first,)
    assert updates[42].ended == (second,)
    assert updates[21].aged_out == (CountedClass.PERSON,)
    assert sum(len(update.ended) for update in updates) == 2
    assert tracker.end_all() == (third,)


def test_the_max_age_counts_from_the_first_frame_and_defaults_to_the_params() -> None:
    tracker = Tracker(TrackerParams(track_max_s=1.0, confirm_hits=3))
    updates = [tracker.update(detections([person_at(0.5)]), i / FPS) for i in range(13)]

    first = updates[2].tracks[0].track_id  # confirmed at its third frame, born at the first
    assert updates[11].ended == (first,)
    assert updates[11].tracks[0].track_id != first
    assert updates[12].ended == ()


def test_a_lost_track_reaching_its_max_age_ends_and_is_not_found_again() -> None:
    tracker = Tracker(TrackerParams(track_buffer_s=2.0))
    rules = TrackingRules(track_max_s=1.5)
    box = [person_at(0.5)]
    seen = {tid for i in range(10) for tid in ids_of(tracker.update(detections(box), i / FPS, rules))}
    hidden = [tracker.update(detections([]), i / FPS, rules) for i in range(10, 18)]
    back = [tracker.update(detections(box), i / FPS, rules) for i in range(18, 22)]

    ended = [
        (i, update.ended, update.aged_out) for i, update in enumerate(hidden + back, start=10) if update.ended
    ]
    assert ended == [(16, tuple(seen), (CountedClass.PERSON,))], "older than 1.5 s at 1.6 s, while hidden"
    later = {tid for update in back for tid in ids_of(update)}
    assert len(later) == 1
    assert later.isdisjoint(seen)


def test_rules_reject_a_max_age_out_of_range() -> None:
    with pytest.raises(ValueError, match="track_max_s"):
        TrackingRules(track_max_s=0.0)
    with pytest.raises(ValueError, match="track_max_s"):
        TrackingRules(track_max_s=2 * 86_400.0)
    with pytest.raises(ValidationError):
        TrackerParams(track_max_s=0.5)


@settings(max_examples=40, deadline=None)
@given(
    frames=st.lists(st.tuples(_frame, st.booleans()), max_size=40),
    allowed=st.frozensets(st.sampled_from(list(CountedClass))),
    track_max_s=st.floats(1.0, 4.0),
)
def test_random_detections_never_track_a_class_not_allowed_nor_keep_an_id_too_long(
    frames: list[tuple[tuple[float, list[tuple[Box, float, CountedClass]]], bool]],
    allowed: frozenset[CountedClass],
    track_max_s: float,
) -> None:
    tracker = Tracker(TrackerParams(track_buffer_s=1.0))
    restricted = TrackingRules(allowed, track_max_s)
    unrestricted = TrackingRules(track_max_s=track_max_s)
    first_seen: dict[bytes, float] = {}
    ended: set[bytes] = set()
    t = 0.0
    for (dt, frame), restrict in frames:
        t += dt
        rules = restricted if restrict else unrestricted
        update = tracker.update(
            detections([d[0] for d in frame], [d[1] for d in frame], [d[2] for d in frame]), t, rules
        )
        assert sum(update.discarded.values()) == sum(d[2] not in rules.classes for d in frame)
        assert set(update.ended) <= set(first_seen) - ended
        ended |= set(update.ended)
        for track in update.tracks:
            assert track.object_class in rules.classes
            assert track.track_id not in ended
            # An id is reported only while its track is younger than the max age (born at or before).
            assert t - first_seen.setdefault(track.track_id, t) <= track_max_s


# -- low frame rates: occlusions, crossings, boxes that no longer overlap ------------------------------


@pytest.mark.parametrize("fps", [3.0, 10.0])
def test_a_walker_hidden_for_2_5_s_keeps_its_id_at_3_and_10_fps(fps: float) -> None:
    tracker = Tracker()  # track_buffer_s = 3 s, whatever the frame rate
    seen: list[bytes] = []
    frames = round(8 * fps)
    for i in range(frames):
        t = i / fps
        hidden = 2.0 <= t < 4.5  # behind a parked van, walking on at the same pace
        update = tracker.update(detections([] if hidden else [person_at(0.05 + 0.1 * t)]), t)
        assert update.ended == ()
        if hidden:
            assert update.tracks == ()
        seen.extend(ids_of(update))

    assert len(set(seen)) == 1
    assert len(seen) == sum(1 for i in range(frames) if not 2.0 <= i / fps < 4.5)


@pytest.mark.parametrize("fps", [3.0, 10.0])
@pytest.mark.parametrize("depth", ["same", "different"])
def test_two_walkers_crossing_keep_their_ids_at_3_and_10_fps(fps: float, depth: str) -> None:
    # They meet at 2 s, walking 0.15 picture widths (2.5 box widths) a second towards each other.
    tracker = Tracker()
    other_y, other_height = (0.42, 0.2) if depth == "same" else (0.5, 0.26)
    rightwards: set[bytes] = set()
    leftwards: set[bytes] = set()
    for i in range(round(4 * fps)):
        t = i / fps
        right, left = 0.17 + 0.15 * t, 0.77 - 0.15 * t
        update = tracker.update(
            detections(
                [person_at(right, 0.4), person_at(left, other_y, height=other_height)], scores=[0.9, 0.8]
            ),
            t,
        )
        assert update.ended == ()
        for track in update.tracks:
            goes_right = abs(track.box[0] - right) < abs(track.box[0] - left)
            (rightwards if goes_right else leftwards).add(track.track_id)

    assert len(rightwards) == 1
    assert len(leftwards) == 1
    assert rightwards.isdisjoint(leftwards)


@pytest.mark.parametrize("box_widths_per_s", [3.0, 4.5, 6.0])
@pytest.mark.parametrize("score", [0.9, 0.65])  # confirmed at once, or tentative for a frame
def test_at_3_fps_a_box_that_no_longer_overlaps_the_previous_one_keeps_its_id(
    box_widths_per_s: float, score: float
) -> None:
    # A walker seen side-on, a cyclist, a car: one to two box widths between frames, no overlap at all.
    fps = 3.0
    tracker = Tracker()
    width = 0.06
    seen: set[bytes] = set()
    for i in range(7):
        x = 0.02 + box_widths_per_s * width * i / fps
        update = tracker.update(detections([(x, 0.4, x + width, 0.6)], scores=score), i / fps)
        assert len(update.tracks) == (0 if i == 0 and score < 0.7 else 1)
        seen.update(ids_of(update))

    assert len(seen) == 1


def test_at_3_fps_a_newcomer_far_from_a_vanished_walker_gets_a_new_id() -> None:
    # The reach of the motion gate is the filter's uncertainty: not the whole picture.
    fps = 3.0
    tracker = Tracker()
    first = {tid for i in range(4) for tid in ids_of(tracker.update(detections([person_at(0.1)]), i / fps))}

    update = tracker.update(detections([person_at(0.7)]), 4 / fps)

    assert len(update.tracks) == 1
    assert update.tracks[0].track_id not in first


def test_a_confident_one_frame_false_detection_is_reported_once_and_its_id_ended_once() -> None:
    # Confirmed at once (score >= confirm_score), it is a track of one position: it crosses no line.
    tracker = Tracker()
    first = tracker.update(detections([person_at(0.5)]), 0.0)
    rest = [tracker.update(detections([]), i / FPS) for i in range(1, 40)]

    assert len(first.tracks) == 1
    assert all(update.tracks == () for update in rest)
    assert [tid for update in rest for tid in update.ended] == ids_of(first)
    assert tracker.end_all() == ()
