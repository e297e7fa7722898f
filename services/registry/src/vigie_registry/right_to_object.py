"""Honouring an objection (docs/privacy.md rules 15 and 16), whichever door it comes through.

The JSON endpoint (``POST /v1/public/cameras/{id}/objections``) and the transparency page's button
(``POST /cameras/{id}/objection``) both call :meth:`ObjectionDesk.object`, so that they share one
per-client rate limit, one maximum pause, one audit event and one receipt format: the HTML path is not
a way around the abuse limits, and the JSON path is not a way around the page's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from vigie_core.audit import AuditAction, AuditPublisher
from vigie_registry.camera import StoredCamera
from vigie_registry.metrics import RegistryMetrics
from vigie_registry.objections import ClientRateLimiter, Receipt, ReceiptSigner, new_receipt_id
from vigie_registry.publication import CameraPublisher
from vigie_registry.settings import ObjectionSettings
from vigie_registry.storage.store import RegistryStore

__all__ = [
    "PUBLIC_ACTOR",
    "HonouredObjection",
    "NotHonouredError",
    "ObjectionDesk",
    "PauseTooLongError",
    "RateLimitedError",
]

PUBLIC_ACTOR = "public:anonymous"


class RateLimitedError(Exception):
    """Too many objections from this client: try again in ``retry_after_s``."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"too many objections from this connection; try again in {retry_after_s} s")
        self.retry_after_s = retry_after_s


class PauseTooLongError(ValueError):
    def __init__(self, max_pause_s: int) -> None:
        super().__init__(f"at most {max_pause_s} s")
        self.max_pause_s = max_pause_s


class NotHonouredError(Exception):
    """The camera is not analysing, or a legal text restricts objection to it (``restricted_by`` names it)."""

    def __init__(self, message: str, *, restricted_by: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.restricted_by = restricted_by


@dataclass(frozen=True, slots=True)
class HonouredObjection:
    receipt: Receipt
    camera: StoredCamera
    # The camera was already paused by an earlier objection: the pause was extended, not stacked.
    extended: bool
    # The pause is in the policy bucket (False: recorded, the reconciler applies it within seconds).
    applied: bool


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


class ObjectionDesk:
    """Rate limit, pause, audit, publish, sign: an objection from start to receipt."""

    def __init__(
        self,
        *,
        store: RegistryStore,
        publisher: CameraPublisher,
        audit: AuditPublisher,
        signer: ReceiptSigner,
        settings: ObjectionSettings,
        limiter: ClientRateLimiter | None = None,
        metrics: RegistryMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._audit = audit
        self.signer = signer
        self.settings = settings
        self._limiter = limiter or ClientRateLimiter(settings.rate_limit)
        self._metrics = metrics or RegistryMetrics()
        self._clock = clock

    def check_rate(self, client: str) -> None:
        """Count one attempt of ``client`` (its address: only ever the limiter's hashed key)."""
        decision = self._limiter.hit(client)
        if not decision.allowed:
            self._metrics.rate_limited.inc()
            raise RateLimitedError(decision.retry_after_s)

    async def object(self, camera_id: str, *, duration_s: int | None = None) -> HonouredObjection:
        """Pause ``camera_id``; call :meth:`check_rate` first.

        Raises :class:`PauseTooLongError`, :class:`NotHonouredError`,
        :class:`~vigie_registry.storage.store.CameraNotFoundError`, and the audit publisher's
        ``AuditUnavailableError`` / ``InvalidAuditEventError`` (what cannot be audited is not done).
        """
        duration = self.settings.default_pause_s
        if duration_s is not None:
            if duration_s > self.settings.max_pause_s:
                raise PauseTooLongError(self.settings.max_pause_s)
            duration = duration_s
        receipt_id = new_receipt_id()
        clock = self._clock

        def honourable(camera: StoredCamera) -> None:
            if not camera.declaration.objection.enabled:
                text = camera.declaration.legal.rights_restriction_legal_text
                raise NotHonouredError(
                    f"objection to this camera is restricted by {text} (GDPR art. 23)", restricted_by=text
                )
            if camera.status != "active":
                raise NotHonouredError(
                    f"the camera is not analysing (status {camera.status}): nothing to pause"
                )

        async def audit_objection(old: StoredCamera | None, new: StoredCamera | None) -> None:
            assert new is not None
            assert new.paused_until is not None
            await self._audit.record(
                AuditAction.AUDIT_ACTION_OBJECTION_HONOURED,
                actor=PUBLIC_ACTOR,
                motive="right to object (GDPR art. 21): the camera's analysis is paused",
                camera_ids=[new.id],
                records=[("objection", receipt_id)],
                details={
                    "paused_until": _iso(new.paused_until),
                    "extended": str(
                        old is not None and old.paused_until is not None and old.paused_until > clock()
                    ).lower(),
                    "version": str(new.version),
                },
            )

        try:
            outcome = await self._store.object(
                camera_id,
                receipt_id=receipt_id,
                now=int(clock()),
                pause_s=duration,
                max_pause_s=self.settings.max_pause_s,
                check=honourable,
                before_commit=audit_objection,
            )
        except NotHonouredError:
            self._metrics.objections.labels("refused").inc()
            raise
        # Applied once the policy holds the pause (the sources bucket does not matter to an objection).
        applied = "policy" not in (await self._publisher.publish(outcome.camera)).failed
        self._metrics.objections.labels("extended" if outcome.extended else "paused").inc()
        receipt = self.signer.sign(outcome.receipt_id, camera_id, outcome.recorded_at, outcome.paused_until)
        return HonouredObjection(receipt, outcome.camera, outcome.extended, applied)

    async def verify(self, receipt: Receipt) -> tuple[bool, bool]:
        """(signed by this registry, in its records)."""
        if not self.signer.verify(receipt):
            return False, False
        stored = await self._store.objection(receipt.receipt_id)
        recorded = (
            stored is not None
            and stored.camera_id == receipt.camera_id
            and stored.recorded_at == receipt.recorded_at
            and stored.paused_until == receipt.paused_until
        )
        return True, recorded
