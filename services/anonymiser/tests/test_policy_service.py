"""A running anonymiser follows the policy bucket of a secured nats-server (it connects as its own user; the
policy is written as the registry's user): the policy's lines and window are counted with, a geometry
change applies live, tracks captured during a pause are dropped and the pause is missing from the
coverage, and an anonymiser that cannot read the policy counts nothing and says so."""

import asyncio
import time
from collections.abc import Callable

import httpx
import pytest
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from vigie_anonymiser import CameraGeometryConfig, LineConfig
from vigie_anonymiser.service import serve
from vigie_anonymiser.settings import AnonymiserSettings
from vigie_anonymiser.synthetic import FrameBuilder, to_track_frame
from vigie_core.lifecycle import ServiceRuntime
from vigie_core.policy import PolicySettings
from vigie_core.provision import ProvisionSettings, provisioned_streams
from vigie_core.streams import tracks_subject
from vigie_embedded.nats import EmbeddedNats
from vigie_embedded.policies import PolicyBucketWriter, camera_policy
from vigie_embedded.testing import ServiceConnections, running_service
from vigie_proto.v1.events_pb2 import REPORT_CLOSURE_GEOMETRY_CHANGED, WindowReport

pytestmark = pytest.mark.integration

WINDOW_S = 60
JUSTIFICATION = "integration test of the policy: one-minute windows"
ACROSS = {"across": ((0.0, 0.5), (1.0, 0.5))}
LOWER = {"lower": ((0.0, 0.8), (1.0, 0.8))}


def settings(server: EmbeddedNats, *cameras: CameraGeometryConfig, **policy: object) -> AnonymiserSettings:
    credentials = server.credentials("anonymiser")
    return AnonymiserSettings(
        nats={"url": server.url, "user": credentials.user, "password": credentials.password},
        cameras=list(cameras),
        camera_idle_s=600,
        # Gaps of up to 10 s count as covered here: only the policy's pauses may leave time out.
        counting={"coverage_max_gap_s": 10},
        policy=PolicySettings.model_validate(policy),
    )


async def registry_writer(server: EmbeddedNats) -> PolicyBucketWriter:
    credentials = server.credentials("registry")
    return await PolicyBucketWriter.open(server.url, credentials.user, credentials.password)


def policy(version: int, lines: dict, **fields: object):  # type: ignore[no-untyped-def,type-arg]
    return camera_policy(
        "cam",
        version=version,
        lines=lines,
        reporting_window_s=WINDOW_S,
        justification=JUSTIFICATION,
        **fields,
    )


def metric(runtime: ServiceRuntime, name: str, **labels: str) -> float:
    return runtime.registry.get_sample_value(name, labels) or 0.0


async def until(condition: Callable[[], bool], within_s: float = 10) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def walk(js: JetStreamContext, frames: FrameBuilder, walker: int, steps: int = 10) -> None:
    """One person walking down the middle of the picture (y from 0.3 to 0.93), a frame every 0.2 s of
    capture time, each frame captured now (as a live camera's)."""
    for i in range(steps):
        frames.start = time.time() - frames.sequence / frames.fps
        observation = frames.frame({walker: (0.5, 0.3 + 0.07 * i)})
        await js.publish(tracks_subject("cam"), to_track_frame(observation).SerializeToString())
        await asyncio.sleep(0.2)


async def clear_of_a_window_end(margin_s: float) -> None:
    """Wait, if need be, until no reporting window ends within ``margin_s`` (windows follow the wall clock,
    and the frames are captured now)."""
    remaining = WINDOW_S - time.time() % WINDOW_S
    if remaining < margin_s:
        await asyncio.sleep(remaining + 0.2)


async def reports(js: JetStreamContext) -> list[WindowReport]:
    info = await js.stream_info("EVENTS")
    if not info.state.messages:
        return []
    subscription = await js.pull_subscribe(
        "vigie.events.>", stream="EVENTS", config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
    )
    messages = await subscription.fetch(info.state.messages, timeout=5)
    await subscription.unsubscribe()
    return [WindowReport.FromString(m.data) for m in messages]


