"""The ingest service's edge: cameras in, frames published to the FRAMES stream.

Policy (``vigie_core.policy``, unless ``policy.enabled`` is false): the service reads the policy bucket
before it starts its cameras, then follows it (`PolicyGate`): a camera that may not be analysed stays
connected but nothing of it is decoded or published; masks are blanked in the decoding thread and checked
again before publishing; the policy's sampling rate replaces the configured one.

Cameras: the static ``cameras`` of the settings and, with ``sources.enabled``, the cameras the registry
declares (the bucket ``vigie-sources``, :mod:`vigie_ingest.registry_sources`), started, replaced and
stopped live as the bucket changes (:mod:`vigie_ingest.registry_cameras`), read after the policy.

Positions (with ``state_dir``): after each frame FRAMES accepted, the service saves where its file camera
stands (:mod:`vigie_ingest.file_position`), and a file camera's first opening after a restart goes on from
there instead of analysing the film again.

Audit: at start-up the configuration in force (its digest without credentials, the cameras read); every
change of the cameras read from the registry; every operation the NATS server refuses to the service
(``vigie_core.audit.connect_with_audit``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

import nats.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from opentelemetry import trace
from prometheus_client import Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from vigie_core.audit import (
    AuditPublisher,
    AuditUnavailableError,
    connect_with_audit,
    record_configuration,
)
from vigie_core.lifecycle import ServiceRuntime
from vigie_core.messaging import jetstream_api, jetstream_for, stream_guard, trace_headers
from vigie_core.policy import PolicyWatcher, policy_view
from vigie_core.streams import FramesStream, frames_subject
from vigie_core.tasks import cancel_and_wait
from vigie_ingest.camera import CameraConfig
from vigie_ingest.camera_set import CameraSet
from vigie_ingest.directives import CameraControl
from vigie_ingest.file_position import FilePositions
from vigie_ingest.frame import CapturedFrame
from vigie_ingest.policy_gate import PolicyGate
from vigie_ingest.pyav_source import PyAVCameraSource
from vigie_ingest.registry_cameras import RegistryCameras
from vigie_ingest.registry_sources import (
    SOURCES_BUCKET,
    SealedUrlOpener,
    SourcesWatcher,
    decode_source,
    in_shard,
)
from vigie_ingest.settings import IngestSettings
from vigie_ingest.source import CameraState, FrameSource
from vigie_proto.v1.frames_pb2 import PIXEL_FORMAT_RGB24, Frame

logger = logging.getLogger("vigie.ingest")


class CameraStatusCollector(Collector):
    """Prometheus metrics read from the cameras' own status at scrape time."""

    def __init__(self, cameras: CameraSet, gate: PolicyGate) -> None:
        self._cameras = cameras
        self._gate = gate

    def collect(self) -> Iterator[Metric]:
        counters = {
            "frames_decoded": ("Frames decoded", "frames_decoded"),
            "frames_kept": ("Frames kept by sampling and resized", "frames_kept"),
            "packets_skipped": ("Packets dropped before decoding (intra-only codecs)", "packets_skipped"),
            "frames_dropped": ("Kept frames dropped because publishing was behind", "frames_dropped"),
            "decode_errors": ("Packets that failed to decode", "decode_errors"),
            "connections": ("Connections or file openings", "connections"),
            "packets_withheld": (
                "Packets read and dropped undecoded: the camera may not be analysed now (policy)",
                "packets_withheld",
            ),
        }
        statuses = self._cameras.statuses()
        for name, (documentation, field) in counters.items():
            family = CounterMetricFamily(f"vigie_ingest_{name}", documentation, labels=["camera"])
            for camera, status in statuses.items():
                family.add_metric([camera], getattr(status, field))
            yield family
        opened = GaugeMetricFamily(
            "vigie_ingest_camera_opened_timestamp_seconds",
            "When the camera's source was opened (Unix seconds): for a file, the origin of its frames' "
            "capture times; for a live source, its last connection",
            labels=["camera"],
        )
        for camera, status in statuses.items():
            if status.opened_at is not None:
                opened.add_metric([camera], status.opened_at.timestamp())
        yield opened
        state = GaugeMetricFamily(
            "vigie_ingest_camera_state", "1 for the camera's current state", labels=["camera", "state"]
        )
        for camera, status in statuses.items():
            for value in CameraState:
                state.add_metric([camera, value.value], 1.0 if status.state == value else 0.0)
        yield state
        directives = self._gate.directives()
        analysed = GaugeMetricFamily(
            "vigie_ingest_camera_analysed",
            "1 while the camera may be analysed (policy); 0: nothing of it is decoded or published",
            labels=["camera"],
        )
        masks = GaugeMetricFamily(
            "vigie_ingest_camera_masks", "Privacy masks blanked on the camera's frames", labels=["camera"]
        )
        for camera, directive in directives.items():
            analysed.add_metric([camera], 1.0 if directive.analyse else 0.0)
            masks.add_metric([camera], float(len(directive.masks)))
        yield analysed
        yield masks


