"""Audit events: how every service records who did what, when, why and on which cameras.

The rules are docs/privacy.md section F.

A service builds one :class:`AuditPublisher` at start-up (:func:`start_audit_publisher`) and calls
:meth:`AuditPublisher.record` for every configuration change, data read or export, honoured objection,
retention deletion, permission violation or boundary fault::

    audit = await start_audit_publisher(runtime, nc, settings.audit)
    await audit.record(
        AuditAction.AUDIT_ACTION_DATA_READ,
        actor=principal.subject,
        motive="monthly traffic report",
        camera_ids=["north-gate"],
        data_start=window.start,
        data_end=window.end,
    )

The event goes to ``vigie.audit.<service>`` with the caller's trace context and its event id as
``Nats-Msg-Id`` (JetStream drops a retried duplicate; the journal's unique event id drops any later one).
``record`` returns once the event is in a bounded in-memory buffer; a background task publishes it,
retrying with exponential back-off (tenacity) while NATS or the AUDIT stream is unavailable, so a short
outage loses nothing. If the buffer stays full, ``record`` raises :class:`AuditUnavailableError`: the
caller should then refuse the action rather than do it unaudited. ``confirm=True`` waits until the
stream has stored the event (e.g. before an export leaves). Events still buffered when the service stops
are retried until ``drain_timeout_s`` and then counted in ``vigie_audit_publisher_lost_events_total``.

Events hold no personal data of citizens: ids of operators are pseudonymous, and validation refuses
what looks like an e-mail address, unknown actions and oversized details.

What every service records the same way, through this module:

- its connection: :func:`connect_with_audit` connects to NATS and starts the publisher on it; every
  operation the NATS server refuses to that connection (a subject outside the service's permissions,
  ``vigie_core.permissions``) becomes a ``permission_violation`` event, outcome ``denied``;
- its configuration at start-up: :func:`record_configuration`, a ``config_update`` carrying the SHA-256
  of the settings without their secrets (:func:`settings_digest`);
- automatic events that can repeat fast (a violation in a loop, a fault on every message):
  :meth:`AuditPublisher.record_throttled` records each distinct one at most once per
  ``repeat_interval_s`` and counts the repeats in between, so a fault cannot flood the journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, NamedTuple, Protocol
from urllib.parse import urlsplit, urlunsplit

from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import BaseModel, ConfigDict, Field
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential_jitter

from vigie_proto.v1.audit_pb2 import AuditAction, AuditEvent, AuditOutcome, RecordRef

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.js import JetStreamContext

    from vigie_core.lifecycle import ServiceRuntime
    from vigie_core.messaging import PermissionViolation
    from vigie_core.settings import NatsSettings

__all__ = [
    "MAX_EVENT_BYTES",
    "AuditAction",
    "AuditEvent",
    "AuditOutcome",
    "AuditPublishSettings",
    "AuditPublisher",
    "AuditSink",
    "AuditUnavailableError",
    "AuditedConnection",
    "InvalidAuditEventError",
    "JetStreamAuditSink",
    "MemoryAuditSink",
    "RecordRef",
    "action_from_name",
    "action_name",
    "action_names",
    "connect_with_audit",
    "new_audit_event",
    "outcome_from_name",
    "outcome_name",
    "record_configuration",
    "record_permission_violation",
    "redact_url",
    "service_actor",
    "settings_digest",
    "start_audit_publisher",
    "validate_audit_event",
]

logger = logging.getLogger("vigie.audit")

# Matches AuditStream.max_msg_size: an event is a few hundred bytes; this bound stops a runaway details map.
MAX_EVENT_BYTES = 64 * 1024
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_CANONICAL_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# Pseudonymous ids from identity providers: UUIDs, "auth0|abc", "service:aggregation". No spaces, no "@".
_ACTOR = re.compile(r"^[A-Za-z0-9._:|=+/-]{1,128}$")
_RECORD_KIND = re.compile(r"^[a-z0-9_.-]{1,64}$")
_DETAIL_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MAX_MOTIVE = 1000
_MAX_LIST = 1000
_MAX_RECORD_ID = 256
_MAX_DETAILS = 64
_MAX_DETAIL_VALUE = 1024
_MAX_THROTTLED_KEYS = 4096
_ACTION_PREFIX = "AUDIT_ACTION_"
_OUTCOME_PREFIX = "AUDIT_OUTCOME_"
_KNOWN_ACTIONS = frozenset(AuditAction.values()) - {AuditAction.AUDIT_ACTION_UNSPECIFIED}
_KNOWN_OUTCOMES = frozenset(AuditOutcome.values()) - {AuditOutcome.AUDIT_OUTCOME_UNSPECIFIED}


class InvalidAuditEventError(ValueError):
    """An audit event that breaks a rule; ``field`` names the field at fault."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field


