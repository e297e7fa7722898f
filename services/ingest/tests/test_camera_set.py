import asyncio
import logging
import random
from pathlib import Path

import numpy as np
import pytest

from vigie_ingest import (
    CameraConfig,
    CameraSet,
    CameraSourceError,
    CameraState,
    CapturedFrame,
    FrameSource,
    InMemoryFrameSource,
    PyAVCameraSource,
)


class Collected:
    def __init__(self) -> None:
        self.frames: dict[str, list[CapturedFrame]] = {}

    async def publish(self, frame: CapturedFrame) -> None:
        self.frames.setdefault(frame.camera_id, []).append(frame)


def file_config(camera_id: str, path: Path, **settings: object) -> CameraConfig:
    return CameraConfig.model_validate({"id": camera_id, "url": str(path), "realtime": False, **settings})


async def test_broken_cameras_do_not_stop_the_others(videos, tmp_path: Path, caplog) -> None:
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(random.Random(3).randbytes(50_000))
    whole = videos.write("whole.mp4", frames=50)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(whole.read_bytes()[:2_000])
    cameras = CameraSet.from_configs(
        [
            file_config("corrupt", corrupt),
            file_config("truncated", truncated),
            file_config("missing", tmp_path / "missing.mp4"),
            file_config("good", videos.write("good.mp4", frames=50), sample_fps=5),
        ]
    )
    collected = Collected()
    with caplog.at_level(logging.ERROR, logger="vigie.ingest"):
        await asyncio.wait_for(cameras.run(collected.publish), 10)

    assert [videos.index_of(f.pixels) for f in collected.frames["good"]] == list(range(0, 50, 5))
    assert set(collected.frames) == {"good"}
    statuses = cameras.statuses()
    assert statuses["good"].state is CameraState.FINISHED
    for camera_id in ("corrupt", "truncated", "missing"):
        assert statuses[camera_id].state is CameraState.FAILED
        assert statuses[camera_id].last_error is not None
        assert any(
            record.getMessage().startswith(f"camera '{camera_id}': cannot open") for record in caplog.records
        ), camera_id


async def test_publisher_failure_stops_every_camera_and_is_raised(videos) -> None:
    path = videos.write("a.mp4", frames=250)
    cameras = CameraSet.from_configs(
        [file_config("one", path, loop=True), CameraConfig(id="two", url=str(path), loop=True)]
    )

    async def publish(frame: CapturedFrame) -> None:
        if frame.sequence == 3:
            raise ConnectionError("publisher down")

    with pytest.raises(ConnectionError, match="publisher down"):
        await asyncio.wait_for(cameras.run(publish), 10)
    assert {s.state for s in cameras.statuses().values()} == {CameraState.STOPPED}


async def test_cancelling_run_stops_every_camera(videos) -> None:
    path = videos.write("a.mp4", frames=50)
    cameras = CameraSet.from_configs([CameraConfig(id=f"c{i}", url=str(path), loop=True) for i in range(3)])
    collected = Collected()
    task = asyncio.create_task(cameras.run(collected.publish))
    await asyncio.sleep(0.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert all(len(collected.frames[f"c{i}"]) >= 2 for i in range(3))
    assert {s.state for s in cameras.statuses().values()} == {CameraState.STOPPED}


def test_camera_ids_must_be_unique(tmp_path: Path) -> None:
    configs = [file_config("same", tmp_path / "a.mp4"), file_config("same", tmp_path / "b.mp4")]
    with pytest.raises(ValueError, match=r"camera ids must be unique, repeated: same"):
        CameraSet.from_configs(configs)


async def test_in_memory_sources_stand_in_for_cameras() -> None:
    picture = np.zeros((234, 416, 3), np.uint8)
    good = InMemoryFrameSource("good", [picture] * 3)
    failing = InMemoryFrameSource("failing", [picture], error="cannot open 'x.mp4': gone")
    assert isinstance(good, FrameSource)
    assert isinstance(PyAVCameraSource(CameraConfig(id="c", url="a.mp4")), FrameSource)
    cameras = CameraSet([good, failing])
    collected = Collected()
    await cameras.run(collected.publish)
    assert [f.sequence for f in collected.frames["good"]] == [0, 1, 2]
    assert len(collected.frames["failing"]) == 1
    assert cameras.statuses()["failing"].state is CameraState.FAILED
    assert cameras.camera_ids == ["good", "failing"]
    with pytest.raises(CameraSourceError, match=r"camera 'failing': cannot open 'x.mp4': gone"):
        async for _ in failing.frames():
            pass
