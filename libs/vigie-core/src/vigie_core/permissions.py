"""Each service's NATS permissions, defined once: the broker, not only convention, keeps the boundary.

Every service connects as its own NATS user (named after the service) whose permissions are the allow
lists below; anything not allowed is refused by the server. They are rendered into the embedded
nats-server's configuration (``vigie_embedded.nats``) and, through ``python -m vigie_core.permissions
json``, into the Helm chart's NATS configuration (``charts/vigie/files/nats-permissions.json``, checked for
drift by the chart tests).

What the lists say, in words:

- Streams and buckets are created and configured by the **provisioner** alone (:mod:`vigie_core.provision`,
  a one-shot job): its user may look up, create and update Vigie's streams and buckets
  (``$JS.API.STREAM.{INFO,CREATE,UPDATE}.<stream>``) and nothing else: it cannot delete a stream, publish
  on a data subject, get a message, create a consumer or subscribe to anything but its inbox. No service
  may create, update or delete a stream or a bucket, not even its own: a service only looks its streams up
  (``STREAM.INFO``), waits for them and checks them (:func:`vigie_core.messaging.ensure_stream`).
- FRAMES (pixels): ingest alone publishes; inference alone reads it, through its consumers on FRAMES.
  Nobody else may create a consumer on FRAMES, fetch from one, or get a message of it.
- TRACKS (track ids): inference alone publishes; the anonymiser alone reads it.
- EVENTS (anonymous): the anonymiser publishes; the aggregation reads it.
- AUDIT: every service publishes on ``vigie.audit.<itself>`` only; the audit service alone reads it.
- The policy bucket (NATS KV ``vigie-policy``): the registry writes its keys; every service reads and
  watches it.
- The sources bucket (NATS KV ``vigie-sources``: where each camera is read, its URL sealed with the registry's
  ``source_key``): the registry writes its keys (and reads them back, to write conditionally); ingest alone
  reads and watches it. No other service may look it up, watch it or get one of its messages.
- No user may subscribe to anything but its own inbox: JetStream delivers fetched messages to the
  fetching client's inbox, so a shared ``_INBOX.>`` permission would let any service read the frames
  delivered to inference. Each user's inbox prefix is therefore ``_INBOX_<user>`` (:func:`inbox_prefix`),
  and its client must connect with it (nats-py: ``nats.connect(inbox_prefix=...)``).

Why no service configures a stream: a stream's ``sources`` and ``mirror`` are copied by the server, out
of reach of subject permissions, so whoever may create or update a stream can make it copy any stream of
the account (the anonymiser's EVENTS sourcing FRAMES: pixels on disk; AUDIT sourcing the sealed camera
URLs). Only the provisioner configures streams, it never sets ``sources`` or ``mirror``, it cannot read
what it provisions, and every service refuses to bind a stream that copies from elsewhere
(``libs/vigie-core/tests/test_sources_bucket_permissions.py`` checks both on a real nats-server).

NATS wildcards match whole tokens, so a consumer name cannot be constrained to ``inference-*``: the
JetStream API subjects are scoped to the stream (``$JS.API.CONSUMER.MSG.NEXT.FRAMES.*``), which is what
matters for the boundary.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache

from vigie_core.streams import (
    EVENTS_PREFIX,
    FRAMES_PREFIX,
    POLICY_BUCKET,
    SOURCES_BUCKET,
    TRACKS_PREFIX,
    AuditStream,
    DeadLetterStream,
    EventsStream,
    FramesStream,
    TracksStream,
    audit_subject,
    deadletter_subject,
    provisioned_stream_names,
)

__all__ = [
    "POLICY_BUCKET",
    "PROVISIONER",
    "ROLES",
    "SERVICES",
    "SOURCES_BUCKET",
    "ServicePermissions",
    "all_permissions",
    "inbox_prefix",
    "nats_authorization",
    "permissions_for",
    "subject_matches",
    "user_name",
]

# Every Vigie service, in pipeline order. Each has a NATS user of the same name.
SERVICES: tuple[str, ...] = ("ingest", "inference", "anonymiser", "aggregation", "registry", "audit")
# The one-shot role that creates and configures every stream and bucket (vigie_core.provision); its NATS
# user has the same name.
PROVISIONER = "provisioner"
# Every NATS user of Vigie: the services, then the provisioner.
ROLES: tuple[str, ...] = (*SERVICES, PROVISIONER)
_API = "$JS.API"


def user_name(service: str) -> str:
    """The NATS user of a service (or of the provisioner)."""
    if service not in ROLES:
        raise ValueError(f"unknown service {service!r}; known: {', '.join(ROLES)}")
    return service


def inbox_prefix(user: str) -> str:
    """The inbox prefix a user's client must use: its replies and fetched messages arrive under it."""
    return f"_INBOX_{user}"


