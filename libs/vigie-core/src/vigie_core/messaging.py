"""NATS connection, binding the JetStream streams (the provisioner creates them) and trace context carried
in message headers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

import nats
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, StreamConfig, StreamInfo
from nats.js.errors import NotFoundError
from opentelemetry import context, propagate
from prometheus_client import CollectorRegistry, Counter, Gauge

from vigie_core.nats_transport import close_abandoned_sockets
from vigie_core.permissions import api_prefix, inbox_prefix
from vigie_core.settings import NatsSettings
from vigie_core.streams import RETENTION_CEILINGS_S
from vigie_core.tasks import cancel_and_wait

if TYPE_CHECKING:
    from vigie_core.audit import AuditPublisher
    from vigie_core.health import Readiness
    from vigie_core.lifecycle import ServiceRuntime

logger = logging.getLogger("vigie.messaging")

# Every process that talks to NATS imports this module: nats-py's failed reconnection attempts must not
# leave their socket open (vigie_core.nats_transport).
close_abandoned_sockets()

# How long a service waits for a stream the provisioner creates: for ever (None), its readiness saying
# which stream it waits for; an outage is waited out, not crashed on.
STREAM_WAIT_S: float | None = None
# What a service relies on in a stream it binds: a difference is refused.
_REQUIRED_FIELDS = ("subjects", "storage", "retention")
# Fields of a stream's configuration that Vigie sets; the server fills in the others.
_MANAGED_FIELDS = (
    "subjects",
    "subject_transform",
    "storage",
    "retention",
    "discard",
    "max_age",
    "max_bytes",
    "max_msg_size",
    "duplicate_window",
)


# How nats-server words a refused operation ("-ERR 'Permissions Violation for Publish to "x"'"), as
# nats-py hands it to the error callback: lower-cased, so the subject is too.
_PERMISSION_VIOLATION = re.compile(
    r'permissions violation for (?P<operation>[a-z]+(?: with reply)?) (?:to|of) "(?P<subject>[^"]*)"'
    r'(?: using queue "(?P<queue>[^"]*)")?',
    re.IGNORECASE,
)


class StreamConfigConflictError(RuntimeError):
    """A stream exists with a configuration Vigie cannot use (its storage, its subjects)."""


class StreamCopiesError(StreamConfigConflictError):
    """A stream copies messages from other streams (``sources``, ``mirror``): refused by every service."""

    def __init__(self, message: str, copied: list[str]) -> None:
        super().__init__(message)
        self.copied = copied


class StreamNotProvisionedError(RuntimeError):
    """A stream a service needs is still missing: the provisioner has not run."""


@dataclass(frozen=True, slots=True)
class PermissionViolation:
    """An operation the NATS server refused to this connection because the user's permissions do not
    allow it (``vigie_core.permissions``). The server refuses it and keeps the connection open.

    ``subject`` is as nats-py reports it: lower-cased (a camera id "Gare-Nord" reads "gare-nord").
    """

    operation: str  # "publish", "subscription" (or "publish with reply")
    subject: str
    queue: str = ""


def permission_violation(error: BaseException | str) -> PermissionViolation | None:
    """The violation an error from the NATS client reports, or None for any other error."""
    match = _PERMISSION_VIOLATION.search(str(error))
    if match is None:
        return None
    return PermissionViolation(
        operation=match["operation"].lower(), subject=match["subject"], queue=match["queue"] or ""
    )


PermissionViolationHandler = Callable[[PermissionViolation], Awaitable[None]]


def jetstream_api(settings: NatsSettings, service: str, stream: str) -> str:
    """The JetStream API prefix under which ``service``, connected with ``settings``, reaches ``stream``.

    A NATS user means Vigie's accounts (:mod:`vigie_core.accounts`): a stream of another account is reached
    under that account's prefix (``$JS.INFERENCE.API`` for FRAMES, from ingest). No user: an unsecured
    server with one account for everything (tests, tools), where every stream is local (``$JS.API``).
    """
    return api_prefix(service, stream, accounts=settings.user is not None)


def jetstream_for(
    nc: Client, settings: NatsSettings, service: str, stream: str, **options: float
) -> JetStreamContext:
    """A JetStream context of ``nc`` that reaches ``stream`` (:func:`jetstream_api`)."""
    return nc.jetstream(prefix=jetstream_api(settings, service, stream), **options)


async def connect(
    settings: NatsSettings, name: str, *, on_permission_violation: PermissionViolationHandler | None = None
) -> Client:
    """Connect to NATS as this service, logging disconnections instead of raising them.

    ``on_permission_violation`` is awaited for every operation the server refuses to this connection;
    services get it through ``vigie_core.audit.connect_with_audit``, which records them in the journal.
    """

    async def on_error(error: Exception) -> None:
        violation = permission_violation(error)
        if violation is None:
            logger.warning("NATS error: %s", error)
            return
        logger.error(
            "NATS refused a %s on %r: not allowed to user %s",
            violation.operation,
            violation.subject,
            settings.user or "(anonymous)",
        )
        if on_permission_violation is not None:
            try:
                await on_permission_violation(violation)
            except Exception:  # the client's reading loop calls this: it must not fail there
                logger.exception("handling a NATS permission violation failed")

    async def on_disconnected() -> None:
        logger.warning("disconnected from NATS")

    async def on_reconnected() -> None:
        logger.info("reconnected to NATS")

    return await nats.connect(
        servers=[url.strip() for url in settings.url.split(",")],
        name=name,
        user=settings.user,
        password=settings.password.get_secret_value() if settings.password else None,
        # A user's replies and fetched messages arrive under its own inbox prefix, the only one its
        # permissions let it subscribe to (vigie_core.permissions).
        inbox_prefix=inbox_prefix(settings.user) if settings.user else "_INBOX",
        connect_timeout=settings.connect_timeout_s,
        # Services finish their own work before draining; what is left to drain is quick or stuck.
        drain_timeout=5,
        max_reconnect_attempts=-1,
        # Back within half a second of a broker restart (nats-py waits 2 s between attempts by default):
        # frames captured while a service is disconnected are lost.
        reconnect_time_wait=0.5,
        error_cb=on_error,
        disconnected_cb=on_disconnected,
        reconnected_cb=on_reconnected,
    )


async def ensure_stream(
    js: JetStreamContext,
    wanted: StreamConfig,
    *,
    readiness: Readiness | None = None,
    stop: asyncio.Event | None = None,
    audit: AuditPublisher | None = None,
    wait_s: float | None = STREAM_WAIT_S,
    retry_s: float = 0.5,
    sized: bool = True,
) -> StreamInfo:
    """Wait for a stream the provisioner creates (:mod:`vigie_core.provision`) and check it: the service
    binds it, never creates or changes it (its NATS user may only look it up).

    While the stream is missing, ``readiness`` says which stream the service waits for; after ``wait_s``
    (or once ``stop`` is set) :class:`StreamNotProvisionedError`. The stream must carry ``wanted``'s
    subjects, storage and retention, else :class:`StreamConfigConflictError`; one that copies messages from
    another stream (``sources``, ``mirror``) is refused with :class:`StreamCopiesError`, recorded as a
    ``boundary_fault`` in the journal when ``audit`` is given. Other differences from ``wanted`` (its
    retention time, its partitions) are the provisioner's to decide: logged, not refused (not even
    logged when not ``sized``: a stream the service reads but does not size).
    """
    name = wanted.name
    assert name is not None
    check = f"stream {name}"
    deadline = None if wait_s is None else time.monotonic() + wait_s
    waiting = False
    while True:
        try:
            info = await js.stream_info(name)
            break
        except (nats.errors.Error, OSError, TimeoutError) as error:
            # A refused lookup (no permission) gets no answer: a timeout, as an unreachable JetStream; a
            # broker being restarted, an error of the connection: all waited out.
            reason = "not provisioned" if isinstance(error, NotFoundError) else "no answer from JetStream"
            if not waiting:
                waiting = True
                logger.info(
                    "waiting for the stream %s (%s): the provisioner creates it "
                    "(python -m vigie_core.provision)",
                    name,
                    reason,
                )
            if readiness is not None:
                readiness.add(check, _says(f"waiting for the stream {name} ({reason})"))
            if (stop is not None and stop.is_set()) or (deadline is not None and time.monotonic() > deadline):
                raise StreamNotProvisionedError(
                    f"the stream {name} is missing ({reason}) after {wait_s or 0:g} s: run the provisioner "
                    "(python -m vigie_core.provision; the chart's provisioning Job)"
                ) from None
            await _sleep_or_stop(stop, retry_s)
    if readiness is not None:
        readiness.add(check, _says(None))
    try:
        differences = check_stream(info.config, wanted)
    except StreamCopiesError as refused:
        logger.error("%s", refused)
        if audit is not None:
            await _record_stream_copies(audit, name, refused)
        raise
    if differences and sized:
        logger.warning(
            "stream %s differs from this service's settings in %s: the provisioner's configuration applies",
            name,
            ", ".join(differences),
        )
    if waiting:
        logger.info("the stream %s is there", name)
    return info


# How often a service checks the streams it has bound again.
STREAM_CHECK_S = 2.0


class StreamGuard:
    """The streams a service binds, checked at start and then every ``interval_s`` for as long as it runs.

    A service checking its streams only at start would not notice a stream changed behind its back (given
    ``sources`` that copy another stream, its storage or subjects changed, or deleted). Each check that
    fails turns the readiness check ``stream <NAME>`` red with the reason, sets ``vigie_stream_fault`` to 1
    for that stream (the boundary alert), logs an error and, for a broken boundary (a copy, changed
    subjects, storage or retention), records a ``boundary_fault`` in the journal (once per fault, throttled
    by the publisher). All clear again once the stream is as expected, e.g. provisioned again.
    """

    def __init__(
        self,
        *,
        readiness: Readiness,
        registry: CollectorRegistry,
        stop: asyncio.Event,
        audit: AuditPublisher | None = None,
        interval_s: float = STREAM_CHECK_S,
    ) -> None:
        self._readiness = readiness
        self._stop = stop
        self._audit = audit
        self._interval_s = interval_s
        self._bound: dict[str, tuple[JetStreamContext, StreamConfig]] = {}
        self._faults: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None
        self._fault = Gauge(
            "vigie_stream_fault",
            "1 while a stream this service binds fails its check (copies from elsewhere, changed, missing)",
            ["stream"],
            registry=registry,
        )
        self._checks = Counter(
            "vigie_stream_checks",
            "Checks of the streams this service binds",
            ["stream", "outcome"],
            registry=registry,
        )

    async def bind(
        self,
        js: JetStreamContext,
        wanted: StreamConfig,
        *,
        sized: bool = True,
        wait_s: float | None = STREAM_WAIT_S,
    ) -> StreamInfo:
        """Wait for the stream and check it (:func:`ensure_stream`), then keep checking it."""
        name = wanted.name
        assert name is not None
        info = await ensure_stream(
            js,
            wanted,
            readiness=self._readiness,
            stop=self._stop,
            audit=self._audit,
            wait_s=wait_s,
            sized=sized,
        )
        self._bound[name] = (js, wanted)
        self._fault.labels(name).set(0)
        self._readiness.add(f"stream {name}", lambda: self._faults.get(name))
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="stream-guard")
        return info

    def fault(self, stream: str) -> str | None:
        """Why ``stream`` failed its last check, None while it passes."""
        return self._faults.get(stream)

    async def check(self) -> None:
        """Check every bound stream once (the background loop calls this every ``interval_s``)."""
        for name, (js, wanted) in list(self._bound.items()):
            try:
                info = await js.stream_info(name)
            except NotFoundError:
                await self._failed(name, f"the stream {name} is missing: provision it again", boundary=False)
                continue
            except (nats.errors.Error, OSError) as error:
                # NATS unreachable: the connection's own state says so; this check cannot conclude.
                self._checks.labels(name, "unknown").inc()
                logger.debug("stream %s could not be checked: %s", name, error)
                continue
            try:
                check_stream(info.config, wanted)
            except StreamConfigConflictError as error:
                await self._failed(name, str(error), boundary=True, copies=getattr(error, "copied", None))
                continue
            self._checks.labels(name, "ok").inc()
            if self._faults.pop(name, None) is not None:
                self._fault.labels(name).set(0)
                logger.warning("stream %s is as expected again", name)

    async def _failed(
        self, name: str, reason: str, *, boundary: bool, copies: list[str] | None = None
    ) -> None:
        self._checks.labels(name, "fault").inc()
        self._fault.labels(name).set(1)
        if self._faults.get(name) == reason:
            return
        self._faults[name] = reason
        logger.error("stream %s fails its check: %s", name, reason)
        if boundary and self._audit is not None:
            details = {"stream": name, "reason": reason[:256]}
            if copies:
                details["copies_from"] = ",".join(copies)[:256]
            await _record_boundary_fault(
                self._audit,
                ("stream_fault", name, reason),
                "a stream this service binds was changed behind its back (it copies from elsewhere, or its "
                "subjects, storage or retention changed): the boundary may no longer hold",
                details,
            )

    async def _run(self) -> None:
        while not self._stop.is_set():
            await _sleep_or_stop(self._stop, self._interval_s)
            if self._stop.is_set():
                return
            try:
                await self.check()
            except Exception:  # the loop must go on: one bad check is logged, the next one runs
                logger.exception("checking the streams failed")

    async def close(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)


class DurablePull:
    """A durable pull consumer that outlives the broker's faults.

    A broker restart loses memory streams and their consumers; an outage makes every fetch fail. Instead
    of raising, :meth:`fetch` then returns nothing, says why on ``readiness`` (check ``consumer <name>``),
    waits with back-off and binds again (creating the consumer with its configuration if it is gone), for
    as long as it takes, until ``stop``. A fetch that finds nothing returns an empty list too.
    """

    def __init__(
        self,
        js: JetStreamContext,
        *,
        stream: str,
        subject: str,
        config: ConsumerConfig,
        readiness: Readiness | None = None,
        stop: asyncio.Event | None = None,
        retry_initial_s: float = 0.2,
        retry_max_s: float = 5.0,
    ) -> None:
        assert config.durable_name is not None
        self._js = js
        self._stream = stream
        self._subject = subject
        self._config = config
        self._stop = stop
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._subscription: JetStreamContext.PullSubscription | None = None
        self._problem: str | None = "not bound yet"
        self._failures = 0
        self.rebinds = 0
        if readiness is not None:
            readiness.add(f"consumer {config.durable_name}", lambda: self._problem)

    @property
    def durable(self) -> str:
        assert self._config.durable_name is not None
        return self._config.durable_name

    async def bind(self) -> bool:
        """Bind the consumer (created if missing), retrying until it works; False if stopped first."""
        while self._subscription is None:
            if self._stop is not None and self._stop.is_set():
                return False
            try:
                self._subscription = await self._js.pull_subscribe(
                    self._subject, durable=self.durable, stream=self._stream, config=self._config
                )
            except (nats.errors.Error, OSError, TimeoutError) as error:
                await self._failed(f"cannot bind the consumer on {self._stream}: {_described(error)}")
                continue
            if self._failures:
                logger.info("consumer %s on %s bound again", self.durable, self._stream)
                self.rebinds += 1
            self._failures = 0
            self._problem = None
        return True

    async def fetch(self, batch: int, timeout_s: float) -> list[Msg]:
        """Up to ``batch`` messages, waiting at most ``timeout_s`` for the first; [] when none came, when the
        broker failed (then after a back-off, the consumer to be bound again) or when stopped."""
        if self._subscription is None and not await self.bind():
            return []
        assert self._subscription is not None
        try:
            return await self._subscription.fetch(batch, timeout=timeout_s)
        except (nats.errors.TimeoutError, TimeoutError):
            return []
        except (nats.errors.Error, OSError) as error:
            # Unavailable (the consumer or the stream is gone: a broker restart), disconnected, refused.
            subscription, self._subscription = self._subscription, None
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
            await self._failed(f"fetching from {self._stream} failed: {_described(error)}")
            return []

    async def _failed(self, problem: str) -> None:
        self._failures += 1
        self._problem = problem
        log = logger.warning if self._failures in (1, 10) or self._failures % 100 == 0 else logger.debug
        log("consumer %s: %s (attempt %d, retrying)", self.durable, problem, self._failures)
        delay = min(self._retry_max_s, self._retry_initial_s * 2 ** min(self._failures - 1, 10))
        await _sleep_or_stop(self._stop, delay)

    async def close(self) -> None:
        """Stop fetching; what was fetched by no one stays in the stream for the next replica."""
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()
            self._subscription = None


async def hand_back(messages: Iterable[Msg]) -> None:
    """Negatively acknowledge `messages` so that they are redelivered at once, in order; a message whose
    connection is gone is redelivered after its ack wait anyway."""
    for message in messages:
        with contextlib.suppress(nats.errors.Error):
            await message.nak()


async def publish_patiently(
    js: JetStreamContext,
    subject: str,
    payload: bytes,
    *,
    headers: Mapping[str, str] | None = None,
    stop: asyncio.Event | None = None,
    within_s: float = 30.0,
    timeout_s: float = 2.0,
) -> bool:
    """Publish to a stream and wait for its acknowledgement, retrying with back-off while the broker is away
    (restarting; the stream not provisioned again yet) for up to ``within_s``, or until ``stop``. False when
    it was never stored: the caller counts what was lost, and coverage shows it."""
    from tenacity import (
        AsyncRetrying,
        RetryCallState,
        RetryError,
        retry_if_exception_type,
        wait_exponential_jitter,
    )

    retried = (nats.errors.Error, OSError, TimeoutError)
    started = time.monotonic()
    # The usual case first, without the retrying machinery (its cost showed in a profile of inference).
    try:
        await js.publish(subject, payload, headers=dict(headers) if headers else None, timeout=timeout_s)
        return True
    except retried:
        pass

    def ends(state: RetryCallState) -> bool:
        return time.monotonic() - started >= within_s or (stop is not None and stop.is_set())

    try:
        async for attempt in AsyncRetrying(
            stop=ends,
            wait=wait_exponential_jitter(multiplier=0.1, max=2.0, jitter=0.1),
            retry=retry_if_exception_type(retried),
        ):
            with attempt:
                await js.publish(
                    subject, payload, headers=dict(headers) if headers else None, timeout=timeout_s
                )
    except RetryError as error:
        logger.warning(
            "not stored in %s after %.0f s: %s",
            subject,
            within_s,
            _described(error.last_attempt.exception() or error),
        )
        return False
    return True


def _described(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def stream_guard(runtime: ServiceRuntime, audit: AuditPublisher | None = None) -> StreamGuard:
    """The service's :class:`StreamGuard`, stopped with its runtime."""
    guard = StreamGuard(
        readiness=runtime.readiness, registry=runtime.registry, stop=runtime.stop_requested, audit=audit
    )
    runtime.exit_stack.push_async_callback(guard.close)
    return guard


