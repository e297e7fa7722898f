"""The interface every camera source implements, its status and its errors."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Protocol, runtime_checkable

import numpy as np

from vigie_ingest.frame import CapturedFrame, RgbPixels


class CameraSourceError(Exception):
    """A camera cannot deliver frames and will not by retrying (a missing or corrupt file).

    The message names the camera and what is wrong, e.g.
    "camera 'north-gate': cannot open 'x.mp4': Invalid data found when processing input".
    """

    def __init__(self, camera_id: str, problem: str) -> None:
        super().__init__(f"camera {camera_id!r}: {problem}")
        self.camera_id = camera_id
        self.problem = problem


class CameraState(StrEnum):
    IDLE = "idle"  # not started
    CONNECTING = "connecting"  # opening the source, or waiting for its first frame
    STREAMING = "streaming"  # delivering frames
    BACKING_OFF = "backing_off"  # live source lost; waiting before reconnecting
    FAILED = "failed"  # stopped by a CameraSourceError (files only: live sources keep retrying)
    FINISHED = "finished"  # a file reached its end
    STOPPED = "stopped"  # stopped by its consumer


@dataclass(frozen=True)
class CameraStatus:
    """A snapshot of one camera's health, for readiness checks and metrics."""

    camera_id: str
    state: CameraState = CameraState.IDLE
    frames_decoded: int = 0
    # Kept by the sampler (then resized); the others were decoded and dropped, or never decoded.
    frames_kept: int = 0
    # Packets of intra-only codecs (MJPEG) dropped by the sampler before decoding.
    packets_skipped: int = 0
    # Kept frames discarded because the consumer was behind (live sources only; files wait).
    frames_dropped: int = 0
    decode_errors: int = 0
    # Connections opened (live) or files opened, including the first one.
    connections: int = 0
    # Packets read and dropped undecoded because the camera may not be analysed (policy: a pause...).
    packets_withheld: int = 0
    last_error: str | None = None
    last_frame_at: datetime | None = None
    # The origin of the frames' capture times: a file's first opening (its frames are captured at this time
    # plus their own), a live source's last connection.
    opened_at: datetime | None = None


class CameraStatusRecorder:
    """The mutable status behind `CameraStatus` snapshots; safe to update from a decoding thread."""

    def __init__(self, camera_id: str) -> None:
        self._lock = threading.Lock()
        self._camera_id = camera_id
        self._state = CameraState.IDLE
        self._decoded = self._kept = self._skipped = self._dropped = 0
        self._decode_errors = self._connections = self._withheld = 0
        self._last_error: str | None = None
        self._last_frame_at: datetime | None = None
        self._opened_at: datetime | None = None

    def snapshot(self) -> CameraStatus:
        with self._lock:
            return CameraStatus(
                camera_id=self._camera_id,
                state=self._state,
                frames_decoded=self._decoded,
                frames_kept=self._kept,
                packets_skipped=self._skipped,
                frames_dropped=self._dropped,
                decode_errors=self._decode_errors,
                connections=self._connections,
                packets_withheld=self._withheld,
                last_error=self._last_error,
                last_frame_at=self._last_frame_at,
                opened_at=self._opened_at,
            )

    def set_state(self, state: CameraState, error: str | None = None) -> None:
        with self._lock:
            self._state = state
            if error is not None:
                self._last_error = error

    def count(
        self,
        *,
        decoded: int = 0,
        kept: int = 0,
        skipped: int = 0,
        dropped: int = 0,
        decode_errors: int = 0,
        connections: int = 0,
        withheld: int = 0,
        frame_at: datetime | None = None,
        opened_at: datetime | None = None,
    ) -> None:
        with self._lock:
            self._decoded += decoded
            self._kept += kept
            self._skipped += skipped
            self._dropped += dropped
            self._decode_errors += decode_errors
            self._connections += connections
            self._withheld += withheld
            if frame_at is not None:
                self._last_frame_at = frame_at
            if opened_at is not None:
                self._opened_at = opened_at


@runtime_checkable
class FrameSource(Protocol):
    """One camera as an async stream of frames.

    Each call of `frames()` is one run: a new `run_id`, `sequence` from 0. The iterator ends when a
    file ends, raises `CameraSourceError` when the camera cannot be read, and stops its work
    (threads, connections) when it is closed (`aclose()`, which `contextlib.aclosing` does) or its
    task is cancelled. Live sources never end by
    themselves: they reconnect until stopped.
    """

    @property
    def camera_id(self) -> str: ...

    def status(self) -> CameraStatus: ...

    def frames(self) -> AsyncGenerator[CapturedFrame, None]: ...


class InMemoryFrameSource:
    """A `FrameSource` that plays given pictures: a fast stand-in for a camera in unit tests."""

    def __init__(
        self,
        camera_id: str,
        pictures: Sequence[RgbPixels],
        *,
        interval_s: float = 0.0,
        error: str | None = None,
        start: datetime | None = None,
    ) -> None:
        self._camera_id = camera_id
        self._pictures = [np.ascontiguousarray(p, dtype=np.uint8) for p in pictures]
        self._interval_s = interval_s
        self._error = error
        self._start = start
        self._recorder = CameraStatusRecorder(camera_id)

    @property
    def camera_id(self) -> str:
        return self._camera_id

    def status(self) -> CameraStatus:
        return self._recorder.snapshot()

    async def frames(self) -> AsyncGenerator[CapturedFrame, None]:
        run_id = uuid.uuid4().hex
        start = self._start or datetime.now(UTC)
        self._recorder.set_state(CameraState.STREAMING)
        try:
            for sequence, picture in enumerate(self._pictures):
                if sequence and self._interval_s:
                    await asyncio.sleep(self._interval_s)
                captured_at = start + timedelta(seconds=sequence * self._interval_s)
                self._recorder.count(decoded=1, kept=1, frame_at=captured_at)
                yield CapturedFrame(
                    camera_id=self._camera_id,
                    run_id=run_id,
                    sequence=sequence,
                    captured_at=captured_at,
                    source_width=picture.shape[1],
                    source_height=picture.shape[0],
                    pixels=picture,
                )
        except BaseException:
            self._recorder.set_state(CameraState.STOPPED)
            raise
        if self._error is not None:
            self._recorder.set_state(CameraState.FAILED, self._error)
            raise CameraSourceError(self._camera_id, self._error)
        self._recorder.set_state(CameraState.FINISHED)
