"""Where cameras' lines and zones come from, behind one small interface.

`CameraGeometrySource` gives the geometry in force at start-up, then every change as it happens; the
service applies a change between two TRACKS messages, without a restart (`Anonymiser.set_geometry`).
`PolicyGeometrySource` is the default: each camera's lines, zones and window from the registry's policy
(the NATS KV bucket `vigie-policy`, through `vigie_core.policy`), complemented by the service's settings
where the policy says nothing. `ConfigGeometrySource` is the settings alone (``policy.enabled = false``),
which can also be changed at run time through `put` and `remove` (tests, a reload).

`geometry_change` tells what an update changes for the audit journal: the geometry version in force
before and after (`CameraGeometryConfig.version()`), as a configuration created, updated or deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import ValidationError

from vigie_anonymiser.config import CameraGeometry, CameraGeometryConfig
from vigie_core.audit import AuditAction
from vigie_core.policy import PolicyView, class_name, geometry_document
from vigie_proto.v1.policy_pb2 import AnalysisOutput, CameraPolicy, PositionAnchor

__all__ = [
    "CameraGeometrySource",
    "ConfigGeometrySource",
    "GeometryChange",
    "GeometryUpdate",
    "PolicyGeometrySource",
    "geometry_change",
    "policy_geometry",
]

logger = logging.getLogger("vigie.anonymiser.geometry")

_ZONE_OUTPUTS = frozenset(
    {AnalysisOutput.ANALYSIS_OUTPUT_ZONE_OCCUPANCY, AnalysisOutput.ANALYSIS_OUTPUT_DWELL_TIME}
)


@dataclass(frozen=True, slots=True)
class GeometryUpdate:
    camera_id: str
    geometry: CameraGeometry | None  # None: the camera's geometry was withdrawn


@dataclass(frozen=True, slots=True)
class GeometryChange:
    """A camera's counting geometry version before and after an update ("" when there is none)."""

    camera_id: str
    previous: str
    current: str

    @property
    def action(self) -> AuditAction.ValueType:
        if not self.previous:
            return AuditAction.AUDIT_ACTION_CONFIG_CREATE
        if not self.current:
            return AuditAction.AUDIT_ACTION_CONFIG_DELETE
        return AuditAction.AUDIT_ACTION_CONFIG_UPDATE


def geometry_change(
    camera_id: str, previous: CameraGeometry | None, current: CameraGeometry | None
) -> GeometryChange | None:
    """What replacing ``previous`` by ``current`` changes; None when the version stays the same."""
    before = previous.version if previous is not None else ""
    after = current.version if current is not None else ""
    return None if before == after else GeometryChange(camera_id, before, after)


class CameraGeometrySource(Protocol):
    def current(self) -> list[CameraGeometry]:
        """The geometry of every camera this replica counts, now."""
        ...

    def updates(self) -> AsyncIterator[GeometryUpdate]:
        """Changes after `current()`, in order; ends when the source is closed."""
        ...

    async def close(self) -> None: ...


class ConfigGeometrySource:
    """The cameras of the configuration; `put` and `remove` change them live."""

    def __init__(self, cameras: Iterable[CameraGeometryConfig]) -> None:
        self._geometries = {c.id: c.to_geometry() for c in cameras}
        self._changes: asyncio.Queue[GeometryUpdate | None] = asyncio.Queue()

    def current(self) -> list[CameraGeometry]:
        return list(self._geometries.values())

    async def updates(self) -> AsyncIterator[GeometryUpdate]:
        while (change := await self._changes.get()) is not None:
            yield change

    def put(self, camera: CameraGeometryConfig) -> None:
        geometry = camera.to_geometry()
        self._geometries[camera.id] = geometry
        self._changes.put_nowait(GeometryUpdate(camera.id, geometry))

    def remove(self, camera_id: str) -> None:
        if self._geometries.pop(camera_id, None) is not None:
            self._changes.put_nowait(GeometryUpdate(camera_id, None))

    async def close(self) -> None:
        self._changes.put_nowait(None)


def _within_classes(items: list[dict[str, Any]], allowed: list[str]) -> list[dict[str, Any]]:
    """Static lines or zones restricted to the classes the policy's purpose counts (none left: dropped)."""
    if not allowed:
        return items
    kept = []
    for item in items:
        classes = [c for c in (item.get("classes") or allowed) if c in allowed]
        if classes:
            kept.append({**item, "classes": classes})
    return kept


