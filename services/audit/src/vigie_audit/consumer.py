"""The journal's NATS edge: the only consumer of the AUDIT stream.

A durable pull consumer fetches up to ``fetch_batch`` events, the store appends the valid ones in one
transaction, and only then is every message of the batch acknowledged. Exactly once:

- a publisher's retry within the duplicate window is dropped by JetStream (``Nats-Msg-Id``);
- a redelivery (the service died after the commit, before the acks) finds its event id stored and is
  acknowledged without a second append;
- a failing database keeps the batch in hand (``in_progress`` stops the redelivery clock) and retries
  it with back-off, whatever the failure (the database down, the connection reset mid-transaction), so
  events stay in order and an outage delays them without losing any; a commit whose answer was lost is
  found on the retry (its event ids are stored). On shutdown the batch is handed back (``nak``) for the
  next start.

Order. Batches are appended in the order they were delivered, so each service's events keep their
order. On a clean stop nothing is left unacknowledged (messages delivered after the last fetch are
handed back, and redelivered first). After a crash the unacknowledged messages (at most
``max_ack_pending``: two batches) come back after ``ack_wait``; newer events may be appended before
them meanwhile: nothing is lost or doubled, and every entry keeps the time it occurred.

A message that is not a valid audit event is kept aside in ``audit_rejected_messages`` with the reason,
logged, counted, and acknowledged: it never blocks the stream and is never appended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from google.protobuf.message import DecodeError
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from opentelemetry import trace
from prometheus_client import Counter, Gauge, Histogram

from vigie_audit.pull import BatchPuller
from vigie_audit.settings import AuditSettings
from vigie_audit.store import AppendResult, JournalStore, Rejection
from vigie_core.audit import InvalidAuditEventError, validate_audit_event
from vigie_core.database import DatabaseHealth, DatabaseWaitStoppedError, is_database_failure
from vigie_core.lifecycle import ServiceRuntime
from vigie_core.messaging import context_from_headers, hand_back
from vigie_core.streams import AUDIT_PREFIX
from vigie_proto.v1.audit_pb2 import AuditEvent

logger = logging.getLogger("vigie.audit.consumer")

DURABLE = "audit"
# Spans link to at most this many of a batch's messages (the SDK's default link limit is 128).
_MAX_LINKS = 64


class RejectedMessageError(ValueError):
    """A message on the AUDIT stream that is not a valid audit event; it is kept aside, never appended."""


def parse_audit_message(subject: str, payload: bytes) -> AuditEvent:
    """The event a message carries, checked against the rules and against the subject it arrived on."""
    prefix = AUDIT_PREFIX + "."
    if not subject.startswith(prefix) or "." in subject[len(prefix) :]:
        raise RejectedMessageError(f"subject {subject!r} is not {AUDIT_PREFIX}.<service>")
    try:
        event = AuditEvent.FromString(payload)
    except DecodeError as error:
        raise RejectedMessageError(f"not an AuditEvent protobuf: {error}") from None
    try:
        # A service's NATS user may publish only on its own subject: the service field must agree with it.
        validate_audit_event(event, service=subject[len(prefix) :])
    except InvalidAuditEventError as error:
        raise RejectedMessageError(str(error)) from None
    return event


class JournalMetrics:
    def __init__(self, runtime: ServiceRuntime) -> None:
        registry = runtime.registry
        self.appended = Counter("vigie_audit_journal_appended_entries", "Entries appended", registry=registry)
        self.duplicates = Counter(
            "vigie_audit_journal_duplicate_events",
            "Redelivered events already in the journal",
            registry=registry,
        )
        self.rejected = Counter(
            "vigie_audit_journal_rejected_messages",
            "Messages of the AUDIT stream that were not valid audit events (kept aside)",
            registry=registry,
        )
        self.storage_errors = Counter(
            "vigie_audit_journal_storage_errors", "Failed append transactions (retried)", registry=registry
        )
        self.tree_size = Gauge("vigie_audit_journal_tree_size", "Entries in the journal", registry=registry)
        self.append_seconds = Histogram(
            "vigie_audit_journal_append_seconds",
            "One batch: append transaction and acknowledgements",
            buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5),
            registry=registry,
        )
        self.tree_heads = Counter(
            "vigie_audit_journal_tree_heads_signed", "Signed tree heads", registry=registry
        )
        self.last_tree_head = Gauge(
            "vigie_audit_journal_last_tree_head_timestamp_seconds",
            "When the latest tree head was signed",
            registry=registry,
        )
        self.pruned = Counter(
            "vigie_audit_journal_pruned_entries", "Entries whose payload retention removed", registry=registry
        )


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


class JournalConsumer:
    def __init__(
        self,
        runtime: ServiceRuntime,
        settings: AuditSettings,
        store: JournalStore,
        metrics: JournalMetrics,
        database: DatabaseHealth | None = None,
    ) -> None:
        self._runtime = runtime
        self._settings = settings
        self._store = store
        # The service's (its readiness shows the outages the consumer meets), or one of its own.
        self._database = database or DatabaseHealth(store.engine)
        self._metrics = metrics
        self._tracer = runtime.tracer
        self.storage_problem: str | None = None

    async def _ensure_consumer(self, nc: Client) -> None:
        """Create the durable consumer, or bring its settings up to date."""
        settings = self._settings
        await nc.jetstream().add_consumer(
            "AUDIT",
            ConsumerConfig(
                durable_name=DURABLE,
                filter_subject=f"{AUDIT_PREFIX}.*",
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=settings.ack_wait_s,
                max_deliver=-1,  # an audit event is never given up on
                # The batch being written and the one delivered meanwhile (see the module's docstring).
                max_ack_pending=2 * settings.fetch_batch,
            ),
        )

    async def run(self, nc: Client) -> None:
        settings = self._settings
        await self._ensure_consumer(nc)
        puller = BatchPuller(nc, "AUDIT", DURABLE)
        await puller.start()
        stop = self._runtime.stop_requested
        try:
            while not stop.is_set():
                messages = await puller.fetch(settings.fetch_batch, settings.fetch_timeout_s)
                if messages:
                    await self.process(messages)
                elif puller.problem is not None:
                    # E.g. the consumer was deleted (409) or is missing (503): recreate it, go on.
                    logger.warning("pull request refused (%s): ensuring the consumer", puller.problem)
                    try:
                        await self._ensure_consumer(nc)
                    except Exception as error:  # NATS errors of every kind: retried at the next refusal
                        logger.error("could not create the consumer, retrying: %r", error)
        finally:
            # Delivered but not fetched when stopping: handed back in order, so they are redelivered
            # first instead of after ack_wait, behind newer events.
            left = await puller.stop(settings.fetch_timeout_s + 1.0)
            for message in left:
                await message.nak()
            if left:
                logger.info("handed back %d message(s) delivered after the last fetch", len(left))

    async def process(self, messages: list[Msg]) -> AppendResult | None:
        """Append a fetched batch and acknowledge it; None if it was handed back (stopping)."""
        started = time.perf_counter()
        accepted: list[Msg] = []
        events: list[AuditEvent] = []
        rejected: list[Msg] = []
        rejections: list[Rejection] = []
        for message in messages:
            try:
                events.append(parse_audit_message(message.subject, message.data))
                accepted.append(message)
            except RejectedMessageError as error:
                sequence = message.metadata.sequence.stream if message.reply else None
                logger.error(
                    "rejected a message on %s (stream sequence %s): %s", message.subject, sequence, error
                )
                rejected.append(message)
                rejections.append(Rejection(message.subject, sequence, str(error), message.data))
        links = [
            trace.Link(trace.get_current_span(context_from_headers(m.headers)).get_span_context())
            for m in messages[:_MAX_LINKS]
        ]
        with self._tracer.start_as_current_span(
            "audit.append",
            kind=trace.SpanKind.CONSUMER,
            links=links,
            attributes={"vigie.batch": len(messages)},
        ):
            if not await self._retry_storage(lambda: self._store.reject(rejections), rejected):
                return None
            await self._acknowledge(rejected)
            self._metrics.rejected.inc(len(rejected))
            appended: list[AppendResult] = []

            async def append() -> None:
                appended.append(await self._store.append(events))

            if not await self._retry_storage(append, accepted):
                return None
            if appended:
                result = appended[0]
            else:
                try:
                    size = await self._database.retry(
                        self._store.tree_size,
                        stop=self._runtime.stop_requested,
                        what="reading the journal's size",
                    )
                except DatabaseWaitStoppedError:
                    return None
                result = AppendResult([], [], size)
        # Acknowledged only now that the transaction is committed.
        await self._acknowledge(accepted)
        self._metrics.appended.inc(len(result.appended))
        self._metrics.duplicates.inc(len(result.duplicates))
        self._metrics.tree_size.set(result.tree_size)
        self._metrics.append_seconds.observe(time.perf_counter() - started)
        if result.duplicates:
            logger.info("%d redelivered event(s) already in the journal", len(result.duplicates))
        return result

    async def _acknowledge(self, messages: list[Msg]) -> None:
        if not messages:
            return
        for message in messages[:-1]:
            await message.ack()
        # The last one synchronously: the server handles a consumer's acks in order, so once it answers,
        # the whole batch is off max_ack_pending before the next pull request is weighed against it.
        try:
            await messages[-1].ack_sync(timeout=self._settings.fetch_timeout_s * 4)
        except TimeoutError:
            logger.warning("no answer to an acknowledgement within %.1fs", self._settings.fetch_timeout_s * 4)

    async def _retry_storage(self, write: Callable[[], Awaitable[None]], messages: list[Msg]) -> bool:
        """Run ``write`` until it succeeds (True) or the service stops (False: ``messages`` handed back)."""
        if not messages:
            return True

        def failed(error: BaseException) -> None:
            self._metrics.storage_errors.inc()
            self.storage_problem = f"cannot write to the journal: {error.__class__.__name__}"

        async def keep_in_hand() -> None:
            for message in messages:
                with contextlib.suppress(NatsError):  # the broker away too: it redelivers after ack_wait
                    await message.in_progress()

        try:
            await self._database.retry(
                write,
                stop=self._runtime.stop_requested,
                what=f"writing {len(messages)} message(s)",
                retry_on=is_database_failure,
                on_failure=failed,
                before_wait=keep_in_hand,
            )
        except DatabaseWaitStoppedError:
            await hand_back(messages)
            return False
        self.storage_problem = None
        return True
