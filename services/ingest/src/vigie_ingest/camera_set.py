"""Running all the cameras of an ingest service at once, each one isolated from the others."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence

from av.video.reformatter import Interpolation

from vigie_ingest.camera import CameraConfig, LiveConnectionPolicy
from vigie_ingest.directives import CameraControl
from vigie_ingest.frame import CapturedFrame
from vigie_ingest.pyav_source import DEFAULT_QUEUE_CAPACITY, DecoderThreadType, PyAVCameraSource
from vigie_ingest.resize import DEFAULT_INTERPOLATION, DEFAULT_TARGET_SIZE
from vigie_ingest.source import CameraSourceError, CameraStatus, FrameSource

logger = logging.getLogger("vigie.ingest.cameras")

Publish = Callable[[CapturedFrame], Awaitable[None]]


class CameraSet:
    """The cameras of one ingest process, run concurrently into one publisher.

    A camera that fails (a corrupt file, an unreachable host) is logged and shown in its status;
    live cameras keep reconnecting and the others keep running. Only the publisher can stop the set:
    an exception from `publish` stops every camera and is raised by `run`.
    """

    def __init__(self, sources: Sequence[FrameSource]) -> None:
        ids = [source.camera_id for source in sources]
        duplicates = sorted({camera_id for camera_id in ids if ids.count(camera_id) > 1})
        if duplicates:
            raise ValueError(f"camera ids must be unique, repeated: {', '.join(duplicates)}")
        self._sources = list(sources)

    @classmethod
    def from_configs(
        cls,
        cameras: Sequence[CameraConfig],
        *,
        target_size: int = DEFAULT_TARGET_SIZE,
        interpolation: Interpolation = DEFAULT_INTERPOLATION,
        live_policy: LiveConnectionPolicy | None = None,
        skip_nonref: bool = True,
        thread_type: DecoderThreadType = "AUTO",
        queue_capacity: int = DEFAULT_QUEUE_CAPACITY,
        controls: Mapping[str, CameraControl] | None = None,
    ) -> CameraSet:
        """One PyAV source per camera configuration, each following its control (the policy's directives;
        none: always analysed, as configured)."""
        controls = controls or {}
        return cls(
            [
                PyAVCameraSource(
                    camera,
                    target_size=target_size,
                    interpolation=interpolation,
                    live_policy=live_policy,
                    skip_nonref=skip_nonref,
                    thread_type=thread_type,
                    queue_capacity=queue_capacity,
                    control=controls.get(camera.id),
                )
                for camera in cameras
            ]
        )

    @property
    def camera_ids(self) -> list[str]:
        return [source.camera_id for source in self._sources]

    def statuses(self) -> Mapping[str, CameraStatus]:
        """A snapshot of every camera's status, by camera id."""
        return {source.camera_id: source.status() for source in self._sources}

    async def run(self, publish: Publish) -> None:
        """Deliver every camera's frames to `publish` until all sources end or the task is cancelled.

        Files end; live sources only end when cancelled. `publish` is awaited for one frame of a
        camera at a time, so a slow publisher slows that camera down (files) or makes it drop its
        oldest waiting frames (live sources), without holding back the other cameras.
        """
        try:
            async with asyncio.TaskGroup() as cameras:
                for source in self._sources:
                    cameras.create_task(self._run_camera(source, publish), name=f"camera-{source.camera_id}")
        except BaseExceptionGroup as group:
            # Camera failures never get here; what does is the publisher's, raised as it was raised.
            raise group.exceptions[0] from None

    async def _run_camera(self, source: FrameSource, publish: Publish) -> None:
        try:
            async with contextlib.aclosing(source.frames()) as frames:
                async for frame in frames:
                    await publish(frame)
        except CameraSourceError as exc:
            logger.error("%s", exc)
