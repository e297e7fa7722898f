"""The anonymiser service against a real nats-server: TRACKS in, EVENTS out, exactly once."""

import asyncio
import functools
import hashlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable

import nats
import pytest
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from vigie_anonymiser import (
    CameraGeometryConfig,
    ConfigGeometrySource,
    LineConfig,
    TrackObservation,
    ZoneConfig,
)
from vigie_anonymiser.service import DEADLETTER_SUBJECT, deadletter_headers, serve
from vigie_anonymiser.settings import AnonymiserSettings
from vigie_anonymiser.synthetic import T0, FrameBuilder, to_track_frame
from vigie_core.lifecycle import ServiceRuntime
from vigie_core.policy import PolicySettings
from vigie_core.streams import tracks_subject
from vigie_embedded.nats import EmbeddedNats
from vigie_embedded.testing import running_service
from vigie_proto.v1.events_pb2 import CROSSING_DIRECTION_LEFT_TO_RIGHT, WindowReport
from vigie_proto.v1.tracks_pb2 import Box, TrackedObject, TrackFrame

# No registry in this test: the static configuration only (vigie_core.policy).
STATIC_ONLY = PolicySettings(enabled=False)

pytestmark = pytest.mark.integration

CAMERA = CameraGeometryConfig(
    id="cam",
    lines=[LineConfig(id="h", start=(0.0, 0.5), end=(1.0, 0.5))],
    zones=[ZoneConfig(id="lower", polygon=[(0.0, 0.55), (1.0, 0.55), (1.0, 1.0), (0.0, 1.0)])],
)
WALKERS = 6


def scene() -> list[TrackObservation]:
    """WALKERS people walk down across the line (two of them in the next window), each then ending."""
    frames = FrameBuilder()
    observations = []
    for walker in range(WALKERS):
        if walker == WALKERS - 2:
            frames.sequence += 1200 * 5  # 20 minutes later: the next window
        observations += [frames.frame({walker: (0.5, 0.3 + 0.03 * i)}) for i in range(20)]
        observations.append(frames.frame(ended=[walker]))
    return observations


def settings(url: str) -> AnonymiserSettings:
    return AnonymiserSettings(nats={"url": url}, cameras=[CAMERA], camera_idle_s=600, policy=STATIC_ONLY)


async def publish(js: JetStreamContext, messages: Iterable[bytes], camera: str = "cam") -> None:
    for data in messages:
        await js.publish(tracks_subject(camera), data)