# How long a frame waits for FRAMES' acknowledgement before it is counted lost.
_PUBLISH_TIMEOUT_S = 2.0


class FramePublisher:
    """Publishes the frames the policy gate admits (with every mask in force) to FRAMES; with
    ``positions``, a file camera's position is saved once FRAMES has accepted its frame."""

    def __init__(
        self,
        js: JetStreamContext,
        runtime: ServiceRuntime,
        gate: PolicyGate,
        positions: FilePositions | None = None,
    ) -> None:
        self._js = js
        self._gate = gate
        self._positions = positions
        self._tracer = runtime.tracer
        self._published = Counter(
            "vigie_ingest_frames_published",
            "Frames published to FRAMES",
            ["camera"],
            registry=runtime.registry,
        )
        self._unpublished = Counter(
            "vigie_ingest_frames_unpublished",
            "Frames FRAMES did not store (the broker away): lost, and missing from the coverage",
            ["camera"],
            registry=runtime.registry,
        )
        self._lost_in_a_row = 0

    async def __call__(self, kept: CapturedFrame) -> None:
        captured = self._gate.admit(kept)
        if captured is None:
            return
        height, width = captured.pixels.shape[:2]
        frame = Frame(
            camera_id=captured.camera_id,
            run_id=captured.run_id,
            sequence=captured.sequence,
            source_width=captured.source_width,
            source_height=captured.source_height,
            width=width,
            height=height,
            pixel_format=PIXEL_FORMAT_RGB24,
            pixels=captured.pixels.tobytes(),
        )
        frame.captured_at.FromDatetime(captured.captured_at)
        with self._tracer.start_as_current_span(
            "ingest.publish",
            kind=trace.SpanKind.PRODUCER,
            attributes={"vigie.camera": captured.camera_id, "vigie.sequence": captured.sequence},
        ):
            try:
                await self._js.publish(
                    frames_subject(captured.camera_id),
                    frame.SerializeToString(),
                    headers=trace_headers(),
                    timeout=_PUBLISH_TIMEOUT_S,
                )
            except (nats.errors.Error, OSError, TimeoutError) as error:
                # The broker away (restarting, FRAMES not provisioned again yet): this frame is lost, not
                # retried (the camera goes on; a later frame is worth more than this one), and the gap
                # shows in the anonymiser's coverage.
                self._unpublished.labels(captured.camera_id).inc()
                self._lost_in_a_row += 1
                if self._lost_in_a_row in (1, 100) or self._lost_in_a_row % 1000 == 0:
                    logger.warning(
                        "camera %s: frames not stored in FRAMES (%d in a row): %s",
                        captured.camera_id,
                        self._lost_in_a_row,
                        type(error).__name__,
                    )
                return
        if self._lost_in_a_row:
            logger.info("FRAMES stores frames again, after %d lost", self._lost_in_a_row)
            self._lost_in_a_row = 0
        self._published.labels(captured.camera_id).inc()
        if self._positions is not None and captured.position is not None:
            # Only now: the record says the last frame really published (a frame lost above is not).
            self._positions.save(captured.camera_id, captured.position)


async def record_start(audit: AuditPublisher, settings: IngestSettings) -> None:
    """The configuration the service starts with, in the journal: the cameras read, the digest of the
    settings with every URL's password masked, never a URL itself."""
    try:
        await record_configuration(
            audit,
            settings,
            camera_ids=[camera.id for camera in settings.cameras],
            details={
                "cameras": str(len(settings.cameras)),
                "frames_partitions": str(settings.frames_partitions),
                "target_size": str(settings.target_size),
                "registry_sources": (
                    f"shard {settings.sources.shard_index}/{settings.sources.shard_count}"
                    if settings.sources.enabled
                    else "off"
                ),
            },
        )
    except AuditUnavailableError as error:  # cannot happen with an empty buffer; said, not hidden
        logger.error("the configuration in force could not be audited: %s", error)


