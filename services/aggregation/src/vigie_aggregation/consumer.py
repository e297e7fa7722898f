"""The aggregation's NATS edge: the EVENTS consumer, and the dead-letter subject for what it rejects.

Exactly once. A durable pull consumer (``aggregation``, shared by replicas) fetches up to ``fetch_batch``
reports; the valid ones are stored in one transaction (:meth:`StatisticsStore.apply_parts`), and only after
the commit is each message acknowledged:

- a report published twice within EVENTS' duplicate window never reaches us twice (``Nats-Msg-Id`` is the
  report id); one published again later, or redelivered because we died between the commit and the
  acknowledgements, finds its report id in ``applied_reports`` and is acknowledged without being counted;
- a failing database keeps the batch in hand (``in_progress`` stops the redelivery clock) and retries it
  with back-off, whatever the failure (refused, the connection reset mid-transaction, a conflict with
  another replica): nothing is acknowledged before its commit, so an outage delays reports and loses
  none; a commit whose answer was lost is found stored on the retry. When the service stops meanwhile,
  the batch is handed back (``nak``) for the next start.

Malformed reports are published to ``vigie.deadletter.aggregation`` (stream ``DEADLETTER_AGGREGATION``) with
the field at fault and the reason in headers, logged, counted, and terminated: they never block the stream
and the service carries on. If the dead-letter publish itself fails, the report is handed back instead,
so nothing is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    StreamConfig,
)
from nats.js.errors import NotFoundError
from opentelemetry import trace
from opentelemetry.trace import Tracer

from vigie_aggregation.metrics import AggregationMetrics
from vigie_aggregation.reports import InvalidReportError, WindowPart, parse_window_report
from vigie_aggregation.storage.store import ApplyResult, StatisticsStore
from vigie_core.database import DatabaseHealth, DatabaseWaitStoppedError, is_database_failure
from vigie_core.messaging import (
    DurablePull,
    StreamGuard,
    StreamNotProvisionedError,
    context_from_headers,
    hand_back,
)
from vigie_core.streams import EVENTS_PREFIX, DeadLetterStream, EventsStream, deadletter_subject

__all__ = ["DEADLETTER_STREAM", "DEADLETTER_SUBJECT", "DURABLE", "ReportConsumer", "deadletter_stream"]

logger = logging.getLogger("vigie.aggregation.consumer")

SERVICE = "aggregation"
DURABLE = "aggregation"
EVENTS_STREAM = "EVENTS"
DEADLETTER_SUBJECT = deadletter_subject(SERVICE)
DEADLETTER_STREAM = "DEADLETTER_AGGREGATION"
# Spans link to at most this many of a batch's messages (the SDK's default link limit is 128).
_MAX_LINKS = 64


def deadletter_stream(max_age_s: float) -> StreamConfig:
    """Rejected reports, kept for inspection. File storage: they are anonymous, like EVENTS itself
    (:class:`vigie_core.streams.DeadLetterStream`, created by the provisioner)."""
    return DeadLetterStream(SERVICE, max_age_s).config()


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


class ReportConsumer:
    def __init__(
        self,
        js: JetStreamContext,
        store: StatisticsStore,
        *,
        publication_window_s: int,
        site_of: Callable[[str], str | None],
        metrics: AggregationMetrics,
        tracer: Tracer,
        stop: asyncio.Event,
        fetch_batch: int = 256,
        fetch_timeout_s: float = 0.5,
        ack_wait_s: float = 60.0,
        clock: Callable[[], float] = time.time,
        database: DatabaseHealth | None = None,
    ) -> None:
        self._js = js
        self._store = store
        # The service's (its readiness shows the outages the consumer meets), or one of its own.
        self._database = database or DatabaseHealth(store.engine)
        self._window_s = publication_window_s
        self._site_of = site_of
        self._metrics = metrics
        self._tracer = tracer
        self._stop = stop
        self._fetch_batch = fetch_batch
        self._fetch_timeout_s = fetch_timeout_s
        self._ack_wait_s = ack_wait_s
        self._clock = clock
        self.storage_problem: str | None = None

    async def wait_for_stream(self, guard: StreamGuard) -> bool:
        """Wait until the provisioner has created EVENTS and check it (it copies from nowhere), then keep
        checking it; False if asked to stop first."""
        try:
            await guard.bind(self._js, EventsStream().config(), sized=False)
        except StreamNotProvisionedError:
            if self._stop.is_set():
                return False
            raise
        return True

    async def run(self) -> None:
        # Bound again by itself if the broker loses the consumer or the stream comes back (EVENTS is on
        # disk: a restart keeps it, with its consumer).
        reports = DurablePull(
            self._js,
            stream=EVENTS_STREAM,
            subject=f"{EVENTS_PREFIX}.*",
            stop=self._stop,
            config=ConsumerConfig(
                durable_name=DURABLE,
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=self._ack_wait_s,
                max_deliver=-1,  # a report is never given up on: storage failures are retried
                max_ack_pending=self._fetch_batch * 4,
            ),
        )
        if not await reports.bind():
            return
        logger.info("consuming %s.* (durable %s)", EVENTS_PREFIX, DURABLE)
        try:
            while not self._stop.is_set():
                messages = await reports.fetch(self._fetch_batch, timeout_s=self._fetch_timeout_s)
                if messages:
                    await self.process(messages)
        finally:
            # Reports fetched by no one stay in EVENTS for the next start (or another replica).
            await reports.close()

    async def caught_up(self) -> bool:
        """Whether every report in EVENTS has been stored (nothing pending, nothing in flight)."""
        try:
            info = await self._js.consumer_info(EVENTS_STREAM, DURABLE)
        except (NatsError, NotFoundError) as error:
            logger.debug("consumer info unavailable: %s", error)
            return False
        return (info.num_pending or 0) == 0 and (info.num_ack_pending or 0) == 0

    async def process(self, messages: list[Msg]) -> ApplyResult | None:
        """Store a fetched batch and acknowledge it; None if it was handed back (stopping)."""
        started = time.perf_counter()
        accepted: list[Msg] = []
        parts: list[WindowPart] = []
        now = self._clock()
        for message in messages:
            try:
                msg_id = (message.headers or {}).get("Nats-Msg-Id")
                parts.append(
                    parse_window_report(
                        message.subject, message.data, msg_id, publication_window_s=self._window_s, now=now
                    )
                )
                accepted.append(message)
            except InvalidReportError as error:
                await self._dead_letter(message, error)
        links = [
            trace.Link(trace.get_current_span(context_from_headers(m.headers)).get_span_context())
            for m in accepted[:_MAX_LINKS]
        ]
        with self._tracer.start_as_current_span(
            "aggregation.store",
            kind=trace.SpanKind.CONSUMER,
            links=links,
            attributes={"vigie.batch": len(parts)},
        ):
            result = await self._store_with_retries(parts, accepted, int(now))
            if result is None:
                return None
            for message in accepted:
                await message.ack()
        self._metrics.stored.inc(len(result.applied))
        self._metrics.duplicates.inc(len(result.duplicates))
        if result.late:
            self._metrics.late.inc(len(result.late))
            logger.warning(
                "%d report(s) arrived after their window was published: stored, not published (first %s)",
                len(result.late),
                result.late[0],
            )
        unassigned = sum(1 for p in parts if self._site_of(p.camera_id) is None)
        if unassigned:
            self._metrics.unassigned.inc(unassigned)
        self._metrics.store_seconds.observe(time.perf_counter() - started)
        return result

    async def _store_with_retries(
        self, parts: list[WindowPart], messages: list[Msg], now: int
    ) -> ApplyResult | None:
        """Store the batch, retrying until it is stored; None if the service stopped first (the batch is
        then handed back)."""
        if not parts:
            return ApplyResult([], [], [])

        def failed(error: BaseException) -> None:
            self._metrics.storage_errors.inc()
            self.storage_problem = f"storing reports fails: {type(error).__name__}"

        async def keep_in_hand() -> None:
            for message in messages:
                with contextlib.suppress(NatsError):
                    await message.in_progress()

        try:
            result = await self._database.retry(
                lambda: self._store.apply_parts(parts, now=now, site_of=self._site_of),
                stop=self._stop,
                what=f"storing {len(parts)} report(s)",
                retry_on=is_database_failure,
                on_failure=failed,
                before_wait=keep_in_hand,
            )
        except DatabaseWaitStoppedError:
            await hand_back(messages)
            return None
        self.storage_problem = None
        return result

    async def _dead_letter(self, message: Msg, error: InvalidReportError) -> None:
        sequence = message.metadata.sequence.stream if message.reply else None
        logger.error(
            "rejected a report on %s (stream sequence %s): %s; set aside on %s",
            message.subject,
            sequence,
            error,
            DEADLETTER_SUBJECT,
        )
        headers = {
            "Vigie-Field": error.field,
            "Vigie-Reason": str(error)[:1000],
            "Vigie-Original-Subject": message.subject,
        }
        if sequence is not None:
            headers["Vigie-Stream-Sequence"] = str(sequence)
            # A redelivered rejection is set aside once.
            headers["Nats-Msg-Id"] = f"aggregation-rejected-{sequence}"
        try:
            await self._js.publish(DEADLETTER_SUBJECT, message.data, headers=headers, timeout=5.0)
        except (NatsError, NatsTimeoutError) as publish_error:
            logger.error("could not set the rejected report aside, handing it back: %s", publish_error)
            with contextlib.suppress(NatsError):
                await message.nak(delay=5.0)
            return
        self._metrics.deadlettered.labels(error.field.split("[")[0].split(".")[0]).inc()
        if message.reply:
            await message.term()
