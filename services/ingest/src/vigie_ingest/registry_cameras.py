"""Reading the cameras the registry declares: each complete view of the sources bucket turned into cameras
started, replaced (their URL changed) and stopped, live, without disturbing the others.

- A camera of the static configuration (``cameras``) with an id the registry also distributes is read
  from the configuration: the static list is fixed for the life of the process and says what this replica
  was told to read; the registry's entry is ignored, with a warning naming the camera (once). Remove the id
  from ``cameras`` (and restart) to follow the registry.
- With ``sources.shard_count`` replicas, each reads its share of the registry's cameras
  (:func:`~vigie_ingest.registry_sources.in_shard`); the static cameras are read by whichever replica is
  configured with them.
- A camera from the registry goes through the same :class:`~vigie_ingest.policy_gate.PolicyGate` as a
  static one: masks, pauses and sampling by its id, failing closed until its policy is read.
- Every change of the cameras read is audited (``config_update`` by ``service:ingest``): the cameras
  started, replaced and stopped, and for each camera started or replaced a record
  ``camera_source <id>:<url digest>``; never a URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

from vigie_core.audit import AuditAction, AuditPublisher, AuditUnavailableError
from vigie_core.logs import where_it_failed
from vigie_ingest.camera import CameraConfig
from vigie_ingest.camera_set import CameraSet
from vigie_ingest.directives import CameraControl
from vigie_ingest.policy_gate import PolicyGate
from vigie_ingest.registry_sources import (
    SOURCES_BUCKET,
    RegistrySource,
    SourceEntry,
    SourcesWatcher,
    in_shard,
    url_digest,
)
from vigie_ingest.settings import RegistrySourcesSettings
from vigie_ingest.source import FrameSource

__all__ = ["CameraChanges", "RegistryCameras", "SourceFactory", "plan_changes"]

logger = logging.getLogger("vigie.ingest.sources")

# Builds the reader of one camera, following its control (the policy gate's).
SourceFactory = Callable[[CameraConfig, CameraControl], FrameSource]
# Cameras per audit event (an event names at most 1000 cameras and records).
_AUDIT_CHUNK = 400
_MAX_DETAIL = 1000


@dataclass(frozen=True, slots=True)
class CameraChanges:
    """What to do to the cameras read from the registry: start new ones, replace those whose URL changed,
    stop those no longer distributed (or unreadable, or no longer in this replica's shard)."""

    start: tuple[RegistrySource, ...] = ()
    replace: tuple[RegistrySource, ...] = ()
    stop: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.start or self.replace or self.stop)

    @property
    def camera_ids(self) -> list[str]:
        return sorted({*(s.camera_id for s in self.start + self.replace), *self.stop})


def plan_changes(
    reading: Mapping[str, RegistrySource],
    entries: Mapping[str, SourceEntry],
    *,
    static_ids: Iterable[str] = (),
    shard_index: int = 0,
    shard_count: int = 1,
) -> CameraChanges:
    """The changes that make ``reading`` what ``entries`` (a complete view of the bucket) asks of this
    replica. A new version with the same URL changes nothing: the camera is not reconnected."""
    static = set(static_ids)
    wanted = {
        camera_id: entry
        for camera_id, entry in entries.items()
        if isinstance(entry, RegistrySource)
        and camera_id not in static
        and in_shard(camera_id, shard_index, shard_count)
    }
    return CameraChanges(
        start=tuple(wanted[c] for c in sorted(wanted.keys() - reading.keys())),
        replace=tuple(
            wanted[c] for c in sorted(wanted.keys() & reading.keys()) if wanted[c].config != reading[c].config
        ),
        stop=tuple(sorted(reading.keys() - wanted.keys())),
    )