async def serve(runtime: ServiceRuntime) -> None:
    """The service's body: read every camera until asked to stop."""
    settings = runtime.settings
    assert isinstance(settings, IngestSettings)
    nc, audit = await connect_with_audit(runtime, settings.nats, settings.audit, "vigie-ingest")
    await record_start(audit, settings)
    # FRAMES is in inference's account: ingest publishes into it through an import and looks it up under
    # that account's API prefix (vigie_core.accounts).
    js = jetstream_for(nc, settings.nats, "ingest", "FRAMES")
    # The provisioner creates FRAMES (vigie_core.provision); ingest waits for it and keeps checking it,
    # above all that it copies from nowhere. Its own sizes only say what it expects (a difference is logged).
    await stream_guard(runtime, audit).bind(
        js, FramesStream(settings.frames_partitions, settings.frames_max_age_s).config()
    )
    runtime.readiness.add("nats", lambda: None if nc.is_connected else "not connected to NATS")
    # Read the policy before opening any camera, so that no frame is decoded before it is known.
    policies = await policy_view(runtime, nc, settings.policy)
    gate = PolicyGate(settings.cameras, policies, runtime.registry)
    gate.refresh()
    positions = (
        FilePositions(settings.state_dir, runtime.registry) if settings.state_dir is not None else None
    )
    cameras = CameraSet.from_configs(
        settings.cameras,
        target_size=settings.target_size,
        live_policy=settings.live,
        thread_type=settings.decoder_threads,
        controls=gate.controls,
        positions=positions,
    )
    runtime.registry.register(CameraStatusCollector(cameras, gate))
    logger.info("reading %d camera(s): %s", len(settings.cameras), ", ".join(cameras.camera_ids) or "none")
    sources = (
        await registry_cameras(runtime, nc, audit, cameras, gate, positions)
        if settings.sources.enabled
        else None
    )

    runtime.readiness.mark_started()
    following = (
        asyncio.create_task(follow_policy(gate, policies, runtime.stop_requested), name="ingest-policy")
        if policies is not None
        else None
    )
    following_sources = (
        asyncio.create_task(sources[0].follow(sources[1], runtime.stop_requested), name="ingest-sources")
        if sources is not None
        else None
    )
    reading = asyncio.create_task(
        cameras.run(FramePublisher(js, runtime, gate, positions), keep_open=settings.sources.enabled)
    )
    stopping = asyncio.create_task(runtime.stop_requested.wait())
    try:
        await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if reading.done():
            reading.result()  # a publishing failure stops the service with its error
            logger.info("every camera has ended; serving health until stopped")
            await stopping
        else:
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)
    finally:
        stopping.cancel()
        for task in (following, following_sources):
            await cancel_and_wait(task)


async def registry_cameras(
    runtime: ServiceRuntime,
    nc: Client,
    audit: AuditPublisher,
    cameras: CameraSet,
    gate: PolicyGate,
    positions: FilePositions | None = None,
) -> tuple[RegistryCameras, SourcesWatcher]:
    """The cameras the registry declares: the watcher of the sources bucket (readiness check ``sources``,
    closed with the runtime) and what turns its views into cameras read, with the first view applied (or,
    after ``sources.startup_wait_s``, none yet: the cameras start as the bucket is read)."""
    settings = runtime.settings
    assert isinstance(settings, IngestSettings)
    options = settings.sources
    assert options.source_key is not None
    opener = SealedUrlOpener(options.source_key.get_secret_value())
    watcher = SourcesWatcher(
        nc,
        lambda key, value: decode_source(key, value, opener, options),
        api=jetstream_api(settings.nats, "ingest", f"KV_{SOURCES_BUCKET}"),
        registry=runtime.registry,
        mine=lambda key: in_shard(key, options.shard_index, options.shard_count),
    )
    await watcher.start()
    runtime.exit_stack.push_async_callback(watcher.close)
    runtime.readiness.add("sources", watcher.problem)

    def make_source(config: CameraConfig, control: CameraControl) -> FrameSource:
        return PyAVCameraSource(
            config,
            target_size=settings.target_size,
            live_policy=settings.live,
            thread_type=settings.decoder_threads,
            control=control,
            positions=positions,
        )

    follower = RegistryCameras(
        cameras,
        gate,
        options,
        make_source=make_source,
        static=settings.cameras,
        audit=audit,
        registry=runtime.registry,
    )
    try:
        await watcher.wait_for(lambda: watcher.entries() is not None, options.startup_wait_s)
    except TimeoutError:
        logger.error(
            "the sources bucket %s could not be read within %.1f s (%s): the registry's cameras start when "
            "it is",
            SOURCES_BUCKET,
            options.startup_wait_s,
            watcher.problem(),
        )
    else:
        entries = watcher.entries()
        assert entries is not None
        await follower.apply(entries)
    logger.info(
        "following the registry's cameras (bucket %s, shard %d of %d): %d read",
        SOURCES_BUCKET,
        options.shard_index,
        options.shard_count,
        len(follower.reading),
    )
    return follower, watcher


async def follow_policy(gate: PolicyGate, watcher: PolicyWatcher, stop: asyncio.Event) -> None:
    """Apply every change of the policy to the cameras' controls as it comes, and the end of a pause
    (which comes without a message) within the watcher's check interval."""
    while not stop.is_set():
        gate.refresh()
        with contextlib.suppress(TimeoutError):
            await watcher.wait_until(lambda: stop.is_set() or gate.stale(), timeout_s=5.0)
