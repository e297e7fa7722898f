"""Who may do what on NATS, defined once: the NATS account each service lives in, and the subjects its user
may publish and subscribe to there.

Two layers, both enforced by the server:

- **Accounts** (:mod:`vigie_core.accounts`): each service, and the provisioner, has a NATS account of its
  own. A stream lives in the account of the service that reads it (FRAMES in inference's, TRACKS in the
  anonymiser's, ...). Whatever the server sends on a client's behalf (a JetStream API reply, a pulled
  message, a direct get) can only reach subjects of that client's own account, and data crosses accounts
  only through the exports and imports :mod:`vigie_core.accounts` declares. That is what keeps the
  boundary against a service whose credentials are in an attacker's hands: per-user permissions alone do
  not, since nats-server delivers replies to any subject the requester names (a confused deputy).
- **User permissions** (this module): inside its account each user may publish and subscribe only to what
  its work needs, e.g. inference may fetch from FRAMES but not delete or reconfigure it.

What the lists say, in words:

- Streams and buckets are created and configured by the **provisioner** alone (:mod:`vigie_core.provision`,
  a one-shot job): ``STREAM.{INFO,CREATE,UPDATE}`` of Vigie's streams, each imported from the account that
  holds it, and nothing else. No service may create, update or delete a stream, not even its own: a
  service only looks its streams up, waits for them and checks them, at start and continuously
  (:class:`vigie_core.messaging.StreamGuard`).
- FRAMES (pixels, in inference's account): ingest publishes into it through an import; inference alone
  reads it.
- TRACKS (track ids, in the anonymiser's account): inference publishes through an import; the anonymiser
  alone reads it. Its checkpoints (``CHECKPOINT_ANONYMISER``: each camera's counting state, live track ids
  included) stay in its account: it alone writes and reads them.
- EVENTS (anonymous, in the aggregation's account): the anonymiser publishes through an import; the
  aggregation reads it.
- AUDIT (in the audit service's account): every service publishes on ``vigie.audit.<itself>`` only, each
  through an import that names that one subject; the audit service alone reads it.
- VIEWS (scene views: pictures of a camera's scene without its people, in the registry's account):
  inference publishes into it through an import, on ``vigie.views.<camera>`` only; the registry alone
  reads it (direct gets of a camera's latest). Inference cannot read it back.
- The policy bucket (``vigie-policy``, in the registry's account): the registry writes it; ingest, inference
  and the anonymiser read it (direct gets) and follow its changes (the bucket announces each stored write
  on ``vigie.kv.vigie-policy.<key>``, headers only).
- The sources bucket (``vigie-sources``: where each camera is read, its URL sealed with the registry's
  ``source_key``, in the account SOURCES, which has no user): the registry writes it through an import;
  ingest alone reads it, through imports too.
- Each user's inbox prefix is ``_INBOX_<user>`` (:func:`inbox_prefix`); its client must connect with it
  (nats-py: ``nats.connect(inbox_prefix=...)``).

A stream in another account is reached under that account's API prefix, ``$JS.<ACCOUNT>.API``
(:func:`api_prefix`): ingest looks FRAMES up on ``$JS.INFERENCE.API.STREAM.INFO.FRAMES``.

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
    CHECKPOINTS_PREFIX,
    EVENTS_PREFIX,
    FRAMES_PREFIX,
    POLICY_BUCKET,
    SOURCES_BUCKET,
    TRACKS_PREFIX,
    VIEWS_PREFIX,
    AuditStream,
    CheckpointStream,
    DeadLetterStream,
    EventsStream,
    FramesStream,
    TracksStream,
    ViewsStream,
    audit_subject,
    bucket_notifications,
    deadletter_subject,
    provisioned_stream_names,
)

__all__ = [
    "BUCKET_WRITER",
    "LOCAL_API",
    "POLICY_BUCKET",
    "POLICY_STREAM",
    "PROVISIONER",
    "ROLES",
    "SERVICES",
    "SOURCES_BUCKET",
    "SOURCES_STREAM",
    "SOURCES_VAULT",
    "STREAM_OWNERS",
    "ServicePermissions",
    "account_name",
    "all_permissions",
    "api_prefix",
    "bucket_readers",
    "inbox_prefix",
    "owner_of",
    "permissions_for",
    "subject_matches",
    "user_name",
]

# Every Vigie service, in pipeline order. Each has a NATS account and a user of the same name.
SERVICES: tuple[str, ...] = ("ingest", "inference", "anonymiser", "aggregation", "registry", "audit")
# The one-shot role that creates and configures every stream and bucket (vigie_core.provision); its NATS
# account and user have the same name.
PROVISIONER = "provisioner"
# Every NATS user of Vigie: the services, then the provisioner.
ROLES: tuple[str, ...] = (*SERVICES, PROVISIONER)
# The JetStream API of a client's own account.
LOCAL_API = "$JS.API"


def _name(config_name: str | None) -> str:
    assert config_name is not None
    return config_name


FRAMES = _name(FramesStream().config().name)
TRACKS = _name(TracksStream().config().name)
EVENTS = _name(EventsStream().config().name)
AUDIT = _name(AuditStream().config().name)
CHECKPOINTS = _name(CheckpointStream().config().name)
VIEWS = _name(ViewsStream().config().name)
POLICY_STREAM = f"KV_{POLICY_BUCKET}"
SOURCES_STREAM = f"KV_{SOURCES_BUCKET}"

# An account that holds data and has no user at all: nobody can make the server write in it on their
# behalf. The sources bucket is there: written by the registry, read by ingest, each through imports, so
# that neither a compromised ingest (its only reader) nor anyone else can rewrite it.
SOURCES_VAULT = "sources"
# Which account holds each stream: that of the service that reads it, so that what the server delivers on
# that reader's behalf stays in its account. The policy bucket, read by three services, stays with the
# registry that writes it; the sources bucket is in its own account, without users.
STREAM_OWNERS: Mapping[str, str] = {
    FRAMES: "inference",
    TRACKS: "anonymiser",
    _name(DeadLetterStream("anonymiser").config().name): "anonymiser",
    CHECKPOINTS: "anonymiser",
    EVENTS: "aggregation",
    _name(DeadLetterStream("aggregation").config().name): "aggregation",
    AUDIT: "audit",
    VIEWS: "registry",
    POLICY_STREAM: "registry",
    SOURCES_STREAM: SOURCES_VAULT,
}
# Who reads each bucket; the registry writes both.
_BUCKET_READERS: Mapping[str, tuple[str, ...]] = {
    POLICY_BUCKET: ("ingest", "inference", "anonymiser"),
    SOURCES_BUCKET: ("ingest",),
}
BUCKET_WRITER = "registry"


def user_name(service: str) -> str:
    """The NATS user of a service (or of the provisioner)."""
    if service not in ROLES:
        raise ValueError(f"unknown service {service!r}; known: {', '.join(ROLES)}")
    return service


def account_name(owner: str) -> str:
    """The NATS account of a service, of the provisioner, or of the sources vault: its name in capitals."""
    if owner != SOURCES_VAULT:
        user_name(owner)  # a clear error for an unknown name
    return owner.upper()


def inbox_prefix(user: str) -> str:
    """The inbox prefix a user's client must use: its replies and fetched messages arrive under it."""
    return f"_INBOX_{user}"