class AuditUnavailableError(RuntimeError):
    """The event could not be buffered (or confirmed) in time: do not perform the action unaudited."""


class _EnumNames:
    """The API names of a protobuf enum's values: lower case, without the enum's prefix."""

    def __init__(self, names: Mapping[int, str], prefix: str, kind: str) -> None:
        self._kind = kind
        self._by_value = {v: name.removeprefix(prefix).lower() for v, name in names.items()}
        # UNSPECIFIED (0) has a name for display but is never a valid choice.
        self._by_name = {name: v for v, name in self._by_value.items() if v != 0}

    def name(self, value: int) -> str:
        try:
            return self._by_value[value]
        except KeyError:
            raise ValueError(f"{value} is not a known {self._kind}") from None

    def value(self, name: str) -> int:
        try:
            return self._by_name[name.lower()]
        except KeyError:
            raise ValueError(f"unknown {self._kind} {name!r}; known: {', '.join(self.names())}") from None

    def names(self) -> list[str]:
        return list(self._by_name)


_ACTIONS = _EnumNames({v: AuditAction.Name(v) for v in AuditAction.values()}, _ACTION_PREFIX, "action")
_OUTCOMES = _EnumNames({v: AuditOutcome.Name(v) for v in AuditOutcome.values()}, _OUTCOME_PREFIX, "outcome")


def action_name(action: AuditAction.ValueType) -> str:
    """``AUDIT_ACTION_DATA_READ`` -> ``"data_read"``, the name the audit API uses."""
    return _ACTIONS.name(action)


def action_from_name(name: str) -> AuditAction.ValueType:
    """``"data_read"`` -> ``AUDIT_ACTION_DATA_READ``; an unknown name raises ValueError listing the known."""
    return AuditAction.ValueType(_ACTIONS.value(name))


def action_names() -> list[str]:
    return _ACTIONS.names()


def outcome_name(outcome: AuditOutcome.ValueType) -> str:
    return _OUTCOMES.name(outcome)


def outcome_from_name(name: str) -> AuditOutcome.ValueType:
    return AuditOutcome.ValueType(_OUTCOMES.value(name))


def _timestamp(value: datetime, field: str) -> Timestamp:
    if value.tzinfo is None:
        raise InvalidAuditEventError(
            field, "a datetime with a timezone is needed (naive times are ambiguous)"
        )
    stamp = Timestamp()
    stamp.FromDatetime(value.astimezone(UTC))
    return stamp


def new_audit_event(
    service: str,
    action: AuditAction.ValueType,
    *,
    actor: str,
    motive: str,
    camera_ids: Iterable[str] = (),
    records: Iterable[RecordRef | tuple[str, str]] = (),
    data_start: datetime | None = None,
    data_end: datetime | None = None,
    outcome: AuditOutcome.ValueType = AuditOutcome.AUDIT_OUTCOME_SUCCESS,
    details: Mapping[str, str] | None = None,
    occurred_at: datetime | None = None,
) -> AuditEvent:
    """A new, validated event with a fresh random event id."""
    event = AuditEvent(
        event_id=str(uuid.uuid4()),
        service=service,
        actor=actor,
        action=action,
        motive=motive,
        camera_ids=list(camera_ids),
        records=[r if isinstance(r, RecordRef) else RecordRef(kind=r[0], id=r[1]) for r in records],
        outcome=outcome,
        details=dict(details or {}),
    )
    event.occurred_at.CopyFrom(_timestamp(occurred_at or datetime.now(UTC), "occurred_at"))
    if data_start is not None:
        event.data_time_range.start.CopyFrom(_timestamp(data_start, "data_time_range.start"))
    if data_end is not None:
        event.data_time_range.end.CopyFrom(_timestamp(data_end, "data_time_range.end"))
    validate_audit_event(event, service=service)
    return event