def check_stream(current: StreamConfig, wanted: StreamConfig) -> list[str]:
    """Check a stream's configuration against what a service expects of it; the managed fields that
    differ without breaking anything (retention time, partitions), for a warning.

    Raises :class:`StreamCopiesError` when it copies from another stream, :class:`StreamConfigConflictError`
    when its subjects, storage or retention are not ``wanted``'s, or when it keeps pixels or track ids
    longer than their ceiling (:data:`~vigie_core.streams.RETENTION_CEILINGS_S`).
    """
    copied = [source.name or "?" for source in current.sources or []]
    if current.mirror is not None:
        copied.insert(0, current.mirror.name or "?")
    if copied:
        raise StreamCopiesError(
            f"stream {current.name} copies messages from {', '.join(copied)} (sources or mirror): a stream "
            "that copies from elsewhere can carry data past the inference boundary; refused. Provision it "
            "again (python -m vigie_core.provision) and find who changed it",
            copied,
        )
    wrong = [
        f"{field} is {_shown(getattr(current, field))}, expected {_shown(getattr(wanted, field))}"
        for field in _REQUIRED_FIELDS
        if getattr(wanted, field) is not None and field_differs(current, wanted, field)
    ]
    ceiling = RETENTION_CEILINGS_S.get(current.name or "")
    if ceiling is not None and not 0 < (current.max_age or 0) <= ceiling:
        wrong.append(
            f"it keeps messages {current.max_age or 'for ever'} s, over the ceiling of {ceiling:g} s"
        )
    if wrong:
        raise StreamConfigConflictError(
            f"stream {current.name}: {'; '.join(wrong)}: provision it again (python -m vigie_core.provision)"
        )
    # A field Vigie leaves unset (None, or 0 for the duplicate window) keeps the server's value.
    wanted_fields = [f for f in _MANAGED_FIELDS if getattr(wanted, f) not in (None, 0)]
    return [f for f in wanted_fields if field_differs(current, wanted, f)]


