"""The cameras the registry declares, as ingest reads them: the NATS KV bucket ``vigie-sources``.

The registry writes one ``vigie.v1.CameraSource`` per camera that may be read (``active`` or ``paused``;
key: the camera id), its URL sealed with the registry's ``source_key`` (Fernet); only ingest's NATS user may
read the bucket. :class:`SourcesWatcher` watches it and keeps the last complete view in memory;
:func:`decode_source` turns one entry into a :class:`RegistrySource` (the URL opened, checked as a
:class:`~vigie_ingest.camera.CameraConfig`) or refuses it with an :class:`UnreadableSourceError`:

- **Fail closed, per camera.** An entry that does not decode, has a ``schema_version`` this code does not
  know, names another camera, or whose sealed URL does not open with ``sources.source_key`` (another key,
  garbage) is *unreadable*: that camera is not read, one log line names it and why (never its URL),
  ``vigie_ingest_sources_refused_total{reason}`` counts it; the others go on.
- **A lost watch keeps the cameras.** While the bucket cannot be read (NATS lost, the bucket missing, the
  watch being read again after a reconnection) the last complete view stays in force: where to read does
  not change, and whether to analyse is the policy's business, which fails closed by itself. The view is
  replaced as a whole once the bucket has been read again (cameras deleted meanwhile stop then);
  ``/readyz`` (check ``sources``) and ``vigie_ingest_sources_synced`` say so meanwhile.
- **Sharding.** ``sources.shard_count`` replicas share the registry's cameras: a camera belongs to replica
  ``int(sha256(id)[:8]) % shard_count`` (:func:`in_shard`), the same on every replica and every run.

Nothing here logs, returns or audits a URL: :func:`url_digest` stands for it (a SHA-256 of the URL without
its user, password and query values, so that changing a password alone leaves it as it was).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlsplit

from cryptography.fernet import Fernet, InvalidToken
from google.protobuf.message import DecodeError
from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import ValidationError

from vigie_core.permissions import SOURCES_BUCKET
from vigie_ingest.camera import CameraConfig, file_only_options
from vigie_ingest.settings import RegistrySourcesSettings
from vigie_proto.v1.sources_pb2 import CameraSource

if TYPE_CHECKING:
    from nats.aio.client import Client

__all__ = [
    "SOURCES_BUCKET",
    "SOURCE_SCHEMA_VERSION",
    "UNREADABLE_REASONS",
    "RegistrySource",
    "SealedUrlOpener",
    "SourceEntry",
    "SourcesWatcher",
    "UnreadableSource",
    "UnreadableSourceError",
    "decode_source",
    "in_shard",
    "url_digest",
]

logger = logging.getLogger("vigie.ingest.sources")

# The CameraSource.schema_version this code reads; any other is refused (a newer registry may have added a
# field that changes how the camera must be read).
SOURCE_SCHEMA_VERSION = 1
_KV_DELETE_OPERATIONS = frozenset({"DEL", "PURGE"})
# Why an entry is refused: bounded values for the metric's label.
UNREADABLE_REASONS = ("not_a_source", "unknown_schema", "wrong_camera", "cannot_open", "unusable_url")


class UnreadableSourceError(ValueError):
    """An entry of the bucket this code cannot read; ``reason`` is one of :data:`UNREADABLE_REASONS`.
    The message never holds the URL."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def url_digest(url: str) -> str:
    """The first 16 hex digits of the SHA-256 of ``url`` without credentials (user, password, query
    values): what logs and audit events say of a source, never the URL."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    keys = "&".join(key for key, _ in parse_qsl(parts.query, keep_blank_values=True))
    text = f"{parts.scheme.lower()}://{host}{parts.path}" + (f"?{keys}" if keys else "")
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def in_shard(camera_id: str, index: int, count: int) -> bool:
    """Whether replica ``index`` of ``count`` reads the camera (a stable hash of its id)."""
    if count <= 1:
        return True
    return int.from_bytes(hashlib.sha256(camera_id.encode()).digest()[:8], "big") % count == index


class SealedUrlOpener:
    """Opens the sealed URLs with the registry's ``source_key`` (Fernet)."""

    def __init__(self, key: str) -> None:
        self._fernet = Fernet(key.encode())

    def open(self, sealed: bytes) -> str:
        try:
            return self._fernet.decrypt(sealed).decode()
        except (InvalidToken, UnicodeDecodeError):
            raise UnreadableSourceError(
                "cannot_open",
                "the sealed URL does not open with sources.source_key (not the registry's key?)",
            ) from None