async def wait_for(condition: Callable[[], bool | Awaitable[bool]], what: str, within_s: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        result = condition()
        if result if isinstance(result, bool) else await result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def counted(runtime: ServiceRuntime, metric: str = "vigie_anonymiser_frames_total", **labels: str) -> float:
    """A metric of the service (by default, frames of camera "cam" counted)."""
    if metric == "vigie_anonymiser_frames_total" and not labels:
        labels = {"camera": "cam"}
    return runtime.registry.get_sample_value(metric, labels) or 0.0


async def events(js: JetStreamContext) -> list[tuple[WindowReport, bytes, dict[str, str]]]:
    """Every message on EVENTS, parsed."""
    info = await js.stream_info("EVENTS")
    if not info.state.messages:
        return []
    subscription = await js.pull_subscribe(
        "vigie.events.>", stream="EVENTS", config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
    )
    messages = await subscription.fetch(info.state.messages, timeout=5)
    await subscription.unsubscribe()
    return [(WindowReport.FromString(m.data), m.data, dict(m.headers or {})) for m in messages]


def crossings(reports: Iterable[WindowReport]) -> Counter[tuple[str, int]]:
    totals: Counter[tuple[str, int]] = Counter()
    for report in reports:
        for crossing in report.crossings:
            totals[(crossing.line_id, crossing.direction)] += crossing.count
    return totals


async def test_tracks_become_anonymous_window_reports_exactly_once(nats_server: EmbeddedNats) -> None:
    observations = scene()
    wire = [to_track_frame(o).SerializeToString() for o in observations]
    track_ids = {o.track_id for observation in observations for o in observation.objects}
    client = await nats.connect(nats_server.url)
    js = client.jetstream()
    half = len(wire) // 2
    # Every message twice: a redelivery or a republication must not count twice.
    await publish(js, [m for m in wire[:half] for _ in range(2)])

    async with running_service("anonymiser", settings(nats_server.url), serve) as first:
        await wait_for(lambda: counted(first) == half, "the first half to be counted")
        assert counted(first, "vigie_anonymiser_frames_dropped_total", reason="duplicate") == half
    # A restart mid-stream (mid-window): the first instance reported its part on the way out.
    await publish(js, wire[half:])
    async with running_service("anonymiser", settings(nats_server.url), serve) as second:
        await wait_for(lambda: counted(second) == len(wire) - half, "the second half to be counted")
    parts = await events(js)

    reports = [report for report, _, _ in parts]
    assert crossings(reports) == {("h", CROSSING_DIRECTION_LEFT_TO_RIGHT): WALKERS}
    closures = sorted(
        WindowReport.DESCRIPTOR.fields_by_name["closed_by"].enum_type.values_by_number[r.closed_by].name
        for r in reports
    )
    assert closures == [
        "REPORT_CLOSURE_SERVICE_STOPPING",
        "REPORT_CLOSURE_SERVICE_STOPPING",
        "REPORT_CLOSURE_WINDOW_ENDED",
    ]
    assert sum(r.frames for r in reports) == len(wire)
    dwell = sum(d.count for r in reports for d in r.dwell)
    assert dwell == WALKERS
    # Nothing that could single anyone out: no bytes anywhere, no track id in the raw messages, times
    # only as whole windows, and only the headers we mean.
    assert all(field.type != field.TYPE_BYTES for field in _all_fields(WindowReport.DESCRIPTOR))
    for report, data, headers in parts:
        assert not any(track_id in data for track_id in track_ids)
        assert report.window_start.nanos == 0
        assert report.window_start.seconds % report.window_seconds == 0
        assert report.window_start.seconds in (T0, T0 + 1200)
        assert headers["Nats-Msg-Id"] == report.report_id
        assert set(headers) <= {"Nats-Msg-Id", "traceparent", "tracestate"}
    assert len({r.report_id for r in reports}) == len(reports)

    # Replay: the consumer's position is lost (as if no acknowledgement had reached the server) and a
    # fresh instance gets all of TRACKS again. The cameras' checkpoints know every message already.
    await js.delete_consumer("TRACKS", "anonymiser-0")
    async with running_service("anonymiser", settings(nats_server.url), serve) as known:
        await wait_for(
            lambda: (
                counted(known, "vigie_anonymiser_frames_dropped_total", reason="duplicate")
                == len(wire) + half
            ),
            "the replay, recognised",
        )
    assert counted(known) == 0
    assert counted(known, "vigie_anonymiser_cameras_restored_total", outcome="restored") == 1
    assert len(await events(js)) == len(parts)
    # Without the checkpoints too, a fresh instance counts all of TRACKS again. Its parts start with the
    # same messages as the first instance's, so they carry the same ids and EVENTS drops them: no double
    # count.
    await js.delete_consumer("TRACKS", "anonymiser-0")
    await js.purge_stream("CHECKPOINT_ANONYMISER")
    async with running_service("anonymiser", settings(nats_server.url), serve) as replay:
        await wait_for(
            lambda: (
                counted(replay) + counted(replay, "vigie_anonymiser_frames_dropped_total", reason="duplicate")
                == len(wire) + half
            ),
            "the replay",
        )
    assert counted(replay, "vigie_anonymiser_reports_duplicate_total") >= 1
    replayed = [report for report, _, _ in await events(js)]
    assert crossings(replayed) == crossings(reports)
    await client.close()


def _all_fields(descriptor):  # type: ignore[no-untyped-def]
    for field in descriptor.fields:
        yield field
        if field.message_type is not None and field.message_type.full_name.startswith("vigie."):
            yield from _all_fields(field.message_type)


async def test_garbage_goes_to_the_dead_letter_subject_and_counting_goes_on(
    nats_server: EmbeddedNats, caplog: pytest.LogCaptureFixture
) -> None:
    client = await nats.connect(nats_server.url)
    js = client.jetstream()
    bad_box = TrackFrame(
        camera_id="cam",
        run_id="r",
        objects=[
            TrackedObject(track_id=b"\x01" * 16, object_class=1, box=Box(x1=0.5, y1=0.2, x2=0.3, y2=0.6))
        ],
    )
    bad_box.captured_at.FromSeconds(int(T0))
    await js.publish(tracks_subject("cam"), b"\x00garbage\xff")
    await js.publish(tracks_subject("cam"), bad_box.SerializeToString())
    frames = FrameBuilder()
    await publish(
        js, [to_track_frame(frames.frame({1: (0.5, 0.3 + 0.03 * i)})).SerializeToString() for i in range(20)]
    )
    with caplog.at_level(logging.ERROR, logger="vigie.anonymiser"):
        async with running_service("anonymiser", settings(nats_server.url), serve) as service:
            await wait_for(lambda: counted(service) == 20, "the good frames to be counted")
            assert counted(service, "vigie_anonymiser_messages_rejected_total", field="message") == 1
            assert counted(service, "vigie_anonymiser_messages_rejected_total", field="objects.box") == 1
    messages = [r.getMessage() for r in caplog.records]
    assert any("not a vigie.v1.TrackFrame" in m for m in messages)
    assert any("objects[0].box" in m and "x2 < x1" in m for m in messages)
    assert not any("0.3" in m or "0.5" in m for m in messages), "the box's coordinates are logged nowhere"
    # Set aside without the payload (track ids, boxes): its digest, size, field and reason only.
    dead = await js.pull_subscribe(DEADLETTER_SUBJECT, stream="DEADLETTER_ANONYMISER")
    kept = await dead.fetch(2, timeout=5)
    assert [m.data for m in kept] == [b"", b""]
    rejected = [b"\x00garbage\xff", bad_box.SerializeToString()]
    headers = [m.headers or {} for m in kept]
    assert [h["Vigie-Payload-SHA256"] for h in headers] == [hashlib.sha256(r).hexdigest() for r in rejected]
    assert [h["Vigie-Payload-Bytes"] for h in headers] == [str(len(r)) for r in rejected]
    assert [h["Vigie-Field"] for h in headers] == ["message", "objects.box"]
    assert [h["Vigie-Camera"] for h in headers] == ["cam", "cam"]
    assert headers[1]["Vigie-Reason"] == "objects[0].box: has x2 < x1 or y2 < y1"
    for h in headers:
        assert set(h) == {
            "Vigie-Payload-SHA256",
            "Vigie-Payload-Bytes",
            "Vigie-Field",
            "Vigie-Reason",
            "Vigie-Stream-Sequence",
            "Vigie-Camera",
            "Nats-Msg-Id",
        }
        assert "0.3" not in str(h)
        assert "0.5" not in str(h)
    reports = [report for report, _, _ in await events(js)]
    assert crossings(reports) == {("h", CROSSING_DIRECTION_LEFT_TO_RIGHT): 1}
    await client.close()


def test_a_dead_letter_names_only_a_valid_camera_and_keeps_no_position() -> None:
    headers = deadletter_headers(
        b"\x01" * 40, "vigie.tracks.0.cam-1", 7, "objects[3].box: bad", "objects[3].box"
    )
    assert headers["Vigie-Camera"] == "cam-1"
    assert headers["Vigie-Field"] == "objects.box"
    assert headers["Nats-Msg-Id"] == "tracks-7"
    odd = deadletter_headers(b"", "vigie.tracks.0.caf\u00e9", 8, "message: bad", "message")
    assert "Vigie-Camera" not in odd
    assert odd["Vigie-Payload-SHA256"] == hashlib.sha256(b"").hexdigest()


async def test_geometry_changes_apply_without_a_restart(nats_server: EmbeddedNats) -> None:
    client = await nats.connect(nats_server.url)
    js = client.jetstream()
    source = ConfigGeometrySource([CAMERA])
    frames = FrameBuilder()

    def walk(number: int) -> list[bytes]:
        return [
            to_track_frame(frames.frame({number: (0.5, 0.3 + 0.03 * i)})).SerializeToString()
            for i in range(20)
        ]

    async with running_service(
        "anonymiser", settings(nats_server.url), functools.partial(serve, geometry_source=source)
    ) as service:
        await publish(js, walk(1))
        await wait_for(lambda: counted(service) == 20, "the first walk")
        source.put(
            CAMERA.model_copy(update={"lines": [LineConfig(id="moved", start=(0.0, 0.6), end=(1.0, 0.6))]})
        )
        await wait_for(
            lambda: (
                counted(
                    service,
                    "vigie_anonymiser_reports_published_total",
                    camera="cam",
                    closed_by="geometry_changed",
                )
                == 1
            ),
            "the geometry change",
        )
        await publish(js, walk(2))
        await wait_for(lambda: counted(service) == 40, "the second walk")
        source.remove("cam")
        await wait_for(
            lambda: (
                counted(
                    service,
                    "vigie_anonymiser_reports_published_total",
                    camera="cam",
                    closed_by="camera_removed",
                )
                == 1
            ),
            "the removal",
        )
        await publish(js, walk(3))
        await wait_for(
            lambda: counted(service, "vigie_anonymiser_frames_dropped_total", reason="no_geometry") == 20,
            "frames of a removed camera",
        )
    reports = [report for report, _, _ in await events(js)]
    assert crossings(reports) == {
        ("h", CROSSING_DIRECTION_LEFT_TO_RIGHT): 1,
        ("moved", CROSSING_DIRECTION_LEFT_TO_RIGHT): 1,
    }
    assert len({r.geometry_version for r in reports}) == 2
    await client.close()
