import asyncio
import contextlib
import itertools
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import av
import pytest

from vigie_ingest import CameraConfig, CameraSourceError, CameraState, CapturedFrame, PyAVCameraSource


async def read_all(source: PyAVCameraSource, limit: int | None = None) -> list[CapturedFrame]:
    frames: list[CapturedFrame] = []
    async with contextlib.aclosing(source.frames()) as stream:
        async for frame in stream:
            frames.append(frame)
            if limit is not None and len(frames) == limit:
                break
    return frames


def file_camera(path: Path, **settings: object) -> PyAVCameraSource:
    config = CameraConfig.model_validate(
        {"id": "north-gate", "url": str(path), "realtime": False, **settings}
    )
    return PyAVCameraSource(config)


@pytest.mark.parametrize(
    ("codec", "name"),
    [("libx264", "h264.mp4"), ("mpeg4", "mpeg4.mp4"), ("mjpeg", "mjpeg.avi"), ("mjpeg", "mjpeg.mkv")],
)
async def test_25_fps_file_sampled_at_5_fps(videos, codec: str, name: str) -> None:
    source = file_camera(videos.write(name, codec=codec, frames=50, fps=25), sample_fps=5)
    opened_before = datetime.now(UTC)
    frames = await read_all(source)

    assert [videos.index_of(f.pixels) for f in frames] == list(range(0, 50, 5))
    assert [f.sequence for f in frames] == list(range(10))
    assert len({f.run_id for f in frames}) == 1
    assert all(f.camera_id == "north-gate" for f in frames)
    # Media time from the open time: the file replays as if it were live.
    assert opened_before <= frames[0].captured_at <= datetime.now(UTC)
    assert frames[0].captured_at.tzinfo is not None
    gaps = {b.captured_at - a.captured_at for a, b in itertools.pairwise(frames)}
    assert gaps == {timedelta(milliseconds=200)}
    assert all((f.source_width, f.source_height, f.width, f.height) == (160, 96, 416, 250) for f in frames)
    status = source.status()
    assert status.state is CameraState.FINISHED
    assert (status.frames_kept, status.decode_errors, status.connections) == (10, 0, 1)
    # The status gives the origin of the capture times: the first frame's, at media time 0.
    assert status.opened_at == frames[0].captured_at


async def test_intra_only_files_skip_decoding_dropped_packets(videos) -> None:
    mjpeg = file_camera(videos.write("mjpeg.avi", codec="mjpeg", frames=50), sample_fps=5)
    h264 = file_camera(videos.write("h264.mp4", codec="libx264", frames=50), sample_fps=5)
    await read_all(mjpeg)
    await read_all(h264)
    assert (mjpeg.status().frames_decoded, mjpeg.status().packets_skipped) == (10, 40)
    # Without B-frames every H.264 frame is a reference and must be decoded.
    assert (h264.status().frames_decoded, h264.status().packets_skipped) == (50, 0)


async def test_rgb_order_after_decoding(videos) -> None:
    frames = await read_all(file_camera(videos.write("h264.mp4", frames=5), sample_fps=25))
    red, green, blue = videos.bar_colours(frames[0].pixels)
    assert red[0] > 200
    assert max(red[1:]) < 60
    assert green[1] > 200
    assert max(green[0], green[2]) < 60
    assert blue[2] > 200
    assert max(blue[:2]) < 60


async def test_sample_rate_above_the_source_rate_keeps_every_frame(videos) -> None:
    frames = await read_all(file_camera(videos.write("h264.mp4", frames=20, fps=10), sample_fps=30))
    assert [videos.index_of(f.pixels) for f in frames] == list(range(20))


B_FRAMES = {"preset": "veryfast", "x264-params": "b-pyramid=0:b-adapt=0:scenecut=0:bframes="}


async def test_non_reference_frames_are_not_decoded_when_sampling_few(videos) -> None:
    path = videos.write(
        "b.mp4", frames=50, options={**B_FRAMES, "x264-params": B_FRAMES["x264-params"] + "1"}
    )
    skipping, decoding_all = file_camera(path, sample_fps=5), file_camera(path, sample_fps=5)
    decoding_all = PyAVCameraSource(decoding_all.config, skip_nonref=False)
    skipped_frames = await read_all(skipping)
    all_frames = await read_all(decoding_all)

    assert decoding_all.status().frames_decoded == 50
    assert skipping.status().frames_decoded < 30  # every other frame is a non-reference B-frame
    assert [videos.index_of(f.pixels) for f in all_frames] == list(range(0, 50, 5))
    # Still one frame per 0.2 s slot, at most one source frame later.
    indices = [videos.index_of(f.pixels) for f in skipped_frames]
    assert len(indices) == 10
    assert all(5 * slot <= index <= 5 * slot + 1 for slot, index in enumerate(indices))


async def test_non_reference_skipping_stops_when_it_leaves_holes(videos) -> None:
    # Three B-frames in a row leave 0.16 s holes: more than half of a 0.2 s sampling interval.
    path = videos.write(
        "b3.mp4", frames=50, options={**B_FRAMES, "x264-params": B_FRAMES["x264-params"] + "3"}
    )
    source = file_camera(path, sample_fps=5)
    frames = await read_all(source)
    assert source.status().frames_decoded >= 45
    assert len(frames) == 10


