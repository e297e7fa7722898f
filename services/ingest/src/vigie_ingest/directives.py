"""What the registry's policy asks of one camera's reading, now: whether to analyse it at all, which areas
to blank, how many frames per second to keep.

`CameraDirectives` is an immutable snapshot; a `CameraControl` holds the current one and is shared by the
event loop (which follows the policy and replaces the snapshot) and the camera's decoding thread (which
reads it for every packet). Replacing a reference is atomic in Python, so no lock is needed and the
thread never waits for the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass

from vigie_core.masks import NO_MASKS, PrivacyMasks, masks_of
from vigie_core.policy import AnalysisDecision
from vigie_ingest.camera import CameraConfig

__all__ = ["CameraControl", "CameraDirectives", "directives_for"]

# The camera configuration's limit; a policy asking for more is held to it.
_MAX_SAMPLE_FPS = 30.0


@dataclass(frozen=True, slots=True)
class CameraDirectives:
    """How to read a camera now. ``analyse`` false: no packet is decoded and no frame published."""

    analyse: bool
    sample_fps: float
    masks: PrivacyMasks = NO_MASKS
    # One of vigie_core.policy.DECISION_CAUSES, and the words of the decision (logs).
    cause: str = "analysing"
    reason: str = "analysing"
    policy_version: int | None = None


class CameraControl:
    """The directives in force for one camera, read by its decoding thread, replaced by the event loop."""

    def __init__(self, directives: CameraDirectives) -> None:
        self._current = directives

    @property
    def current(self) -> CameraDirectives:
        return self._current

    def set(self, directives: CameraDirectives) -> None:
        self._current = directives

    @classmethod
    def unrestricted(cls, camera: CameraConfig) -> CameraControl:
        """Static configuration only (no policy): always analysed, at the configured rate, no masks."""
        return cls(CameraDirectives(analyse=True, sample_fps=camera.sample_fps))


def directives_for(
    camera: CameraConfig, decision: AnalysisDecision, previous: CameraDirectives | None = None
) -> CameraDirectives:
    """The directives a decision implies. Masks and rate come from the policy when it has one; an
    unchanged mask set keeps its object (and the rasters drawn for it)."""
    policy = decision.policy
    masks = masks_of(policy) if policy is not None else NO_MASKS
    if previous is not None and previous.masks == masks:
        masks = previous.masks
    sample_fps = camera.sample_fps
    if policy is not None and policy.sample_fps > 0:
        sample_fps = min(policy.sample_fps, _MAX_SAMPLE_FPS)
    return CameraDirectives(
        analyse=decision.analyse,
        sample_fps=sample_fps,
        masks=masks,
        cause=decision.cause,
        reason=decision.reason,
        policy_version=policy.version if policy is not None else None,
    )
