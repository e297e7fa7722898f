"""Where ingest reads each camera: the bucket ``vigie-sources``, kept equal to the database by the
:class:`~vigie_registry.publication.CameraPublisher` beside the policy bucket.

A city declares a camera once, here; ingest watches this bucket and starts, replaces or stops its readers
live. Key: the camera id; value: ``vigie.v1.CameraSource`` (``proto/vigie_proto/v1/sources.proto``).

- **Never in the clear.** The value carries the source URL sealed as a Fernet token with ``source_key``, the
  key that seals it in the database; ingest holds the same key. Without a ``source_key`` the registry
  distributes nothing: every entry is removed (the bucket then says "read nothing from the registry"
  rather than keeping sources it can no longer update), each camera concerned is logged once, and
  ``vigie_registry_sources_undistributed{reason="no_source_key"}`` counts them. Only ingest's NATS user
  may read the bucket (``vigie_core.permissions``): the seal protects the URL even from a broker
  misconfiguration, the permissions keep even the sealed form from the other services.
- **Which cameras.** ``active`` and ``paused`` ones (:data:`DISTRIBUTED_STATUSES`): a pause, by the
  administrator, by the end of a ``security_events`` authorisation or by a citizen's objection (an
  ``active`` camera with ``paused_until``), keeps the source connected while nothing of it is decoded: the
  policy decides, and a resumed camera is analysed again at once. A ``draft`` (never in operation, maybe
  without a DPIA) and a ``retired`` camera (final) have no entry: ingest does not even connect.
- **When written.** On every change of the camera, after the commit, like the policy; an entry is
  rewritten only when the URL or the status that decides whether it exists changes (a new version alone,
  an objection say, leaves the entry as it is: ingest reconnects only when the URL changes).
- A stored source the key cannot open (the key changed) is not distributed either (logged once, counted
  with ``reason="unreadable_source"``); the policy is published as usual.
"""

from __future__ import annotations

import logging

from google.protobuf.message import DecodeError
from prometheus_client import CollectorRegistry, Gauge

from vigie_core.permissions import SOURCES_BUCKET
from vigie_core.sources import SOURCE_SCHEMA_VERSION
from vigie_proto.v1.sources_pb2 import CameraSource
from vigie_registry.camera import StoredCamera, timestamp_of
from vigie_registry.declaration import CameraStatusName
from vigie_registry.publication import KeyValueBucket, Publication, WantedEntry, publication_outcomes
from vigie_registry.storage.store import RegistryStore, SourceCipher, UnreadableSourceError

__all__ = [
    "DISTRIBUTED_STATUSES",
    "SOURCES_BUCKET",
    "SourceContent",
    "build_source",
    "distributed",
    "sources_publication",
]

logger = logging.getLogger("vigie.registry.sources")

# The statuses whose camera ingest reads (connected; the policy says whether anything is decoded).
DISTRIBUTED_STATUSES: frozenset[CameraStatusName] = frozenset({"active", "paused"})
UNDISTRIBUTED_REASONS = ("no_source_key", "unreadable_source")


def distributed(camera: StoredCamera) -> bool:
    """Whether ingest should read the camera at all (see the module's doc)."""
    return camera.status in DISTRIBUTED_STATUSES


def build_source(camera: StoredCamera, sealed_url: bytes, now: float) -> CameraSource:
    source = CameraSource(
        schema_version=SOURCE_SCHEMA_VERSION,
        camera_id=camera.id,
        version=camera.version,
        sealed_url=sealed_url,
    )
    source.issued_at.CopyFrom(timestamp_of(now))
    return source


class SourceContent:
    """The bucket ``vigie-sources`` as a :class:`~vigie_registry.publication.BucketContent`."""

    name = "source"

    def __init__(
        self, store: RegistryStore, cipher: SourceCipher, registry: CollectorRegistry | None = None
    ) -> None:
        self._store = store
        self._cipher = cipher
        self._undistributed: dict[str, str] = {}  # camera id -> reason
        self._logged: set[tuple[str, str]] = set()
        self._gauge = Gauge(
            "vigie_registry_sources_undistributed",
            "Cameras ingest should read whose source the registry does not distribute, by reason: "
            "no_source_key (never sent unsealed), unreadable_source (the key does not open the stored URL)",
            ["reason"],
            registry=registry or CollectorRegistry(),
        )
        for reason in UNDISTRIBUTED_REASONS:
            self._gauge.labels(reason).set(0)

    @property
    def sealing(self) -> bool:
        """False: no source_key, nothing is distributed."""
        return self._cipher.sealing

    async def wanted(self, camera: StoredCamera, now: float) -> WantedEntry:
        if not distributed(camera):
            self._distributable(camera.id, None)
            return WantedEntry(None, lambda value: self._version(camera.id, value) >= camera.version)
        if not self._cipher.sealing:
            self._distributable(camera.id, "no_source_key")
            self._log_once(
                logging.WARNING,
                camera.id,
                "no_source_key",
                "camera %s: its source is not distributed to ingest: no source_key is configured, and a "
                "source URL is never sent unsealed (set VIGIE_REGISTRY_SOURCE_KEY)",
            )
            return WantedEntry(None, lambda _value: False)
        try:
            url = await self._store.source_url(camera.id)
        except UnreadableSourceError as error:
            self._distributable(camera.id, "unreadable_source")
            self._log_once(
                logging.ERROR,
                camera.id,
                f"unreadable_source:{camera.version}",
                "camera %s: its source is not distributed to ingest: %s",
                error,
            )
            return WantedEntry(None, lambda _value: False)
        self._distributable(camera.id, None)
        value = build_source(camera, self._cipher.token(url), now).SerializeToString(deterministic=True)

        def is_current(found: bytes) -> bool:
            source = self._decode(camera.id, found)
            if source is None:
                return False
            try:
                opened = self._cipher.open_token(source.sealed_url)
            except UnreadableSourceError:
                return False  # sealed with another key: ingest, holding this one, could not open it
            return source.version >= camera.version or opened == url

        return WantedEntry(value, is_current)

    def forget(self, camera_id: str) -> None:
        """The camera was deleted."""
        self._distributable(camera_id, None)

    @staticmethod
    def _decode(key: str, value: bytes) -> CameraSource | None:
        source = CameraSource()
        try:
            source.ParseFromString(value)
        except DecodeError:
            return None
        if source.schema_version != SOURCE_SCHEMA_VERSION or source.camera_id != key:
            return None
        return source

    def _version(self, key: str, value: bytes) -> int:
        source = self._decode(key, value)
        return source.version if source is not None else -1

    def _distributable(self, camera_id: str, reason: str | None) -> None:
        if reason is None:
            self._undistributed.pop(camera_id, None)
        else:
            self._undistributed[camera_id] = reason
        for known in UNDISTRIBUTED_REASONS:
            self._gauge.labels(known).set(sum(1 for r in self._undistributed.values() if r == known))

    def _log_once(self, level: int, camera_id: str, key: str, message: str, *args: object) -> None:
        if (camera_id, key) not in self._logged:
            self._logged.add((camera_id, key))
            logger.log(level, message, camera_id, *args)


def sources_publication(
    store: RegistryStore,
    cipher: SourceCipher,
    bucket: KeyValueBucket,
    registry: CollectorRegistry | None = None,
) -> Publication:
    """The sources bucket for :class:`~vigie_registry.publication.CameraPublisher` (its counter:
    ``vigie_registry_source_publications_total``)."""
    registry = registry or CollectorRegistry()
    return Publication(
        SourceContent(store, cipher, registry),
        bucket,
        publication_outcomes(registry, "source", "Camera sources (sealed)"),
    )