async def test_looping_file_continues_time_and_sequence(videos) -> None:
    source = file_camera(videos.write("short.mp4", frames=20, fps=25), sample_fps=5, loop=True)
    frames = await read_all(source, limit=12)
    assert [videos.index_of(f.pixels) for f in frames] == [0, 5, 10, 15] * 3
    assert [f.sequence for f in frames] == list(range(12))
    gaps = {b.captured_at - a.captured_at for a, b in itertools.pairwise(frames)}
    assert gaps == {timedelta(milliseconds=200)}
    assert source.status().connections == 3
    assert source.status().state is CameraState.STOPPED


async def test_realtime_file_is_paced_by_its_media_time(videos) -> None:
    config = CameraConfig(id="paced", url=str(videos.write("a.mp4", frames=25, fps=25)), sample_fps=5)
    started = time.monotonic()
    frames = await read_all(PyAVCameraSource(config))
    elapsed = time.monotonic() - started
    assert len(frames) == 5
    assert 0.75 <= elapsed < 2.0  # the last kept frame is due at 0.8 s
    assert abs(frames[-1].captured_at - datetime.now(UTC)) < timedelta(seconds=0.3)


async def test_slow_consumer_slows_a_file_down_without_losing_frames(videos) -> None:
    source = PyAVCameraSource(file_camera(videos.write("a.mp4", frames=50)).config, queue_capacity=1)
    frames = []
    async with contextlib.aclosing(source.frames()) as stream:
        async for frame in stream:
            frames.append(frame)
            await asyncio.sleep(0.01)
    assert len(frames) == 10
    assert source.status().frames_dropped == 0


async def test_closing_the_iterator_stops_the_thread_promptly(videos) -> None:
    config = CameraConfig(id="long", url=str(videos.write("long.mp4", frames=250)), sample_fps=5)
    source = PyAVCameraSource(config)  # real time: 10 s of video
    stream = source.frames()
    await anext(stream)
    started = time.monotonic()
    await stream.aclose()
    assert time.monotonic() - started < 0.5
    assert source.status().state is CameraState.STOPPED


async def test_cancelling_the_consumer_stops_the_thread(videos) -> None:
    config = CameraConfig(id="long", url=str(videos.write("long.mp4", frames=250)), sample_fps=5)
    source = PyAVCameraSource(config)
    first = asyncio.Event()

    async def consume() -> None:
        async with contextlib.aclosing(source.frames()) as stream:
            async for _ in stream:
                first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert source.status().state is CameraState.STOPPED


def corrupt_one_packet(path: Path, packet_number: int) -> None:
    """Give one JPEG of an MJPEG file a picture size of 0x0, which its decoder rejects."""
    with av.open(str(path)) as container:
        packets = [p for p in container.demux(video=0) if p.size]
        position = packets[packet_number].pos
    data = bytearray(path.read_bytes())
    start_of_frame = data.index(b"\xff\xc0", position)
    data[start_of_frame + 5 : start_of_frame + 9] = bytes(4)  # height and width
    path.write_bytes(bytes(data))


async def test_a_packet_that_fails_to_decode_is_counted_and_skipped(videos) -> None:
    path = videos.write("mjpeg.avi", codec="mjpeg", frames=30)
    corrupt_one_packet(path, 10)
    source = file_camera(path, sample_fps=25)
    frames = await read_all(source)
    assert source.status().decode_errors == 1
    assert len(frames) == 29
    assert source.status().state is CameraState.FINISHED


async def test_missing_file(tmp_path: Path) -> None:
    source = file_camera(tmp_path / "nowhere.mp4")
    with pytest.raises(
        CameraSourceError, match=r"camera 'north-gate': cannot open '.*nowhere.mp4': No such file"
    ):
        await read_all(source)
    status = source.status()
    assert status.state is CameraState.FAILED
    assert status.last_error is not None
    assert "No such file or directory" in status.last_error


async def test_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "random.mp4"
    path.write_bytes(random.Random(2).randbytes(20_000))
    with pytest.raises(CameraSourceError, match=r"camera 'north-gate': cannot open .*: Invalid data found"):
        await read_all(file_camera(path))


async def test_truncated_mp4(videos) -> None:
    path = videos.write("whole.mp4", frames=50)
    truncated = path.with_name("truncated.mp4")
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CameraSourceError, match=r"camera 'north-gate': cannot open '.*truncated.mp4': "):
        await read_all(file_camera(truncated))


async def test_a_directory(tmp_path: Path) -> None:
    with pytest.raises(CameraSourceError, match=r"camera 'north-gate': cannot open .*: Is a directory"):
        await read_all(file_camera(tmp_path))


async def test_a_file_without_video(tmp_path: Path) -> None:
    path = tmp_path / "sound.wav"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame(format="s16", layout="mono", samples=800)
        frame.sample_rate = 8000
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    with pytest.raises(CameraSourceError, match=r"camera 'north-gate': '.*sound.wav' has no video stream"):
        await read_all(file_camera(path))
