"""A real video through ingest → NATS JetStream → inference → Triton → TRACKS, all real components."""

import asyncio
import os
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import nats
import pytest
from prometheus_client.parser import text_string_to_metric_families

from vigie_core.policy import PolicySettings
from vigie_embedded.nats import EmbeddedNats
from vigie_embedded.testing import metric_privacy_problems, running_service
from vigie_embedded.triton import EmbeddedTriton
from vigie_inference.service import serve as serve_inference
from vigie_inference.settings import InferenceSettings
from vigie_ingest.camera import CameraConfig
from vigie_ingest.service import serve as serve_ingest
from vigie_ingest.settings import IngestSettings
from vigie_proto.v1.frames_pb2 import PIXEL_FORMAT_RGB24, Frame
from vigie_proto.v1.tracks_pb2 import OBJECT_CLASS_PERSON, TrackFrame

# No registry in this test: the static configuration only (vigie_core.policy).
STATIC_ONLY = PolicySettings(enabled=False)

# FRAMES keeps the film's frames while they wait for inference (seconds in production).
pytestmark = [pytest.mark.integration, pytest.mark.provision(frames_max_age_s=300)]


async def _metrics(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{url}/metrics")).text
    # Whatever the test reads, the page counts nothing a camera sees and names no client or source.
    assert metric_privacy_problems(text) == [], url
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _value(metrics: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, ls), v in metrics.items() if n == name and wanted <= ls)


async def _wait_for(condition: Callable[[], Awaitable[bool]], within_s: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def test_a_video_yields_tracks_of_people(
    nats_server: EmbeddedNats, audit_stream: EmbeddedNats, triton_server: EmbeddedTriton, sample_video: Path
) -> None:
    inference_settings = InferenceSettings(
        nats={"url": nats_server.url}, triton_url=triton_server.grpc_url, policy=STATIC_ONLY
    )
    ingest_settings = IngestSettings(
        nats={"url": nats_server.url},
        cameras=[CameraConfig(id="market-street", url=str(sample_video), sample_fps=2, realtime=False)],
        frames_max_age_s=300,
        policy=STATIC_ONLY,
        http={"port": 0},
    )
    received: list[TrackFrame] = []
    sizes: list[int] = []
    observer = await nats.connect(nats_server.url)

    async def on_tracks(msg) -> None:  # type: ignore[no-untyped-def]
        sizes.append(len(msg.data))
        received.append(TrackFrame.FromString(msg.data))

    await observer.subscribe("vigie.tracks.*", cb=on_tracks)
    async with (
        running_service("inference", inference_settings, serve_inference) as inference,
        running_service("ingest", ingest_settings, serve_ingest) as ingest,
    ):

        async def finished() -> bool:
            ingest_metrics = await _metrics(ingest.http_url)
            published = _value(ingest_metrics, "vigie_ingest_frames_published_total")
            state = _value(ingest_metrics, "vigie_ingest_camera_state", state="finished")
            analysed = {m.sequence for m in received if m.camera_id == "market-street"}
            return state == 1 and len(analysed) >= published > 0

        await _wait_for(finished, 240, "the whole video to be analysed")
        ingest_metrics = await _metrics(ingest.http_url)
        inference_metrics = await _metrics(inference.http_url)
    await observer.close()

    published = int(_value(ingest_metrics, "vigie_ingest_frames_published_total"))
    assert published >= 100, "60 s of video sampled at 2 frames/s"
    assert _value(inference_metrics, "vigie_inference_frames_total") == published
    # Every frame's tracks arrive once, in order.
    sequences = [m.sequence for m in received if m.camera_id == "market-street"]
    assert sorted(set(sequences)) == list(range(published))
    people = {o.track_id for m in received for o in m.objects if o.object_class == OBJECT_CLASS_PERSON}
    assert len(people) >= 5, f"the film shows many pedestrians, tracked {len(people)}"
    assert all(len(track_id) == 16 for track_id in people)
    # Ended ids never come back; boxes are normalised.
    ended_at = {tid: m.sequence for m in received for tid in m.ended_track_ids}
    for message in received:
        for obj in message.objects:
            assert message.sequence <= ended_at.get(obj.track_id, published), "an ended track reappeared"
            assert 0 <= obj.box.x1 <= obj.box.x2 <= 1
            assert 0 <= obj.box.y1 <= obj.box.y2 <= 1
    assert max(sizes) < 20_000, "TRACKS carries boxes, never pixels"
    # The people were on TRACKS; /metrics counted frames only (_metrics checks every page read).
    assert not any("track" in name and "seconds" not in name for name, _ in inference_metrics)


async def test_garbage_and_corrupt_input_give_clear_errors_and_no_crash(
    nats_server: EmbeddedNats,
    audit_stream: EmbeddedNats,
    triton_server: EmbeddedTriton,
    sample_video: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(os.urandom(200_000))
    inference_settings = InferenceSettings(
        nats={"url": nats_server.url}, triton_url=triton_server.grpc_url, policy=STATIC_ONLY
    )
    ingest_settings = IngestSettings(
        nats={"url": nats_server.url},
        cameras=[
            CameraConfig(id="broken", url=str(corrupt), sample_fps=1, realtime=False),
            CameraConfig(id="working", url=str(sample_video), sample_fps=0.5, realtime=False),
        ],
        frames_max_age_s=300,
        policy=STATIC_ONLY,
    )
    tracks: Counter[str] = Counter()
    observer = await nats.connect(nats_server.url)

    async def on_tracks(msg) -> None:  # type: ignore[no-untyped-def]
        tracks[TrackFrame.FromString(msg.data).camera_id] += 1

    await observer.subscribe("vigie.tracks.*", cb=on_tracks)
    async with (
        running_service("inference", inference_settings, serve_inference) as inference,
        running_service("ingest", ingest_settings, serve_ingest) as ingest,
    ):

        async def ready() -> bool:
            async with httpx.AsyncClient() as client:
                answers = [await client.get(f"{s.http_url}/readyz") for s in (ingest, inference)]
            return all(a.status_code == 200 for a in answers)

        await _wait_for(ready, 30, "both services to be ready")
        js = observer.jetstream()
        await js.publish("vigie.frames.intruder", b"\x00garbage\xff" * 10)
        wrong_size = Frame(
            camera_id="intruder", run_id="r", width=10, height=10, pixel_format=PIXEL_FORMAT_RGB24
        )
        wrong_size.pixels = b"\x00" * 7
        await js.publish("vigie.frames.intruder", wrong_size.SerializeToString())

        async def working_camera_done() -> bool:
            metrics = await _metrics(ingest.http_url)
            published = _value(metrics, "vigie_ingest_frames_published_total", camera="working")
            return (
                _value(metrics, "vigie_ingest_camera_state", camera="working", state="finished") == 1
                and tracks["working"] >= published > 0
            )

        await _wait_for(working_camera_done, 240, "the working camera to be analysed")
        ingest_metrics = await _metrics(ingest.http_url)
        inference_metrics = await _metrics(inference.http_url)
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"{inference.http_url}/readyz")).status_code == 200
    await observer.close()

    assert _value(ingest_metrics, "vigie_ingest_camera_state", camera="broken", state="failed") == 1
    assert _value(inference_metrics, "vigie_inference_frames_dropped_total", reason="invalid") == 2
    assert tracks["intruder"] == 0
    assert tracks["broken"] == 0
    messages = [r.getMessage() for r in caplog.records]
    assert any("camera 'broken'" in m for m in messages), "the corrupt camera is named in an error"
    assert any("not a vigie.v1.Frame message" in m for m in messages)
    assert any("pixels has 7 bytes" in m for m in messages)
