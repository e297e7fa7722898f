"""Retention: statistics older than the purpose's retention are deleted, and the deletion is audited.

The job runs periodically. It counts what has expired, records a ``retention_deletion`` audit event
(confirmed stored in the journal) and only then deletes, in one transaction: a deletion that cannot be
audited does not happen, and is tried again at the next run. A deletion that fails after its event was
recorded is recorded again as failed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy.exc import SQLAlchemyError

from vigie_aggregation.metrics import AggregationMetrics
from vigie_aggregation.settings import DAY_S
from vigie_aggregation.storage.store import StatisticsStore
from vigie_core.audit import (
    AuditAction,
    AuditEvent,
    AuditOutcome,
    AuditPublisher,
    AuditUnavailableError,
    new_audit_event,
)

__all__ = ["RetentionJob"]

logger = logging.getLogger("vigie.aggregation.retention")

ACTOR = "service:aggregation"


class RetentionJob:
    def __init__(
        self,
        store: StatisticsStore,
        audit: AuditPublisher,
        *,
        retention_days: int,
        metrics: AggregationMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._audit = audit
        self._retention_days = retention_days
        self._metrics = metrics
        self._clock = clock
        # An event whose storage was not confirmed stays buffered and is published later: a retry for the
        # same cutoff publishes that same event again (its id de-duplicates it) rather than a second one.
        self._pending: tuple[int, AuditEvent] | None = None

    def cutoff(self) -> int:
        """Rows dated before this (a UTC midnight, so a day is kept or deleted whole) have expired."""
        now = int(self._clock())
        return now - now % DAY_S - self._retention_days * DAY_S

    async def run_once(self) -> dict[str, int]:
        """Delete what has expired; the rows deleted per table (empty when nothing had)."""
        cutoff = self.cutoff()
        expired = await self._store.count_before(cutoff)
        total = sum(expired.values())
        if total == 0:
            return {}
        motive = f"retention: statistics older than {self._retention_days} days (purpose retention)"
        details = {"retention_days": str(self._retention_days), "rows": str(total)}
        details.update({f"rows.{table}": str(n) for table, n in sorted(expired.items()) if n})
        end = datetime.fromtimestamp(cutoff, UTC)
        if self._pending is not None and self._pending[0] == cutoff:
            event = self._pending[1]
        else:
            event = new_audit_event(
                self._audit.service,
                AuditAction.AUDIT_ACTION_RETENTION_DELETION,
                actor=ACTOR,
                motive=motive,
                records=[("statistics", f"before:{end.isoformat()}")],
                data_end=end,
                details=details,
            )
        try:
            await self._audit.publish(event, confirm=True)
        except AuditUnavailableError as error:
            self._pending = (cutoff, event)
            logger.warning("retention deletion postponed: it cannot be audited now (%s)", error)
            return {}
        self._pending = None
        try:
            deleted = await self._store.delete_before(cutoff)
        except SQLAlchemyError as error:
            logger.error("retention deletion failed: %s", error)
            await self._audit.record(
                AuditAction.AUDIT_ACTION_RETENTION_DELETION,
                actor=ACTOR,
                motive=motive,
                records=[("statistics", f"before:{end.isoformat()}")],
                data_end=end,
                outcome=AuditOutcome.AUDIT_OUTCOME_FAILED,
                details={"error": type(error).__name__},
            )
            return {}
        removed = sum(deleted.values())
        logger.info("retention: deleted %d rows dated before %s", removed, end.isoformat())
        if self._metrics is not None:
            self._metrics.retention_deleted.inc(removed)
        return deleted
