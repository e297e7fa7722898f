import asyncio
import contextlib
import itertools
import logging
import re
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from vigie_embedded.testing import log_record_text
from vigie_ingest import (
    CameraConfig,
    CameraSet,
    CameraState,
    CapturedFrame,
    LiveConnectionPolicy,
    PyAVCameraSource,
)
from vigie_ingest.source import CameraSourceError

FAST_RETRIES = LiveConnectionPolicy(
    open_timeout_s=2, read_timeout_s=2, backoff_initial_s=0.1, backoff_max_s=0.4, backoff_jitter_s=0
)


class Consumer:
    """Reads a source in a task, as the service does."""

    def __init__(self, source: PyAVCameraSource) -> None:
        self.source = source
        self.frames: list[CapturedFrame] = []
        self.task = asyncio.create_task(self._consume())

    async def _consume(self) -> None:
        async with contextlib.aclosing(self.source.frames()) as stream:
            async for frame in stream:
                self.frames.append(frame)

    async def stop(self) -> None:
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never answers, like a hung camera."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield int(listener.getsockname()[1])


async def test_mjpeg_stream_is_sampled_by_wall_clock(mjpeg_server, wait_until) -> None:
    source = PyAVCameraSource(CameraConfig(id="street", url=mjpeg_server.url, sample_fps=5))
    consumer = Consumer(source)
    await wait_until(lambda: len(consumer.frames) >= 6)
    await consumer.stop()

    frames = consumer.frames
    gaps = [(b.captured_at - a.captured_at).total_seconds() for a, b in itertools.pairwise(frames)]
    assert all(0.1 < gap < 0.35 for gap in gaps[1:]), gaps  # the first may hold frames buffered at open
    assert [f.sequence for f in frames] == list(range(len(frames)))
    assert all((f.width, f.height) == (416, 250) for f in frames)
    status = source.status()
    assert status.state is CameraState.STOPPED
    # MJPEG is intra-only: dropped JPEGs are never decoded.
    assert status.packets_skipped > status.frames_decoded > 0
    assert status.frames_decoded == status.frames_kept


async def test_camera_reconnects_with_backoff_after_its_server_dies(mjpeg_server, caplog, wait_until) -> None:
    source = PyAVCameraSource(
        CameraConfig(id="street", url=mjpeg_server.url, sample_fps=10), live_policy=FAST_RETRIES
    )
    caplog.set_level(logging.INFO, logger="vigie.ingest")
    consumer = Consumer(source)
    await wait_until(lambda: len(consumer.frames) >= 3)
    assert source.status().state is CameraState.STREAMING

    mjpeg_server.stop()
    await wait_until(lambda: source.status().state is CameraState.BACKING_OFF)
    await asyncio.sleep(1.0)  # long enough for several refused reconnections
    during_outage = source.status()
    assert during_outage.connections == 1
    assert during_outage.last_error is not None
    assert during_outage.last_error.startswith(f"cannot connect to '{mjpeg_server.url}'")
    frames_before = len(consumer.frames)

    mjpeg_server.start()  # same port
    await wait_until(lambda: len(consumer.frames) >= frames_before + 3)
    assert source.status().state is CameraState.STREAMING
    await consumer.stop()

    frames = consumer.frames
    assert [f.sequence for f in frames] == list(range(len(frames)))
    assert all(a.captured_at < b.captured_at for a, b in itertools.pairwise(frames))
    assert len({f.run_id for f in frames}) == 1
    assert source.status().connections == 2
    delays = [
        float(m.group(1))
        for r in caplog.records
        if (m := re.search(r"reconnecting in ([\d.]+) s", r.getMessage()))
    ]
    # Lost after streaming: start again from the initial delay, then double up to the maximum.
    assert delays[:4] == [0.1, 0.2, 0.4, 0.4]
    assert sum(1 for r in caplog.records if "streaming mjpeg" in r.getMessage()) == 2


