"""Signing tree heads (at an interval and on demand) and applying the journal's own retention."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from vigie_audit.store import JournalStore, PruneResult
from vigie_audit.tree_head import SignedTreeHead, TreeHead, TreeHeadSigningKey
from vigie_core.audit import AuditAction, AuditPublisher

logger = logging.getLogger("vigie.audit.signer")


class TreeHeadSigner:
    """Signs the journal's current tree head and stores it."""

    def __init__(self, store: JournalStore, key: TreeHeadSigningKey, log_id: str) -> None:
        self._store = store
        self.key = key
        self.log_id = log_id
        self._lock = asyncio.Lock()
        self._last: SignedTreeHead | None = None

    async def sign_now(self) -> SignedTreeHead:
        async with self._lock:
            size = await self._store.tree_size()
            # Nodes are written once, so this is the root of exactly these ``size`` entries even if
            # more are appended meanwhile.
            root = await self._store.root(size)
            signed = self.key.sign(TreeHead(self.log_id, size, root, int(time.time() * 1000)))
            await self._store.add_tree_head(signed)
            self._last = signed
            return signed

    async def sign_if_grown(self) -> SignedTreeHead | None:
        """Sign when the journal grew since the last head (or none was signed yet by this key)."""
        if self._last is None:
            latest = await self._store.latest_tree_head()
            if latest is not None and latest.public_key == self.key.public_key:
                self._last = latest
        if self._last is not None and await self._store.tree_size() == self._last.head.tree_size:
            return None
        return await self.sign_now()


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    days: int
    justification: str | None = None

    def cutoff(self, now: datetime) -> datetime:
        return now - timedelta(days=self.days)


async def apply_retention(
    store: JournalStore, publisher: AuditPublisher, policy: RetentionPolicy, now: datetime | None = None
) -> PruneResult:
    """Prune the payloads of entries past retention, and record that deletion in the journal itself."""
    now = now or datetime.now(UTC)
    cutoff = policy.cutoff(now)
    result = await store.prune(cutoff, now)
    if result.pruned or result.rejected_deleted:
        logger.info(
            "retention (%d days): pruned %d entries (%s to %s), deleted %d rejected messages",
            policy.days,
            result.pruned,
            result.first_index,
            result.last_index,
            result.rejected_deleted,
        )
        records = [("audit_entries", f"{result.first_index}-{result.last_index}")] if result.pruned else []
        await publisher.record(
            AuditAction.AUDIT_ACTION_RETENTION_DELETION,
            actor="service:audit",
            motive=f"audit journal retention of {policy.days} days (docs/privacy.md rule 21)"
            + (f": {policy.justification}" if policy.justification else ""),
            records=records,
            data_end=cutoff,
            details={
                "pruned_entries": str(result.pruned),
                "rejected_messages_deleted": str(result.rejected_deleted),
                "method": "payload and actor cleared, leaf and node hashes kept",
            },
        )
    return result