def subject_matches(pattern: str, subject: str) -> bool:
    """Whether a NATS subject pattern (``*`` one token, ``>`` one or more trailing tokens) matches."""
    wanted, given = pattern.split("."), subject.split(".")
    for i, token in enumerate(wanted):
        if token == ">":
            return len(given) > i
        if i >= len(given) or (token != "*" and token != given[i]):
            return False
    return len(given) == len(wanted)


@dataclass(frozen=True, slots=True)
class ServicePermissions:
    """What one service's (or the provisioner's) NATS user may publish and subscribe to (allow lists; the
    rest is denied)."""

    service: str
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]

    @property
    def user(self) -> str:
        return user_name(self.service)

    @property
    def inbox_prefix(self) -> str:
        return inbox_prefix(self.user)

    def may_publish(self, subject: str) -> bool:
        return any(subject_matches(allowed, subject) for allowed in self.publish)

    def may_subscribe(self, subject: str) -> bool:
        return any(subject_matches(allowed, subject) for allowed in self.subscribe)

    def nats_permissions(self) -> dict[str, dict[str, list[str]]]:
        """The ``permissions`` block of this user in a nats-server configuration."""
        return {"publish": {"allow": list(self.publish)}, "subscribe": {"allow": list(self.subscribe)}}


def _binds_stream(stream: str) -> list[str]:
    """Look the stream up, to wait for it and check it (``ensure_stream``); never create or change it."""
    return [f"{_API}.STREAM.INFO.{stream}"]


def _provisions(stream: str) -> list[str]:
    """Create the stream and keep its configuration up to date (the provisioner alone; never delete)."""
    return [f"{_API}.STREAM.{action}.{stream}" for action in ("INFO", "CREATE", "UPDATE")]


def _consumes(stream: str) -> list[str]:
    """Look the stream up, create or bind its own durable pull consumers, fetch, and acknowledge."""
    return [
        f"{_API}.STREAM.INFO.{stream}",
        f"{_API}.CONSUMER.INFO.{stream}.*",
        f"{_API}.CONSUMER.CREATE.{stream}.*",
        f"{_API}.CONSUMER.CREATE.{stream}.*.>",  # the form with a filter subject (nats-server >= 2.9)
        f"{_API}.CONSUMER.DURABLE.CREATE.{stream}.*",
        f"{_API}.CONSUMER.MSG.NEXT.{stream}.*",
        f"$JS.ACK.{stream}.>",
    ]


def _reads_bucket(bucket: str) -> list[str]:
    """Read and watch a KV bucket (a KV watch is an ordered push consumer with flow control)."""
    stream = f"KV_{bucket}"
    return [
        f"{_API}.STREAM.INFO.{stream}",
        f"{_API}.CONSUMER.INFO.{stream}.*",
        f"{_API}.CONSUMER.CREATE.{stream}",
        f"{_API}.CONSUMER.CREATE.{stream}.>",
        f"{_API}.DIRECT.GET.{stream}",
        f"{_API}.DIRECT.GET.{stream}.>",
        f"{_API}.STREAM.MSG.GET.{stream}",
        f"$JS.FC.{stream}.>",
    ]


def _writes_bucket(bucket: str) -> list[str]:
    """Put and delete the bucket's keys (the provisioner creates the bucket)."""
    return [*_binds_stream(f"KV_{bucket}"), f"$KV.{bucket}.>"]