class RegistryCameras:
    """Keeps the cameras this replica reads from the registry equal to the sources bucket."""

    def __init__(
        self,
        cameras: CameraSet,
        gate: PolicyGate,
        settings: RegistrySourcesSettings,
        *,
        make_source: SourceFactory,
        static: Iterable[CameraConfig] = (),
        audit: AuditPublisher | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self._cameras = cameras
        self._gate = gate
        self._settings = settings
        self._make_source = make_source
        self._static = {camera.id: url_digest(camera.url) for camera in static}
        self._audit = audit
        self._reading: dict[str, RegistrySource] = {}
        self._warned_static: set[str] = set()
        registry = registry or CollectorRegistry()
        self._read_gauge = Gauge(
            "vigie_ingest_registry_cameras",
            "Cameras read from the registry's sources bucket",
            registry=registry,
        )
        self._changes = Counter(
            "vigie_ingest_registry_camera_changes",
            "Cameras from the registry started, replaced (the URL changed) or stopped",
            ["change"],
            registry=registry,
        )
        for change in ("started", "replaced", "stopped"):
            self._changes.labels(change)

    @property
    def reading(self) -> Mapping[str, RegistrySource]:
        return dict(self._reading)

    async def apply(self, entries: Mapping[str, SourceEntry]) -> CameraChanges:
        """Start, replace and stop cameras so that this replica reads what ``entries`` asks."""
        self._warn_static(entries)
        changes = plan_changes(
            self._reading,
            entries,
            static_ids=self._static,
            shard_index=self._settings.shard_index,
            shard_count=self._settings.shard_count,
        )
        if changes.empty:
            return changes
        for camera_id in changes.stop:
            await self._stop(camera_id)
            self._changes.labels("stopped").inc()
            logger.info(
                "camera %s: no longer read (not in the registry's sources for this replica)", camera_id
            )
        for source in changes.replace:
            await self._stop(source.camera_id)
            await self._start(source)
            self._changes.labels("replaced").inc()
            logger.info(
                "camera %s: its source changed in the registry (version %d, url %s): reconnected",
                source.camera_id,
                source.version,
                source.digest,
            )
        for source in changes.start:
            await self._start(source)
            self._changes.labels("started").inc()
            logger.info(
                "camera %s: read from the registry (version %d, url %s)",
                source.camera_id,
                source.version,
                source.digest,
            )
        self._read_gauge.set(len(self._reading))
        await self._record(changes)
        return changes

    async def follow(self, watcher: SourcesWatcher, stop: asyncio.Event) -> None:
        """Apply every complete view of the bucket as it comes, until ``stop``."""
        applied = -1
        while not stop.is_set():
            entries = watcher.entries()
            if entries is not None and watcher.generation != applied:
                applied = watcher.generation
                try:
                    await self.apply(entries)
                except Exception as error:  # a bug must not stop the cameras read; the next change retries
                    # Where, not what with: the exception's text could quote a camera's URL and password.
                    logger.error("applying the registry's sources failed: %s", where_it_failed(error))

            def changed(seen: int = applied) -> bool:
                return stop.is_set() or watcher.generation != seen

            with contextlib.suppress(TimeoutError):
                await watcher.wait_for(changed, 5.0)

    async def _start(self, source: RegistrySource) -> None:
        control = self._gate.add(source.config)
        # Its policy before its first packet: fail closed until it is known.
        self._gate.refresh([source.camera_id])
        await self._cameras.add(self._make_source(source.config, control))
        self._reading[source.camera_id] = source

    async def _stop(self, camera_id: str) -> None:
        await self._cameras.remove(camera_id)
        self._gate.remove(camera_id)
        self._reading.pop(camera_id, None)

    def _warn_static(self, entries: Mapping[str, SourceEntry]) -> None:
        for camera_id in sorted(entries.keys() & self._static.keys() - self._warned_static):
            self._warned_static.add(camera_id)
            logger.warning(
                "camera %s is both in this service's configuration (cameras) and in the registry's sources: "
                "the configuration's is read, the registry's ignored (remove it from cameras to follow the "
                "registry)",
                camera_id,
            )

    async def _record(self, changes: CameraChanges) -> None:
        if self._audit is None:
            return
        digests = {**self._static, **{c: s.digest for c, s in self._reading.items()}}
        reading_sha256 = hashlib.sha256(
            ",".join(f"{c}:{d}" for c, d in sorted(digests.items())).encode()
        ).hexdigest()
        changed = changes.camera_ids
        started = {s.camera_id: s for s in changes.start}
        replaced = {s.camera_id: s for s in changes.replace}
        for first in range(0, len(changed), _AUDIT_CHUNK):
            chunk = changed[first : first + _AUDIT_CHUNK]
            records = [
                ("camera_source", f"{c}:{(started.get(c) or replaced[c]).digest}")
                for c in chunk
                if c in started or c in replaced
            ]
            details = {
                "change": "cameras_read",
                "source": SOURCES_BUCKET,
                "started": _listed(c for c in chunk if c in started),
                "replaced": _listed(c for c in chunk if c in replaced),
                "stopped": _listed(c for c in chunk if c in changes.stop),
                "cameras_read": str(len(digests)),
                "from_registry": str(len(self._reading)),
                "reading_sha256": reading_sha256,
                "shard": f"{self._settings.shard_index}/{self._settings.shard_count}",
            }
            try:
                await self._audit.record(
                    AuditAction.AUDIT_ACTION_CONFIG_UPDATE,
                    actor=self._audit.actor,
                    motive="the cameras this service reads changed with the registry's sources "
                    "(camera ids and URL digests without credentials; never a URL)",
                    camera_ids=chunk,
                    records=records,
                    details={k: v for k, v in details.items() if v},
                )
            except AuditUnavailableError as error:  # reading goes on; said, not hidden
                logger.error("the change of the cameras read could not be audited: %s", error)


def _listed(camera_ids: Iterable[str]) -> str:
    text = ",".join(camera_ids)
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 3].rsplit(",", 1)[0] + ",..."
