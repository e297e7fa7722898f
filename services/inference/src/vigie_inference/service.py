"""The inference service's edge: a JetStream pull consumer on one partition of FRAMES, Triton, and
the trackers, publishing to TRACKS.

Ordering. Each camera's frames land in one partition of FRAMES (the stream's subject transform hashes
the camera id), and each partition is consumed by exactly one replica through its own durable consumer
``inference-<partition>``: one replica, one fetch loop, one tracker per camera. Within a replica up to
``max_in_flight`` Triton requests overlap so the model never idles, but their results are applied to the
trackers strictly in the order the frames were fetched (a FIFO of pending requests). Frames that arrive
out of order anyway (a redelivery after a Triton failure) are dropped by the tracker's sequence check.

Policy (``vigie_core.policy``, unless ``policy.enabled`` is false). A frame is analysed only if its
camera's policy allows analysis at the frame's capture time: checked when the frame is fetched (before
Triton sees it) and again when its detections come back (a frame in flight when an objection arrives is
dropped there, never tracked). A dropped frame is acknowledged (it is not to be analysed later either),
counted in ``vigie_inference_frames_dropped_total{reason=<cause>}``, and its camera's tracks are ended at
once; the tracks of a camera that stops being analysable without sending frames (ingest stopped
publishing) are ended within the fetch interval. The service waits for a first read of the bucket at start
and then fails closed: while the policy cannot be read, no frame is analysed (``/readyz`` check
``policy``, ``vigie_policy_synced``). An analysed frame is tracked under the same policy
(:func:`.analysis.tracking_rules`): detections of classes it does not list are discarded before the
tracker, and no track lives longer than its ``track_max_seconds``.

Scene views (:mod:`.view_publisher`): a view request in a camera's policy is carried out by the replica
analysing the camera, from frames it may analyse, kept in memory while sampled; one SceneViewResult goes to
VIEWS, which inference publishes into and cannot read.

Audit (``vigie_core.audit``): the configuration in force at start-up (a digest, the partition); the model
and version that answer, at start-up and whenever another version answers (:mod:`.model_audit`); a frame
naming another camera than its subject (a boundary fault: dropped, never analysed); every operation the
NATS server refuses to the replica (a permission violation); each scene view published or refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from opentelemetry import trace
from prometheus_client import Counter, Gauge, Histogram

from vigie_core.audit import (
    AuditAction,
    AuditOutcome,
    AuditPublisher,
    AuditUnavailableError,
    connect_with_audit,
    record_configuration,
)
from vigie_core.lag import start_consumer_lag
from vigie_core.lifecycle import ServiceRuntime
from vigie_core.messaging import (
    DurablePull,
    StreamGuard,
    context_from_headers,
    jetstream_for,
    publish_patiently,
    stream_guard,
    trace_headers,
)
from vigie_core.policy import DECISION_CAUSES, AnalysisDecision, PolicyView, policy_view
from vigie_core.streams import (
    FRAMES_PREFIX,
    FramesStream,
    TracksStream,
    partition_filter,
    partitions_of,
    tracks_subject,
)
from vigie_inference.analysis import CameraTrackers, tracking_rules
from vigie_inference.detections import decode_detections
from vigie_inference.detector import Detector, DetectorError, DetectorOutput, ImageBatch
from vigie_inference.frames import (
    InvalidFrameError,
    MislabelledFrameError,
    camera_of_subject,
    is_camera_id,
    parse_frame,
)
from vigie_inference.letterbox import LetterboxTransform, input_shape, letterbox
from vigie_inference.model_audit import ServedModel
from vigie_inference.settings import InferenceSettings
from vigie_inference.tracker import TrackingRules
from vigie_inference.view_publisher import FaceDetector, ViewPublisher
from vigie_models import INPUT_SIZE
from vigie_proto.v1.frames_pb2 import Frame
from vigie_proto.v1.tracks_pb2 import TrackFrame

# Why a frame is not analysed: another camera's than its subject says (a boundary fault), not a frame,
# older than the last one analysed of its camera, lost with a failed request to Triton, or (the policy's
# causes) a camera that may not be analysed: paused by an objection, not active, no or unreadable policy,
# the policy bucket unreadable, outside an authorisation window.
POLICY_DROP_REASONS = DECISION_CAUSES[1:]
DROP_REASONS = ("mislabelled", "invalid", "out_of_order", "detector_error", *POLICY_DROP_REASONS)

logger = logging.getLogger("vigie.inference")

# How often to ask the detector which model version it serves while that is not known (an answer's
# version, recorded as it comes, may tell first).
_IDENTIFY_RETRY_S = 5.0


class InferenceMetrics:
    """Operational figures only: frames, latencies, drops by reason. Nothing here counts objects (tracks,
    detections, even those the policy discards, by class or not): with one camera per replica, any such
    figure scraped every few seconds is a head count of that camera finer than any reporting window and
    below the small-count threshold, which the statistics API would never publish."""

    def __init__(self, runtime: ServiceRuntime) -> None:
        registry = runtime.registry
        self.frames = Counter("vigie_inference_frames", "Frames analysed", ["camera"], registry=registry)
        self.dropped = Counter(
            "vigie_inference_frames_dropped",
            "Frames not analysed, by reason",
            ["reason"],
            registry=registry,
        )
        for reason in DROP_REASONS:  # known reasons show as 0 until they happen
            self.dropped.labels(reason)
        self.unpublished = Counter(
            "vigie_inference_results_unpublished",
            "Analysed frames whose result TRACKS never stored (the broker away longer than the retry allows)",
            registry=registry,
        )
        self.model_seconds = Histogram(
            "vigie_inference_model_seconds",
            "Time of one detector request",
            buckets=(0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28),
            registry=registry,
        )
        self.latency = Histogram(
            "vigie_inference_capture_to_tracks_seconds",
            "From a frame's capture to its tracks being published",
            buckets=(0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5),
            registry=registry,
        )
        # When a camera's latest frame was analysed (wall clock) and when it was captured: how promptly a
        # pause took effect is read from these (the objection's "under a second"), never from FRAMES.
        self.last_analysed = Gauge(
            "vigie_inference_last_frame_analysed_timestamp_seconds",
            "When the camera's latest analysed frame had its tracks published (Unix time)",
            ["camera"],
            registry=registry,
        )
        self.last_captured = Gauge(
            "vigie_inference_last_frame_captured_timestamp_seconds",
            "When the camera's latest analysed frame was captured (Unix time)",
            ["camera"],
            registry=registry,
        )


@dataclass(slots=True)
class PendingBatch:
    """Frames sent to the detector together, waiting for their turn at the trackers."""

    messages: list[Msg]
    frames: list[Frame]
    transforms: list[LetterboxTransform]
    result: asyncio.Task[DetectorOutput]


class InferencePipeline:
    def __init__(
        self,
        runtime: ServiceRuntime,
        settings: InferenceSettings,
        detector: Detector,
        nc: Client,
        audit: AuditPublisher,
        policies: PolicyView | None = None,
        faces: FaceDetector | None = None,
    ) -> None:
        self._runtime = runtime
        self._settings = settings
        self._detector = detector
        self._nc = nc
        self._audit = audit
        # None: policy.enabled is false, every frame of every camera is analysed.
        self._policies = policies
        self._metrics = InferenceMetrics(runtime)
        self._trackers = CameraTrackers(settings, model=detector.name)
        self._served = ServedModel(
            audit, partition=settings.partition, cameras=lambda: self._trackers.camera_ids
        )
        self._pending: asyncio.Queue[PendingBatch | None] = asyncio.Queue()
        self._slots = asyncio.Semaphore(settings.max_in_flight)
        self._tracer = runtime.tracer
        # Why the detector cannot analyse now (None when it can): gates fetching and readiness.
        self._detector_problem: str | None = None
        self._identify_again_at = 0.0
        # The pictures the model takes (ModelIdentity.input_multiple): None, the fixed square, until the
        # model says otherwise; the square again after a failure (every model takes it) until it says again.
        self._input_multiple: int | None = None
        self._identify_again = True
        # The registry's view requests come with the policy: none without it, or without a face detector.
        self._views = (
            ViewPublisher(
                runtime,
                settings.views,
                detector,
                faces,
                audit,
                input_multiple=lambda: self._input_multiple,
                iou_threshold=settings.iou_threshold,
            )
            if faces is not None and policies is not None and settings.views.enabled
            else None
        )

    async def run(self) -> None:
        settings = self._settings
        nc = self._nc
        # FRAMES is in inference's own account; TRACKS in the anonymiser's, which inference publishes into
        # through an import and looks up under that account's API prefix (vigie_core.accounts).
        js = nc.jetstream()
        tracks = jetstream_for(nc, settings.nats, "inference", "TRACKS")
        # VIEWS, in the registry's account, is only published into (the import of vigie.views.*): its
        # acknowledgement is the only answer inference gets from it, and it does not look it up.
        views = nc.jetstream()
        # The provisioner creates TRACKS, which inference writes, and FRAMES, which it reads: both checked,
        # at start and then continuously, above all that they copy from nowhere.
        guard = stream_guard(self._runtime, self._audit)
        await guard.bind(tracks, TracksStream(settings.tracks_partitions, settings.tracks_max_age_s).config())
        await wait_for_frames_stream(guard, js, settings.partitions)
        durable = f"inference-{settings.partition}"
        # Bound again by itself after a broker restart (FRAMES and its consumers live in memory).
        frames = DurablePull(
            js,
            stream="FRAMES",
            subject=partition_filter(FRAMES_PREFIX, settings.partition),
            readiness=self._runtime.readiness,
            stop=self._runtime.stop_requested,
            config=ConsumerConfig(
                durable_name=durable,
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=30,
                max_deliver=3,
                max_ack_pending=max(64, settings.max_batch * settings.max_in_flight * 4),
            ),
        )
        if not await frames.bind():
            return
        start_consumer_lag(self._runtime, js, "FRAMES", durable)
        self._detector_problem = await self._detector.ready()
        if self._detector_problem is None:
            await self._identify_model()
        self._runtime.readiness.add("detector", lambda: self._detector_problem)
        self._runtime.readiness.add("nats", lambda: None if nc.is_connected else "not connected to NATS")
        logger.info("consuming FRAMES partition %d of %d", settings.partition, settings.partitions)
        self._runtime.readiness.mark_started()

        publisher = asyncio.create_task(self._apply_results(js))
        try:
            while not self._runtime.stop_requested.is_set():
                if self._detector_problem is not None:
                    self._detector_problem = await self._detector.ready()
                    if self._detector_problem is not None:
                        logger.warning("waiting for the detector: %s", self._detector_problem)
                        await _sleep_or_stop(self._runtime.stop_requested, 1.0)
                        continue
                identify = self._served.current is None or self._identify_again
                if identify and time.monotonic() >= self._identify_again_at:
                    await self._identify_model()
                await self._end_forbidden(js)
                if self._views is not None and self._policies is not None:
                    self._views.check(views, self._policies)
                messages = await frames.fetch(settings.max_batch, timeout_s=0.25)
                if not messages:  # none came (or the broker is away: the puller waits and binds again)
                    for message in self._trackers.expire_idle(time.monotonic()):
                        await self._publish(js, message)
                    continue
                await self._submit(js, messages, views)
        finally:
            # Drain: let the requests in flight finish and their tracks be published and acked.
            await self._pending.put(None)
            await publisher
            for message in self._trackers.end_all():
                await self._publish(js, message)
            await frames.close()  # frames fetched by no one stay in the stream for the next replica
            if self._views is not None:
                await self._views.close()
            await self._detector.close()

    async def _identify_model(self) -> None:
        """Record the model and version Triton serves (at start-up, or once Triton first answers)."""
        self._identify_again_at = time.monotonic() + _IDENTIFY_RETRY_S
        try:
            identity = await self._detector.model()
        except DetectorError as error:
            logger.warning("cannot tell which model version answers yet: %s", error)
            return
        self._input_multiple = identity.input_multiple
        self._identify_again = False
        await self._served.identified(identity)

    def _decision(self, frame: Frame) -> AnalysisDecision | None:
        """Its camera's policy decision at the frame's capture time; None when the policy is not followed
        (``policy.enabled`` false: every frame is analysed, every class tracked)."""
        if self._policies is None:
            return None
        return self._policies.decision(frame.camera_id, frame.captured_at.ToNanoseconds() / 1e9)

    @staticmethod
    def _rules(decision: AnalysisDecision | None) -> TrackingRules:
        """What the policy that allowed analysing a frame allows its tracker."""
        if decision is None:
            return TrackingRules()
        if decision.policy is None:  # never with an analysing decision; fail closed all the same
            return TrackingRules(frozenset())
        return tracking_rules(decision.policy)

    async def _drop_forbidden(self, js: JetStreamContext, message: Msg, decision: AnalysisDecision) -> None:
        """A frame its camera's policy does not allow analysing: never analysed, never redelivered; the
        camera's tracks end (they must not bridge the paused time)."""
        self._metrics.dropped.labels(decision.cause).inc()
        await message.ack()
        if self._views is not None:
            self._views.not_analysable(decision)
        await self._end_camera(js, decision.camera_id, decision.reason)

    async def _publish(
        self, js: JetStreamContext, tracks: TrackFrame, headers: dict[str, str] | None = None
    ) -> None:
        """A result to TRACKS, waiting out a broker's restart; one never stored is counted (the anonymiser's
        coverage shows the gap)."""
        subject = tracks_subject(tracks.camera_id)
        if not await publish_patiently(js, subject, tracks.SerializeToString(), headers=headers):
            self._metrics.unpublished.inc()

    async def _end_camera(self, js: JetStreamContext, camera_id: str, reason: str) -> None:
        ended = self._trackers.end_camera(camera_id)
        if not ended:
            return
        # How many tracks ended is a head count of the camera at that moment: not logged.
        logger.info("camera %s: not analysed (%s); its tracks ended", camera_id, reason)
        for message in ended:
            await self._publish(js, message, trace_headers())

    async def _end_forbidden(self, js: JetStreamContext) -> None:
        """End the tracks of cameras that may not be analysed now, even if no frame of theirs comes."""
        if self._policies is None:
            return
        for camera_id in self._trackers.camera_ids:
            decision = self._policies.decision(camera_id)
            if not decision.analyse:
                await self._end_camera(js, camera_id, decision.reason)

    async def _submit(self, js: JetStreamContext, messages: list[Msg], views: JetStreamContext) -> None:
        # One batch per input size (a camera run's frames all have one): a model of any size takes each
        # picture in the square less the bands of padding it does not need, and a batch holds one size.
        groups: dict[tuple[int, int], list[tuple[Msg, Frame, npt.NDArray[np.uint8]]]] = {}
        for message in messages:
            try:
                frame, pixels = parse_frame(message.data, INPUT_SIZE, camera_of_subject(message.subject))
            except MislabelledFrameError as error:
                logger.error("dropped a frame on %s, not analysed: %s", message.subject, error)
                self._metrics.dropped.labels("mislabelled").inc()
                await message.term()
                await self._record_mislabelled(message.subject, error)
                continue
            except InvalidFrameError as error:
                logger.error("dropped a message on %s: %s", message.subject, error)
                self._metrics.dropped.labels("invalid").inc()
                await message.term()  # never redeliver garbage
                continue
            decision = self._decision(frame)
            if decision is not None and not decision.analyse:
                await self._drop_forbidden(js, message, decision)
                continue
            if not self._trackers.in_order(frame):
                self._metrics.dropped.labels("out_of_order").inc()
                await message.ack()
                continue
            if self._views is not None and decision is not None:
                self._views.offer(views, frame, pixels, decision)
            shape = input_shape(pixels.shape[0], pixels.shape[1], INPUT_SIZE, self._input_multiple)
            groups.setdefault(shape, []).append((message, frame, pixels))
        for (height, width), members in groups.items():
            batch = np.empty((len(members), height, width, 3), dtype=np.uint8)
            transforms = [
                letterbox(pixels, INPUT_SIZE, out=batch[i], multiple=self._input_multiple)[1]
                for i, (_, _, pixels) in enumerate(members)
            ]
            await self._slots.acquire()  # released once the results reached the trackers
            result = asyncio.create_task(self._timed_detect(batch))
            await self._pending.put(
                PendingBatch([m for m, _, _ in members], [f for _, f, _ in members], transforms, result)
            )

    async def _record_mislabelled(self, subject: str, error: MislabelledFrameError) -> None:
        cameras = dict.fromkeys(c for c in (error.subject_camera, error.frame_camera) if is_camera_id(c))
        try:
            await self._audit.record_throttled(
                ("mislabelled_frame", error.subject_camera, error.frame_camera),
                AuditAction.AUDIT_ACTION_BOUNDARY_FAULT,
                motive=(
                    "a frame naming another camera than its subject: its pixels reached a replica not set "
                    "up for the camera they show; dropped, not analysed"
                ),
                camera_ids=list(cameras),
                outcome=AuditOutcome.AUDIT_OUTCOME_DENIED,
                details={
                    "stream": "FRAMES",
                    "subject": subject[:256],
                    "field": "camera_id",
                    "frame_camera": error.frame_camera,
                    "subject_camera": error.subject_camera[:256],
                },
            )
        except AuditUnavailableError as audit_error:
            logger.error("boundary fault on %s not audited: %s", subject, audit_error)

    async def _timed_detect(self, images: ImageBatch) -> DetectorOutput:
        started = time.perf_counter()
        try:
            return await self._detector.detect(images)
        finally:
            self._metrics.model_seconds.observe(time.perf_counter() - started)

    async def _apply_results(self, js: JetStreamContext) -> None:
        while (pending := await self._pending.get()) is not None:
            try:
                await self._apply(js, pending)
            finally:
                self._slots.release()

    async def _apply(self, js: JetStreamContext, pending: PendingBatch) -> None:
        settings = self._settings
        try:
            boxes, scores, model_version = await pending.result
        except DetectorError as error:
            logger.error("detector failed on %d frame(s), to be redelivered: %s", len(pending.frames), error)
            self._metrics.dropped.labels("detector_error").inc(len(pending.frames))
            self._detector_problem = str(error)
            # Perhaps another model now, taking other sizes: the square until it says which.
            self._input_multiple = None
            self._identify_again = True
            # They come again: their redelivery must not be taken for a late duplicate.
            self._trackers.resubmitted(pending.frames)
            for message in pending.messages:
                await message.nak(delay=1.0)
            return
        await self._served.answered_by(model_version, settings.model_name)
        for i, (message, frame) in enumerate(zip(pending.messages, pending.frames, strict=True)):
            # In flight when the policy changed (an objection): dropped before any tracker sees it; else
            # tracked under the policy in force now (its classes, its tracks' max age).
            decision = self._decision(frame)
            if decision is not None and not decision.analyse:
                await self._drop_forbidden(js, message, decision)
                continue
            with self._tracer.start_as_current_span(
                "inference.track",
                context=context_from_headers(message.headers),
                kind=trace.SpanKind.CONSUMER,
                attributes={"vigie.camera": frame.camera_id, "vigie.sequence": frame.sequence},
            ):
                detections = decode_detections(
                    boxes[i],
                    scores[i],
                    pending.transforms[i],
                    score_threshold=settings.tracker.low_threshold,
                    iou_threshold=settings.iou_threshold,
                )
                analysis = self._trackers.analyse(frame, detections, time.monotonic(), self._rules(decision))
                for tracks in analysis.messages:
                    await self._publish(js, tracks, trace_headers())
            await message.ack()
            now, captured = time.time(), frame.captured_at.ToNanoseconds() / 1e9
            self._metrics.frames.labels(frame.camera_id).inc()
            self._metrics.latency.observe(max(0.0, now - captured))
            self._metrics.last_analysed.labels(frame.camera_id).set(now)
            self._metrics.last_captured.labels(frame.camera_id).set(captured)