def policy_geometry(
    policy: CameraPolicy | None, static: CameraGeometryConfig | None
) -> CameraGeometryConfig | None:
    """A camera's geometry: the policy's, complemented by the static configuration where it is silent.

    The policy's lines, zones, window, anchor and dwell buckets replace the static ones when it has them;
    static lines or zones fill in only when the policy has none *and* its purpose allows that output, and
    only for the classes the purpose counts (docs/privacy.md rules 1 and 7); stays in zones are measured only
    when the purpose has the dwell_time output. No policy: the static geometry.
    Raises ValueError (naming the field) when the result is not a valid geometry.
    """
    if policy is None:
        return static
    document = geometry_document(policy)
    outputs = set(policy.outputs)
    allowed = [class_name(c) for c in policy.object_classes]
    if static is not None:
        fallback = static.model_dump(mode="json")
        if not policy.lines and AnalysisOutput.ANALYSIS_OUTPUT_LINE_CROSSINGS in outputs:
            document["lines"] = _within_classes(fallback["lines"], allowed)
        if not policy.zones and outputs & _ZONE_OUTPUTS:
            document["zones"] = _within_classes(fallback["zones"], allowed)
        if not policy.reporting_window_seconds:
            document["reporting_window_s"] = static.reporting_window_s
            document["reporting_window_justification"] = static.reporting_window_justification
        if policy.anchor == PositionAnchor.POSITION_ANCHOR_UNSPECIFIED:
            document["anchor"] = fallback["anchor"]
        if not policy.dwell_bucket_seconds:
            document["dwell_buckets_s"] = fallback["dwell_buckets_s"]
    if not document["reporting_window_s"]:
        del document["reporting_window_s"]  # the default (20 minutes)
    # Zones may serve occupancy only: stays are measured only if the purpose has the dwell_time output.
    document["dwell_time"] = AnalysisOutput.ANALYSIS_OUTPUT_DWELL_TIME in outputs
    return CameraGeometryConfig.model_validate(document)


class PolicyGeometrySource:
    """Each camera's geometry from its policy (`policy_geometry`), following the policy bucket.

    While the bucket cannot be read, the geometry in force stays (no frame is counted meanwhile: the
    service drops them); a camera whose policy gives no valid geometry has none (its frames are not
    counted) and a log line says why. Changes are looked for every ``check_s``.
    """

    def __init__(
        self, policies: PolicyView, static: Iterable[CameraGeometryConfig] = (), *, check_s: float = 0.25
    ) -> None:
        self._policies = policies
        self._static = {camera.id: camera for camera in static}
        self._check_s = check_s
        self._applied: dict[str, int | None] = {}  # the policy version each camera's geometry follows
        self._geometries = {camera_id: c.to_geometry() for camera_id, c in self._static.items()}
        self._closed = asyncio.Event()
        self.poll()

    def current(self) -> list[CameraGeometry]:
        return list(self._geometries.values())

    def poll(self) -> list[GeometryUpdate]:
        """The changes since the last poll (applied to `current()`)."""
        if self._policies.problem() is not None:
            return []
        updates = []
        for camera_id in sorted({*self._static, *self._policies.cameras(), *self._geometries}):
            policy = self._policies.policy(camera_id)
            version = policy.version if policy is not None else None
            if camera_id in self._applied and self._applied[camera_id] == version:
                continue
            self._applied[camera_id] = version
            try:
                config = policy_geometry(policy, self._static.get(camera_id))
            except (ValidationError, ValueError) as error:
                logger.error(
                    "camera %s: the policy (version %s) gives no valid counting geometry, its tracks are not "
                    "counted: %s",
                    camera_id,
                    version,
                    error,
                )
                config = None
            geometry = config.to_geometry() if config is not None else None
            previous = self._geometries.get(camera_id)
            if geometry is None:
                if self._geometries.pop(camera_id, None) is not None:
                    updates.append(GeometryUpdate(camera_id, None))
            elif previous is None or previous.version != geometry.version:
                self._geometries[camera_id] = geometry
                updates.append(GeometryUpdate(camera_id, geometry))
        return updates

    async def updates(self) -> AsyncIterator[GeometryUpdate]:
        while not self._closed.is_set():
            for update in self.poll():
                yield update
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closed.wait(), self._check_s)

    async def close(self) -> None:
        self._closed.set()