def validate_audit_event(event: AuditEvent, *, service: str | None = None) -> None:
    """Raise :class:`InvalidAuditEventError` naming the first field that breaks a rule.

    ``service``, when given, is the service the event must come from (the subject it arrived on).
    """
    if not _CANONICAL_UUID.fullmatch(event.event_id):
        raise InvalidAuditEventError(
            "event_id", f"{event.event_id!r} is not a UUID in its canonical form (lowercase, with hyphens)"
        )
    if not event.HasField("occurred_at"):
        raise InvalidAuditEventError("occurred_at", "missing")
    if not _TOKEN.fullmatch(event.service):
        raise InvalidAuditEventError("service", f"{event.service!r} is not a service name")
    if service is not None and event.service != service:
        raise InvalidAuditEventError("service", f"{event.service!r} published as service {service!r}")
    if "@" in event.actor:
        raise InvalidAuditEventError(
            "actor", "looks like an e-mail address: use the pseudonymous operator id"
        )
    if not _ACTOR.fullmatch(event.actor):
        raise InvalidAuditEventError(
            "actor", "a pseudonymous id of 1 to 128 letters, digits or ._:|=+/- (no spaces) is needed"
        )
    if event.action not in _KNOWN_ACTIONS:
        raise InvalidAuditEventError("action", f"{event.action} is not a known action")
    if event.outcome not in _KNOWN_OUTCOMES:
        raise InvalidAuditEventError("outcome", f"{event.outcome} is not a known outcome")
    if not event.motive.strip():
        raise InvalidAuditEventError("motive", "say why (the operator's motive or the rule applied)")
    if len(event.motive) > _MAX_MOTIVE or _CONTROL.search(event.motive):
        raise InvalidAuditEventError("motive", f"at most {_MAX_MOTIVE} characters, no control characters")
    if len(event.camera_ids) > _MAX_LIST:
        raise InvalidAuditEventError("camera_ids", f"at most {_MAX_LIST} cameras per event")
    for camera in event.camera_ids:
        if not _TOKEN.fullmatch(camera):
            raise InvalidAuditEventError("camera_ids", f"{camera!r} is not a camera id")
    if len(event.records) > _MAX_LIST:
        raise InvalidAuditEventError("records", f"at most {_MAX_LIST} records per event")
    for record in event.records:
        if not _RECORD_KIND.fullmatch(record.kind):
            raise InvalidAuditEventError("records", f"kind {record.kind!r}: lowercase letters, digits, _.-")
        if not 0 < len(record.id) <= _MAX_RECORD_ID or _CONTROL.search(record.id):
            raise InvalidAuditEventError(
                "records", f"id of a {record.kind} record: 1 to {_MAX_RECORD_ID} characters"
            )
    window = event.data_time_range
    if (
        window.HasField("start")
        and window.HasField("end")
        and (window.start.seconds, window.start.nanos) > (window.end.seconds, window.end.nanos)
    ):
        raise InvalidAuditEventError("data_time_range", "start is after end")
    if len(event.details) > _MAX_DETAILS:
        raise InvalidAuditEventError("details", f"at most {_MAX_DETAILS} entries")
    for key, value in event.details.items():
        if not _DETAIL_KEY.fullmatch(key):
            raise InvalidAuditEventError("details", f"key {key!r}: 1 to 64 letters, digits or _.-")
        if len(value) > _MAX_DETAIL_VALUE:
            raise InvalidAuditEventError(
                "details", f"value of {key!r}: at most {_MAX_DETAIL_VALUE} characters"
            )
    if event.ByteSize() > MAX_EVENT_BYTES:
        raise InvalidAuditEventError("event", f"{event.ByteSize()} bytes, at most {MAX_EVENT_BYTES}")