async def test_unreachable_camera_does_not_hold_back_the_others(videos, caplog, wait_until) -> None:
    cameras = CameraSet.from_configs(
        [
            CameraConfig(id="unreachable", url=f"http://127.0.0.1:{unused_port()}/video"),
            CameraConfig(id="file", url=str(videos.write("a.mp4", frames=50)), realtime=False),
        ],
        live_policy=FAST_RETRIES,
    )
    received: list[CapturedFrame] = []

    async def publish(frame: CapturedFrame) -> None:
        received.append(frame)

    caplog.set_level(logging.WARNING, logger="vigie.ingest")
    task = asyncio.create_task(cameras.run(publish))
    await wait_until(lambda: cameras.statuses()["file"].state is CameraState.FINISHED)
    await wait_until(lambda: "Connection refused" in (cameras.statuses()["unreachable"].last_error or ""))
    assert cameras.statuses()["unreachable"].state in {CameraState.BACKING_OFF, CameraState.CONNECTING}
    assert not task.done()  # the live camera keeps trying
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(received) == 10
    assert any("camera 'unreachable': cannot connect to" in r.getMessage() for r in caplog.records)


async def test_hung_camera_times_out_and_is_retried(silent_server: int, wait_until) -> None:
    policy = LiveConnectionPolicy(
        open_timeout_s=0.3, read_timeout_s=0.3, backoff_initial_s=0.1, backoff_max_s=0.1, backoff_jitter_s=0
    )
    source = PyAVCameraSource(
        CameraConfig(id="hung", url=f"http://127.0.0.1:{silent_server}/video"), live_policy=policy
    )
    consumer = Consumer(source)
    await wait_until(lambda: source.status().state is CameraState.BACKING_OFF, 5)
    assert (source.status().last_error or "").startswith("cannot connect to")
    started = time.monotonic()
    await consumer.stop()
    assert time.monotonic() - started < 1.0
    assert consumer.frames == []


async def test_passwords_stay_out_of_logs_and_status(every_log_record, wait_until) -> None:
    url = f"http://admin:s3cret@127.0.0.1:{unused_port()}/video?token=t0ken-value"
    source = PyAVCameraSource(CameraConfig(id="private", url=url), live_policy=FAST_RETRIES)
    consumer = Consumer(source)
    await wait_until(lambda: source.status().last_error is not None)
    await consumer.stop()
    assert "admin:***@127.0.0.1" in (source.status().last_error or "")
    texts = [log_record_text(r) for r in every_log_record]
    for secret in ("s3cret", "t0ken-value"):
        assert secret not in (source.status().last_error or "")
        assert not [t for t in texts if secret in t]


class _SurpriseError(RuntimeError):
    """What a bug or an odd FFmpeg build might raise, quoting whatever it was given."""


@pytest.mark.parametrize(
    "raised",
    [
        lambda url: _SurpriseError(
            f"could not handle {url}"
        ),  # an unexpected error: logged with its traceback
        lambda url: OSError(None, None, url),  # an OS error naming the URL as its file, without strerror
    ],
    ids=["unexpected", "filename"],
)
async def test_an_error_quoting_the_url_is_logged_without_its_secrets(
    every_log_record, wait_until, monkeypatch: pytest.MonkeyPatch, raised
) -> None:
    url = f"rtsp://admin:s3cret@127.0.0.1:{unused_port()}/video?token=t0ken-value"

    def failing_open(file: object, *args: object, **kwargs: object) -> None:
        raise raised(file)

    monkeypatch.setattr("vigie_ingest.pyav_source.av.open", failing_open)
    source = PyAVCameraSource(CameraConfig(id="private", url=url), live_policy=FAST_RETRIES)
    consumer = Consumer(source)
    await wait_until(lambda: source.status().last_error is not None)
    consumer.task.cancel()
    with contextlib.suppress(asyncio.CancelledError, CameraSourceError):  # the surprise ends the run
        await consumer.task
    texts = [log_record_text(r) for r in every_log_record if r.name.startswith("vigie")]
    assert texts, "the error was logged"
    for secret in ("s3cret", "t0ken-value"):
        assert secret not in (source.status().last_error or "")
        assert not [t for t in texts if secret in t]


async def test_slow_consumer_gets_fresh_frames_from_a_live_camera(mjpeg_server) -> None:
    source = PyAVCameraSource(CameraConfig(id="street", url=mjpeg_server.url, sample_fps=25))
    ages: list[float] = []
    async with contextlib.aclosing(source.frames()) as stream:
        async for frame in stream:
            ages.append((datetime.now(UTC) - frame.captured_at).total_seconds())
            if len(ages) == 4:
                break
            await asyncio.sleep(0.3)  # a publisher far slower than the camera
    status = source.status()
    assert status.frames_dropped > 0
    # At most `queue_capacity` (2) frames wait, so what arrives is never much older than that.
    assert max(ages[1:]) < 0.3 + 0.15
