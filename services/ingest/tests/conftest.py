"""Synthetic cameras for the ingest tests: small videos written with PyAV and a live MJPEG server.

Each picture shows red, green and blue bars (top third) above eight black or white blocks that spell
the frame's index in binary, so a test can tell which source frame it received after resizing.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
import pytest

WIDTH, HEIGHT = 160, 96  # 5:3, resized to 416x250 for a 416 target
INDEX_BITS = 8


def picture(index: int, width: int = WIDTH, height: int = HEIGHT) -> npt.NDArray[np.uint8]:
    """RGB bars above the binary code of `index`."""
    rgb = np.zeros((height, width, 3), np.uint8)
    band = height // 3
    rgb[:band, : width // 3] = (255, 0, 0)
    rgb[:band, width // 3 : 2 * width // 3] = (0, 255, 0)
    rgb[:band, 2 * width // 3 :] = (0, 0, 255)
    for bit in range(INDEX_BITS):
        if (index >> bit) & 1:
            rgb[band:, bit * width // INDEX_BITS : (bit + 1) * width // INDEX_BITS] = 255
    return rgb


def index_of(pixels: npt.NDArray[np.uint8]) -> int:
    """The frame index spelled by a (resized) picture's blocks."""
    height, width, _ = pixels.shape
    row = (height // 3 + height) // 2
    index = 0
    for bit in range(INDEX_BITS):
        column = (2 * bit + 1) * width // (2 * INDEX_BITS)
        if pixels[row, column].mean() > 128:
            index |= 1 << bit
    return index


def bar_colours(pixels: npt.NDArray[np.uint8]) -> list[list[int]]:
    """The [R, G, B] at the middle of each of the three bars, left to right."""
    height, width, _ = pixels.shape
    return [[int(v) for v in pixels[height // 6, (2 * i + 1) * width // 6]] for i in range(3)]


def write_video(
    path: Path,
    *,
    codec: str = "libx264",
    frames: int = 50,
    fps: int = 25,
    width: int = WIDTH,
    height: int = HEIGHT,
    options: dict[str, str] | None = None,
) -> Path:
    """A video of `frames` pictures at `fps`, frame i showing index i."""
    pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
    if options is None and codec == "libx264":
        # No B-frames: every frame is a reference, so decoded counts are exact.
        options = {"preset": "ultrafast"}
    with av.open(str(path), "w") as container:
        stream: Any = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if options:
            stream.options = options
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(picture(i, width, height), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def jpeg_pictures(count: int) -> list[bytes]:
    """`count` JPEG files showing indices 0 to count-1, encoded with PyAV's MJPEG encoder."""
    encoder: Any = av.CodecContext.create("mjpeg", "w")
    encoder.width, encoder.height, encoder.pix_fmt = WIDTH, HEIGHT, "yuvj420p"
    encoder.time_base = Fraction(1, 25)
    jpegs = []
    for i in range(count):
        frame = av.VideoFrame.from_ndarray(picture(i), format="rgb24").reformat(format="yuvj420p")
        frame.pts = i
        jpegs.extend(bytes(packet) for packet in encoder.encode(frame))
    return jpegs


class MjpegServer:
    """An HTTP camera: multipart/x-mixed-replace JPEGs at `fps` on 127.0.0.1, stoppable and restartable.

    Stopping closes the open streams too, as a camera that loses power would.
    """

    def __init__(self, fps: float = 25.0, pictures: int = 64) -> None:
        self.fps = fps
        self.jpegs = jpeg_pictures(pictures)
        self.port = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def start(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                index = 0
                try:
                    while not owner._stopping.is_set():
                        jpeg = owner.jpegs[index % len(owner.jpegs)]
                        self.wfile.write(
                            b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%b\r\n"
                            % (len(jpeg), jpeg)
                        )
                        self.wfile.flush()
                        index += 1
                        time.sleep(1 / owner.fps)
                except OSError:
                    pass  # the client went away

        self._stopping.clear()
        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="mjpeg-server", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._server = None
        time.sleep(2 / self.fps)  # let the open streams notice and close


class SyntheticVideos:
    """What the tests use from this module (pytest's importlib mode cannot import conftest)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def write(self, name: str, **settings: Any) -> Path:
        return write_video(self.directory / name, **settings)

    picture = staticmethod(picture)
    index_of = staticmethod(index_of)
    bar_colours = staticmethod(bar_colours)


@pytest.fixture
def videos(tmp_path: Path) -> SyntheticVideos:
    return SyntheticVideos(tmp_path)


@pytest.fixture
def mjpeg_server() -> Iterator[MjpegServer]:
    server = MjpegServer()
    server.start()
    yield server
    server.stop()


async def wait_until(condition: Callable[[], bool], within_s: float = 10) -> None:
    """Poll `condition` until it holds; fail after `within_s` seconds."""
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within_s} s")
        await asyncio.sleep(0.02)


@pytest.fixture(name="wait_until")
def wait_until_fixture() -> Callable[[Callable[[], bool], float], Awaitable[None]]:
    return wait_until


@pytest.fixture(autouse=True)
def _no_camera_thread_left() -> Iterator[None]:
    """Every test must leave no decoding thread behind: stopping a source ends its thread."""
    yield
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        left = [t.name for t in threading.enumerate() if t.name.startswith("vigie-camera-")]
        if not left:
            return
        time.sleep(0.02)
    pytest.fail(f"camera threads still running after the test: {left}")
