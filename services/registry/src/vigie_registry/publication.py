"""Keeping the NATS key-value buckets equal to the database: publish on every change, reconcile on start and
after failures.

Two buckets, one machinery. Each :class:`Publication` is a bucket and what it holds of a camera
(:class:`BucketContent`), key: the camera id:

- ``vigie-policy`` (:class:`PolicyContent`): ``vigie.v1.CameraPolicy``, every service reads it;
- ``vigie-sources`` (:class:`vigie_registry.sources.SourceContent`): ``vigie.v1.CameraSource``, the sealed
  source URL, ingest alone reads it.

Writes are conditional on the revision read just before, and a newer version in a bucket is never
overwritten with an older one, so two replicas of the registry publishing at once leave the newest entry
there. A camera counts as published (``published_version``) once every bucket holds its current state; the
reconciler publishes again whatever a failure left behind. The policy is always published first: it is what
the services obey (an objection's pause), the sources only say where to read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge

from vigie_core.policy import UnreadablePolicyError, decode_policy, encode_policy
from vigie_registry.camera import StoredCamera, build_policy
from vigie_registry.storage.store import RegistryStore

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.js.api import KeyValueConfig
    from nats.js.kv import KeyValue

    from vigie_core.kv import NatsBucket
    from vigie_core.messaging import StreamGuard

__all__ = [
    "BucketContent",
    "CameraPublisher",
    "KeyValueBucket",
    "MemoryKeyValueBucket",
    "NatsKeyValueBucket",
    "PolicyContent",
    "Publication",
    "PublishOutcome",
    "ReconcileResult",
    "RevisionConflictError",
    "WantedEntry",
    "publication_outcomes",
]

logger = logging.getLogger("vigie.registry.policy")


class RevisionConflictError(Exception):
    """Someone wrote the key since it was read: read again."""


class KeyValueBucket(Protocol):
    """A key-value bucket, as the publisher needs it."""

    async def read(self, key: str) -> tuple[bytes | None, int]:
        """The current value (None: none or deleted) and the revision to write over (0: none)."""
        ...

    async def write(self, key: str, value: bytes, revision: int) -> int:
        """Write if the key is still at ``revision``; raise :class:`RevisionConflictError` otherwise."""
        ...

    async def remove(self, key: str, revision: int | None = None) -> None:
        """Delete the key; with ``revision``, only if it is still at that revision (else
        :class:`RevisionConflictError`)."""
        ...

    async def keys(self) -> set[str]: ...


class NatsKeyValueBucket:
    """A real bucket, created by the provisioner (the policy bucket in the registry's own account, the
    sources bucket in ingest's); the registry is the only NATS user allowed to write it."""

    def __init__(self, kv: KeyValue, entries: NatsBucket) -> None:
        self._kv = kv
        self._entries = entries

    @classmethod
    async def ensure(
        cls, nc: Client, config: KeyValueConfig, guard: StreamGuard, *, api: str, timeout_s: float = 5.0
    ) -> NatsKeyValueBucket:
        """Wait for the bucket the provisioner creates (``config``: what the registry expects of it), check
        its stream copies from nowhere (at start and then continuously: ``guard``), and bind it. ``api``:
        the JetStream API prefix it is reached under (the sources bucket is in ingest's account)."""
        from vigie_core.kv import NatsBucket
        from vigie_core.streams import bucket_stream

        js = nc.jetstream(prefix=api, timeout=timeout_s)
        await guard.bind(js, bucket_stream(config))
        entries = NatsBucket(nc, config.bucket, api, timeout_s=timeout_s)
        return cls(await js.key_value(config.bucket), entries)

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

    async def remove(self, key: str, revision: int | None = None) -> None:
        from nats.js.errors import KeyWrongLastSequenceError

        try:
            await self._kv.delete(key, last=revision)
        except KeyWrongLastSequenceError:
            raise RevisionConflictError(key) from None

    async def keys(self) -> set[str]:
        # Read with direct gets (no consumer): the last revision of each key, deleted ones apart.
        last = {entry.key: entry for entry in await self._entries.read_all()}
        return {key for key, entry in last.items() if not entry.deleted}


class MemoryKeyValueBucket:
    """An in-memory bucket for unit tests; ``fail`` makes every call raise (an outage)."""

    def __init__(self) -> None:
        self.values: dict[str, tuple[bytes, int]] = {}
        self.fail = False
        self.writes = 0
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
        self.writes += 1
        self.values[key] = (value, self._revision)
        return self._revision

    async def remove(self, key: str, revision: int | None = None) -> None:
        self._check()
        if revision is not None and self.values.get(key, (b"", 0))[1] != revision:
            raise RevisionConflictError(key)
        self.values.pop(key, None)

    async def keys(self) -> set[str]:
        self._check()
        return set(self.values)


@dataclass(frozen=True, slots=True)
class WantedEntry:
    """What a bucket should hold of a camera: ``value`` (None: no entry), and whether an entry found there
    already says it (or something newer): then nothing is written. An entry the registry cannot read is
    not current (it is overwritten)."""

    value: bytes | None
    is_current: Callable[[bytes], bool]


class BucketContent(Protocol):
    """What one bucket holds of a camera."""

    @property
    def name(self) -> str:
        """For logs and readiness: ``policy``, ``source``."""
        ...

    async def wanted(self, camera: StoredCamera, now: float) -> WantedEntry: ...

    def forget(self, camera_id: str) -> None:
        """The camera was deleted and withdrawn from the bucket."""
        ...


class PolicyContent:
    """The bucket ``vigie-policy``: every camera's effective policy, whatever its status."""

    name = "policy"

    async def wanted(self, camera: StoredCamera, now: float) -> WantedEntry:
        def is_current(value: bytes) -> bool:
            try:
                return decode_policy(camera.id, value).version >= camera.version
            except UnreadablePolicyError:
                return False

        return WantedEntry(encode_policy(build_policy(camera, now)), is_current)

    def forget(self, camera_id: str) -> None:
        return None


@dataclass(frozen=True, slots=True)
class Publication:
    """One bucket and what it holds; ``outcomes`` counts each write by outcome (metrics)."""

    content: BucketContent
    bucket: KeyValueBucket
    outcomes: Counter | None = None

    def count(self, outcome: str) -> None:
        if self.outcomes is not None:
            self.outcomes.labels(outcome).inc()


@dataclass(frozen=True, slots=True)
class PublishOutcome:
    """Which buckets could not be brought up to date (the reconciler retries them)."""

    failed: frozenset[str] = field(default_factory=frozenset)

    @property
    def complete(self) -> bool:
        return not self.failed


@dataclass(frozen=True, slots=True)
class ReconcileResult:
    published: int
    failed: int
    removed: int


def publication_outcomes(registry: CollectorRegistry, name: str, what: str) -> Counter:
    """The counter of writes to one bucket: ``vigie_registry_<name>_publications_total{outcome}``."""
    return Counter(
        f"vigie_registry_{name}_publications",
        f"{what} written to their bucket, by outcome (written, current: already there, withdrawn, failed)",
        ["outcome"],
        registry=registry,
    )


class CameraPublisher:
    """Publishes each camera to every bucket of ``publications`` (the policy first), and reconciles."""

    def __init__(
        self,
        store: RegistryStore,
        publications: Sequence[Publication],
        *,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not publications:
            raise ValueError("at least one bucket to publish to")
        self._store = store
        self._publications = list(publications)
        self._clock = clock
        self._unpublished_gauge = Gauge(
            "vigie_registry_policies_unpublished",
            "Cameras whose latest state is not yet in every bucket (policy, sources): retried by the "
            "reconciler",
            registry=registry or CollectorRegistry(),
        )
        self.unpublished = 0

    @classmethod
    def for_policy(
        cls,
        store: RegistryStore,
        bucket: KeyValueBucket,
        *,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
        extra: Sequence[Publication] = (),
    ) -> CameraPublisher:
        """The policy bucket (its counter ``vigie_registry_policy_publications_total``), then ``extra``."""
        registry = registry or CollectorRegistry()
        policy = Publication(
            PolicyContent(), bucket, publication_outcomes(registry, "policy", "Camera policies")
        )
        return cls(store, [policy, *extra], registry=registry, clock=clock)

    def problem(self) -> str | None:
        """For /readyz: cameras the buckets do not have yet."""
        if not self.unpublished:
            return None
        return f"{self.unpublished} camera(s) not yet in every bucket (policy, sources)"

    async def publish(self, camera: StoredCamera) -> PublishOutcome:
        """Bring every bucket up to date with ``camera``: write its entry unless the bucket holds it or a
        newer one, or remove it where it has none. Failures are logged and retried by the reconciler."""
        now = self._clock()
        failed = []
        for publication in self._publications:
            if not await self._publish_one(publication, camera, now):
                failed.append(publication.content.name)
        if not failed:
            await self._store.mark_published(camera.id, camera.version)
        return PublishOutcome(frozenset(failed))

    async def _publish_one(self, publication: Publication, camera: StoredCamera, now: float) -> bool:
        content, bucket = publication.content, publication.bucket
        try:
            wanted = await content.wanted(camera, now)
            value = wanted.value
            for _ in range(10):
                current, revision = await bucket.read(camera.id)
                if current is not None and wanted.is_current(current):
                    publication.count("current")
                    return True
                try:
                    if value is not None:
                        await bucket.write(camera.id, value, revision)
                    elif current is not None:
                        await bucket.remove(camera.id, revision)
                    else:
                        return True  # no entry, none wanted
                except RevisionConflictError:
                    continue
                if value is None:
                    publication.count("withdrawn")
                    logger.info(
                        "camera %s: %s withdrawn (version %d)", camera.id, content.name, camera.version
                    )
                else:
                    publication.count("written")
                    logger.info("camera %s: %s version %d published", camera.id, content.name, camera.version)
                return True
            raise RevisionConflictError(f"{camera.id}: the key kept changing")
        except Exception as error:  # NATS down, timeouts...: the reconciler retries
            publication.count("failed")
            logger.warning(
                "camera %s: %s version %d not published (%s); retrying later",
                camera.id,
                content.name,
                camera.version,
                error,
            )
            return False

    async def withdraw(self, camera_id: str, version: int) -> bool:
        """Delete a deleted camera's key from every bucket (its tombstone is dropped once done)."""
        done = True
        for publication in self._publications:
            try:
                await publication.bucket.remove(camera_id)
            except Exception as error:
                logger.warning(
                    "camera %s: %s not withdrawn from its bucket (%s); retrying later",
                    camera_id,
                    publication.content.name,
                    error,
                )
                done = False
        if not done:
            return False
        for publication in self._publications:
            publication.content.forget(camera_id)
        await self._store.drop_tombstone(camera_id, version)
        logger.info("camera %s: withdrawn from every bucket", camera_id)
        return True

    async def reconcile(self, *, full: bool = False) -> ReconcileResult:
        """Publish what the buckets lack; ``full`` (at start) checks every camera and removes unknown keys."""
        cameras = await self._store.cameras(unpublished_only=not full)
        published = failed = removed = 0
        for camera in cameras:
            if (await self.publish(camera)).complete:
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
            for publication in self._publications:
                name = publication.content.name
                try:
                    extra = await publication.bucket.keys() - known
                except Exception as error:
                    logger.warning("cannot list the keys of the %s bucket (%s)", name, error)
                    failed += 1
                    continue
                for key in sorted(extra):
                    try:
                        await publication.bucket.remove(key)
                        removed += 1
                        logger.info(
                            "camera %s: not in the registry, its %s is removed from its bucket", key, name
                        )
                    except Exception as error:
                        logger.warning("camera %s: unknown %s not removed (%s)", key, name, error)
                        failed += 1
        self.unpublished = len(await self._store.cameras(unpublished_only=True))
        self._unpublished_gauge.set(self.unpublished)
        return ReconcileResult(published, failed, removed)
