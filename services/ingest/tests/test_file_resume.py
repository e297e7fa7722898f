"""A file camera killed in the middle of its film goes on where it was in the next process: the same
timeline, the next frame after the last one published, a new run; a film played to its end is not played
again; a live camera keeps nothing.

Each "process" is a new `PyAVCameraSource` with a new `FilePositions` on the same directory. The tests
play the publisher's part (the position saved after each frame taken) and stop a run abruptly: nothing is
written at the stop, and the frames the decoding thread had ready but nobody took are not in the record."""

import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import nats.errors
import pytest

from vigie_core.lifecycle import service_runtime
from vigie_ingest import (
    CameraConfig,
    CameraControl,
    CameraDirectives,
    CameraState,
    CapturedFrame,
    PolicyGate,
    PyAVCameraSource,
)
from vigie_ingest.file_position import FilePosition, FilePositions
from vigie_ingest.service import FramePublisher
from vigie_ingest.settings import IngestSettings
from vigie_proto.v1.frames_pb2 import Frame

SAMPLE_INTERVAL_S = 0.2  # 5 frames per second


@dataclass
class Played:
    """What one process published of a camera, and its source's status at the end."""

    source: PyAVCameraSource
    frames: list[CapturedFrame] = field(default_factory=list)
    # Seconds from the start of the run to each frame's arrival.
    arrivals: list[float] = field(default_factory=list)

    @property
    def opened_at(self) -> datetime:
        opened_at = self.source.status().opened_at
        assert opened_at is not None
        return opened_at

    def media_times(self) -> list[float]:
        return [(f.captured_at - self.opened_at).total_seconds() for f in self.frames]


async def play(
    path: Path,
    state_dir: Path,
    *,
    limit: int | None = None,
    positions: FilePositions | None = None,
    **settings,
) -> Played:
    """One process reading the file camera 'parvis' (as fast as possible unless ``realtime=True``) and
    publishing ``limit`` frames (all of them: None), then killed."""
    config = CameraConfig.model_validate(
        {"id": "parvis", "url": str(path), "sample_fps": 5, "realtime": False, **settings}
    )
    positions = positions or FilePositions(state_dir)
    played = Played(PyAVCameraSource(config, positions=positions))
    started = time.monotonic()
    async with contextlib.aclosing(played.source.frames()) as frames:
        async for frame in frames:
            played.frames.append(frame)
            played.arrivals.append(time.monotonic() - started)
            assert frame.position is not None
            positions.save(frame.camera_id, frame.position)  # what the publisher does once FRAMES accepts it
            if len(played.frames) == limit:
                break
    return played