async def wait_for_frames_stream(guard: StreamGuard, js: JetStreamContext, partitions: int) -> None:
    """Wait until the provisioner has created FRAMES, check it (and keep checking it), and that it has as
    many partitions as this replica expects."""
    # Its retention is the provisioner's business (sized from ingest's needs), not inference's.
    info = await guard.bind(js, FramesStream(partitions).config(), sized=False)
    have = partitions_of(info.config)
    if have != partitions:
        raise RuntimeError(
            f"FRAMES is split into {have} partitions but inference expects {partitions}: "
            "set the same frames_partitions in the provisioner and partitions in inference"
        )


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def record_start(audit: AuditPublisher, settings: InferenceSettings) -> None:
    """The configuration the replica starts with, in the journal (a digest; the model asked for)."""
    try:
        await record_configuration(
            audit,
            settings,
            details={
                "partition": str(settings.partition),
                "partitions": str(settings.partitions),
                "model_name": settings.model_name,
                "model_version": settings.model_version or "latest",
            },
        )
    except AuditUnavailableError as error:  # cannot happen with an empty buffer; said, not hidden
        logger.error("the configuration in force could not be audited: %s", error)


async def serve(
    runtime: ServiceRuntime, detector: Detector | None = None, faces: FaceDetector | None = None
) -> None:
    """The service's body: run the pipeline until asked to stop."""
    settings = runtime.settings
    assert isinstance(settings, InferenceSettings)
    from vigie_inference.detector import TritonDetector, TritonFaceDetector

    if detector is None:
        detector = TritonDetector(settings.triton_url, settings.model_name, settings.model_version)
    if faces is None and settings.views.enabled and settings.policy.enabled:
        views = settings.views
        faces = TritonFaceDetector(settings.triton_url, views.face_model_name, views.face_model_version)
    nc, audit = await connect_with_audit(
        runtime, settings.nats, settings.audit, f"vigie-inference-{settings.partition}"
    )
    await record_start(audit, settings)
    policies = await policy_view(runtime, nc, settings.policy)
    await InferencePipeline(runtime, settings, detector, nc, audit, policies, faces).run()
