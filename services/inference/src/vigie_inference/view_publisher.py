"""The registry's view requests, carried out: frames kept (:mod:`.views`), the view built off the event loop
with the detectors on Triton (:mod:`.scene_view`), one SceneViewResult published on VIEWS.

The result goes to ``vigie.views.<camera>`` with ``Nats-Msg-Id: view-<request_id>``: the stream, in the
registry's account, drops a copy of the same request within its duplicate window (a retry, a second
replica), keeps one message per camera and refuses one over 256 KiB; inference cannot read it back. Each
request gives one result: the view, or why none (too few frames, a person or face still found, the camera
no longer analysable while its frames were sampled). The frames are dropped as soon as the view is built
or the sampling aborted; they are never written anywhere.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar

from nats.js import JetStreamContext
from prometheus_client import Counter, Histogram

from vigie_core.audit import AuditAction, AuditOutcome, AuditPublisher, AuditUnavailableError
from vigie_core.lifecycle import ServiceRuntime
from vigie_core.messaging import publish_patiently
from vigie_core.policy import AnalysisDecision, PolicyView
from vigie_core.streams import views_subject
from vigie_inference.detections import Detections, decode_detections
from vigie_inference.detector import Detector, DetectorError, FloatArray
from vigie_inference.letterbox import letterbox
from vigie_inference.scene_view import (
    FaceBoxes,
    Picture,
    SceneView,
    ViewParams,
    ViewRefused,
    build_scene_view,
)
from vigie_inference.settings import ViewSettings
from vigie_inference.views import Sampling, ViewSamplings
from vigie_models import INPUT_SIZE
from vigie_proto.v1.frames_pb2 import Frame
from vigie_proto.v1.views_pb2 import SceneViewResult

__all__ = ["VIEW_OUTCOMES", "FaceDetector", "ViewPublisher", "view_result"]

logger = logging.getLogger("vigie.inference")

# What became of a view request: a view published, a refusal published (no view could be made, or the
# camera stopped being analysable), not carried out (too old when first seen; first seen while the camera
# may not be analysed), replaced by a newer request while sampled, or a result VIEWS never stored.
VIEW_OUTCOMES = ("view", "refused", "stale", "not_analysable", "replaced", "unpublished")
SCHEMA_VERSION = 1
# How long the detectors may take on one picture of a view before the view is given up.
_DETECT_TIMEOUT_S = 60.0

T = TypeVar("T")


class FaceDetector(Protocol):
    async def detect(self, picture: Picture, threshold: float) -> tuple[FloatArray, FloatArray]: ...

    async def close(self) -> None: ...


def view_result(
    sampling: Sampling, outcome: SceneView | ViewRefused, built_at: float | None = None
) -> SceneViewResult:
    """The message published for a sampling: its view, or why none."""
    result = SceneViewResult(
        schema_version=SCHEMA_VERSION,
        camera_id=sampling.camera_id,
        request_id=sampling.request_id,
        policy_version=sampling.policy_version,
        frames=len(sampling.frames) if isinstance(outcome, ViewRefused) else outcome.frames,
        sampled_seconds=sampling.sampled_seconds,
    )
    result.built_at.FromNanoseconds(int((time.time() if built_at is None else built_at) * 1e9))
    if isinstance(outcome, SceneView):
        result.image.jpeg = outcome.jpeg
        result.image.width = outcome.width
        result.image.height = outcome.height
    else:
        result.refused = outcome.reason
    return result


class ViewPublisher:
    """One replica's view requests: frames offered as they are analysed, views built one at a time in a
    thread, results published and audited."""

    def __init__(
        self,
        runtime: ServiceRuntime,
        settings: ViewSettings,
        detector: Detector,
        faces: FaceDetector,
        audit: AuditPublisher,
        *,
        input_multiple: Callable[[], int | None],
        iou_threshold: float,
        params: ViewParams | None = None,
    ) -> None:
        self._settings = settings
        self._detector = detector
        self._faces = faces
        self._audit = audit
        self._input_multiple = input_multiple
        self._iou_threshold = iou_threshold
        self._params = params or ViewParams()
        self._stop = runtime.stop_requested
        self._samplings = ViewSamplings(
            frames=settings.frames,
            frames_wait_s=settings.frames_wait_s,
            max_sample_seconds=settings.max_sample_seconds,
        )
        self._building = asyncio.Semaphore(1)  # one view at a time, beside the frames being analysed
        self._tasks: set[asyncio.Task[None]] = set()
        self.outcomes = Counter(
            "vigie_inference_scene_views",
            "View requests of the registry carried out or not, by outcome",
            ["outcome"],
            registry=runtime.registry,
        )
        for outcome in VIEW_OUTCOMES:
            self.outcomes.labels(outcome)
        # What a view costs: from its frames to its JPEG (the detectors' calls included), and the CPU of
        # the thread that builds it (the median, the filling, the encoding; Triton's own CPU apart).
        buckets = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
        self.build_seconds = Histogram(
            "vigie_inference_scene_view_build_seconds",
            "Time to build a scene view from its sampled frames",
            buckets=buckets,
            registry=runtime.registry,
        )
        self.build_cpu_seconds = Histogram(
            "vigie_inference_scene_view_build_cpu_seconds",
            "CPU time of inference's thread building a scene view (Triton's apart)",
            buckets=buckets,
            registry=runtime.registry,
        )

    def offer(self, js: JetStreamContext, frame: Frame, pixels: Picture, decision: AnalysisDecision) -> None:
        """A frame its camera's policy (``decision``) lets this replica analyse."""
        if decision.policy is None or not decision.analyse:
            return
        captured = frame.captured_at.ToNanoseconds() / 1e9
        offer = self._samplings.offer(decision.policy, captured, pixels, time.time())
        if offer.replaced is not None:
            self.outcomes.labels("replaced").inc()
            logger.info(
                "camera %s: view request %s replaced by a newer one",
                frame.camera_id,
                offer.replaced.request_id,
            )
        if offer.ignored is not None:
            self.outcomes.labels("stale").inc()
            logger.info("camera %s: view request %s too old, not carried out", frame.camera_id, offer.ignored)
        if offer.started is not None:
            logger.info(
                "camera %s: view request %s taken up, sampling %.0f s",
                frame.camera_id,
                offer.started.request_id,
                offer.started.sample_seconds,
            )
        if offer.finished is not None:
            self._spawn(self._build_and_publish(js, offer.finished))

    def not_analysable(self, decision: AnalysisDecision) -> None:
        """A frame its camera's policy (``decision``) does not let analyse: a request first seen now is not
        carried out; one being sampled ends at the next :meth:`check`."""
        if decision.policy is None:
            return
        forgone = self._samplings.forgo(decision.policy)
        if forgone is not None:
            self.outcomes.labels("not_analysable").inc()
            logger.info(
                "camera %s: view request %s not carried out (%s)",
                decision.camera_id,
                forgone,
                decision.reason,
            )

    def check(self, js: JetStreamContext, policies: PolicyView) -> None:
        """Abort the samplings of cameras that may no longer be analysed; build those whose camera stopped
        sending frames."""
        for camera_id in self._samplings.cameras:
            decision = policies.decision(camera_id)
            if decision.analyse:
                continue
            sampling = self._samplings.abort(camera_id)
            if sampling is not None:
                reason = (
                    f"the camera stopped being analysable while its frames were sampled ({decision.reason}); "
                    "the frames kept were dropped"
                )
                logger.info(
                    "camera %s: view request %s aborted (%s)", camera_id, sampling.request_id, decision.reason
                )
                self._spawn(self._publish(js, sampling, ViewRefused(reason)))
        for sampling in self._samplings.overdue(time.time()):
            self._spawn(self._build_and_publish(js, sampling))

    async def close(self) -> None:
        """Drop the samplings under way (their requests stay unanswered) and let the builds finish."""
        for sampling in self._samplings.abort_all():
            logger.info("camera %s: view request %s dropped at stop", sampling.camera_id, sampling.request_id)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._faces.close()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work, name="scene-view")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _build_and_publish(self, js: JetStreamContext, sampling: Sampling) -> None:
        async with self._building:
            try:
                outcome: SceneView | ViewRefused = await asyncio.to_thread(
                    self._build, sampling, asyncio.get_running_loop()
                )
            except DetectorError as error:
                logger.error("camera %s: view not built, the detectors failed: %s", sampling.camera_id, error)
                outcome = ViewRefused(f"the detectors could not check the view ({error}); ask again later")
            except Exception:  # a bug must not keep the frames nor leave the request unanswered
                logger.exception("camera %s: view not built", sampling.camera_id)
                outcome = ViewRefused("the view could not be built (an error in inference); ask again later")
            finally:
                frames = len(sampling.frames)
                # The frames go as soon as the view is built.
                sampling.drop_frames()
        result = view_result(sampling, outcome)
        result.frames = frames
        await self._send(js, sampling, result)

    async def _publish(self, js: JetStreamContext, sampling: Sampling, outcome: ViewRefused) -> None:
        await self._send(js, sampling, view_result(sampling, outcome))

    def _build(self, sampling: Sampling, loop: asyncio.AbstractEventLoop) -> SceneView | ViewRefused:
        """In a worker thread: the view of the frames kept, the detectors asked on the event loop."""

        def wait(call: Coroutine[Any, Any, T]) -> T:
            return asyncio.run_coroutine_threadsafe(call, loop).result(_DETECT_TIMEOUT_S)

        params = self._params

        def detect_objects(picture: Picture) -> Detections:
            model_input, transform = letterbox(picture, INPUT_SIZE, multiple=self._input_multiple())
            boxes, scores, _ = wait(self._detector.detect(model_input[None]))
            return decode_detections(
                boxes[0],
                scores[0],
                transform,
                score_threshold=params.object_threshold,
                iou_threshold=self._iou_threshold,
            )

        def detect_faces(picture: Picture) -> FaceBoxes:
            return wait(self._faces.detect(picture, params.face_threshold))

        def blank(picture: Picture) -> None:
            # The masks in force when the last frame was kept: ingest blanked each frame with those of its
            # time, and a mask added since must not show on the view either.
            sampling.masks.blank(picture)

        started, cpu = time.perf_counter(), time.thread_time()
        try:
            return build_scene_view(sampling.frames, detect_objects, detect_faces, blank=blank, params=params)
        except TimeoutError as error:
            raise DetectorError(f"no answer within {_DETECT_TIMEOUT_S:.0f} s") from error
        finally:
            self.build_seconds.observe(time.perf_counter() - started)
            self.build_cpu_seconds.observe(time.thread_time() - cpu)

    async def _send(self, js: JetStreamContext, sampling: Sampling, result: SceneViewResult) -> None:
        camera_id, request_id = sampling.camera_id, sampling.request_id
        stored = await publish_patiently(
            js,
            views_subject(camera_id),
            result.SerializeToString(),
            headers={"Nats-Msg-Id": f"view-{request_id}"},
            stop=self._stop,
        )
        refused = result.WhichOneof("result") == "refused"
        if not stored:
            self.outcomes.labels("unpublished").inc()
            logger.error(
                "camera %s: the result of view request %s was never stored in VIEWS", camera_id, request_id
            )
            return
        self.outcomes.labels("refused" if refused else "view").inc()
        if refused:
            logger.info("camera %s: view request %s refused: %s", camera_id, request_id, result.refused)
        else:
            logger.info("camera %s: view request %s published", camera_id, request_id)
        details = {
            "request_id": request_id,
            "policy_version": str(result.policy_version),
            "frames": str(result.frames),
            "sampled_seconds": f"{result.sampled_seconds:.1f}",
            "stream": "VIEWS",
        }
        if refused:
            details["refused"] = result.refused[:1024]
        else:
            details["image"] = (
                f"{result.image.width}x{result.image.height} jpeg, {len(result.image.jpeg)} bytes"
            )
        try:
            await self._audit.record(
                AuditAction.AUDIT_ACTION_DATA_EXPORT,
                actor=self._audit.actor,
                motive=(
                    "no view of the camera's scene could be made for the registry's request; why, on VIEWS"
                    if refused
                    else "a view of the camera's scene without its people, for the registry's request, on "
                    "VIEWS"
                ),
                camera_ids=[camera_id],
                records=[("scene_view", request_id)],
                outcome=AuditOutcome.AUDIT_OUTCOME_DENIED if refused else AuditOutcome.AUDIT_OUTCOME_SUCCESS,
                details=details,
            )
        except AuditUnavailableError as error:
            logger.error("view request %s of camera %s not audited: %s", request_id, camera_id, error)