class AuditSink(Protocol):
    """Where the publisher sends events; raises on failure (the publisher retries)."""

    async def send(self, subject: str, payload: bytes, headers: dict[str, str]) -> None: ...


class JetStreamAuditSink:
    """The real sink: a JetStream publish, acknowledged once the AUDIT stream has stored the event."""

    def __init__(self, js: JetStreamContext, timeout_s: float = 2.0) -> None:
        self._js = js
        self._timeout_s = timeout_s

    async def send(self, subject: str, payload: bytes, headers: dict[str, str]) -> None:
        # A duplicate ack (ack.duplicate) means an earlier attempt was stored: that is success too.
        await self._js.publish(subject, payload, timeout=self._timeout_s, headers=headers)


class MemoryAuditSink:
    """An in-memory sink for tests: keeps what it receives, drops repeated ``Nats-Msg-Id`` like JetStream,
    and fails the next ``failures`` sends (set it to simulate an outage)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes, dict[str, str]]] = []
        self.failures = 0
        self.attempts = 0
        self._ids: set[str] = set()

    async def send(self, subject: str, payload: bytes, headers: dict[str, str]) -> None:
        self.attempts += 1
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("simulated NATS outage")
        msg_id = headers.get("Nats-Msg-Id", "")
        if msg_id and msg_id in self._ids:
            return
        self._ids.add(msg_id)
        self.messages.append((subject, payload, headers))

    def events(self) -> list[AuditEvent]:
        return [AuditEvent.FromString(payload) for _, payload, _ in self.messages]


class AuditPublishSettings(BaseModel):
    """The ``audit`` section of a service's settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    buffer_size: int = Field(10_000, ge=1, le=1_000_000, description="events held while NATS is unavailable")
    enqueue_timeout_s: float = Field(
        1.0, ge=0, description="how long record() waits for room in a full buffer before refusing"
    )
    publish_timeout_s: float = Field(2.0, gt=0, description="wait for the stream's acknowledgement")
    retry_initial_s: float = Field(0.05, gt=0, description="first back-off between attempts")
    retry_max_s: float = Field(5.0, gt=0, description="longest back-off between attempts")
    confirm_timeout_s: float = Field(10.0, gt=0, description="how long record(confirm=True) waits")
    drain_timeout_s: float = Field(
        10.0, ge=0, description="at shutdown, how long buffered events are retried"
    )
    repeat_interval_s: float = Field(
        60.0,
        ge=0,
        description=(
            "an automatic event that repeats (the same permission violation, the same boundary fault) is "
            "recorded at most once per this; the repeats in between are counted in the next one"
        ),
    )


@dataclass(slots=True)
class _Buffered:
    event: AuditEvent
    payload: bytes
    headers: dict[str, str]
    stored: asyncio.Future[None] | None


class _PublisherMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.published = Counter(
            "vigie_audit_publisher_published_events",
            "Audit events stored by the AUDIT stream",
            registry=registry,
        )
        self.failed_attempts = Counter(
            "vigie_audit_publisher_failed_attempts",
            "Attempts to publish an audit event that failed (each is retried)",
            registry=registry,
        )
        self.lost = Counter(
            "vigie_audit_publisher_lost_events",
            "Audit events never stored, by reason (buffer_full: refused to the caller; shutdown)",
            ["reason"],
            registry=registry,
        )
        for reason in ("buffer_full", "shutdown"):  # known reasons show as 0 until they happen
            self.lost.labels(reason)
        self.buffered = Gauge(
            "vigie_audit_publisher_buffered_events", "Audit events waiting to be published", registry=registry
        )
        self.repeats = Counter(
            "vigie_audit_publisher_repeats",
            "Repeats of an automatic event within repeat_interval_s, counted in the next event of its kind",
            ["action"],
            registry=registry,
        )


