"""Which frames a replica keeps for the registry's view requests, and when a view is due (no NATS here).

A camera's policy may carry a ViewRequest (policy.proto): its ``request_id``, when it was made, and how
long to sample. The replica analysing the camera takes it up with the camera's next analysed frame, once
per request id: it keeps one frame every ``sample_seconds / frames`` of capture time (a copy, in memory
only), until ``sample_seconds`` have passed or ``frames`` are kept; the caller then builds the view
(:mod:`.scene_view`) and drops the frames. A request older than its ``sample_seconds`` plus
:data:`STALE_AFTER_S` when first seen is not carried out, nor one first seen with a frame the camera's policy
does not let analyse (:meth:`ViewSamplings.forgo`). A newer request for the camera replaces one being
sampled (the registry accepts only the request it made last). A camera that may no longer be analysed
aborts its sampling: the caller drops the frames and says why.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from vigie_core.masks import NO_MASKS, PrivacyMasks, masks_of
from vigie_inference.scene_view import Picture
from vigie_proto.v1.policy_pb2 import CameraPolicy

__all__ = ["STALE_AFTER_S", "Offer", "Sampling", "ViewSamplings"]

# A request this much older than its sampling time when the replica first sees it is not carried out
# (policy.proto): the operator has long stopped waiting, and the registry shows it as never answered.
STALE_AFTER_S = 600.0
# Request ids remembered per camera, so that each is carried out once (the registry keeps the last one in
# the policy; a few more cover a policy read again out of order).
_REMEMBERED = 8


@dataclass(slots=True)
class Sampling:
    """One request being carried out: the frames kept so far (RGB, as analysed)."""

    camera_id: str
    request_id: str
    policy_version: int
    sample_seconds: float
    interval_s: float
    started_at: float  # wall clock, when taken up
    frames: list[Picture] = field(default_factory=list)
    # The masks of the policy the last frame kept was analysed under: blanked again on the view.
    masks: PrivacyMasks = NO_MASKS
    first_capture: float | None = None
    last_capture: float | None = None

    @property
    def sampled_seconds(self) -> float:
        """The capture time the kept frames span."""
        if self.first_capture is None or self.last_capture is None:
            return 0.0
        return self.last_capture - self.first_capture

    def drop_frames(self) -> None:
        self.frames.clear()


@dataclass(frozen=True, slots=True)
class Offer:
    """What one analysed frame did: a request taken up, one ignored (too old: its id), one replaced by a
    newer request (its frames dropped), a sampling complete (build its view)."""

    started: Sampling | None = None
    ignored: str | None = None
    replaced: Sampling | None = None
    finished: Sampling | None = None


class ViewSamplings:
    """Every camera's request being sampled on this replica, and the request ids already taken up."""

    def __init__(self, *, frames: int, frames_wait_s: float, max_sample_seconds: float) -> None:
        self._frames = frames
        self._frames_wait_s = frames_wait_s
        self._max_sample_seconds = max_sample_seconds
        self._active: dict[str, Sampling] = {}
        self._seen: dict[str, deque[str]] = {}

    @property
    def cameras(self) -> list[str]:
        """The cameras with a sampling under way."""
        return list(self._active)

    def offer(self, policy: CameraPolicy, captured: float, pixels: Picture, now: float) -> Offer:
        """An analysed frame of ``policy``'s camera (the policy that allowed analysing it), captured at
        ``captured`` (Unix time); ``now`` is the wall clock."""
        camera_id = policy.camera_id
        started: Sampling | None = None
        ignored: str | None = None
        replaced: Sampling | None = None
        request = policy.view_request if policy.HasField("view_request") else None
        if request is not None and request.request_id and request.request_id not in self._seen_of(camera_id):
            self._seen_of(camera_id).append(request.request_id)
            replaced = self._active.pop(camera_id, None)
            if replaced is not None:
                replaced.drop_frames()
            sample_seconds = min(float(request.sample_seconds), self._max_sample_seconds)
            requested_at = request.requested_at.ToNanoseconds() / 1e9
            if now - requested_at > request.sample_seconds + STALE_AFTER_S:
                ignored = request.request_id
            else:
                started = Sampling(
                    camera_id,
                    request.request_id,
                    policy.version,
                    sample_seconds,
                    interval_s=sample_seconds / self._frames,
                    started_at=now,
                )
                self._active[camera_id] = started
        sampling = self._active.get(camera_id)
        if sampling is None:
            return Offer(started, ignored, replaced)
        first = sampling.first_capture
        due = first is None or captured >= first + len(sampling.frames) * sampling.interval_s
        if due and len(sampling.frames) < self._frames:
            # A copy: the message's buffer is not kept alive by the view.
            sampling.frames.append(np.array(pixels, dtype=np.uint8, copy=True))
            sampling.first_capture = captured if first is None else first
            sampling.last_capture = captured
            sampling.policy_version = policy.version
            sampling.masks = masks_of(policy)
        first = sampling.first_capture
        assert first is not None
        if len(sampling.frames) >= self._frames or captured >= first + sampling.sample_seconds:
            del self._active[camera_id]
            return Offer(started, ignored, replaced, finished=sampling)
        return Offer(started, ignored, replaced)

    def forgo(self, policy: CameraPolicy) -> str | None:
        """A frame of ``policy``'s camera it does not let analyse: a request first seen now is never carried
        out (made while the camera may not be analysed); its id, or None."""
        request = policy.view_request if policy.HasField("view_request") else None
        if request is None or not request.request_id or request.request_id in self._seen_of(policy.camera_id):
            return None
        self._seen_of(policy.camera_id).append(request.request_id)
        return request.request_id

    def overdue(self, now: float) -> list[Sampling]:
        """Samplings whose camera stopped sending frames: due since ``frames_wait_s`` past their sampling
        time; the caller builds them from the frames kept (too few: a refusal saying so)."""
        due = [
            s for s in self._active.values() if now >= s.started_at + s.sample_seconds + self._frames_wait_s
        ]
        for sampling in due:
            del self._active[sampling.camera_id]
        return due

    def abort(self, camera_id: str) -> Sampling | None:
        """The camera may no longer be analysed: its sampling ends, its frames dropped."""
        sampling = self._active.pop(camera_id, None)
        if sampling is not None:
            sampling.drop_frames()
        return sampling

    def abort_all(self) -> list[Sampling]:
        """The replica stops: every sampling ends, its frames dropped (the request is not answered)."""
        aborted = list(self._active.values())
        self._active.clear()
        for sampling in aborted:
            sampling.drop_frames()
        return aborted

    def _seen_of(self, camera_id: str) -> deque[str]:
        return self._seen.setdefault(camera_id, deque(maxlen=_REMEMBERED))
