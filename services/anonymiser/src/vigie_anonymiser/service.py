"""The anonymiser's edge: TRACKS in (a JetStream pull consumer), window reports out to EVENTS.

Ordering. The replica consuming a partition of TRACKS is its only consumer (durable
``anonymiser-<partition>``) and handles its messages one at a time, in stream order, so each camera's
TrackFrames reach one `CameraAnonymiser` in order. TRACKS stores ``vigie.tracks.<partition>.<camera>``
(see `vigie_core.streams`): replica k takes ``vigie.tracks.k.*``, and this checks that inference and the
anonymiser agree on the number of partitions.

Exactly-once counting, across crashes. After each batch of TRACKS messages, the state of every camera
they changed (`vigie_anonymiser.checkpoint`: the open window's counts, the live tracks' last positions,
the cursor, the reports EVENTS has not accepted yet) is saved to ``CHECKPOINT_ANONYMISER``, and only then
are the messages acknowledged. A replica starting again restores the states of its partition, waits until
TRACKS redelivers what its predecessor had not acknowledged (``ack_wait``; redeliveries come before newer
messages), and goes on: what a state already holds is recognised by the camera's cursor (sequence and
fingerprint) and dropped, the rest is counted. A report published again (a retry, or a report restored
from a checkpoint written before it was accepted) carries the same ``Nats-Msg-Id`` and is dropped by
EVENTS. If a checkpoint cannot be written (the broker failing), the messages are acknowledged anyway so
that counting goes on; readiness says ``checkpoint`` and a crash then would lose that camera's open
window, which shows as missing coverage.

Malformed messages are logged with the field at fault (never its value), counted and terminated; the
service carries on. What is set aside on ``vigie.deadletter.anonymiser`` holds no payload: TRACKS messages
carry track ids and boxes, which live only in memory and only while a crossing needs them. The dead letter
is an empty body with headers: the payload's SHA-256 and size (to match it with what inference sent, if
it is still on TRACKS), the field and the reason, TRACKS' sequence, and the camera when the subject names a
valid one.

Policy (``vigie_core.policy``, unless ``policy.enabled`` is false). Each camera's lines, zones and
reporting window come from its policy (`PolicyGeometrySource`), complemented by the settings. A TrackFrame
captured when its camera's policy forbade analysis (an objection's pause, a camera not active, a policy
that cannot be read) is dropped uncounted (``vigie_anonymiser_frames_dropped_total{reason=<cause>}``) and
the camera's tracks end; so do they, within a fetch interval, when the camera stops being analysable. Time
the policy paused is never covered (`PausedTime`): reports show it as missing coverage.

Audit (``vigie_core.audit``): the configuration in force at start-up (a digest, each camera's geometry
version); each change of a camera's geometry version (created, updated, deleted); a TRACKS message with
data a TrackFrame has no field for (a boundary fault: terminated and kept nowhere); every operation the
NATS server refuses to the service (a permission violation).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime
import hashlib
import logging
import re
import time

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    StreamConfig,
)
from opentelemetry import trace
from prometheus_client import Counter, Gauge, Histogram

from vigie_anonymiser.camera import Anonymiser, Dropped
from vigie_anonymiser.checkpoint import CheckpointError, decode_state, encode_state, removed_camera
from vigie_anonymiser.config import CameraGeometry
from vigie_anonymiser.events import report_message
from vigie_anonymiser.geometry_source import (
    CameraGeometrySource,
    ConfigGeometrySource,
    GeometryChange,
    GeometryUpdate,
    PolicyGeometrySource,
    geometry_change,
)
from vigie_anonymiser.observations import (
    InvalidTrackFrameError,
    TracksBoundaryFaultError,
    is_camera_id,
    parse_track_frame,
)
from vigie_anonymiser.settings import AnonymiserSettings
from vigie_anonymiser.windows import WindowReport
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
from vigie_core.logs import where_it_failed
from vigie_core.messaging import (
    DurablePull,
    StreamGuard,
    StreamNotProvisionedError,
    context_from_headers,
    jetstream_for,
    stream_guard,
    trace_headers,
)
from vigie_core.policy import DECISION_CAUSES, PolicyView, policy_view
from vigie_core.streams import (
    CHECKPOINTS_PREFIX,
    TRACKS_PREFIX,
    CheckpointStream,
    DeadLetterStream,
    EventsStream,
    TracksStream,
    checkpoint_subject,
    deadletter_subject,
    events_subject,
    partition_filter,
    partitions_of,
)

__all__ = ["DEADLETTER_SUBJECT", "AnonymiserPipeline", "deadletter_headers", "deadletter_stream", "serve"]

logger = logging.getLogger("vigie.anonymiser")

SERVICE = "anonymiser"
DEADLETTER_SUBJECT = deadletter_subject(SERVICE)
_PUBLISH_TIMEOUT_S = 5.0
_RETRY_AFTER_S = 2.0
# How long TRACKS waits for an acknowledgement before delivering a message again: after a crash, the new
# replica waits this long for its predecessor's unacknowledged messages (see the module's doc).
TRACKS_ACK_WAIT_S = 10.0
CHECKPOINTS = CheckpointStream().config().name or ""


def deadletter_stream(max_age_s: float) -> StreamConfig:
    """Where rejected TRACKS messages are noted (a digest and a reason, no payload), in memory as TRACKS
    itself (:class:`vigie_core.streams.DeadLetterStream`, created by the provisioner)."""
    return DeadLetterStream(SERVICE, max_age_s).config()


def deadletter_headers(
    payload: bytes, subject: str, sequence: int, reason: str, field: str
) -> dict[str, str]:
    """What is kept of a rejected TRACKS message: no payload (it holds track ids and boxes), only enough
    to say what was rejected and why, and to recognise the message where it still exists (TRACKS)."""
    camera = subject.rsplit(".", 1)[-1]
    headers = {
        "Vigie-Payload-SHA256": hashlib.sha256(payload).hexdigest(),
        "Vigie-Payload-Bytes": str(len(payload)),
        # objects[3].box -> objects.box: the position in the frame says how many objects it held.
        "Vigie-Field": re.sub(r"\[\d+\]", "", field),
        "Vigie-Reason": reason[:1000],
        "Vigie-Stream-Sequence": str(sequence),
        "Nats-Msg-Id": f"tracks-{sequence}",  # a redelivered rejection is noted once
    }
    if is_camera_id(camera):
        headers["Vigie-Camera"] = camera
    return headers


class AnonymiserMetrics:
    """Operational figures only. Nothing here counts people: a per-camera crossing counter scraped every
    few seconds would publish exactly the fine timing that the reporting window exists to remove."""

    def __init__(self, runtime: ServiceRuntime) -> None:
        registry = runtime.registry
        self.frames = Counter("vigie_anonymiser_frames", "TrackFrames counted", ["camera"], registry=registry)
        self.dropped = Counter(
            "vigie_anonymiser_frames_dropped",
            "TrackFrames not counted: duplicate, stale_run, no_geometry, or the policy's cause "
            "(objection_pause, inactive, no_policy, unreadable_policy, policy_unavailable, ...)",
            ["reason"],
            registry=registry,
        )
        for reason in (*(d.value for d in Dropped), *DECISION_CAUSES[1:]):
            self.dropped.labels(reason)
        self.rejected = Counter(
            "vigie_anonymiser_messages_rejected",
            "TRACKS messages sent to the dead-letter subject, by offending field",
            ["field"],
            registry=registry,
        )
        self.boundary_faults = Counter(
            "vigie_anonymiser_boundary_faults",
            "TRACKS messages with data a TrackFrame has no field for: terminated, kept nowhere, audited",
            registry=registry,
        )
        self.reports = Counter(
            "vigie_anonymiser_reports_published",
            "Window reports published to EVENTS",
            ["camera", "closed_by"],
            registry=registry,
        )
        self.duplicate_reports = Counter(
            "vigie_anonymiser_reports_duplicate",
            "Window reports EVENTS already had (same Nats-Msg-Id): a retry or a replay",
            registry=registry,
        )
        self.publish_failures = Counter(
            "vigie_anonymiser_report_publish_failures",
            "Failed attempts to publish a window report (it is retried)",
            registry=registry,
        )
        self.outbox = Gauge(
            "vigie_anonymiser_reports_waiting", "Window reports not yet accepted by EVENTS", registry=registry
        )
        self.checkpoint_failures = Counter(
            "vigie_anonymiser_checkpoint_failures",
            "Cameras whose state could not be saved after a batch (their messages were acknowledged anyway)",
            registry=registry,
        )
        self.restored = Counter(
            "vigie_anonymiser_cameras_restored",
            "Cameras whose state was taken up from a checkpoint at start, or not (outcome=unreadable)",
            ["outcome"],
            registry=registry,
        )
        self.seconds = Histogram(
            "vigie_anonymiser_frame_seconds",
            "Time to count one TrackFrame",
            buckets=(0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1),
            registry=registry,
        )


class AnonymiserPipeline:
    def __init__(
        self,
        runtime: ServiceRuntime,
        settings: AnonymiserSettings,
        source: CameraGeometrySource,
        nc: Client,
        audit: AuditPublisher,
        policies: PolicyView | None = None,
    ) -> None:
        self._runtime = runtime
        self._settings = settings
        self._source = source
        self._nc = nc
        self._audit = audit
        # None: policy.enabled is false, every camera with a geometry is counted.
        self._policies = policies
        self._metrics = AnonymiserMetrics(runtime)
        self._anonymiser = Anonymiser(source.current(), settings.counting)
        self._outbox: collections.deque[WindowReport] = collections.deque()
        self._retry_at = 0.0
        self._geometry_updates: asyncio.Queue[GeometryUpdate] = asyncio.Queue()
        self._unknown_cameras: set[str] = set()  # logged once each
        self._tracer = runtime.tracer
        # Counted messages, acknowledged once the state of their cameras is saved; the cameras whose state
        # changed since it was last saved.
        self._unacked: list[Msg] = []
        self._dirty: set[str] = set()
        self._checkpoint_problem: str | None = None

    async def run(self) -> None:
        settings = self._settings
        stop = self._runtime.stop_requested
        nc = self._nc
        # TRACKS and the dead letters are in the anonymiser's own account; EVENTS in the aggregation's, which
        # the anonymiser publishes into through an import and looks up under that account's API prefix.
        js = nc.jetstream()
        # The provisioner creates EVENTS and the dead letters, which the anonymiser writes, and TRACKS,
        # which it reads: all checked, at start and then continuously, above all that they copy from
        # nowhere (EVENTS, on disk, copying TRACKS would put track ids there).
        guard = stream_guard(self._runtime, self._audit)
        events = EventsStream(
            settings.events_max_age_s, duplicate_window_s=settings.events_duplicate_window_s
        )
        await guard.bind(jetstream_for(nc, settings.nats, "anonymiser", "EVENTS"), events.config())
        await guard.bind(js, deadletter_stream(settings.deadletter_max_age_s))
        await guard.bind(js, CheckpointStream().config(), sized=False)
        subject_filter = await wait_for_tracks_stream(js, settings, stop, guard)
        if subject_filter is None:
            return
        durable = f"anonymiser-{settings.partition}"
        # Bound again by itself after a broker restart (TRACKS and its consumers live in memory).
        tracks = DurablePull(
            js,
            stream="TRACKS",
            subject=subject_filter,
            readiness=self._runtime.readiness,
            stop=stop,
            config=ConsumerConfig(
                durable_name=durable,
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=TRACKS_ACK_WAIT_S,
                max_ack_pending=max(256, 4 * settings.fetch_batch),
            ),
        )
        if not await tracks.bind():
            return
        start_consumer_lag(self._runtime, js, "TRACKS", durable)
        self._runtime.readiness.add("checkpoint", lambda: self._checkpoint_problem)
        await self._restore(js)
        await self._await_redeliveries(js, durable, stop)
        watcher = asyncio.create_task(self._watch_geometry(), name="anonymiser-geometry")
        self._runtime.readiness.add("nats", lambda: None if nc.is_connected else "not connected to NATS")
        logger.info(
            "counting %d camera(s) from %s (partition %d of %d)",
            len(self._anonymiser.cameras),
            subject_filter,
            settings.partition,
            settings.partitions,
        )
        self._runtime.readiness.mark_started()
        try:
            while not stop.is_set():
                await self._apply_geometry_updates()
                self._follow_policies()
                for message in await tracks.fetch(settings.fetch_batch, timeout_s=0.25):
                    await self._handle(js, message)
                self._close_idle()
                await self._save(js)
                if self._outbox and time.monotonic() >= self._retry_at:
                    await self._publish(js)
        finally:
            # Drain: every fetched message was handled and acked; report what the open windows hold.
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await self._source.close()
            await self._apply_geometry_updates()
            self._outbox.extend(self._anonymiser.stop())
            self._dirty.update(self._anonymiser.cameras)
            await tracks.close()
            await self._publish_before_exit(nc, js)
            # What the published reports hold is no longer the cameras' to report: the next replica takes
            # up the live tracks only (`CameraAnonymiser.stop`).
            with contextlib.suppress(NatsError, TimeoutError):
                await self._save(js)

    async def _handle(self, js: JetStreamContext, message: Msg) -> None:
        started = time.perf_counter()
        camera_hint = message.subject.rsplit(".", 1)[-1]
        with self._tracer.start_as_current_span(
            "anonymiser.count",
            context=context_from_headers(message.headers),
            kind=trace.SpanKind.CONSUMER,
            attributes={"vigie.camera": camera_hint},
        ):
            try:
                observation = parse_track_frame(message.data, camera_hint)
            except TracksBoundaryFaultError as error:
                logger.error("terminated a TRACKS message on %s, kept nowhere: %s", message.subject, error)
                self._metrics.boundary_faults.inc()
                await message.term()
                await self._record_boundary_fault(message.subject, camera_hint, error)
                return
            except InvalidTrackFrameError as error:
                logger.error(
                    "rejected a TRACKS message on %s: %s (kept on %s)",
                    message.subject,
                    error,
                    DEADLETTER_SUBJECT,
                )
                await self._dead_letter(js, message, str(error), error.field)
                return
            self._dirty.add(observation.camera_id)
            if self._forbidden(observation.camera_id, observation.captured_at):
                self._unacked.append(message)
                return
            try:
                outcome = self._anonymiser.process(observation, time.monotonic())
            except Exception as error:  # a bug on one message must not stop the counting of every camera
                # Where it failed, not what with: the exception's text may hold a track id or a box.
                logger.error(
                    "failed to count a TrackFrame of camera %s: %s",
                    observation.camera_id,
                    where_it_failed(error),
                )
                await self._dead_letter(js, message, f"internal error: {type(error).__name__}", "internal")
                return
        if outcome.abandoned:
            # Held messages of a run that did not take over from the camera's current one: stray,
            # replayed or forged; they cost themselves, not the camera's counting.
            self._metrics.dropped.labels(Dropped.UNCONFIRMED_RUN.value).inc(outcome.abandoned)
        if outcome.dropped is not None:
            self._metrics.dropped.labels(outcome.dropped.value).inc()
            if outcome.dropped is Dropped.NO_GEOMETRY and observation.camera_id not in self._unknown_cameras:
                self._unknown_cameras.add(observation.camera_id)
                logger.warning(
                    "camera %s has no lines or zones here: its tracks are not counted", observation.camera_id
                )
        elif outcome.frames:
            self._metrics.frames.labels(observation.camera_id).inc(outcome.frames)
        self._outbox.extend(outcome.reports)
        self._unacked.append(message)
        self._metrics.seconds.observe(time.perf_counter() - started)

    def _close_idle(self) -> None:
        reports = self._anonymiser.close_idle(time.monotonic(), self._settings.camera_idle_s)
        self._dirty.update(report.camera_id for report in reports)
        self._outbox.extend(reports)

    # -- checkpoints --------------------------------------------------------------------------------

    async def _save(self, js: JetStreamContext) -> None:
        """Save the state of every camera that changed, then acknowledge the messages counted into it."""
        if self._dirty:
            dirty, self._dirty = self._dirty, set()
            waiting: dict[str, list[WindowReport]] = collections.defaultdict(list)
            for report in self._outbox:
                waiting[report.camera_id].append(report)
            failed = [
                camera_id
                for camera_id, saved in zip(
                    dirty,
                    await asyncio.gather(*(self._save_camera(js, c, waiting.get(c, [])) for c in dirty)),
                    strict=True,
                )
                if not saved
            ]
            if failed:
                self._metrics.checkpoint_failures.inc(len(failed))
                self._dirty.update(failed)  # tried again after the next batch
        unacked, self._unacked = self._unacked, []
        for message in unacked:
            await message.ack()

    async def _save_camera(self, js: JetStreamContext, camera_id: str, reports: list[WindowReport]) -> bool:
        state = self._anonymiser.snapshot(camera_id, reports)
        # A camera no longer counted here: an empty message, unless reports of it still wait.
        if state is None:
            state = removed_camera(camera_id, reports) if reports else None
        data = b"" if state is None else encode_state(state)
        subject = checkpoint_subject(self._settings.partition, camera_id)
        try:
            await js.publish(subject, data, timeout=_PUBLISH_TIMEOUT_S)
        except (NatsError, TimeoutError) as error:
            if self._checkpoint_problem is None:
                logger.warning(
                    "could not save the state of camera %s (%s): counting goes on; a crash now would lose "
                    "its open window",
                    camera_id,
                    error,
                )
            self._checkpoint_problem = f"states not saved: {type(error).__name__}"
            return False
        self._checkpoint_problem = None
        return True

    async def _restore(self, js: JetStreamContext) -> None:
        """Take up the states this partition's previous replica saved; their waiting reports come first."""
        prefix = f"{CHECKPOINTS_PREFIX}.{self._settings.partition}"
        try:
            info = await js.stream_info(CHECKPOINTS, subjects_filter=f"{prefix}.*")
        except (NatsError, TimeoutError) as error:
            logger.warning("no checkpoint read (%s): every camera starts afresh", error)
            return
        restored = 0
        for subject in sorted((info.state.subjects or {}) if info.state else {}):
            camera_id = subject.rsplit(".", 1)[-1]
            try:
                message = await js.get_msg(CHECKPOINTS, subject=subject, direct=True)
            except (NatsError, TimeoutError) as error:
                logger.warning("camera %s: checkpoint not read (%s): it starts afresh", camera_id, error)
                self._metrics.restored.labels("unreadable").inc()
                continue
            if not message.data:
                continue
            try:
                state = decode_state(message.data)
                if state.camera_id != camera_id:
                    raise CheckpointError(f"it is the state of another camera, saved under {subject}")
            except CheckpointError as error:
                logger.error("camera %s: checkpoint not restored: %s; it starts afresh", camera_id, error)
                self._metrics.restored.labels("unreadable").inc()
                continue
            self._outbox.extend(self._anonymiser.restore(state, time.monotonic()))
            self._metrics.restored.labels("restored").inc()
            restored += 1
        if restored:
            logger.info("took up the state of %d camera(s) from their checkpoints", restored)

    async def _await_redeliveries(self, js: JetStreamContext, durable: str, stop: asyncio.Event) -> None:
        """Messages a previous replica received and did not acknowledge are redelivered once their ack wait
        is over, before any newer message: wait until then, so that each camera's are counted in order."""
        try:
            info = await js.consumer_info("TRACKS", durable)
        except (NatsError, TimeoutError):
            return
        if not info.num_ack_pending:
            return
        ack_wait_s = info.config.ack_wait or TRACKS_ACK_WAIT_S  # a consumer made by an older version: 30 s
        last = info.delivered.last_active
        elapsed = (datetime.datetime.now(datetime.UTC) - last).total_seconds() if last else 0.0
        wait_s = max(0.0, min(ack_wait_s, ack_wait_s - elapsed)) + 0.5
        logger.info(
            "%d TRACKS message(s) a previous replica did not acknowledge: waiting %.1f s for them",
            info.num_ack_pending,
            wait_s,
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), wait_s)

    def _forbidden(self, camera_id: str, captured_at: float) -> bool:
        """Whether the camera's policy forbade analysing what was captured then: if so, the message is
        counted as dropped and the camera's tracks end (they must not bridge the paused time)."""
        if self._policies is None:
            return False
        policy = self._policies.policy(camera_id)
        if policy is not None:
            self._anonymiser.follow_policy(camera_id, policy)
        decision = self._policies.decision(camera_id, captured_at)
        if decision.analyse:
            return False
        self._metrics.dropped.labels(decision.cause).inc()
        if self._anonymiser.suspend(camera_id):
            logger.info("camera %s: not counted (%s); its tracks ended", camera_id, decision.reason)
        return True

    def _follow_policies(self) -> None:
        """Learn each camera's paused time as the policy changes; end the tracks of a camera that may not
        be analysed now, even if none of its messages comes (inference stopped sending them)."""
        if self._policies is None:
            return
        for camera_id in self._anonymiser.cameras:
            policy = self._policies.policy(camera_id)
            if policy is not None:
                self._anonymiser.follow_policy(camera_id, policy)
            decision = self._policies.decision(camera_id)
            if not decision.analyse and self._anonymiser.suspend(camera_id):
                self._dirty.add(camera_id)
                logger.info("camera %s: not counted (%s); its tracks ended", camera_id, decision.reason)

    async def _dead_letter(self, js: JetStreamContext, message: Msg, reason: str, field: str) -> None:
        sequence = message.metadata.sequence.stream
        headers = deadletter_headers(message.data, message.subject, sequence, reason, field)
        try:
            await js.publish(DEADLETTER_SUBJECT, b"", headers=headers, timeout=_PUBLISH_TIMEOUT_S)
        except (NatsError, TimeoutError) as error:
            logger.error(
                "could not set the message aside on %s (%s): it will be redelivered",
                DEADLETTER_SUBJECT,
                error,
            )
            await message.nak(delay=5)
            return
        self._metrics.rejected.labels(headers["Vigie-Field"]).inc()
        await message.term()

    async def _record_boundary_fault(
        self, subject: str, camera: str, error: TracksBoundaryFaultError
    ) -> None:
        try:
            await self._audit.record_throttled(
                ("tracks_unknown_fields", camera),
                AuditAction.AUDIT_ACTION_BOUNDARY_FAULT,
                motive=(
                    "a TRACKS message carried data a TrackFrame has no field for (TRACKS holds boxes and "
                    "track ids only): terminated, kept nowhere"
                ),
                camera_ids=[camera] if is_camera_id(camera) else [],
                outcome=AuditOutcome.AUDIT_OUTCOME_DENIED,
                details={
                    "stream": "TRACKS",
                    "subject": subject[:256],
                    "unknown_fields": ",".join(str(n) for n in error.field_numbers) or "nested",
                    "unknown_bytes": str(error.unknown_bytes),
                },
            )
        except AuditUnavailableError as audit_error:
            logger.error("boundary fault on %s not audited: %s", subject, audit_error)

    async def _watch_geometry(self) -> None:
        async for update in self._source.updates():
            await self._geometry_updates.put(update)

    async def _apply_geometry_updates(self) -> None:
        while not self._geometry_updates.empty():
            update = self._geometry_updates.get_nowait()
            camera = self._anonymiser.cameras.get(update.camera_id)
            change = geometry_change(
                update.camera_id, camera.geometry if camera is not None else None, update.geometry
            )
            if change is not None:
                await self._record_geometry_change(change)
            reports = self._anonymiser.set_geometry(update.camera_id, update.geometry)
            self._dirty.add(update.camera_id)
            self._unknown_cameras.discard(update.camera_id)
            if update.geometry is None:
                logger.info("camera %s: geometry withdrawn, no longer counted", update.camera_id)
            else:
                logger.info("camera %s: geometry %s in force", update.camera_id, update.geometry.version)
            self._outbox.extend(reports)

    async def _record_geometry_change(self, change: GeometryChange) -> None:
        # The change applies even if it cannot be audited now: counting with a geometry that was withdrawn
        # or replaced (an objection, a moved line) would be worse than a late audit event. The change
        # itself is the registry's to audit, with the operator who made it; this records it in force here.
        try:
            await self._audit.record(
                change.action,
                actor=self._audit.actor,
                motive="the counting geometry (lines, zones, reporting window) of a camera changed version",
                camera_ids=[change.camera_id],
                records=[("geometry", f"{change.camera_id}:{change.current or change.previous}")],
                details={
                    "field": "geometry",
                    "from": change.previous,
                    "to": change.current,
                    "partition": str(self._settings.partition),
                },
            )
        except AuditUnavailableError as error:
            logger.error("camera %s: geometry change not audited: %s", change.camera_id, error)

    async def _publish(self, js: JetStreamContext) -> bool:
        """Publish the waiting reports in order; False (and retry later) when EVENTS does not take one."""
        while self._outbox:
            report = self._outbox[0]
            with self._tracer.start_as_current_span(
                "anonymiser.report",
                kind=trace.SpanKind.PRODUCER,
                attributes={"vigie.camera": report.camera_id},
            ):
                headers = trace_headers({"Nats-Msg-Id": report.report_id})
                data = report_message(report).SerializeToString()
                try:
                    ack = await js.publish(
                        events_subject(report.camera_id), data, headers=headers, timeout=_PUBLISH_TIMEOUT_S
                    )
                except (NatsError, TimeoutError) as error:
                    self._metrics.publish_failures.inc()
                    self._metrics.outbox.set(len(self._outbox))
                    self._retry_at = time.monotonic() + _RETRY_AFTER_S
                    logger.warning(
                        "EVENTS did not take %d report(s), retrying in %.0f s: %s",
                        len(self._outbox),
                        _RETRY_AFTER_S,
                        error,
                    )
                    return False
            self._outbox.popleft()
            self._dirty.add(report.camera_id)  # its checkpoint need not hold the report any more
            self._metrics.reports.labels(report.camera_id, report.closed_by.name.lower()).inc()
            if ack.duplicate:
                self._metrics.duplicate_reports.inc()
                logger.info("EVENTS already had report %s of camera %s", report.report_id, report.camera_id)
        self._metrics.outbox.set(0)
        return True

    async def _publish_before_exit(self, nc: Client, js: JetStreamContext) -> None:
        for attempt in range(3):
            if not self._outbox:
                return
            if attempt:
                await asyncio.sleep(_RETRY_AFTER_S)
            with contextlib.suppress(NatsError, TimeoutError):
                await nc.flush()
            if await self._publish(js):
                return
        logger.error("stopping with %d window report(s) EVENTS did not take: lost", len(self._outbox))