@dataclass(slots=True)
class _LastRecorded:
    at: float
    repeats: int = 0


class AuditPublisher:
    """Buffers audit events and publishes them in order to ``vigie.audit.<service>``, retrying."""

    def __init__(
        self,
        service: str,
        sink: AuditSink,
        *,
        settings: AuditPublishSettings | None = None,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # Imported here, not with the module: the events' validation and names above are used by code
        # that must not depend on NATS (the journal's verifier).
        from vigie_core.messaging import trace_headers
        from vigie_core.streams import audit_subject

        if not _TOKEN.fullmatch(service):
            raise ValueError(f"{service!r} is not a service name (one NATS subject token)")
        self.service = service
        self.subject = audit_subject(service)
        self._trace_headers = trace_headers
        self._sink = sink
        self._settings = settings or AuditPublishSettings()
        self._metrics = _PublisherMetrics(registry or CollectorRegistry())
        self._buffer: asyncio.Queue[_Buffered] = asyncio.Queue(maxsize=self._settings.buffer_size)
        self._sender: asyncio.Task[None] | None = None
        self._closing = False
        self._give_up_at: float | None = None
        self._clock = clock
        self._last_recorded: dict[Hashable, _LastRecorded] = {}
        initial = self._settings.retry_initial_s
        # Built once, so a mistake here fails at start-up rather than passing for an outage.
        self._retrying = AsyncRetrying(
            wait=wait_exponential_jitter(multiplier=initial, max=self._settings.retry_max_s, jitter=initial),
            stop=self._should_give_up,
            retry=retry_if_exception_type(Exception),
            before_sleep=self._on_failed_attempt,
            reraise=True,
        )

    @property
    def buffered(self) -> int:
        return self._buffer.qsize()

    @property
    def actor(self) -> str:
        """The actor of this service's automatic actions: ``service:<name>``."""
        return service_actor(self.service)

    async def start(self) -> None:
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_buffered(), name=f"audit-publisher-{self.service}")

    async def record(
        self,
        action: AuditAction.ValueType,
        *,
        actor: str,
        motive: str,
        camera_ids: Iterable[str] = (),
        records: Iterable[RecordRef | tuple[str, str]] = (),
        data_start: datetime | None = None,
        data_end: datetime | None = None,
        outcome: AuditOutcome.ValueType = AuditOutcome.AUDIT_OUTCOME_SUCCESS,
        details: Mapping[str, str] | None = None,
        occurred_at: datetime | None = None,
        confirm: bool = False,
    ) -> AuditEvent:
        """Record one action of this service; return the event (its ``event_id`` identifies it).

        Raises :class:`InvalidAuditEventError` for a bad field, :class:`AuditUnavailableError` when the
        event cannot be buffered (or, with ``confirm``, stored) in time.
        """
        event = new_audit_event(
            self.service,
            action,
            actor=actor,
            motive=motive,
            camera_ids=camera_ids,
            records=records,
            data_start=data_start,
            data_end=data_end,
            outcome=outcome,
            details=details,
            occurred_at=occurred_at,
        )
        await self.publish(event, confirm=confirm)
        return event

    async def record_throttled(
        self,
        key: Hashable,
        action: AuditAction.ValueType,
        *,
        motive: str,
        camera_ids: Iterable[str] = (),
        records: Iterable[RecordRef | tuple[str, str]] = (),
        outcome: AuditOutcome.ValueType = AuditOutcome.AUDIT_OUTCOME_SUCCESS,
        details: Mapping[str, str] | None = None,
    ) -> AuditEvent | None:
        """Record an automatic action of this service, at most once per ``key`` and ``repeat_interval_s``.

        For what can repeat on every message or every retry (a permission violation in a loop, a boundary
        fault on each message of a broken publisher): each distinct ``key`` reaches the journal at once,
        its repeats within the interval are counted (``vigie_audit_publisher_repeats_total``) and given in
        the next event for that key as ``details["repeats"]``. Returns None for a repeat. An event that
        could not be buffered does not count as recorded: the next occurrence tries again.
        """
        now = self._clock()
        last = self._last_recorded.get(key)
        if last is not None and now - last.at < self._settings.repeat_interval_s:
            last.repeats += 1
            self._metrics.repeats.labels(action_name(action)).inc()
            return None
        repeats = last.repeats if last is not None else 0
        # Claimed before waiting for room in the buffer, so that the same event arriving meanwhile counts
        # as a repeat; re-inserted last, so that the dict stays ordered by time.
        claim = _LastRecorded(now)
        self._last_recorded.pop(key, None)
        self._last_recorded[key] = claim
        try:
            event = await self.record(
                action,
                actor=self.actor,
                motive=motive,
                camera_ids=camera_ids,
                records=records,
                outcome=outcome,
                details={**(details or {}), **({"repeats": str(repeats)} if repeats else {})},
            )
        except BaseException:
            # Not recorded: the next occurrence is tried at once and reports every repeat so far.
            if self._last_recorded.get(key) is claim:
                self._last_recorded[key] = _LastRecorded(float("-inf"), repeats + claim.repeats)
            raise
        if len(self._last_recorded) > _MAX_THROTTLED_KEYS:
            # Forget the oldest keys (bounded memory); a forgotten key is recorded again at once.
            for stale in list(self._last_recorded)[: len(self._last_recorded) - _MAX_THROTTLED_KEYS]:
                del self._last_recorded[stale]
        return event

    async def publish(self, event: AuditEvent, *, confirm: bool = False) -> None:
        """Buffer an event built elsewhere (validated again here); see :meth:`record`."""
        validate_audit_event(event, service=self.service)
        if self._sender is None:
            raise AuditUnavailableError("the audit publisher is not started")
        if self._closing:
            raise AuditUnavailableError("the audit publisher is closing")
        stored: asyncio.Future[None] | None = None
        if confirm:
            stored = asyncio.get_running_loop().create_future()
            # Retrieved here so a failure after the caller stopped waiting is not reported as unhandled.
            stored.add_done_callback(lambda f: None if f.cancelled() else f.exception())
        # Headers are taken now, in the caller's trace context, not when the sender gets to it.
        item = _Buffered(
            event, event.SerializeToString(), self._trace_headers({"Nats-Msg-Id": event.event_id}), stored
        )
        try:
            await asyncio.wait_for(self._buffer.put(item), self._settings.enqueue_timeout_s)
        except TimeoutError:
            self._metrics.lost.labels("buffer_full").inc()
            logger.error(
                "audit buffer full (%d events): refused event %s", self._settings.buffer_size, event.event_id
            )
            raise AuditUnavailableError(
                f"the audit buffer has been full for {self._settings.enqueue_timeout_s}s: NATS unavailable?"
            ) from None
        self._metrics.buffered.set(self._buffer.qsize())
        if stored is not None:
            try:
                await asyncio.wait_for(asyncio.shield(stored), self._settings.confirm_timeout_s)
            except TimeoutError:
                raise AuditUnavailableError(
                    f"event {event.event_id} not stored within {self._settings.confirm_timeout_s}s "
                    "(it stays buffered and will still be published)"
                ) from None

    async def close(self) -> None:
        """Publish what is buffered (retrying up to ``drain_timeout_s``), then stop."""
        if self._sender is None or self._closing:
            return
        self._closing = True
        self._give_up_at = time.monotonic() + self._settings.drain_timeout_s
        with contextlib.suppress(TimeoutError):
            # The margin lets an attempt in flight at the deadline finish or fail.
            await asyncio.wait_for(
                self._buffer.join(), self._settings.drain_timeout_s + self._settings.publish_timeout_s + 1
            )
        self._sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._sender
        while not self._buffer.empty():
            self._lose(self._buffer.get_nowait(), "shutdown", "still buffered when the service stopped")
        self._metrics.buffered.set(0)

    def _lose(self, item: _Buffered, reason: str, detail: str) -> None:
        self._metrics.lost.labels(reason).inc()
        logger.error(
            "audit event %s (%s) lost at %s: %s",
            item.event.event_id,
            action_name(item.event.action),
            reason,
            detail,
        )
        if item.stored is not None and not item.stored.done():
            item.stored.set_exception(AuditUnavailableError(f"event {item.event.event_id} lost: {detail}"))

    def _should_give_up(self, state: RetryCallState) -> bool:
        return self._give_up_at is not None and time.monotonic() >= self._give_up_at

    def _on_failed_attempt(self, state: RetryCallState) -> None:
        self._metrics.failed_attempts.inc()
        error = state.outcome.exception() if state.outcome else None
        log = (
            logger.warning
            if state.attempt_number in (1, 10) or state.attempt_number % 100 == 0
            else logger.debug
        )
        log("publishing audit events failed (attempt %d, retrying): %r", state.attempt_number, error)

    async def _send_buffered(self) -> None:
        # One at a time, in order: a service's events reach the journal in the order they were recorded.
        while True:
            item = await self._buffer.get()
            try:
                async for attempt in self._retrying:
                    with attempt:
                        await self._sink.send(self.subject, item.payload, item.headers)
            except asyncio.CancelledError:
                self._lose(item, "shutdown", "stopped while publishing")
                raise
            except Exception as error:
                self._metrics.failed_attempts.inc()
                self._lose(item, "shutdown", f"still failing at the drain deadline: {error!r}")
            else:
                self._metrics.published.inc()
                if item.stored is not None and not item.stored.done():
                    item.stored.set_result(None)
            finally:
                self._buffer.task_done()
                self._metrics.buffered.set(self._buffer.qsize())


