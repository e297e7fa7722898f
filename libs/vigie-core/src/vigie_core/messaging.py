"""NATS connection, JetStream provisioning and trace context carried in message headers."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import StreamConfig
from nats.js.errors import NotFoundError
from opentelemetry import context, propagate

from vigie_core.permissions import inbox_prefix
from vigie_core.settings import NatsSettings

logger = logging.getLogger("vigie.messaging")

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
    """A stream exists with a configuration that cannot be changed in place (e.g. its storage)."""


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
        error_cb=on_error,
        disconnected_cb=on_disconnected,
        reconnected_cb=on_reconnected,
    )


async def ensure_stream(js: JetStreamContext, wanted: StreamConfig) -> None:
    """Create the stream, or update it when its managed settings differ. Idempotent."""
    assert wanted.name is not None
    try:
        info = await js.stream_info(wanted.name)
    except NotFoundError:
        await js.add_stream(wanted)
        logger.info("created stream %s", wanted.name)
        return
    current = info.config
    # A field Vigie leaves unset (None, or 0 for the duplicate window) keeps the server's value.
    changed = [
        f for f in _MANAGED_FIELDS if getattr(wanted, f) not in (None, 0) and _differs(current, wanted, f)
    ]
    if not changed:
        return
    if "storage" in changed:
        raise StreamConfigConflictError(
            f"stream {wanted.name} exists with storage {current.storage}, Vigie needs {wanted.storage}: "
            "delete it or fix the configuration"
        )
    await js.update_stream(wanted)
    logger.info("updated stream %s (%s)", wanted.name, ", ".join(changed))


def _differs(current: StreamConfig, wanted: StreamConfig, field: str) -> bool:
    have, want = getattr(current, field), getattr(wanted, field)
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