def files_in(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


def record(state_dir: Path) -> dict[str, object]:
    return json.loads((state_dir / "parvis.file-position.json").read_bytes())


async def test_a_killed_film_goes_on_where_it_was_and_is_not_played_again_once_finished(
    sample_video: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state"
    whole = await play(sample_video, tmp_path / "uninterrupted")

    first = await play(sample_video, state, limit=100)
    with caplog.at_level(logging.INFO, "vigie.ingest.source"):
        second = await play(sample_video, state)

    # The same timeline: the origin of the first opening, the next frame after the last one published.
    assert second.opened_at == first.opened_at
    last, resumed = first.frames[-1].captured_at, second.frames[0].captured_at
    assert 0 < (resumed - last).total_seconds() <= SAMPLE_INTERVAL_S + 1e-3
    assert "camera 'parvis': resuming the file at 19.9 s (a previous ingest stopped there)" in caplog.text
    # A new run, numbered from 0.
    assert second.frames[0].run_id != first.frames[0].run_id
    assert [f.sequence for f in second.frames] == list(range(len(second.frames)))
    # No frame twice, none missing: the frames the uninterrupted film gives, at the same media times.
    captured = [f.captured_at for f in first.frames + second.frames]
    assert len(set(captured)) == len(captured)
    assert first.media_times() + second.media_times() == whole.media_times()
    assert len(whole.frames) == 300  # 60 s at 5 frames per second
    # The seek went to the keyframe before the position, not to the film's start.
    assert second.source.status().frames_decoded < whole.source.status().frames_decoded * 0.8
    assert second.source.status().state is CameraState.FINISHED
    assert record(state)["finished"] is True

    # Played to its end: the next process does not play it again (nor open it).
    third = await play(sample_video, state)
    assert third.frames == []
    status = third.source.status()
    assert (status.state, status.connections, status.opened_at) == (CameraState.FINISHED, 0, first.opened_at)


async def test_a_resumed_film_shows_the_pictures_that_follow(videos, tmp_path: Path) -> None:
    # A keyframe every 10 frames, so that resuming seeks into the middle of the file.
    path = videos.write("gop.mp4", frames=100, options={"preset": "ultrafast", "x264-params": "keyint=10"})
    first = await play(path, tmp_path, limit=7)
    second = await play(path, tmp_path)
    indices = [videos.index_of(f.pixels) for f in first.frames + second.frames]
    assert indices == list(range(0, 100, 5))
    # From the keyframe of frame 30, the last one published: 30 to 99.
    assert second.source.status().frames_decoded == 70


async def test_an_intra_only_film_resumes_without_decoding_what_was_published(videos, tmp_path: Path) -> None:
    path = videos.write("mjpeg.avi", codec="mjpeg", frames=50)
    first = await play(path, tmp_path, limit=4)
    second = await play(path, tmp_path)
    assert [videos.index_of(f.pixels) for f in first.frames + second.frames] == list(range(0, 50, 5))
    assert second.source.status().frames_decoded == 6


async def test_a_looping_film_resumes_in_its_pass(videos, tmp_path: Path) -> None:
    path = videos.write("short.mp4", frames=20, fps=25)  # 0.8 s: 4 frames kept per pass
    whole = await play(path, tmp_path / "uninterrupted", limit=12, loop=True)
    first = await play(path, tmp_path / "state", limit=6, loop=True)
    second = await play(path, tmp_path / "state", limit=6, loop=True)
    assert first.media_times() + second.media_times() == pytest.approx(whole.media_times(), abs=1e-6)
    assert [videos.index_of(f.pixels) for f in first.frames + second.frames] == [0, 5, 10, 15] * 3
    assert record(tmp_path / "state")["finished"] is False


async def test_a_resumed_film_keeps_its_pace(videos, tmp_path: Path) -> None:
    path = videos.write("paced.mp4", frames=50, fps=25)  # 2 s
    await play(path, tmp_path, limit=3, realtime=True)
    second = await play(path, tmp_path, realtime=True)
    assert [videos.index_of(f.pixels) for f in second.frames] == [15, 20, 25, 30, 35, 40, 45]
    # The next frame is due at once, the others at the film's pace (1.2 s from the first to the last),
    # not as fast as they decode.
    assert second.arrivals[0] < 1.0
    assert second.arrivals[-1] - second.arrivals[0] >= 1.1


async def test_later_openings_in_the_same_process_play_from_the_beginning(videos, tmp_path: Path) -> None:
    path = videos.write("a.mp4", frames=50)
    first = await play(path, tmp_path, limit=4)
    positions = FilePositions(tmp_path)
    resumed = await play(path, tmp_path, limit=2, positions=positions)
    # The registry starting the camera again, in the same process: the film from its beginning, anew.
    again = await play(path, tmp_path, limit=2, positions=positions)
    assert [videos.index_of(f.pixels) for f in resumed.frames] == [20, 25]
    assert [videos.index_of(f.pixels) for f in again.frames] == [0, 5]
    assert again.opened_at > first.opened_at


async def test_another_film_at_the_camera_plays_from_its_beginning(
    videos, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await play(videos.write("a.mp4", frames=50), tmp_path, limit=4)
    with caplog.at_level(logging.WARNING, "vigie.ingest.positions"):
        other = await play(videos.write("b.mp4", frames=40), tmp_path, limit=2)
    assert [videos.index_of(f.pixels) for f in other.frames] == [0, 5]
    assert "another source" in caplog.text
    # Replaced: the record is the new film's.
    assert record(tmp_path)["media_s"] == pytest.approx(0.2)


async def test_an_unreadable_record_plays_the_film_from_its_beginning(videos, tmp_path: Path) -> None:
    (tmp_path / "parvis.file-position.json").write_bytes(b'{"format": 1, "sou')
    played = await play(videos.write("a.mp4", frames=50), tmp_path, limit=2)
    assert [videos.index_of(f.pixels) for f in played.frames] == [0, 5]
    assert record(tmp_path)["media_s"] == pytest.approx(0.2)


async def test_a_live_camera_keeps_no_position(mjpeg_server, tmp_path: Path) -> None:
    positions = FilePositions(tmp_path)
    source = PyAVCameraSource(
        CameraConfig(id="street", url=mjpeg_server.url, sample_fps=5), positions=positions
    )
    taken: list[CapturedFrame] = []
    async with contextlib.aclosing(source.frames()) as frames:
        async for frame in frames:
            taken.append(frame)
            if len(taken) == 3:
                break
    assert all(frame.position is None for frame in taken)
    assert files_in(tmp_path) == []


class FlakyFrames:
    """A stand-in for FRAMES' JetStream context that refuses the frames of chosen sequences."""

    def __init__(self, refused: set[int]) -> None:
        self.refused = refused
        self.stored: list[int] = []

    async def publish(self, subject: str, payload: bytes, **_: object) -> None:
        sequence = Frame.FromString(payload).sequence
        if sequence in self.refused:
            raise nats.errors.TimeoutError
        self.stored.append(sequence)


async def test_the_publisher_saves_a_position_once_frames_accepted_its_frame(videos, tmp_path: Path) -> None:
    path = videos.write("a.mp4", frames=50)
    settings = IngestSettings(cameras=[{"id": "parvis", "url": str(path), "realtime": False}])
    positions = FilePositions(tmp_path)
    js = FlakyFrames(refused={2, 3})
    saved: list[object] = []
    async with service_runtime("ingest", settings) as runtime:
        publish = FramePublisher(js, runtime, PolicyGate(settings.cameras, None), positions)  # type: ignore[arg-type]
        source = PyAVCameraSource(settings.cameras[0], positions=positions)
        async with contextlib.aclosing(source.frames()) as frames:
            async for frame in frames:
                await publish(frame)
                saved.append(record(tmp_path)["media_s"] if files_in(tmp_path) else None)
                if frame.sequence == 3:
                    break
    assert js.stored == [0, 1]
    # Frames 2 and 3 were lost: the record still says frame 1 (0.2 s), the last one really published.
    assert saved == [0.0, 0.2, 0.2, 0.2]


class SavedPositions(FilePositions):
    """`FilePositions` that remembers every position saved."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.saved: list[FilePosition] = []

    def save(self, camera_id: str, position: FilePosition) -> None:
        self.saved.append(position)
        super().save(camera_id, position)


async def test_a_stretch_not_analysed_moves_the_position_on(videos, tmp_path: Path) -> None:
    """Killed while its camera may not be analysed (an objection's pause), a film does not go back to its
    last frame published: what was withheld is not read again after the restart."""
    path = videos.write("a.mp4", frames=100)  # 4 s
    control = CameraControl(CameraDirectives(analyse=False, sample_fps=5, cause="objection_pause"))
    config = CameraConfig(id="parvis", url=str(path), sample_fps=5, realtime=False)
    positions = SavedPositions(tmp_path)
    source = PyAVCameraSource(config, control=control, positions=positions)
    async with contextlib.aclosing(source.frames()) as frames:
        assert [frame async for frame in frames] == []
    # The position passed once per second of the stretch withheld, then the end.
    assert [(p.media_s, p.finished) for p in positions.saved] == [
        (0.0, False),
        (1.0, False),
        (2.0, False),
        (3.0, False),
        (4.0, True),
    ]

    # Killed at 2 s of the pause, started again once it has ended: the film goes on from there.
    positions.save("parvis", positions.saved[2])
    resumed = await play(path, tmp_path)
    assert [videos.index_of(f.pixels) for f in resumed.frames] == list(range(55, 100, 5))
