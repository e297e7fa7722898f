"""Running all the cameras of an ingest service at once, each one isolated from the others, the set
changing while it runs (the cameras the registry declares come and go)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence

from av.video.reformatter import Interpolation

from vigie_core.tasks import cancel_and_wait
from vigie_ingest.camera import CameraConfig, LiveConnectionPolicy
from vigie_ingest.directives import CameraControl
from vigie_ingest.file_position import FilePositions
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

    Cameras can be added, removed and replaced while the set runs (`add`, `remove`): the others are not
    disturbed, and a removed camera's reading has stopped (thread, connection) when `remove` returns.
    """

    def __init__(self, sources: Sequence[FrameSource] = ()) -> None:
        ids = [source.camera_id for source in sources]
        duplicates = sorted({camera_id for camera_id in ids if ids.count(camera_id) > 1})
        if duplicates:
            raise ValueError(f"camera ids must be unique, repeated: {', '.join(duplicates)}")
        self._sources: dict[str, FrameSource] = {source.camera_id: source for source in sources}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._publish: Publish | None = None
        self._failure: BaseException | None = None
        self._changed = asyncio.Event()

    @classmethod
    def from_configs(
        cls,
        cameras: Sequence[CameraConfig],
        *,
        target_size: int = DEFAULT_TARGET_SIZE,
        interpolation: Interpolation = DEFAULT_INTERPOLATION,
        live_policy: LiveConnectionPolicy | None = None,
        skip_nonref: bool = True,
        thread_type: DecoderThreadType = "ADAPTIVE",
        queue_capacity: int = DEFAULT_QUEUE_CAPACITY,
        controls: Mapping[str, CameraControl] | None = None,
        positions: FilePositions | None = None,
    ) -> CameraSet:
        """One PyAV source per camera configuration, each following its control (the policy's directives;
        none: always analysed, as configured), files keeping their position in ``positions``."""
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
                    positions=positions,
                )
                for camera in cameras
            ]
        )

    @property
    def camera_ids(self) -> list[str]:
        return list(self._sources)

    def statuses(self) -> Mapping[str, CameraStatus]:
        """A snapshot of every camera's status, by camera id."""
        return {camera_id: source.status() for camera_id, source in list(self._sources.items())}

    async def add(self, source: FrameSource) -> None:
        """Read one more camera; at once if the set is running. Its id must not be in the set."""
        if source.camera_id in self._sources:
            raise ValueError(f"camera {source.camera_id!r} is already read")
        self._sources[source.camera_id] = source
        if self._publish is not None:
            self._start(source, self._publish)

    async def remove(self, camera_id: str) -> bool:
        """Stop reading a camera and wait until its reading has stopped; False if it was not read."""
        source = self._sources.pop(camera_id, None)
        task = self._tasks.pop(camera_id, None)
        await cancel_and_wait(task)
        return source is not None

    async def run(self, publish: Publish, *, keep_open: bool = False) -> None:
        """Deliver every camera's frames to `publish` until the task is cancelled, or until all sources
        have ended unless `keep_open` (cameras may still be added).

        Files end; live sources only end when cancelled. `publish` is awaited for one frame of a
        camera at a time, so a slow publisher slows that camera down (files) or makes it drop its
        oldest waiting frames (live sources), without holding back the other cameras.
        """
        if self._publish is not None:
            raise RuntimeError("the camera set is already running")
        self._publish = publish
        self._failure = None
        try:
            for source in list(self._sources.values()):
                self._start(source, publish)
            while True:
                if self._failure is not None:
                    # Camera failures never get here; what does is the publisher's, raised as it was raised.
                    raise self._failure
                if not keep_open and not any(not task.done() for task in self._tasks.values()):
                    return
                self._changed.clear()
                await self._changed.wait()
        finally:
            self._publish = None
            tasks = list(self._tasks.values())
            self._tasks.clear()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _start(self, source: FrameSource, publish: Publish) -> None:
        task = asyncio.create_task(self._run_camera(source, publish), name=f"camera-{source.camera_id}")
        self._tasks[source.camera_id] = task
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None and self._failure is None:
            self._failure = task.exception()
        self._changed.set()

    async def _run_camera(self, source: FrameSource, publish: Publish) -> None:
        try:
            async with contextlib.aclosing(source.frames()) as frames:
                async for frame in frames:
                    await publish(frame)
        except CameraSourceError as exc:
            logger.error("%s", exc)
