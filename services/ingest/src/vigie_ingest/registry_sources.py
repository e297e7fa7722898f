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

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlsplit

from cryptography.fernet import Fernet, InvalidToken
from google.protobuf.message import DecodeError
from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import ValidationError

from vigie_core.kv import KeyValueWatcher, NatsBucket
from vigie_core.permissions import LOCAL_API, SOURCES_BUCKET
from vigie_core.sources import SOURCE_SCHEMA_VERSION
from vigie_ingest.camera import CameraConfig, file_only_options
from vigie_ingest.settings import RegistrySourcesSettings
from vigie_proto.v1.sources_pb2 import CameraSource

if TYPE_CHECKING:
    from nats.aio.client import Client

__all__ = [
    "SOURCES_BUCKET",
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


class SourcesWatcher(KeyValueWatcher[SourceEntry]):
    """Watches the sources bucket (the loop of :class:`~vigie_core.kv.KeyValueWatcher`); :meth:`entries` is
    the last complete view (None before the first), in force while :meth:`problem` says why it may be stale.

    ``read(key, value)`` turns an entry into a :class:`RegistrySource` or raises
    :class:`UnreadableSourceError` (:func:`decode_source` with the key and settings, in the service).
    ``mine(key)`` says whether this replica reads the camera (its shard): only its own cameras' unreadable
    entries are logged as errors and counted, so that one bad entry raises one alert, not one per shard.
    """

    _subject = "sources bucket"
    _while_lost = "the cameras read stay as they are until it is read again"
    _logger = logger

    def __init__(
        self,
        nc: Client,
        read: Callable[[str, bytes], RegistrySource],
        *,
        api: str = LOCAL_API,
        bucket: str = SOURCES_BUCKET,
        registry: CollectorRegistry | None = None,
        mine: Callable[[str], bool] = lambda _: True,
        retry_s: float = 1.0,
        check_s: float = 0.25,
    ) -> None:
        self._metrics = _WatcherMetrics(registry or CollectorRegistry())
        super().__init__(NatsBucket(nc, bucket, api), bucket, self._metrics, retry_s=retry_s, check_s=check_s)
        self._read = read
        self._mine = mine

    async def wait_for(self, predicate: Callable[[], bool], timeout_s: float) -> None:
        """Wait until ``predicate()`` holds, checked at every change (TimeoutError after ``timeout_s``)."""
        await self.wait_until(predicate, timeout_s)

    def _decode(self, key: str, value: bytes, revision: int) -> SourceEntry:
        try:
            return self._read(key, value)
        except UnreadableSourceError as error:
            if self._mine(key):
                self._metrics.refused.labels(error.reason).inc()
                logger.error(
                    "camera %s: its source in %s cannot be read (%s), the camera is not read: %s",
                    key,
                    self._bucket,
                    error.reason,
                    error,
                )
            else:
                logger.debug("camera %s (another shard's): unreadable source (%s)", key, error.reason)
            return UnreadableSource(key, error.reason, str(error))

    def _view_changed(self) -> None:
        entries = self._view or {}
        self._metrics.unreadable.set(
            sum(1 for key, e in entries.items() if isinstance(e, UnreadableSource) and self._mine(key))
        )
