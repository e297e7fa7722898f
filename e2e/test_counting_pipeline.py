"""End to end: the sample video through ingest → inference (real Triton) → anonymiser → EVENTS."""

import asyncio
from pathlib import Path

import nats
import pytest
from nats.js.api import ConsumerConfig, DeliverPolicy

from vigie_anonymiser import CameraGeometryConfig, LineConfig, ZoneConfig
from vigie_anonymiser.service import serve as serve_anonymiser
from vigie_anonymiser.settings import AnonymiserSettings
from vigie_core.policy import PolicySettings
from vigie_embedded.nats import EmbeddedNats
from vigie_embedded.testing import running_service
from vigie_embedded.triton import EmbeddedTriton
from vigie_inference.service import serve as serve_inference
from vigie_inference.settings import InferenceSettings
from vigie_ingest.camera import CameraConfig
from vigie_ingest.service import serve as serve_ingest
from vigie_ingest.settings import IngestSettings
from vigie_proto.v1.events_pb2 import WindowReport

# No registry in this test: the static configuration only (vigie_core.policy).
STATIC_ONLY = PolicySettings(enabled=False)

# FRAMES keeps the film's frames while they wait for inference (seconds in production).
pytestmark = [pytest.mark.integration, pytest.mark.provision(frames_max_age_s=300)]

# The film is shot from a tram driving down the street: people and vehicles drift outwards from the
# middle of the picture, across these lines.
MARKET_STREET = CameraGeometryConfig(
    id="market-street",
    lines=[
        LineConfig(id="left", start=(0.35, 0.3), end=(0.35, 1.0)),
        LineConfig(id="right", start=(0.65, 0.3), end=(0.65, 1.0)),
        LineConfig(id="low", start=(0.0, 0.8), end=(1.0, 0.8)),
    ],
    zones=[ZoneConfig(id="street", polygon=[(0.2, 0.4), (0.8, 0.4), (0.95, 1.0), (0.05, 1.0)])],
)


async def test_the_sample_video_gives_line_crossings(
    nats_server: EmbeddedNats, audit_stream: EmbeddedNats, triton_server: EmbeddedTriton, sample_video: Path
) -> None:
    camera = CameraConfig(id="market-street", url=str(sample_video), sample_fps=2, realtime=False)
    ingest = IngestSettings(
        nats={"url": nats_server.url}, cameras=[camera], frames_max_age_s=300, policy=STATIC_ONLY
    )
    inference = InferenceSettings(
        nats={"url": nats_server.url}, triton_url=triton_server.grpc_url, policy=STATIC_ONLY
    )
    anonymiser = AnonymiserSettings(
        nats={"url": nats_server.url}, cameras=[MARKET_STREET], policy=STATIC_ONLY
    )
    # Exits run in reverse: ingest, then inference, then the anonymiser, which reports what it holds.
    async with (
        running_service("anonymiser", anonymiser, serve_anonymiser) as counting,
        running_service("inference", inference, serve_inference),
        running_service("ingest", ingest, serve_ingest) as reading,
    ):
        deadline = asyncio.get_running_loop().time() + 240
        while True:
            published = reading.registry.get_sample_value(
                "vigie_ingest_frames_published_total", {"camera": "market-street"}
            )
            finished = reading.registry.get_sample_value(
                "vigie_ingest_camera_state", {"camera": "market-street", "state": "finished"}
            )
            frames = counting.registry.get_sample_value(
                "vigie_anonymiser_frames_total", {"camera": "market-street"}
            )
            if finished == 1 and published and frames and frames >= published:
                break
            assert asyncio.get_running_loop().time() < deadline, "the video was not counted in time"
            await asyncio.sleep(0.2)
    # The anonymiser stopped: it reported the window part it held.
    client = await nats.connect(nats_server.url)
    js = client.jetstream()
    subscription = await js.pull_subscribe(
        "vigie.events.market-street", stream="EVENTS", config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
    )
    reports = [WindowReport.FromString(m.data) for m in await subscription.fetch(10, timeout=5)]
    await client.close()
    assert reports
    assert sum(r.frames for r in reports) >= published
    assert sum(c.count for r in reports for c in r.crossings) > 0
    assert sum(r.covered_seconds for r in reports) > 50  # about 60 s of film at 2 frames/s
    assert {m for r in reports for m in r.models} == {"yolov4_tiny/latest"}
