"""The registry's policy applied to ingest's cameras: pauses, masks and sampling, live.

`PolicyGate.refresh` turns each camera's current decision (``vigie_core.policy``) into the directives its
decoding thread reads (`CameraControl`); the service calls it whenever the policy bucket changes and a few
times a second (a pause ends without a message). `PolicyGate.admit` is the last check before a frame is
published: the camera must be analysable *now*, and the frame must carry every mask in force now (a frame
decoded just before a mask was added is blanked again here). Without a policy (``policy.enabled = false``)
the gate admits everything and leaves the controls unrestricted.

Cameras come and go while the service runs (`add`, `remove`: the ones the registry declares): a camera
from the registry is gated exactly like one from the configuration, by its id.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

from prometheus_client import CollectorRegistry, Counter

from vigie_core.policy import DECISION_CAUSES, AnalysisDecision, PolicyView
from vigie_ingest.camera import CameraConfig
from vigie_ingest.directives import CameraControl, CameraDirectives, directives_for
from vigie_ingest.frame import CapturedFrame, RgbPixels

__all__ = ["PolicyGate"]

logger = logging.getLogger("vigie.ingest.policy")


class PolicyGate:
    def __init__(
        self,
        cameras: Sequence[CameraConfig],
        policies: PolicyView | None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self._cameras: dict[str, CameraConfig] = {}
        self._policies = policies
        self.controls: dict[str, CameraControl] = {}
        self.withheld = Counter(
            "vigie_ingest_frames_withheld",
            "Frames decoded but not published: the policy forbade analysing the camera by then",
            ["camera", "reason"],
            registry=registry,
        )
        for camera in cameras:
            self.add(camera)

    def add(self, camera: CameraConfig) -> CameraControl:
        """Follow one more camera (one the registry just declared); its control, fail closed until
        :meth:`refresh` reads its policy."""
        self._cameras[camera.id] = camera
        if self._policies is None:
            control = CameraControl.unrestricted(camera)
        else:
            # Until the first refresh: not analysed (fail closed).
            control = CameraControl(
                CameraDirectives(
                    analyse=False,
                    sample_fps=camera.sample_fps,
                    cause="policy_unavailable",
                    reason="the policy has not been read yet",
                )
            )
        self.controls[camera.id] = control
        for cause in DECISION_CAUSES[1:]:
            self.withheld.labels(camera.id, cause)
        return control

    def remove(self, camera_id: str) -> None:
        """Forget a camera that is no longer read (after its reading has stopped)."""
        self._cameras.pop(camera_id, None)
        if self.controls.pop(camera_id, None) is not None:
            for cause in DECISION_CAUSES[1:]:
                with contextlib.suppress(KeyError):
                    self.withheld.remove(camera_id, cause)

    @property
    def follows_policy(self) -> bool:
        return self._policies is not None

    def directives(self) -> Mapping[str, CameraDirectives]:
        # A copy first: /metrics reads this from another thread while cameras come and go.
        return {camera: control.current for camera, control in list(self.controls.items())}

    def refresh(self, camera_ids: Iterable[str] | None = None) -> list[str]:
        """Apply the current policy to the cameras' controls; the cameras whose directives changed."""
        if self._policies is None:
            return []
        changed = []
        for camera_id in list(self._cameras) if camera_ids is None else camera_ids:
            if self._apply(camera_id, self._policies.decision(camera_id)):
                changed.append(camera_id)
        return changed

    def stale(self) -> bool:
        """Whether the controls no longer say what the policy says now (cheap: no masks are built)."""
        if self._policies is None:
            return False
        for camera_id, control in list(self.controls.items()):
            decision = self._policies.decision(camera_id)
            current = control.current
            version = decision.policy.version if decision.policy is not None else None
            if (decision.analyse, decision.cause, version) != (
                current.analyse,
                current.cause,
                current.policy_version,
            ):
                return True
        return False

    def admit(self, frame: CapturedFrame) -> CapturedFrame | None:
        """The frame as it may be published (masks complete), or None when it must not be."""
        if self._policies is None:
            return frame
        control = self.controls.get(frame.camera_id)
        if control is None:  # a camera no longer read: nothing of it is published
            return None
        decision = self._policies.decision(frame.camera_id)
        self._apply(frame.camera_id, decision)
        if not decision.analyse:
            self.withheld.labels(frame.camera_id, decision.cause).inc()
            return None
        masks = control.current.masks
        if masks and frame.masked_with != masks:
            # Decoded before these masks were in force (or by a source that does not blank): blank now.
            return replace(frame, pixels=_frozen(masks.blank(frame.pixels.copy())), masked_with=masks)
        return frame

    def _apply(self, camera_id: str, decision: AnalysisDecision) -> bool:
        camera = self._cameras.get(camera_id)
        if camera is None:
            return False
        control = self.controls[camera_id]
        previous = control.current
        version = decision.policy.version if decision.policy is not None else None
        if (decision.analyse, decision.cause, version) == (
            previous.analyse,
            previous.cause,
            previous.policy_version,
        ):
            return False
        try:
            directives = directives_for(camera, decision, previous)
        except ValueError as error:  # masks the code cannot draw: fail closed for this camera
            directives = CameraDirectives(
                analyse=False,
                sample_fps=camera.sample_fps,
                cause="unreadable_policy",
                reason=f"privacy masks cannot be applied: {error}",
                policy_version=version,
            )
        control.set(directives)
        self._log(camera_id, previous, directives)
        return True

    @staticmethod
    def _log(camera_id: str, previous: CameraDirectives, current: CameraDirectives) -> None:
        if current.analyse != previous.analyse or current.cause != previous.cause:
            if current.analyse:
                logger.info("camera %s: analysed (policy version %s)", camera_id, current.policy_version)
            else:
                logger.warning(
                    "camera %s: not analysed, no frame is decoded or published: %s",
                    camera_id,
                    current.reason,
                )
        if current.masks != previous.masks:
            logger.info("camera %s: %d privacy mask(s) in force", camera_id, len(current.masks))
        if current.sample_fps != previous.sample_fps:
            logger.info("camera %s: %.3g frames per second kept", camera_id, current.sample_fps)


def _frozen(pixels: RgbPixels) -> RgbPixels:
    pixels.flags.writeable = False
    return pixels
