"""A live RTSP camera served by GStreamer's RTSP server (Debian packages, see rtsp_camera.py)."""

import asyncio
import contextlib
import functools
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from vigie_embedded.debian_tools import gstreamer_environment
from vigie_ingest import CameraConfig, CameraState, CapturedFrame, LiveConnectionPolicy, PyAVCameraSource

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER_SCRIPT = Path(__file__).with_name("rtsp_camera.py")
PACKAGES = "gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-good gstreamer1.0-plugins-bad"


@functools.cache
def rtsp_server_missing() -> str | None:
    """Why the GStreamer RTSP server cannot run here, or None when it can."""
    try:
        check = subprocess.run(
            [SYSTEM_PYTHON, str(SERVER_SCRIPT), "--check"],
            env=_server_environment(),
            capture_output=True,
            text=True,
            timeout=30,
        )
    except OSError as exc:
        return f"{SYSTEM_PYTHON} cannot run: {exc}"
    if check.returncode != 0:
        last_line = (check.stderr.strip().splitlines() or ["unknown error"])[-1]
        return (
            f"GStreamer RTSP server unavailable ({last_line}): make system-packages ({PACKAGES}), or "
            "python -m vigie_embedded.debian_tools fetch on Debian (make test runs it)"
        )
    return None


def _server_environment() -> dict[str, str]:
    """The machine's GStreamer, or Debian's unpacked under var/tools/debian (vigie_embedded.debian_tools)."""
    return {**os.environ, **gstreamer_environment()}


class RtspCamera:
    def __init__(self, video: Path) -> None:
        self.video = video
        self.port = 0
        self._process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/camera"

    def start(self) -> None:
        process = subprocess.Popen(
            [SYSTEM_PYTHON, str(SERVER_SCRIPT), str(self.video), str(self.port)],
            env=_server_environment(),
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        self.port = int(process.stdout.readline())
        self._process = process

    def stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait(10)
            if self._process.stdout is not None:
                self._process.stdout.close()
            self._process = None


@pytest.fixture
def rtsp_camera(videos) -> Iterator[RtspCamera]:
    if (why := rtsp_server_missing()) is not None:
        pytest.skip(why)
    camera = RtspCamera(videos.write("street.mp4", frames=500, fps=25))  # 20 s
    camera.start()
    yield camera
    camera.stop()


async def test_rtsp_camera_streams_and_reconnects_after_its_server_dies(
    rtsp_camera, videos, wait_until
) -> None:
    policy = LiveConnectionPolicy(backoff_initial_s=0.1, backoff_max_s=0.3, backoff_jitter_s=0)
    source = PyAVCameraSource(
        CameraConfig(id="street", url=rtsp_camera.url, sample_fps=5, options={"probesize": "32"}),
        live_policy=policy,
    )
    frames: list[CapturedFrame] = []

    async def consume() -> None:
        async with contextlib.aclosing(source.frames()) as stream:
            async for frame in stream:
                frames.append(frame)

    task = asyncio.create_task(consume())
    await wait_until(lambda: len(frames) >= 3)
    first_indices = [videos.index_of(f.pixels) for f in frames[:3]]
    assert first_indices == sorted(first_indices)
    assert all((f.source_width, f.source_height, f.width, f.height) == (160, 96, 416, 250) for f in frames)

    rtsp_camera.stop()
    await wait_until(lambda: source.status().state is CameraState.BACKING_OFF)
    frames_before = len(frames)
    rtsp_camera.start()  # same port
    await wait_until(lambda: len(frames) >= frames_before + 3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert [f.sequence for f in frames] == list(range(len(frames)))
    assert source.status().connections >= 2
    assert source.status().state is CameraState.STOPPED