async def wait_for_tracks_stream(
    js: JetStreamContext, settings: AnonymiserSettings, stop: asyncio.Event, guard: StreamGuard
) -> str | None:
    """Wait until the provisioner has created TRACKS and check it (and keep checking it); return this
    replica's subject filter (None if stopped)."""
    try:
        # Its retention is the provisioner's business (sized from inference's needs).
        info = await guard.bind(js, TracksStream(settings.partitions).config(), sized=False)
    except StreamNotProvisionedError:
        if stop.is_set():
            return None
        raise
    have = partitions_of(info.config)
    if have != settings.partitions:
        raise RuntimeError(
            f"TRACKS is split into {have} partition(s) but the anonymiser expects {settings.partitions}: "
            "set the anonymiser's partitions to the provisioner's tracks_partitions"
        )
    return partition_filter(TRACKS_PREFIX, settings.partition)


async def record_start(
    audit: AuditPublisher, settings: AnonymiserSettings, geometries: list[CameraGeometry]
) -> None:
    """The configuration the replica starts with, in the journal: a digest of the settings, and the
    cameras counted with the version of each one's geometry."""
    try:
        await record_configuration(
            audit,
            settings,
            camera_ids=[g.camera_id for g in geometries],
            records=[("geometry", f"{g.camera_id}:{g.version}") for g in geometries],
            details={
                "partition": str(settings.partition),
                "partitions": str(settings.partitions),
                "cameras": str(len(geometries)),
            },
        )
    except AuditUnavailableError as error:  # cannot happen with an empty buffer; said, not hidden
        logger.error("the configuration in force could not be audited: %s", error)


async def serve(runtime: ServiceRuntime, geometry_source: CameraGeometrySource | None = None) -> None:
    """The service's body: count until asked to stop."""
    settings = runtime.settings
    assert isinstance(settings, AnonymiserSettings)
    nc, audit = await connect_with_audit(
        runtime, settings.nats, settings.audit, f"vigie-anonymiser-{settings.partition}"
    )
    policies = await policy_view(runtime, nc, settings.policy)
    source: CameraGeometrySource
    if geometry_source is not None:
        source = geometry_source
    elif policies is not None:
        source = PolicyGeometrySource(policies, settings.cameras)
    else:
        source = ConfigGeometrySource(settings.cameras)
    await record_start(audit, settings, source.current())
    await AnonymiserPipeline(runtime, settings, source, nc, audit, policies).run()