def owner_of(stream: str) -> str:
    """The service whose account holds ``stream``."""
    try:
        return STREAM_OWNERS[stream]
    except KeyError:
        raise ValueError(f"unknown stream {stream!r}; known: {', '.join(STREAM_OWNERS)}") from None


def api_prefix(service: str, stream: str, *, accounts: bool = True) -> str:
    """The JetStream API prefix under which ``service`` reaches ``stream``: its own account's (``$JS.API``)
    when it holds the stream, else the holder's, imported as ``$JS.<ACCOUNT>.API``. ``accounts`` False: one
    account for everything (an unsecured server, for tests and tools), where every stream is local."""
    owner = owner_of(stream)
    user_name(service)
    if not accounts or owner == service:
        return LOCAL_API
    return f"$JS.{account_name(owner)}.API"


def bucket_readers(bucket: str) -> tuple[str, ...]:
    """The services that read a bucket (the registry, which writes it, apart)."""
    return _BUCKET_READERS[bucket]


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
    """What one service's (or the provisioner's) NATS user may publish and subscribe to in its account
    (allow lists; the rest is denied)."""

    service: str
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]

    @property
    def user(self) -> str:
        return user_name(self.service)

    @property
    def account(self) -> str:
        return account_name(self.service)

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


def _looks_up(service: str, stream: str) -> list[str]:
    """Look the stream up, to wait for it and check it; never create or change it."""
    return [f"{api_prefix(service, stream)}.STREAM.INFO.{stream}"]


def _provisions(stream: str) -> list[str]:
    """Create the stream and keep its configuration up to date (the provisioner alone; never delete)."""
    api = api_prefix(PROVISIONER, stream)
    return [f"{api}.STREAM.{action}.{stream}" for action in ("INFO", "CREATE", "UPDATE")]


def _consumes(stream: str) -> list[str]:
    """Look the stream of its own account up, create or bind its durable pull consumers, fetch, and
    acknowledge."""
    return [
        f"{LOCAL_API}.STREAM.INFO.{stream}",
        f"{LOCAL_API}.CONSUMER.INFO.{stream}.*",
        f"{LOCAL_API}.CONSUMER.CREATE.{stream}.*",
        f"{LOCAL_API}.CONSUMER.CREATE.{stream}.*.>",  # the form with a filter subject (nats-server >= 2.9)
        f"{LOCAL_API}.CONSUMER.DURABLE.CREATE.{stream}.*",
        f"{LOCAL_API}.CONSUMER.MSG.NEXT.{stream}.*",
        f"$JS.ACK.{stream}.>",
    ]