def crossings(found: list[WindowReport]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for report in found:
        for crossing in report.crossings:
            totals[crossing.line_id] = totals.get(crossing.line_id, 0) + crossing.count
    return totals


async def test_geometry_and_pauses_reach_a_running_anonymiser(
    secured_nats_server: EmbeddedNats, as_service: ServiceConnections
) -> None:
    # Tracks published as inference does, reports read as the aggregation does.
    js, aggregation = await as_service.js("inference"), await as_service.js("aggregation")
    writer = await registry_writer(secured_nats_server)
    await writer.put(policy(1, ACROSS))
    frames = FrameBuilder()
    try:
        # No camera in the settings: the registry's policy alone says what is counted.
        async with running_service("anonymiser", settings(secured_nats_server), serve) as anonymiser:
            # The first walker and the line's move in one window (a window ending between them would report
            # the first crossing as the window's, not as the old geometry's).
            await clear_of_a_window_end(margin_s=8.0)
            await walk(js, frames, 1)
            await until(lambda: metric(anonymiser, "vigie_anonymiser_frames_total", camera="cam") == 10)

            # The line is moved in the registry: the part counted with the old one is reported.
            await writer.put(policy(2, LOWER))
            await until(
                lambda: (
                    metric(
                        anonymiser,
                        "vigie_anonymiser_reports_published_total",
                        camera="cam",
                        closed_by="geometry_changed",
                    )
                    == 1
                )
            )
            walked = time.time()
            await walk(js, frames, 2)
            await until(lambda: metric(anonymiser, "vigie_anonymiser_frames_total", camera="cam") == 20)

            # An objection for 2.5 s: what is captured meanwhile is not counted, nor covered.
            pause_start = time.time()
            await writer.put(policy(3, LOWER, issued_at=pause_start, paused_until=pause_start + 2.5))
            await asyncio.sleep(0.3)
            await walk(js, frames, 3)  # 2 s, all within the pause
            await until(
                lambda: (
                    metric(anonymiser, "vigie_anonymiser_frames_dropped_total", reason="objection_pause")
                    == 10
                )
            )
            await asyncio.sleep(max(0.0, pause_start + 2.6 - time.time()))
            await walk(js, frames, 4)
            await until(lambda: metric(anonymiser, "vigie_anonymiser_frames_total", camera="cam") == 30)
            ended = time.time()
        found = await reports(aggregation)
    finally:
        await writer.close()

    changed = [r for r in found if r.closed_by == REPORT_CLOSURE_GEOMETRY_CHANGED]
    assert len(changed) == 1
    assert list(changed[0].line_ids) == ["across"]
    assert crossings(changed) == {"across": 1}
    later = [r for r in found if r.closed_by != REPORT_CLOSURE_GEOMETRY_CHANGED]
    assert {tuple(r.line_ids) for r in later} == {("lower",)}
    assert all(r.window_seconds == WINDOW_S for r in found)
    # Walkers 2 and 4 crossed the lower line; walker 3, during the pause, was not counted.
    assert crossings(later) == {"lower": 2}
    # From walker 2 to walker 4, frames came at most 3 s apart (a gap coverage bridges here): without the
    # pause, about all of that stretch would be covered.
    covered = sum(r.covered_seconds for r in later)
    assert 2 * 1.8 - 0.5 <= covered <= (ended - walked) - 2.0, (covered, ended - walked)


@pytest.mark.provision(False)
async def test_an_anonymiser_that_cannot_read_the_policy_counts_nothing_and_says_so(
    secured_nats_server: EmbeddedNats, as_service: ServiceConnections
) -> None:
    # Tracks published as inference does, reports read as the aggregation does.
    js, aggregation = await as_service.js("inference"), await as_service.js("aggregation")
    # The streams, not the buckets.
    secured_nats_server.provision(only=[c.name or "" for c in provisioned_streams(ProvisionSettings())])
    static = CameraGeometryConfig(
        id="cam",
        reporting_window_s=WINDOW_S,
        reporting_window_justification=JUSTIFICATION,
        lines=[LineConfig(id="static", start=(0.0, 0.5), end=(1.0, 0.5))],
    )
    frames = FrameBuilder()
    service = settings(secured_nats_server, static, startup_wait_s=0.2)
    async with running_service("anonymiser", service, serve) as anonymiser, httpx.AsyncClient() as http:
        await walk(js, frames, 1, steps=5)
        reason = "policy_unavailable"
        await until(lambda: metric(anonymiser, "vigie_anonymiser_frames_dropped_total", reason=reason) == 5)
        assert metric(anonymiser, "vigie_anonymiser_frames_total", camera="cam") == 0
        ready = await http.get(f"{anonymiser.http_url}/readyz")
        assert ready.status_code == 503
        assert "policy" in ready.json()["reasons"]
        secured_nats_server.provision()  # the bucket, at last
        writer = await registry_writer(secured_nats_server)
        try:
            # The registry declares the camera without lines: the settings' line fills in.
            await writer.put(policy(1, {}))
            await until(lambda: metric(anonymiser, "vigie_policy_synced") == 1)
            await walk(js, frames, 2, steps=5)
            await until(lambda: metric(anonymiser, "vigie_anonymiser_frames_total", camera="cam") == 5)
        finally:
            await writer.close()
    found = await reports(aggregation)
    assert {tuple(r.line_ids) for r in found} == {("static",)}


async def test_a_broker_restart_is_waited_out_and_counting_resumes(
    secured_nats_server: EmbeddedNats, as_service: ServiceConnections
) -> None:
    """The broker is killed and comes back (TRACKS and its consumer lost, EVENTS and the policy on disk
    kept): the anonymiser does not exit, binds its consumer again, and both walkers are counted."""
    writer = await registry_writer(secured_nats_server)
    await writer.put(policy(1, ACROSS))
    await writer.close()
    frames = FrameBuilder()
    async with running_service("anonymiser", settings(secured_nats_server), serve) as anonymiser:
        await walk(await as_service.js("inference"), frames, 1)
        await until(lambda: metric(anonymiser, "vigie_anonymiser_frames_total", camera="cam") == 10)
        await asyncio.get_running_loop().run_in_executor(None, lambda: secured_nats_server.restart(kill=True))
        await asyncio.sleep(2.5)  # the clients reconnect by themselves
        await walk(await as_service.js("inference"), frames, 2)
        await until(lambda: metric(anonymiser, "vigie_anonymiser_frames_total", camera="cam") == 20)
        assert not anonymiser.stop_requested.is_set(), "the service went on, it did not exit"
    found = await reports(await as_service.js("aggregation"))
    assert crossings(found) == {"across": 2}
