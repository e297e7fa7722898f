"""A running ingest follows the policy bucket of a secured nats-server (ingest connects as its own user, the
policy is written as the registry's user): masks are blank on the frames published to FRAMES, a pause
stops publishing until it ends, the policy's sampling rate applies, and without a readable policy
nothing is published and /readyz says why."""

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import numpy as np
import pytest

from vigie_core.policy import PolicySettings
from vigie_embedded.nats import EmbeddedNats
from vigie_embedded.policies import PolicyBucketWriter, camera_policy
from vigie_embedded.testing import ServiceConnections, following, running_service
from vigie_ingest.service import serve
from vigie_ingest.settings import IngestSettings
from vigie_proto.v1.frames_pb2 import Frame

pytestmark = pytest.mark.integration

LEFT_HALF = [(0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)]


@dataclass
class PublishedFrames:
    """Every frame published for the camera, as (capture time, arrival time, pixels)."""

    frames: list[tuple[float, float, np.ndarray]] = field(default_factory=list)

    def since(self, moment: float) -> list[tuple[float, float, np.ndarray]]:
        return [f for f in self.frames if f[1] >= moment]


@pytest.fixture
async def published(as_service: ServiceConnections) -> AsyncIterator[PublishedFrames]:
    """The frames ingest publishes, as inference fetches them from FRAMES, with their times of arrival."""
    frames = PublishedFrames()

    def on_frame(data: bytes) -> None:
        frame = Frame.FromString(data)
        pixels = np.frombuffer(frame.pixels, np.uint8).reshape(frame.height, frame.width, 3)
        frames.frames.append((frame.captured_at.ToNanoseconds() / 1e9, time.time(), pixels))

    async with following(await as_service.js("inference"), "FRAMES", "vigie.frames.>", on_frame):
        yield frames


def ingest_settings(server: EmbeddedNats, camera_url: str, **policy: object) -> IngestSettings:
    credentials = server.credentials("ingest")
    return IngestSettings(
        nats={"url": server.url, "user": credentials.user, "password": credentials.password},
        cameras=[{"id": "parvis", "url": camera_url, "sample_fps": 5}],
        live={"open_timeout_s": 2, "backoff_initial_s": 0.2, "backoff_max_s": 1},
        policy=PolicySettings.model_validate(policy),
    )


async def registry_writer(server: EmbeddedNats) -> PolicyBucketWriter:
    credentials = server.credentials("registry")
    return await PolicyBucketWriter.open(server.url, credentials.user, credentials.password)


async def until(condition, within_s: float = 10) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_masks_pauses_and_sampling_reach_a_running_ingest(
    secured_nats_server: EmbeddedNats, published: PublishedFrames, mjpeg_server
) -> None:
    writer = await registry_writer(secured_nats_server)
    await writer.put(camera_policy("parvis", masks=[LEFT_HALF]))
    try:
        async with running_service("ingest", ingest_settings(secured_nats_server, mjpeg_server.url), serve):
            await until(lambda: len(published.frames) >= 10)
            # The mask: the left half of every published frame is black, the right half is the picture.
            for _, _, pixels in published.frames:
                width = pixels.shape[1]
                assert not pixels[:, : width // 2 - 1].any()
                assert pixels[:, width // 2 + 2 :].any()

            # An objection: no frame is published from the moment the pause is written until it ends.
            paused_at = time.time()
            until_s = paused_at + 2.0
            await writer.put(camera_policy("parvis", version=2, masks=[LEFT_HALF], paused_until=until_s))
            await asyncio.sleep(until_s - time.time() + 1.5)
            during = [f for f in published.since(paused_at + 0.3) if f[1] < until_s]
            assert during == [], "frames published during the pause"
            late = [f for f in published.frames if paused_at + 0.3 < f[0] < until_s]
            assert late == [], "frames captured during the pause"
            resumed = published.since(until_s)
            assert len(resumed) >= 4, "publishing resumed when the pause ended"
            assert all(not pixels[:, : pixels.shape[1] // 2 - 1].any() for _, _, pixels in resumed)

            # A mask removed and a lower rate: the whole picture, one frame per second.
            await writer.put(camera_policy("parvis", version=3, sample_fps=1))
            await asyncio.sleep(0.5)
            changed_at = time.time()
            await asyncio.sleep(3.0)
            recent = published.since(changed_at)
            assert 2 <= len(recent) <= 4, [f[0] for f in recent]
            assert all(pixels[:, : pixels.shape[1] // 2 - 1].any() for _, _, pixels in recent)
    finally:
        await writer.close()


@pytest.mark.provision(False)
async def test_without_a_readable_policy_nothing_is_published_and_readiness_says_why(
    secured_nats_server: EmbeddedNats, as_service: ServiceConnections, mjpeg_server
) -> None:
    # Every stream ingest uses, and no policy bucket.
    secured_nats_server.provision(only=["FRAMES", "AUDIT"])
    published: list[bytes] = []
    settings = ingest_settings(secured_nats_server, mjpeg_server.url, startup_wait_s=0.5)
    async with (
        following(await as_service.js("inference"), "FRAMES", "vigie.frames.>", published.append),
        running_service("ingest", settings, serve) as ingest,
        httpx.AsyncClient() as http,
    ):
        await asyncio.sleep(2.0)
        assert published == []
        ready = await http.get(f"{ingest.http_url}/readyz")
        assert ready.status_code == 503
        assert "bucket does not exist" in ready.json()["reasons"]["policy"]
        metrics = (await http.get(f"{ingest.http_url}/metrics")).text
        assert 'vigie_ingest_camera_analysed{camera="parvis"} 0.0' in metrics
        assert "vigie_policy_synced 0.0" in metrics
        withheld = ingest.registry.get_sample_value(
            "vigie_ingest_packets_withheld_total", {"camera": "parvis"}
        )
        assert (withheld or 0) > 10, "the stream is read, nothing of it decoded"

        # The provisioner creates the bucket, the registry writes it without this camera: still nothing (no
        # policy, no analysis).
        secured_nats_server.provision()
        writer = await registry_writer(secured_nats_server)
        try:
            await writer.put(camera_policy("other-camera"))
            await until(lambda: ingest.registry.get_sample_value("vigie_policy_synced") == 1)
            await asyncio.sleep(1.0)
            assert published == []
            assert (await http.get(f"{ingest.http_url}/readyz")).status_code == 200
            # Its policy arrives: analysed from then on, without a restart.
            await writer.put(camera_policy("parvis"))
            await until(lambda: len(published) >= 3)
        finally:
            await writer.close()
