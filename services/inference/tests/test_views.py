"""Which frames a replica keeps for a view request, and when the view is due (no NATS, no model)."""

import numpy as np

from vigie_embedded.policies import camera_policy
from vigie_inference.scene_view import Picture
from vigie_inference.views import STALE_AFTER_S, ViewSamplings
from vigie_proto.v1.policy_pb2 import CameraPolicy

CAMERA = "parvis"
NOW = 1_800_000_000.0


def requesting(
    request_id: str, sample_seconds: int = 10, requested_at: float = NOW, version: int = 1
) -> CameraPolicy:
    policy = camera_policy(CAMERA, version=version)
    policy.view_request.request_id = request_id
    policy.view_request.sample_seconds = sample_seconds
    policy.view_request.requested_at.FromNanoseconds(int(requested_at * 1e9))
    return policy


def pixels(value: int = 0) -> Picture:
    return np.full((4, 6, 3), value, np.uint8)


def samplings(frames: int = 10) -> ViewSamplings:
    return ViewSamplings(frames=frames, frames_wait_s=30, max_sample_seconds=600)


def test_frames_are_kept_evenly_over_the_sampling_time_and_the_view_is_due_at_its_end() -> None:
    views = samplings(frames=10)
    policy = requesting("r1", sample_seconds=10)
    finished = None
    for i in range(110):  # 10 frames a second
        captured = NOW + i / 10
        offer = views.offer(policy, captured, pixels(i % 256), now=captured)
        if i == 0:
            assert offer.started is not None
        if offer.finished is not None:
            finished = offer.finished
            break
    assert finished is not None
    assert finished.request_id == "r1"
    assert len(finished.frames) == 10
    # One a second: frames 0, 10, 20, ...
    assert [int(f[0, 0, 0]) for f in finished.frames] == list(range(0, 100, 10))
    assert views.cameras == []


def test_a_request_is_carried_out_once_even_if_the_policy_is_written_again() -> None:
    views = samplings(frames=9)
    done = 0
    for i in range(60):
        captured = NOW + i / 10
        # The same request in every later policy version (another rule changed).
        offer = views.offer(requesting("r1", 1, version=1 + i // 20), captured, pixels(), now=captured)
        done += offer.finished is not None
    assert done == 1


def test_a_request_too_old_when_first_seen_is_not_carried_out() -> None:
    views = samplings()
    old = requesting("r1", sample_seconds=30, requested_at=NOW - 30 - STALE_AFTER_S - 1)
    offer = views.offer(old, NOW, pixels(), now=NOW)
    assert offer.ignored == "r1"
    assert offer.started is None
    assert views.cameras == []
    fresh = requesting("r2", sample_seconds=30, requested_at=NOW - 30 - STALE_AFTER_S + 5)
    assert views.offer(fresh, NOW, pixels(), now=NOW).started is not None


def test_a_newer_request_replaces_the_one_being_sampled_and_its_frames_are_dropped() -> None:
    views = samplings()
    views.offer(requesting("r1"), NOW, pixels(), now=NOW)
    offer = views.offer(requesting("r2"), NOW + 1, pixels(), now=NOW + 1)
    assert offer.replaced is not None
    assert offer.replaced.request_id == "r1"
    assert offer.replaced.frames == []
    assert offer.started is not None
    assert offer.started.request_id == "r2"


def test_an_abort_drops_the_frames_and_a_silent_camera_is_built_from_what_was_kept() -> None:
    views = samplings()
    views.offer(requesting("r1", sample_seconds=10), NOW, pixels(), now=NOW)
    aborted = views.abort(CAMERA)
    assert aborted is not None
    assert aborted.frames == []
    assert views.cameras == []
    assert views.abort(CAMERA) is None

    views.offer(requesting("r2", sample_seconds=10), NOW, pixels(), now=NOW)
    assert views.overdue(NOW + 10 + 29) == []
    (overdue,) = views.overdue(NOW + 10 + 30)
    assert overdue.request_id == "r2"
    assert len(overdue.frames) == 1
    assert views.cameras == []


def test_no_request_keeps_no_frame() -> None:
    views = samplings()
    offer = views.offer(camera_policy(CAMERA), NOW, pixels(), now=NOW)
    assert offer.started is None
    assert offer.finished is None
    assert views.cameras == []


def test_a_request_first_seen_while_the_camera_may_not_be_analysed_is_never_carried_out() -> None:
    views = samplings()
    paused = requesting("r1")
    assert views.forgo(paused) == "r1"
    assert views.forgo(paused) is None  # once
    # The pause lifts, the same request still in the policy: not taken up.
    assert views.offer(requesting("r1"), NOW + 60, pixels(), now=NOW + 60).started is None
    assert views.cameras == []
    assert views.forgo(camera_policy(CAMERA)) is None