@dataclass(frozen=True, slots=True)
class RegistrySource:
    """A camera to read, as the registry declares it. Its configuration holds the URL: never in a repr."""

    camera_id: str
    version: int
    config: CameraConfig = field(repr=False)

    @property
    def digest(self) -> str:
        return url_digest(self.config.url)


@dataclass(frozen=True, slots=True)
class UnreadableSource:
    """An entry that cannot be read: the camera is not read."""

    camera_id: str
    reason: str
    message: str


SourceEntry = RegistrySource | UnreadableSource


def decode_source(
    key: str, payload: bytes, opener: SealedUrlOpener, settings: RegistrySourcesSettings
) -> RegistrySource:
    """The camera stored under ``key``, configured with the file options and rate of ``settings``; raises
    :class:`UnreadableSourceError` naming what is wrong (never the URL)."""
    source = CameraSource()
    try:
        source.ParseFromString(payload)
    except DecodeError:
        raise UnreadableSourceError("not_a_source", "not a vigie.v1.CameraSource message") from None
    if source.schema_version != SOURCE_SCHEMA_VERSION:
        raise UnreadableSourceError(
            "unknown_schema",
            f"schema_version {source.schema_version}, this service reads {SOURCE_SCHEMA_VERSION} only",
        )
    if source.camera_id != key:
        raise UnreadableSourceError(
            "wrong_camera", f"the entry of camera {key!r} is the source of {source.camera_id!r}"
        )
    url = opener.open(source.sealed_url)
    try:
        config = CameraConfig.model_validate(
            {
                "id": key,
                "url": url,
                "sample_fps": settings.sample_fps,
                "options": dict(settings.options),
                **file_only_options(url, loop=settings.loop, realtime=settings.realtime),
            }
        )
    except ValidationError as error:
        # The validators' words may quote the URL (its password masked): only where the problem is.
        fields = sorted({".".join(str(p) for p in e["loc"]) or "url" for e in error.errors()})
        raise UnreadableSourceError(
            "unusable_url", f"the source is not one ingest reads (check {', '.join(fields)} in the registry)"
        ) from None
    return RegistrySource(key, source.version, config)


class _WatchLostError(Exception):
    """The watch no longer reflects the bucket (disconnected, reconnected, bucket missing)."""


class _WatcherMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.synced = Gauge(
            "vigie_ingest_sources_synced",
            "1 while the sources bucket is read and watched; 0: the last complete view stays in force",
            registry=registry,
        )
        self.unreadable = Gauge(
            "vigie_ingest_sources_unreadable_entries",
            "Cameras whose entry in the sources bucket cannot be read (they are not read)",
            registry=registry,
        )
        self.refused = Counter(
            "vigie_ingest_sources_refused",
            "Entries of the sources bucket refused, by reason (the camera is not read)",
            ["reason"],
            registry=registry,
        )
        for reason in UNREADABLE_REASONS:
            self.refused.labels(reason)
        self.watch_failures = Counter(
            "vigie_ingest_sources_watch_failures",
            "Times the watch of the sources bucket was lost or could not start (and was retried)",
            registry=registry,
        )


