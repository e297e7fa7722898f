"""The provisioner: creates and configures every stream and bucket of Vigie, and nothing else.

A one-shot, privileged role (``python -m vigie_core.provision``; the Helm chart's provisioning Job; the
embedded nats-server right after it starts). It connects as its own NATS user, ``provisioner``, in an
account of its own (:mod:`vigie_core.accounts`) that imports exactly ``$JS.API.STREAM.{INFO,CREATE,UPDATE}``
of each Vigie stream from the account that holds it (``$JS.<ACCOUNT>.API``): it cannot read a frame,
publish, delete a stream, create a consumer or subscribe to anything but its inbox. What it can create is
bounded by each account's JetStream limits: nothing on disk in the inside accounts, and no stream can copy
one of another account, since no account exports the consumer API a copy needs.

The services may not create or change a stream: each waits for its streams and checks them, at start and
continuously (:class:`vigie_core.messaging.StreamGuard`). That is what closes the hole ``sources``/``mirror``
open inside an account: whoever configures a stream can make the server copy another stream of the account
into it, out of reach of subject permissions. The provisioner never sets ``sources`` or ``mirror``, removes
``sources`` a stream was given behind its back, and refuses a mirror (which cannot be removed: delete the
stream).

Idempotent: a stream already as configured is left alone, one whose settings differ is updated, one whose
storage differs is an error (JetStream cannot change it in place; deleting a stream is an operator's
decision, and the provisioner is not allowed to).

Replicas (``stream_replicas``): every stream and bucket gets as many copies on different servers of a
JetStream cluster; 3 lets one server restart without losing a message, memory streams included. A change
is an update the cluster applies in place (it copies the stream to the new peers, or drops copies); a
server that is not clustered refuses more than one.

The stream definitions are those of :mod:`vigie_core.streams`; the settings here only size them.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import nats
import nats.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StreamConfig
from nats.js.errors import APIError, NotFoundError, ServiceUnavailableError
from pydantic import Field, field_validator

from vigie_core.messaging import StreamConfigConflictError, field_differs
from vigie_core.permissions import PROVISIONER, api_prefix, inbox_prefix
from vigie_core.settings import NatsSettings, ServiceSettings
from vigie_core.streams import (
    RETENTION_CEILINGS_S,
    AuditStream,
    CheckpointStream,
    DeadLetterStream,
    EventsStream,
    FramesStream,
    PolicyBucket,
    SourcesBucket,
    TracksStream,
    ViewsStream,
    bucket_stream,
)

__all__ = [
    "ProvisionError",
    "ProvisionResult",
    "ProvisionSettings",
    "main",
    "provision",
    "provision_stream",
    "provisioned_buckets",
    "provisioned_streams",
]

logger = logging.getLogger("vigie.provision")

DAY_S = 24 * 3600.0
# Fields the provisioner keeps equal to the definition; the server fills in the others.
_PROVISIONED_FIELDS = (
    "subjects",
    "subject_transform",
    "retention",
    "discard",
    "max_age",
    "max_bytes",
    "max_msg_size",
    "max_msgs_per_subject",
    "duplicate_window",
    "allow_direct",
    "republish",
    "num_replicas",
)
# What nats-server answers a stream asking for more replicas than it can place, said in words ({n}: the
# replicas), and the remedy.
_TOO_FEW_SERVERS = "run NATS as a JetStream cluster of at least {n} servers"
_NO_ROOM = (
    "every copy counts against its account's JetStream limits (vigie_core.accounts) and a server's store: "
    "size both for {n} copies"
)
_REPLICAS_REFUSED = {
    # replicas > 1 not supported in non-clustered mode
    10074: ("this server is not clustered", _TOO_FEW_SERVERS),
    # no suitable peers for placement
    10005: ("the cluster has fewer servers than that", _TOO_FEW_SERVERS),
    # insufficient memory / storage resources available
    10028: ("no room for every copy in memory", _NO_ROOM),
    10047: ("no room for every copy on disk", _NO_ROOM),
}


class ProvisionError(RuntimeError):
    """A stream could not be provisioned (refused configuration, no JetStream, no permission)."""


class ProvisionSettings(ServiceSettings, env_prefix="VIGIE_PROVISION_"):
    """How the streams are sized. ``nats.user`` is the provisioner's user (``provisioner``); ``http`` and
    ``telemetry`` are not used by this one-shot job."""

    frames_partitions: int = Field(
        1, ge=1, le=64, description="partitions of FRAMES (one per inference replica)"
    )
    frames_max_age_s: float = Field(
        5.0, gt=0, le=RETENTION_CEILINGS_S["FRAMES"], description="retention of FRAMES (pixels: seconds)"
    )
    tracks_partitions: int = Field(
        1, ge=1, le=64, description="partitions of TRACKS (one per anonymiser replica)"
    )
    tracks_max_age_s: float = Field(
        60.0, gt=0, le=RETENTION_CEILINGS_S["TRACKS"], description="retention of TRACKS (track ids)"
    )
    events_max_age_s: float = Field(3 * DAY_S, gt=0, description="how long the aggregation may be down")
    audit_max_age_days: float = Field(365.0, gt=0, description="how long an event not yet journaled is kept")
    audit_max_bytes: int = Field(
        4 * 1024**3,
        ge=1024 * 1024,
        le=4 * 1024**3,
        description="the AUDIT backlog's bound (at most the AUDIT account's JetStream limit, 4 GiB)",
    )
    anonymiser_deadletter_max_age_s: float = Field(3600.0, gt=0, le=DAY_S)
    aggregation_deadletter_max_age_s: float = Field(7 * DAY_S, gt=0, le=366 * DAY_S)
    views_max_age_days: float = Field(
        30.0, gt=0, le=366, description="how long a camera's latest scene view is kept (VIEWS, in memory)"
    )
    policy_history: int = Field(5, ge=1, le=64, description="revisions the policy bucket keeps per camera")
    stream_replicas: int = Field(
        1,
        ge=1,
        le=5,
        description="copies of every stream and bucket in a JetStream cluster (1: a single server; 3: one "
        "server may restart without a loss); more than 1 needs a cluster of at least as many servers",
    )
    wait_s: float = Field(120.0, gt=0, description="how long to wait for NATS and JetStream to answer")

    @field_validator("stream_replicas")
    @classmethod
    def _odd_replicas(cls, replicas: int) -> int:
        # A replicated stream accepts a write once a majority of its copies holds it: 2 copies stop at the
        # first server down, as 1 does, with twice the storage.
        if replicas % 2 == 0:
            raise ValueError(
                f"{replicas} replicas survive no more servers down than {replicas - 1}: use 1, 3 or 5"
            )
        return replicas


def provisioned_streams(settings: ProvisionSettings) -> list[StreamConfig]:
    """Every stream of Vigie, as ``settings`` sizes it (the buckets' streams apart)."""
    replicas = settings.stream_replicas
    return [
        FramesStream(settings.frames_partitions, settings.frames_max_age_s, replicas=replicas).config(),
        TracksStream(settings.tracks_partitions, settings.tracks_max_age_s, replicas=replicas).config(),
        EventsStream(max_age_s=settings.events_max_age_s, replicas=replicas).config(),
        AuditStream(
            max_age_s=settings.audit_max_age_days * DAY_S,
            max_bytes=settings.audit_max_bytes,
            replicas=replicas,
        ).config(),
        DeadLetterStream("anonymiser", settings.anonymiser_deadletter_max_age_s, replicas).config(),
        DeadLetterStream("aggregation", settings.aggregation_deadletter_max_age_s, replicas).config(),
        CheckpointStream(replicas=replicas).config(),
        ViewsStream(max_age_s=settings.views_max_age_days * DAY_S, replicas=replicas).config(),
    ]


def provisioned_buckets(settings: ProvisionSettings) -> list[KeyValueConfig]:
    replicas = settings.stream_replicas
    return [PolicyBucket(settings.policy_history, replicas).config(), SourcesBucket(replicas).config()]


@dataclass(frozen=True, slots=True)
class ProvisionResult:
    stream: str
    outcome: str  # "created", "updated (<fields>)" or "unchanged"


async def provision_stream(js: JetStreamContext, wanted: StreamConfig) -> ProvisionResult:
    """Create the stream, or update it when its provisioned settings differ, or remove ``sources`` it was
    given. Never sets ``sources`` or ``mirror``."""
    name = wanted.name
    assert name is not None
    if wanted.sources or wanted.mirror:
        raise ProvisionError(f"stream {name}: Vigie's streams never copy from another (sources, mirror)")
    try:
        current = (await js.stream_info(name)).config
    except NotFoundError:
        await _configure(js, wanted, create=True, outcome="created")
        logger.info("stream %s: created", name)
        return ProvisionResult(name, "created")
    if current.mirror is not None:
        raise ProvisionError(
            f"stream {name} mirrors {current.mirror.name}: a mirror cannot be removed in place; delete the "
            "stream (nats stream rm) and provision again"
        )
    if current.storage != wanted.storage:
        raise StreamConfigConflictError(
            f"stream {name} exists with storage {current.storage}, Vigie needs {wanted.storage}: JetStream "
            "cannot change it in place; delete the stream (nats stream rm) and provision again"
        )
    # A field left unset (None, or 0 for the duplicate window) keeps the server's value.
    set_fields = [f for f in _PROVISIONED_FIELDS if getattr(wanted, f) not in (None, 0)]
    changed = [f for f in set_fields if field_differs(current, wanted, f)]
    if current.sources:
        changed.append("sources removed: " + ",".join(s.name or "?" for s in current.sources))
        logger.warning(
            "stream %s copied from %s: removing", name, ", ".join(s.name or "?" for s in current.sources)
        )
    if not changed:
        return ProvisionResult(name, "unchanged")
    outcome = f"updated ({', '.join(changed)})"
    await _configure(js, wanted, create=False, outcome=outcome)
    logger.info("stream %s: %s", name, outcome)
    return ProvisionResult(name, outcome)


class _UnansweredChangeError(nats.errors.TimeoutError):
    """A create or update sent but not answered in time: the server may still have carried it out (a busy
    cluster replicating a new stream), so a retry that finds the stream as wanted reports ``outcome``, what
    this run did, rather than "unchanged"."""

    def __init__(self, outcome: str) -> None:
        super().__init__()
        self.outcome = outcome


async def _configure(js: JetStreamContext, wanted: StreamConfig, *, create: bool, outcome: str) -> None:
    try:
        await (js.add_stream(wanted) if create else js.update_stream(wanted))
    except nats.errors.TimeoutError:
        raise _UnansweredChangeError(outcome) from None
    except APIError as error:
        replicas = wanted.num_replicas or 1
        refused = _REPLICAS_REFUSED.get(error.err_code or 0)
        if refused is None or replicas == 1:
            raise
        reason, remedy = refused
        raise ProvisionError(
            f"stream {wanted.name}: {replicas} replicas refused, {reason} ({error.description}): "
            f"{remedy.format(n=replicas)}, or set VIGIE_PROVISION_STREAM_REPLICAS=1"
        ) from None


async def provision(
    client: Client,
    settings: ProvisionSettings,
    *,
    accounts: bool = True,
    only: Collection[str] | None = None,
) -> list[ProvisionResult]:
    """Provision every stream and bucket of Vigie (``only``: those named); waits up to ``settings.wait_s``
    for JetStream.

    ``accounts``: each stream is in its reader's account (:mod:`vigie_core.accounts`) and is reached under
    that account's API prefix; False: one account for everything (an unsecured server).
    """
    wanted = [*provisioned_streams(settings), *(bucket_stream(b) for b in provisioned_buckets(settings))]
    results = []
    for config in wanted:
        assert config.name is not None
        if only is not None and config.name not in only:
            continue
        js = client.jetstream(prefix=api_prefix(PROVISIONER, config.name, accounts=accounts), timeout=5.0)
        results.append(await _with_retry(js, config, settings.wait_s))
    return results


async def _with_retry(js: JetStreamContext, config: StreamConfig, wait_s: float) -> ProvisionResult:
    deadline = time.monotonic() + wait_s
    unanswered: str | None = None  # what an unanswered create or update of this run was to do
    while True:
        try:
            result = await provision_stream(js, config)
        except _UnansweredChangeError as error:
            unanswered = error.outcome
        except (nats.errors.TimeoutError, ServiceUnavailableError):
            pass
        else:
            if unanswered is not None and result.outcome == "unchanged":
                return ProvisionResult(result.stream, unanswered)
            return result
        # No answer: JetStream not ready yet (a fresh cluster; one still electing its leader says
        # "temporarily unavailable"), or a request the user may not make.
        if time.monotonic() > deadline:
            raise ProvisionError(
                f"stream {config.name}: no answer from JetStream within {wait_s:g} s (is JetStream "
                "enabled, and does this user have the provisioner's permissions?)"
            )
        logger.info("stream %s: no answer from JetStream yet, retrying", config.name)
        await asyncio.sleep(1.0)


async def provision_at(
    nats_settings: NatsSettings,
    settings: ProvisionSettings | None = None,
    *,
    only: Collection[str] | None = None,
) -> list[ProvisionResult]:
    """Connect (retrying until ``settings.wait_s``), provision everything (``only``: those named), close.

    A user in ``nats_settings`` means Vigie's accounts (the provisioner's own); none, a server with one
    account for everything."""
    settings = settings or ProvisionSettings(nats=nats_settings)
    client = await _connect(nats_settings, settings.wait_s)
    try:
        return await provision(client, settings, accounts=nats_settings.user is not None, only=only)
    finally:
        await client.close()


async def _connect(nats_settings: NatsSettings, wait_s: float) -> Client:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            # One attempt each time: a one-shot job has no connection to keep, and a client that retries by
            # itself never gives up on a first connection.
            return await nats.connect(
                servers=[url.strip() for url in nats_settings.url.split(",")],
                name="vigie-provision",
                user=nats_settings.user,
                password=nats_settings.password.get_secret_value() if nats_settings.password else None,
                inbox_prefix=inbox_prefix(nats_settings.user) if nats_settings.user else "_INBOX",
                connect_timeout=nats_settings.connect_timeout_s,
                allow_reconnect=False,
                # nats-py tries a first connection until a server has failed more than this many times.
                max_reconnect_attempts=1,
                reconnect_time_wait=0.2,
                error_cb=_log_error,
            )
        except (OSError, nats.errors.Error) as error:
            if time.monotonic() > deadline:
                raise ProvisionError(f"cannot connect to NATS at {nats_settings.url}: {error}") from None
            logger.info("NATS at %s not reachable yet (%s), retrying", nats_settings.url, error)
            await asyncio.sleep(1.0)


async def _log_error(error: Exception) -> None:
    logger.error("NATS: %s", error)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vigie_core.provision",
        description="Create or update every Vigie stream and bucket (settings: VIGIE_PROVISION_*).",
    )
    parser.add_argument("--config", type=Path, help="TOML settings file (the environment overrides it)")
    args = parser.parse_args(argv)
    try:
        settings = ProvisionSettings.load(args.config)
    except (ValueError, OSError) as error:
        print(f"vigie-provision: invalid configuration: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        results = asyncio.run(provision_at(settings.nats, settings))
    except (ProvisionError, StreamConfigConflictError) as error:
        print(f"vigie-provision: {error}", file=sys.stderr)
        return 1
    for result in results:
        print(f"{result.stream}: {result.outcome}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
