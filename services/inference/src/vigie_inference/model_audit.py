"""Which model answers this replica, in the audit journal (docs/privacy.md rule 20; AI Act art. 12).

The version is recorded when the replica starts (from Triton's model metadata) and again whenever an
answer comes from another version than the one recorded (Triton loaded a new version, or another model
repository): each ``model_version_change`` event names the model, the version now in use and the one
before, and the cameras this replica tracks at that moment. A change that cannot be audited is not taken
as in force: the next answer tries again.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from vigie_core.audit import AuditAction, AuditPublisher, AuditUnavailableError
from vigie_inference.detector import ModelIdentity

__all__ = ["ServedModel"]

logger = logging.getLogger("vigie.inference")


class ServedModel:
    """The model version this replica's answers come from, as last recorded in the journal."""

    def __init__(
        self, audit: AuditPublisher, *, partition: int, cameras: Callable[[], list[str]] = list
    ) -> None:
        self._audit = audit
        self._partition = partition
        self._cameras = cameras
        self.current: ModelIdentity | None = None

    async def identified(self, identity: ModelIdentity) -> bool:
        """Take ``identity`` as the model in use, recording it if it is new; False if it could not be
        recorded (then it is not taken: call again)."""
        previous = self.current
        if previous == identity:
            return True
        details = {
            "model": identity.name,
            "version": identity.version,
            "previous_version": previous.version if previous is not None else "",
            "partition": str(self._partition),
        }
        if identity.platform:
            details["platform"] = identity.platform
        if previous is not None and previous.name != identity.name:
            details["previous_model"] = previous.name
        try:
            await self._audit.record(
                AuditAction.AUDIT_ACTION_MODEL_VERSION_CHANGE,
                actor=self._audit.actor,
                motive=(
                    "the detector version that analyses this replica's cameras"
                    + (": in use at start-up" if previous is None else ": it answers from another version")
                ),
                camera_ids=self._cameras(),
                records=[("model", identity.label)],
                details=details,
            )
        except AuditUnavailableError as error:
            logger.error("model %s in use but not audited yet (%s): tried again", identity.label, error)
            return False
        if previous is None:
            logger.info("model %s in use (%s)", identity.label, identity.platform or "platform unknown")
        else:
            logger.warning("model changed from %s to %s", previous.label, identity.label)
        self.current = identity
        return True

    async def answered_by(self, version: str, model_name: str) -> None:
        """An answer came from ``version`` ("" when the detector cannot say: nothing to check)."""
        if not version or (self.current is not None and self.current.version == version):
            return
        base = self.current or ModelIdentity(model_name, version)
        await self.identified(dataclasses.replace(base, version=version))