def _dead_letters(service: str) -> list[str]:
    """Set rejected messages aside on ``vigie.deadletter.<service>``, stored in ``DEADLETTER_<SERVICE>``."""
    return [
        deadletter_subject(service),
        *_binds_stream(_stream_name(DeadLetterStream(service).config().name)),
    ]


def _stream_name(config_name: str | None) -> str:
    assert config_name is not None
    return config_name


@cache
def all_permissions() -> Mapping[str, ServicePermissions]:
    """Every service's permissions, by service name, then the provisioner's (:data:`ROLES`)."""
    frames = _stream_name(FramesStream().config().name)
    tracks = _stream_name(TracksStream().config().name)
    events = _stream_name(EventsStream().config().name)
    audit = _stream_name(AuditStream().config().name)
    publish: dict[str, list[str]] = {
        "ingest": [f"{FRAMES_PREFIX}.*", *_binds_stream(frames), *_reads_bucket(SOURCES_BUCKET)],
        "inference": [f"{TRACKS_PREFIX}.*", *_binds_stream(tracks), *_consumes(frames)],
        "anonymiser": [
            f"{EVENTS_PREFIX}.*",
            *_binds_stream(events),
            *_consumes(tracks),
            *_dead_letters("anonymiser"),
        ],
        "aggregation": [*_consumes(events), *_dead_letters("aggregation")],
        "registry": [
            *_writes_bucket(POLICY_BUCKET),
            *_writes_bucket(SOURCES_BUCKET),
            *_reads_bucket(SOURCES_BUCKET),
        ],
        "audit": [*_binds_stream(audit), *_consumes(audit)],
    }
    permissions = {}
    for service in SERVICES:
        allowed = [*publish[service], *_reads_bucket(POLICY_BUCKET), audit_subject(service)]
        permissions[service] = ServicePermissions(
            service=service,
            publish=tuple(dict.fromkeys(allowed)),  # without repeats, in a stable order
            subscribe=(f"{inbox_prefix(user_name(service))}.>",),
        )
    # The provisioner: the management API of Vigie's streams, its replies, nothing else (no audit subject:
    # it runs before the AUDIT stream exists, and the configuration it applies is in the chart's values).
    permissions[PROVISIONER] = ServicePermissions(
        service=PROVISIONER,
        publish=tuple(a for stream in provisioned_stream_names() for a in _provisions(stream)),
        subscribe=(f"{inbox_prefix(PROVISIONER)}.>",),
    )
    return permissions


def permissions_for(service: str) -> ServicePermissions:
    user_name(service)  # a clear error for an unknown service
    return all_permissions()[service]


def nats_authorization(passwords: Mapping[str, str]) -> dict[str, object]:
    """The ``authorization`` block of a nats-server configuration: one user per service (or provisioner) in
    ``passwords``.

    Unlisted services get no user; there is no anonymous access.
    """
    return {
        "users": [
            {
                "user": permissions.user,
                "password": passwords[service],
                "permissions": permissions.nats_permissions(),
            }
            for service, permissions in all_permissions().items()
            if service in passwords
        ]
    }


def _as_json() -> str:
    document = {
        service: {"user": p.user, "inbox_prefix": p.inbox_prefix, "permissions": p.nats_permissions()}
        for service, p in all_permissions().items()
    }
    return json.dumps(document, indent=2) + "\n"


def _as_table(services: Iterable[str]) -> str:
    lines = ["| service (user) | may publish | may subscribe |", "|---|---|---|"]
    for service in services:
        p = permissions_for(service)
        publish = "<br>".join(f"`{s}`" for s in p.publish)
        subscribe = "<br>".join(f"`{s}`" for s in p.subscribe)
        lines.append(f"| {service} | {publish} | {subscribe} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vigie_core.permissions", description="Print each service's NATS permissions."
    )
    parser.add_argument(
        "format",
        choices=("json", "table"),
        help="json: the document the Helm chart renders (charts/vigie/files/nats-permissions.json); "
        "table: Markdown",
    )
    args = parser.parse_args(argv)
    sys.stdout.write(_as_json() if args.format == "json" else _as_table(ROLES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
