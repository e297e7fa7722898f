"""A running ingest stopped in the middle of a film and started again with the same ``state_dir`` goes on
with the film where it was: the real service on a secured nats-server, the frames read from FRAMES as
inference reads them."""

import asyncio
import json
import time
from collections import defaultdict
from pathlib import Path

import pytest

from vigie_embedded.nats import EmbeddedNats
from vigie_embedded.testing import ServiceConnections, following, running_service
from vigie_ingest.service import serve
from vigie_ingest.settings import IngestSettings
from vigie_proto.v1.frames_pb2 import Frame

pytestmark = pytest.mark.integration


def media_s_saved(record: Path) -> float:
    try:
        return float(json.loads(record.read_bytes())["media_s"])
    except (FileNotFoundError, ValueError):
        return -1.0  # not written yet


async def until(condition, within_s: float = 10, every_s: float = 0.05) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(every_s)


async def test_a_restarted_ingest_goes_on_with_the_film_where_it_was(
    secured_nats_server: EmbeddedNats, as_service: ServiceConnections, sample_video: Path, tmp_path: Path
) -> None:
    credentials = secured_nats_server.credentials("ingest")
    state = tmp_path / "ingest-state"
    settings = IngestSettings(
        nats={"url": secured_nats_server.url, "user": credentials.user, "password": credentials.password},
        cameras=[{"id": "parvis", "url": str(sample_video), "sample_fps": 5}],  # in real time
        policy={"enabled": False},
        state_dir=state,
    )
    record = state / "parvis.file-position.json"
    async with following(
        await as_service.js("inference"), "FRAMES", "vigie.frames.>", Frame.FromString
    ) as frames:
        async with running_service("ingest", settings, serve) as first:
            # Stopped just after a frame's position was written, well before the next one is due (0.2 s).
            await until(lambda: media_s_saved(record) >= 1.0, every_s=0.005)
            saved_s = media_s_saved(record)
            first_opened = first.registry.get_sample_value(
                "vigie_ingest_camera_opened_timestamp_seconds", {"camera": "parvis"}
            )
        async with running_service("ingest", settings, serve) as second:
            await until(lambda: len({f.run_id for f in frames}) == 2 and len(frames) >= 12, within_s=20)
            resumed = second.registry.get_sample_value(
                "vigie_ingest_file_positions_found_total", {"camera": "parvis", "outcome": "resumed"}
            )
            second_opened = second.registry.get_sample_value(
                "vigie_ingest_camera_opened_timestamp_seconds", {"camera": "parvis"}
            )

    runs: dict[str, list[float]] = defaultdict(list)
    for frame in frames:
        runs[frame.run_id].append(frame.captured_at.ToNanoseconds() / 1e9)
    before, after = runs[frames[0].run_id], runs[frames[-1].run_id]
    assert len(runs) == 2
    assert resumed == 1
    # The same timeline: capture times from the first opening, media 0 at the same instant.
    assert first_opened == second_opened
    assert first_opened is not None
    assert before[-1] - first_opened == pytest.approx(saved_s, abs=1e-5)
    # The next frame after the last one published, none twice.
    assert 0 < after[0] - before[-1] <= 0.2 + 1e-3
    captured = before + after
    assert captured == sorted(captured)
    assert len(set(captured)) == len(captured)
