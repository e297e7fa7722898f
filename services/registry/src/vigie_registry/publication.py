"""Keeping the policy bucket equal to the database: publish on every change, reconcile on start and after
failures.

The bucket is the NATS KV ``vigie-policy`` (key: the camera id, value: ``vigie.v1.CameraPolicy``). Writes
are conditional on the revision read just before, and a newer version in the bucket is never overwritten
with an older one, so two replicas of the registry publishing at once leave the newest policy there.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge

from vigie_core.permissions import POLICY_BUCKET
from vigie_core.policy import UnreadablePolicyError, decode_policy, encode_policy
from vigie_registry.camera import StoredCamera, build_policy
from vigie_registry.storage.store import RegistryStore

if TYPE_CHECKING:
    from nats.js import JetStreamContext
    from nats.js.kv import KeyValue

__all__ = [
    "MemoryPolicyBucket",
    "NatsPolicyBucket",
    "PolicyBucket",
    "PolicyPublisher",
    "ReconcileResult",
    "RevisionConflictError",
]

logger = logging.getLogger("vigie.registry.policy")


class RevisionConflictError(Exception):
    """Someone wrote the key since it was read: read again."""


class PolicyBucket(Protocol):
    """The key-value bucket, as the publisher needs it."""

    async def read(self, key: str) -> tuple[bytes | None, int]:
        """The current value (None: none or deleted) and the revision to write over (0: none)."""
        ...

    async def write(self, key: str, value: bytes, revision: int) -> int:
        """Write if the key is still at ``revision``; raise :class:`RevisionConflictError` otherwise."""
        ...

    async def remove(self, key: str) -> None: ...

    async def keys(self) -> set[str]: ...


class NatsPolicyBucket:
    """The real bucket, created by the registry (the only NATS user allowed to write it)."""

    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv

    @classmethod
    async def ensure(
        cls, js: JetStreamContext, *, history: int = 5, bucket: str = POLICY_BUCKET
    ) -> NatsPolicyBucket:
        from nats.js.api import KeyValueConfig, StorageType
        from nats.js.errors import BucketNotFoundError

        try:
            kv = await js.key_value(bucket)
        except BucketNotFoundError:
            kv = await js.create_key_value(
                KeyValueConfig(
                    bucket=bucket,
                    description="Vigie: each camera's effective policy, written by the registry",
                    history=history,
                    storage=StorageType.FILE,
                    direct=True,
                )
            )
            logger.info("created the policy bucket %s", bucket)
        return cls(kv)

    async def read(self, key: str) -> tuple[bytes | None, int]:
        from nats.js.errors import KeyNotFoundError

        try:
            entry = await self._kv.get(key)
        except KeyNotFoundError as error:
            # A deleted key: its delete marker's revision is the one to write over.
            deleted = getattr(error, "entry", None)
            return None, int(deleted.revision or 0) if deleted is not None else 0
        return entry.value, int(entry.revision or 0)

    async def write(self, key: str, value: bytes, revision: int) -> int:
        from nats.js.errors import KeyWrongLastSequenceError

        try:
            if revision == 0:
                return int(await self._kv.create(key, value))
            return int(await self._kv.update(key, value, last=revision))
        except KeyWrongLastSequenceError:
            raise RevisionConflictError(key) from None

    async def remove(self, key: str) -> None:
        await self._kv.delete(key)

    async def keys(self) -> set[str]:
        from nats.js.errors import NoKeysError

        try:
            return set(await self._kv.keys())
        except NoKeysError:
            return set()


class MemoryPolicyBucket:
    """An in-memory bucket for unit tests; ``fail`` makes every call raise (an outage)."""

    def __init__(self) -> None:
        self.values: dict[str, tuple[bytes, int]] = {}
        self.fail = False
        self._revision = 0

    def _check(self) -> None:
        if self.fail:
            raise ConnectionError("simulated NATS outage")

    async def read(self, key: str) -> tuple[bytes | None, int]:
        self._check()
        value, revision = self.values.get(key, (None, 0))
        return value, revision

    async def write(self, key: str, value: bytes, revision: int) -> int:
        self._check()
        if self.values.get(key, (b"", 0))[1] != revision:
            raise RevisionConflictError(key)
        self._revision += 1
        self.values[key] = (value, self._revision)
        return self._revision

    async def remove(self, key: str) -> None:
        self._check()
        self.values.pop(key, None)

    async def keys(self) -> set[str]:
        self._check()
        return set(self.values)


@dataclass(frozen=True, slots=True)
class ReconcileResult:
    published: int
    failed: int
    removed: int


class _PublisherMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.publications = Counter(
            "vigie_registry_policy_publications",
            "Policies written to the bucket, by outcome (written, current: already there, failed)",
            ["outcome"],
            registry=registry,
        )
        self.unpublished = Gauge(
            "vigie_registry_policies_unpublished",
            "Cameras whose latest policy is not yet in the bucket (retried by the reconciler)",
            registry=registry,
        )


class PolicyPublisher:
    def __init__(
        self,
        store: RegistryStore,
        bucket: PolicyBucket,
        *,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._bucket = bucket
        self._clock = clock
        self._metrics = _PublisherMetrics(registry or CollectorRegistry())
        self.unpublished = 0

    def problem(self) -> str | None:
        """For /readyz: policies the bucket does not have yet."""
        return f"{self.unpublished} camera policies not yet in the bucket" if self.unpublished else None

    async def publish(self, camera: StoredCamera) -> bool:
        """Write the camera's policy unless the bucket holds it or a newer one; False when it failed."""
        policy = build_policy(camera, self._clock())
        payload = encode_policy(policy)
        try:
            for _ in range(10):
                current, revision = await self._bucket.read(camera.id)
                if current is not None:
                    try:
                        if decode_policy(camera.id, current).version >= policy.version:
                            self._metrics.publications.labels("current").inc()
                            break
                    except UnreadablePolicyError:
                        pass  # overwritten below
                try:
                    await self._bucket.write(camera.id, payload, revision)
                except RevisionConflictError:
                    continue
                self._metrics.publications.labels("written").inc()
                logger.info("camera %s: policy version %d published", camera.id, policy.version)
                break
            else:
                raise RevisionConflictError(f"{camera.id}: the key kept changing")
        except Exception as error:  # NATS down, timeouts...: the reconciler retries
            self._metrics.publications.labels("failed").inc()
            logger.warning(
                "camera %s: policy version %d not published (%s); retrying later",
                camera.id,
                policy.version,
                error,
            )
            return False
        await self._store.mark_published(camera.id, policy.version)
        return True

    async def withdraw(self, camera_id: str, version: int) -> bool:
        """Delete a deleted camera's key (its tombstone is dropped once done)."""
        try:
            await self._bucket.remove(camera_id)
        except Exception as error:
            logger.warning(
                "camera %s: policy not withdrawn from the bucket (%s); retrying later", camera_id, error
            )
            return False
        await self._store.drop_tombstone(camera_id, version)
        logger.info("camera %s: policy withdrawn", camera_id)
        return True

    async def reconcile(self, *, full: bool = False) -> ReconcileResult:
        """Publish what the bucket lacks; ``full`` (at start) checks every camera and removes unknown keys."""
        cameras = await self._store.cameras(unpublished_only=not full)
        published = failed = removed = 0
        for camera in cameras:
            if await self.publish(camera):
                published += 1
            else:
                failed += 1
        for camera_id, version in await self._store.tombstones():
            if await self.withdraw(camera_id, version):
                removed += 1
            else:
                failed += 1
        if full:
            known = await self._store.camera_ids()
            try:
                extra = await self._bucket.keys() - known
            except Exception as error:
                logger.warning("cannot list the policy bucket's keys (%s)", error)
                extra, failed = set(), failed + 1
            for key in sorted(extra):
                try:
                    await self._bucket.remove(key)
                    removed += 1
                    logger.info("camera %s: not in the registry, its policy is removed from the bucket", key)
                except Exception as error:
                    logger.warning("camera %s: unknown policy not removed (%s)", key, error)
                    failed += 1
        self.unpublished = len(await self._store.cameras(unpublished_only=True))
        self._metrics.unpublished.set(self.unpublished)
        return ReconcileResult(published, failed, removed)