def _reads_bucket(service: str, bucket: str) -> list[str]:
    """Get a bucket's entries (direct gets, one or a batch): no consumer, so nothing the server could
    deliver elsewhere. Its changes are followed by subscribing to ``vigie.kv.<bucket>.>`` (see
    subscriptions): the bucket's stored writes, announced headers only, imported one way."""
    stream = f"KV_{bucket}"
    api = api_prefix(service, stream)
    return [f"{api}.DIRECT.GET.{stream}", f"{api}.DIRECT.GET.{stream}.>"]


def _writes_bucket(bucket: str) -> list[str]:
    """Bind the bucket, put and delete its keys (the provisioner creates the bucket)."""
    stream = f"KV_{bucket}"
    return [f"{api_prefix(BUCKET_WRITER, stream)}.STREAM.INFO.{stream}", f"$KV.{bucket}.>"]


def _checkpoints() -> list[str]:
    """Save each camera's counting state (one message per camera, in its own account) and read it back at
    start (direct gets, and the stream's info to list the cameras saved)."""
    return [
        f"{CHECKPOINTS_PREFIX}.>",
        f"{LOCAL_API}.STREAM.INFO.{CHECKPOINTS}",
        f"{LOCAL_API}.DIRECT.GET.{CHECKPOINTS}",
        f"{LOCAL_API}.DIRECT.GET.{CHECKPOINTS}.>",
    ]


def _reads_views() -> list[str]:
    """Read each camera's latest scene view in its own account (direct gets, by camera subject; the stream's
    info): no consumer."""
    return [
        f"{LOCAL_API}.STREAM.INFO.{VIEWS}",
        f"{LOCAL_API}.DIRECT.GET.{VIEWS}",
        f"{LOCAL_API}.DIRECT.GET.{VIEWS}.>",
    ]


def _dead_letters(service: str) -> list[str]:
    """Set rejected messages aside on ``vigie.deadletter.<service>``, stored in ``DEADLETTER_<SERVICE>``."""
    return [deadletter_subject(service), *_looks_up(service, _name(DeadLetterStream(service).config().name))]


@cache
def all_permissions() -> Mapping[str, ServicePermissions]:
    """Every service's permissions, by service name, then the provisioner's (:data:`ROLES`)."""
    publish: dict[str, list[str]] = {
        "ingest": [f"{FRAMES_PREFIX}.*", *_looks_up("ingest", FRAMES)],
        "inference": [
            f"{TRACKS_PREFIX}.*",
            *_looks_up("inference", TRACKS),
            *_consumes(FRAMES),
            # Scene views, into the registry's VIEWS through an import; never read back.
            f"{VIEWS_PREFIX}.*",
        ],
        "anonymiser": [
            f"{EVENTS_PREFIX}.*",
            *_looks_up("anonymiser", EVENTS),
            *_consumes(TRACKS),
            *_dead_letters("anonymiser"),
            *_checkpoints(),
        ],
        "aggregation": [*_consumes(EVENTS), *_dead_letters("aggregation")],
        "registry": [
            *_writes_bucket(POLICY_BUCKET),
            *_writes_bucket(SOURCES_BUCKET),
            # It reads back what it writes (its writes are conditional on the revision read).
            *_reads_bucket("registry", POLICY_BUCKET),
            *_reads_bucket("registry", SOURCES_BUCKET),
            *_reads_views(),
        ],
        "audit": _consumes(AUDIT),
    }
    permissions = {}
    for service in SERVICES:
        buckets = [bucket for bucket, readers in _BUCKET_READERS.items() if service in readers]
        allowed = [
            *publish[service],
            *(subject for bucket in buckets for subject in _reads_bucket(service, bucket)),
            audit_subject(service),
        ]
        permissions[service] = ServicePermissions(
            service=service,
            publish=tuple(dict.fromkeys(allowed)),  # without repeats, in a stable order
            subscribe=(
                f"{inbox_prefix(user_name(service))}.>",
                # Notifications of a bucket's stored writes (the watcher then gets the entry itself).
                *(f"{bucket_notifications(bucket)}.>" for bucket in buckets),
            ),
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


def _as_json() -> str:
    document = {
        service: {
            "account": p.account,
            "user": p.user,
            "inbox_prefix": p.inbox_prefix,
            "permissions": p.nats_permissions(),
        }
        for service, p in all_permissions().items()
    }
    return json.dumps(document, indent=2) + "\n"


def _as_table(services: Iterable[str]) -> str:
    lines = ["| service (account, user) | may publish | may subscribe |", "|---|---|---|"]
    for service in services:
        p = permissions_for(service)
        publish = "<br>".join(f"`{s}`" for s in p.publish)
        subscribe = "<br>".join(f"`{s}`" for s in p.subscribe)
        lines.append(f"| {service} ({p.account}, {p.user}) | {publish} | {subscribe} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vigie_core.permissions", description="Print each service's NATS permissions."
    )
    parser.add_argument(
        "format", choices=("json", "table"), help="json: a document for tools; table: Markdown"
    )
    args = parser.parse_args(argv)
    sys.stdout.write(_as_json() if args.format == "json" else _as_table(ROLES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
