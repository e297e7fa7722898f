"""Where cameras' lines and zones come from, behind one small interface.

`CameraGeometrySource` gives the geometry in force at start-up, then every change as it happens; the
service applies a change between two TRACKS messages, without a restart (`Anonymiser.set_geometry`).
`ConfigGeometrySource` is the default: the cameras of the service's settings, which can also be changed
at run time through `put` and `remove` (tests, a reload). The registry's policy will come as another
implementation watching the NATS KV bucket `vigie-policy`, yielding a `GeometryUpdate` per changed key.

`geometry_change` tells what an update changes for the audit journal: the geometry version in force
before and after (`CameraGeometryConfig.version()`), as a configuration created, updated or deleted.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Protocol

from vigie_anonymiser.config import CameraGeometry, CameraGeometryConfig
from vigie_core.audit import AuditAction

__all__ = [
    "CameraGeometrySource",
    "ConfigGeometrySource",
    "GeometryChange",
    "GeometryUpdate",
    "geometry_change",
]


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