class SourcesWatcher:
    """Watches the sources bucket; :meth:`entries` is the last complete view (None before the first).

    ``read(key, value)`` turns an entry into a :class:`RegistrySource` or raises
    :class:`UnreadableSourceError` (:func:`decode_source` with the key and settings, in the service).
    """

    def __init__(
        self,
        nc: Client,
        read: Callable[[str, bytes], RegistrySource],
        *,
        bucket: str = SOURCES_BUCKET,
        registry: CollectorRegistry | None = None,
        retry_s: float = 1.0,
        check_s: float = 0.25,
    ) -> None:
        self._nc = nc
        self._read = read
        self._bucket = bucket
        self._retry_s = retry_s
        self._check_s = check_s
        self._metrics = _WatcherMetrics(registry or CollectorRegistry())
        self._entries: dict[str, SourceEntry] | None = None
        self._synced = False
        self._watch_reconnects = -1
        self._problem: str | None = "the sources bucket has not been read yet"
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()
        # Bumped at every change of the view: a follower applies each generation once.
        self.generation = 0

    def entries(self) -> Mapping[str, SourceEntry] | None:
        return None if self._entries is None else dict(self._entries)

    def problem(self) -> str | None:
        """None while the bucket is read and watched; otherwise why (the last view stays in force)."""
        if not self._nc.is_connected:
            return "not connected to NATS: the sources bucket cannot be read"
        if self._synced and self._nc.stats["reconnects"] != self._watch_reconnects:
            return "reconnected to NATS: reading the sources bucket again"
        if not self._synced:
            return self._problem or "reading the sources bucket"
        return None

    async def wait_for(self, predicate: Callable[[], bool], timeout_s: float) -> None:
        """Wait until ``predicate()`` holds, checked at every change (TimeoutError after ``timeout_s``)."""

        async def wait() -> None:
            async with self._changed:
                while not predicate():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._changed.wait(), self._check_s)

        await asyncio.wait_for(wait(), timeout_s)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"sources-watcher-{self._bucket}")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._synced = False
        self._metrics.synced.set(0)

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                await self._watch()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # anything: the loop retries, the last view stays meanwhile
                failures += 1
                self._metrics.watch_failures.inc()
                reason = (
                    str(error) if isinstance(error, _WatchLostError) else f"{type(error).__name__}: {error}"
                )
                was_synced = self._synced
                self._synced = False
                self._problem = reason
                self._metrics.synced.set(0)
                log = (
                    logger.warning
                    if was_synced or failures in (1, 10) or failures % 100 == 0
                    else logger.debug
                )
                log(
                    "sources bucket %s: %s; the cameras read stay as they are until it is read again",
                    self._bucket,
                    reason,
                )
            await asyncio.sleep(self._retry_s)

    async def _watch(self) -> None:
        from nats.errors import TimeoutError as NatsTimeoutError
        from nats.js.errors import BucketNotFoundError
        from nats.js.kv import StopIterSentinel

        if not self._nc.is_connected:
            raise _WatchLostError("not connected to NATS")
        reconnects = self._nc.stats["reconnects"]
        try:
            kv = await self._nc.jetstream().key_value(self._bucket)
        except BucketNotFoundError:
            raise _WatchLostError("the bucket does not exist yet (the registry creates it)") from None
        watch = await kv.watchall()
        snapshot: dict[str, SourceEntry] | None = {}
        try:
            while True:
                try:
                    entry = await watch.updates(timeout=self._check_s)  # type: ignore[no-untyped-call]
                except NatsTimeoutError:
                    if not self._nc.is_connected or self._nc.stats["reconnects"] != reconnects:
                        raise _WatchLostError("the connection to NATS was lost") from None
                    continue
                if isinstance(entry, StopIterSentinel):
                    raise _WatchLostError("the watch stopped")
                if entry is None:  # the end of the initial snapshot
                    if snapshot is not None:
                        self._entries, snapshot = snapshot, None
                        self._watch_reconnects = reconnects
                        self._synced = True
                        self._problem = None
                        logger.info("sources bucket %s read: %d camera(s)", self._bucket, len(self._entries))
                        await self._notify()
                    continue
                target = snapshot if snapshot is not None else self._entries
                assert target is not None
                self._apply(target, entry.key, entry.value, entry.operation)
                if snapshot is None:
                    await self._notify()
        finally:
            with contextlib.suppress(Exception):
                await watch.stop()  # type: ignore[no-untyped-call]

    def _apply(
        self, entries: dict[str, SourceEntry], key: str, value: bytes | None, operation: str | None
    ) -> None:
        if operation in _KV_DELETE_OPERATIONS:
            entries.pop(key, None)
            return
        try:
            entries[key] = self._read(key, value or b"")
        except UnreadableSourceError as error:
            self._metrics.refused.labels(error.reason).inc()
            logger.error(
                "camera %s: its source in %s cannot be read (%s), the camera is not read: %s",
                key,
                self._bucket,
                error.reason,
                error,
            )
            entries[key] = UnreadableSource(key, error.reason, str(error))

    async def _notify(self) -> None:
        self.generation += 1
        self._metrics.synced.set(1 if self._synced else 0)
        entries = self._entries or {}
        self._metrics.unreadable.set(sum(1 for e in entries.values() if isinstance(e, UnreadableSource)))
        async with self._changed:
            self._changed.notify_all()