def _shown(value: object) -> object:
    return value.value if isinstance(value, Enum) else value


def _says(reason: str | None) -> Callable[[], str | None]:
    return lambda: reason


async def _sleep_or_stop(stop: asyncio.Event | None, seconds: float) -> None:
    if stop is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def _record_stream_copies(audit: AuditPublisher, stream: str, refused: StreamCopiesError) -> None:
    await _record_boundary_fault(
        audit,
        ("stream_copies", stream),
        "a stream this service binds copies messages from another stream (sources or mirror), out of reach "
        "of NATS permissions: refused, the service does not start",
        {"stream": stream, "copies_from": ",".join(refused.copied)[:256]},
    )


async def _record_boundary_fault(
    audit: AuditPublisher, key: tuple[str, ...], motive: str, details: dict[str, str]
) -> None:
    from vigie_core.audit import AuditAction, AuditOutcome, AuditUnavailableError

    try:
        await audit.record_throttled(
            key,
            AuditAction.AUDIT_ACTION_BOUNDARY_FAULT,
            motive=motive,
            outcome=AuditOutcome.AUDIT_OUTCOME_DENIED,
            details=details,
        )
    except AuditUnavailableError as error:
        logger.error("a boundary fault of the stream %s was not audited: %s", details.get("stream"), error)


def field_differs(current: StreamConfig, wanted: StreamConfig, field: str) -> bool:
    """Whether a stream's configuration differs from the wanted one in ``field`` (subjects in any order, times
    to the microsecond)."""
    have, want = getattr(current, field), getattr(wanted, field)
    if field == "subjects":
        return set(have or []) != set(want or [])
    if isinstance(want, float) and isinstance(have, float | int):
        return abs(have - want) > 1e-6
    return bool(have != want)


def trace_headers(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Headers for a message: the current trace context (W3C traceparent) plus ``extra``."""
    headers = dict(extra or {})
    propagate.inject(headers)
    return headers


def context_from_headers(headers: Mapping[str, str] | None) -> context.Context:
    """The trace context a message was published under, to continue its trace."""
    return propagate.extract(dict(headers or {}))