async def start_audit_publisher(
    runtime: ServiceRuntime, nc: Client, settings: AuditPublishSettings
) -> AuditPublisher:
    """The service's publisher on its NATS connection, closed (drained) with the runtime.

    Call it after registering ``nc.drain`` on the runtime's exit stack, so the publisher drains first.
    """
    publisher = AuditPublisher(
        runtime.name,
        JetStreamAuditSink(nc.jetstream(), settings.publish_timeout_s),
        settings=settings,
        registry=runtime.registry,
    )
    await publisher.start()
    runtime.exit_stack.push_async_callback(publisher.close)
    return publisher


def service_actor(service: str) -> str:
    """The actor of a service's automatic actions (docs/privacy.md rule 20: who)."""
    return f"service:{service}"


def redact_url(url: str) -> str:
    """Replace the password of a URL's user info, e.g. rtsp://admin:***@cam1/stream.

    The only form of a URL that may appear in logs, errors and audit events.
    """
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def _without_secrets(value: object) -> object:
    if isinstance(value, str):
        # Each of a comma-separated list, as NATS server URLs are given.
        return ",".join(redact_url(part) for part in value.split(",")) if "://" in value else value
    if isinstance(value, Mapping):
        return {key: _without_secrets(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_secrets(item) for item in value]
    return value


def settings_digest(settings: BaseModel) -> str:
    """The SHA-256 (hex) of a service's settings without their secrets: what the journal keeps of a
    configuration, so that an auditor can tell two starts with the same configuration from a change.

    Secrets (``SecretStr``) count as their mask only, and URLs (cameras, NATS servers) without their
    password: changing a password alone leaves the digest as it was; changing anything else changes it.
    """
    document = _without_secrets(settings.model_dump(mode="json"))
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def record_configuration(
    publisher: AuditPublisher,
    settings: BaseModel,
    *,
    camera_ids: Iterable[str] = (),
    records: Iterable[RecordRef | tuple[str, str]] = (),
    details: Mapping[str, str] | None = None,
) -> AuditEvent:
    """Record the configuration a service starts with: a ``config_update`` by ``service:<name>`` whose
    details hold the digest of its settings (``config_sha256``, :func:`settings_digest`) and whose
    ``records`` name it (``service_configuration`` ``<service>:<first 16 hex digits>``).

    Never the settings themselves: they may hold camera URLs and credentials. ``camera_ids`` are the
    cameras the configuration concerns; ``details`` adds a few non-secret facts (partitions, counts).
    """
    digest = settings_digest(settings)
    return await publisher.record(
        AuditAction.AUDIT_ACTION_CONFIG_UPDATE,
        actor=publisher.actor,
        motive="configuration in force at the start of the service (settings digest, secrets left out)",
        camera_ids=camera_ids,
        records=[("service_configuration", f"{publisher.service}:{digest[:16]}"), *records],
        details={**(details or {}), "change": "service_started", "config_sha256": digest},
    )


async def record_permission_violation(
    publisher: AuditPublisher, violation: PermissionViolation, *, nats_user: str | None = None
) -> AuditEvent | None:
    """Record an operation the NATS server refused to this service (outcome ``denied``), at most once per
    operation and subject and ``repeat_interval_s`` (:meth:`AuditPublisher.record_throttled`)."""
    details = {
        "operation": violation.operation,
        "subject": violation.subject[:_MAX_DETAIL_VALUE],
        "nats_user": nats_user or "(anonymous)",
    }
    if violation.queue:
        details["queue"] = violation.queue[:_MAX_DETAIL_VALUE]
    return await publisher.record_throttled(
        ("permission_violation", violation.operation, violation.subject, violation.queue),
        AuditAction.AUDIT_ACTION_PERMISSION_VIOLATION,
        motive=(
            "the NATS server refused an operation outside this service's permissions "
            "(vigie_core.permissions): a bug or a compromised service"
        ),
        outcome=AuditOutcome.AUDIT_OUTCOME_DENIED,
        details=details,
    )


class _PermissionViolationRecorder:
    """The connection's violation handler; violations before the publisher exists wait for it.

    The client calls it from its reading loop, so recording runs in a task of its own: a full audit buffer
    (``record`` waits up to ``enqueue_timeout_s``) must not hold up the connection.
    """

    def __init__(self, nats_user: str | None) -> None:
        self._nats_user = nats_user
        self._publisher: AuditPublisher | None = None
        self._early: list[PermissionViolation] = []
        self._recording: set[asyncio.Task[None]] = set()

    async def attach(self, publisher: AuditPublisher) -> None:
        self._publisher = publisher
        early, self._early = self._early, []
        for violation in early:
            await self._record(publisher, violation)

    async def __call__(self, violation: PermissionViolation) -> None:
        if self._publisher is None:
            if len(self._early) < _MAX_THROTTLED_KEYS:
                self._early.append(violation)
            return
        task = asyncio.create_task(self._record(self._publisher, violation))
        self._recording.add(task)  # held until done: the loop keeps only weak references to tasks
        task.add_done_callback(self._recording.discard)

    async def _record(self, publisher: AuditPublisher, violation: PermissionViolation) -> None:
        try:
            await record_permission_violation(publisher, violation, nats_user=self._nats_user)
        except (AuditUnavailableError, InvalidAuditEventError) as error:
            logger.error("permission violation on %r not audited: %s", violation.subject, error)


class AuditedConnection(NamedTuple):
    nc: Client
    audit: AuditPublisher


async def connect_with_audit(
    runtime: ServiceRuntime, nats: NatsSettings, settings: AuditPublishSettings, client_name: str
) -> AuditedConnection:
    """Connect to NATS as this service and start its audit publisher on that connection.

    Both are closed with the runtime, the publisher first (it drains its buffer over the connection).
    Every operation the NATS server refuses to the connection is recorded as a ``permission_violation``
    (:func:`record_permission_violation`): the service's permissions are the inference boundary, and a
    service that tries to step over it is either broken or compromised.
    """
    from vigie_core.messaging import connect

    recorder = _PermissionViolationRecorder(nats.user)
    nc = await connect(nats, client_name, on_permission_violation=recorder)
    runtime.exit_stack.push_async_callback(nc.drain)
    publisher = await start_audit_publisher(runtime, nc, settings)
    await recorder.attach(publisher)
    return AuditedConnection(nc, publisher)
