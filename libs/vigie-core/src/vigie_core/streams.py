"""The JetStream streams and subjects of Vigie, defined once.

They are created and kept up to date by the provisioner alone (:mod:`vigie_core.provision`); the services
only bind them (:func:`vigie_core.messaging.ensure_stream`).

FRAMES is the only stream that carries pixels: memory storage, seconds of retention. FRAMES and TRACKS
are partitioned by camera: a subject transform stores ``vigie.frames.<camera>`` as
``vigie.frames.<partition>.<camera>`` (a hash of the camera id), so each replica of their consumer
(inference, the anonymiser) takes one partition with its own durable consumer, and all messages of a
camera reach one replica, in order. Publishers and core subscribers keep using ``<prefix>.<camera>``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    RePublish,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    SubjectTransform,
)

FRAMES_PREFIX = "vigie.frames"
TRACKS_PREFIX = "vigie.tracks"
AUDIT_PREFIX = "vigie.audit"
# The NATS KV bucket the registry writes the policy to (cameras, masks, pauses, zones) and every service
# watches.
POLICY_BUCKET = "vigie-policy"
# The NATS KV bucket the registry writes the cameras' sealed source URLs to; ingest alone reads it.
SOURCES_BUCKET = "vigie-sources"
# The buckets' stored writes are announced under this prefix (bucket_notifications).
KV_NOTIFICATIONS_PREFIX = "vigie.kv"
# The anonymiser's checkpoints: ``<this>.<partition>.<camera>`` (CheckpointStream).
CHECKPOINTS_PREFIX = "vigie.checkpoint.anonymiser"
# The views of the cameras' scenes without their people (views.proto): ``<this>.<camera>`` (ViewsStream).
VIEWS_PREFIX = "vigie.views"


# The longest any configuration may keep pixels and track ids (seconds): a stream found keeping them
# longer, or for ever, has been changed behind Vigie's back (vigie_core.messaging.check_stream).
RETENTION_CEILINGS_S = {"FRAMES": 600.0, "TRACKS": 3600.0, "CHECKPOINT_ANONYMISER": 3600.0}


def frames_subject(camera_id: str) -> str:
    """The subject ingest publishes a camera's frames to."""
    return f"{FRAMES_PREFIX}.{camera_id}"


def partition_filter(prefix: str, partition: int) -> str:
    """The stored subjects of one partition of a partitioned stream, for one replica's consumer."""
    return f"{prefix}.{partition}.*"


def frames_partition_filter(partition: int) -> str:
    return partition_filter(FRAMES_PREFIX, partition)


def partitions_of(config: StreamConfig) -> int:
    """How many partitions an existing stream's subject transform splits cameras into."""
    transform = config.subject_transform
    match = re.search(r"partition\((\d+),", transform.dest if transform and transform.dest else "")
    return int(match.group(1)) if match else 1


def _partitioning(prefix: str, partitions: int) -> SubjectTransform:
    return SubjectTransform(
        src=f"{prefix}.*", dest=f"{prefix}.{{{{partition({partitions},1)}}}}.{{{{wildcard(1)}}}}"
    )


def tracks_subject(camera_id: str) -> str:
    return f"{TRACKS_PREFIX}.{camera_id}"


@dataclass(frozen=True, slots=True)
class FramesStream:
    partitions: int = 1
    max_age_s: float = 5.0
    max_bytes: int = 256 * 1024 * 1024
    # A frame fits in about 520 KB (416x234 RGB is 292 KB); this bound refuses anything larger.
    max_msg_size: int = 1024 * 1024
    replicas: int = 1

    def config(self) -> StreamConfig:
        return StreamConfig(
            name="FRAMES",
            description="Frames from ingest to inference. Pixels: never leaves the inference boundary.",
            subjects=[f"{FRAMES_PREFIX}.*"],
            subject_transform=_partitioning(FRAMES_PREFIX, self.partitions),
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.MEMORY,
            discard=DiscardPolicy.OLD,
            max_age=self.max_age_s,
            max_bytes=self.max_bytes,
            max_msg_size=self.max_msg_size,
            num_replicas=self.replicas,
        )


@dataclass(frozen=True, slots=True)
class TracksStream:
    partitions: int = 1
    max_age_s: float = 60.0
    max_bytes: int = 256 * 1024 * 1024
    # At most 300 tracked objects a frame, about 20 KB; no frame fits (at least 146 KB: 416 pixels wide,
    # RGB), so not even the server can be made to store one here.
    max_msg_size: int = 64 * 1024
    replicas: int = 1

    def config(self) -> StreamConfig:
        return StreamConfig(
            name="TRACKS",
            description="Boxes and ephemeral track ids from inference; only the anonymiser reads them.",
            subjects=[f"{TRACKS_PREFIX}.*"],
            subject_transform=_partitioning(TRACKS_PREFIX, self.partitions),
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.MEMORY,
            discard=DiscardPolicy.OLD,
            max_age=self.max_age_s,
            max_bytes=self.max_bytes,
            max_msg_size=self.max_msg_size,
            num_replicas=self.replicas,
        )


def audit_subject(service: str) -> str:
    """The subject a service publishes its audit events to (its NATS user may publish only there)."""
    return f"{AUDIT_PREFIX}.{service}"


@dataclass(frozen=True, slots=True)
class AuditStream:
    """AUDIT: every service's audit events, consumed by the audit service alone.

    A work queue: an event leaves the stream once the journal has committed it, so the stream holds only
    the backlog, and ``max_age_s`` (a year) keeps an unconsumed event as long as the journal would. When
    the backlog reaches ``max_bytes`` the stream refuses new events (discard new) instead of dropping old
    ones: publishers keep them in their buffer and count the failure. ``Nats-Msg-Id`` (the event id)
    de-duplicates a publisher's retries within ``duplicate_window_s``; the journal's unique event id
    covers anything later.
    """

    max_age_s: float = 365 * 24 * 3600.0
    max_bytes: int = 4 * 1024 * 1024 * 1024
    duplicate_window_s: float = 600.0
    max_msg_size: int = 64 * 1024
    replicas: int = 1

    def config(self) -> StreamConfig:
        return StreamConfig(
            name="AUDIT",
            description="Audit events of every service, consumed by the audit journal only.",
            subjects=[f"{AUDIT_PREFIX}.*"],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            discard=DiscardPolicy.NEW,
            max_age=self.max_age_s,
            max_bytes=self.max_bytes,
            max_msg_size=self.max_msg_size,
            duplicate_window=self.duplicate_window_s,
            num_replicas=self.replicas,
        )


EVENTS_PREFIX = "vigie.events"
DEADLETTER_PREFIX = "vigie.deadletter"


def events_subject(camera_id: str) -> str:
    """The subject the anonymiser publishes a camera's window reports to."""
    return f"{EVENTS_PREFIX}.{camera_id}"


def deadletter_subject(service: str) -> str:
    """Where a service sets aside the messages it could not process, with the reason in headers."""
    return f"{DEADLETTER_PREFIX}.{service}"


@dataclass(frozen=True, slots=True)
class EventsStream:
    """EVENTS: anonymous window reports (``vigie.v1.WindowReport``) from the anonymiser to the aggregation.

    File storage: a report is the only record of its window's counts until the aggregation has stored
    it, so it must survive a server restart; ``max_age_s`` (three days) is how long the aggregation may
    be down without a loss. ``Nats-Msg-Id`` is the report id: a copy published within
    ``duplicate_window_s`` is dropped by the server; the aggregation's unique report id covers the rest.
    """

    max_age_s: float = 3 * 24 * 3600.0
    max_bytes: int = 1024 * 1024 * 1024
    duplicate_window_s: float = 3600.0
    max_msg_size: int = 256 * 1024
    replicas: int = 1

    def config(self) -> StreamConfig:
        return StreamConfig(
            name="EVENTS",
            description="Anonymous window reports from the anonymiser; no track id, box or fine time.",
            subjects=[f"{EVENTS_PREFIX}.*"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            discard=DiscardPolicy.OLD,
            max_age=self.max_age_s,
            max_bytes=self.max_bytes,
            max_msg_size=self.max_msg_size,
            duplicate_window=self.duplicate_window_s,
            num_replicas=self.replicas,
        )


# The services that set rejected messages aside in a dead-letter stream of their own.
DEADLETTER_SERVICES: tuple[str, ...] = ("anonymiser", "aggregation")


@dataclass(frozen=True, slots=True)
class DeadLetterStream:
    """``DEADLETTER_<SERVICE>``: the messages a service rejected, with the reason in headers.

    The anonymiser's hold TRACKS messages (pseudonymous: track ids): memory storage, as TRACKS itself. The
    aggregation's hold EVENTS messages (anonymous): file storage, as EVENTS.
    """

    service: str
    max_age_s: float | None = None
    replicas: int = 1

    def __post_init__(self) -> None:
        if self.service not in DEADLETTER_SERVICES:
            raise ValueError(
                f"no dead-letter stream for {self.service!r}; known: {', '.join(DEADLETTER_SERVICES)}"
            )

    def config(self) -> StreamConfig:
        if self.service == "anonymiser":
            return StreamConfig(
                name="DEADLETTER_ANONYMISER",
                description=(
                    "TRACKS messages the anonymiser rejected, with the reason in headers. Pseudonymous."
                ),
                subjects=[deadletter_subject("anonymiser")],
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.MEMORY,
                discard=DiscardPolicy.OLD,
                max_age=self.max_age_s if self.max_age_s is not None else 3600.0,
                max_bytes=64 * 1024 * 1024,
                num_replicas=self.replicas,
            )
        return StreamConfig(
            name="DEADLETTER_AGGREGATION",
            description="EVENTS messages the aggregation rejected, with the field and reason in headers.",
            subjects=[deadletter_subject("aggregation")],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            discard=DiscardPolicy.OLD,
            max_age=self.max_age_s if self.max_age_s is not None else 7 * 24 * 3600.0,
            max_bytes=256 * 1024 * 1024,
            duplicate_window=600.0,
            num_replicas=self.replicas,
        )


@dataclass(frozen=True, slots=True)
class CheckpointStream:
    """``CHECKPOINT_ANONYMISER``: each camera's counting state, as the anonymiser last saved it, so that a
    replica restarting after a crash goes on where it stopped rather than losing the open window.

    One message per camera (the latest), in memory only and in the anonymiser's account alone: it holds
    what TRACKS holds (live track ids and their last boxes, pseudonymous), so no longer than TRACKS may
    keep them (its retention ceiling), and the open window's counts.
    """

    max_age_s: float = RETENTION_CEILINGS_S["TRACKS"]
    max_bytes: int = 64 * 1024 * 1024
    max_msg_size: int = 1024 * 1024
    replicas: int = 1

    def config(self) -> StreamConfig:
        return StreamConfig(
            name="CHECKPOINT_ANONYMISER",
            description="The anonymiser's counting state per camera, the latest only. Pseudonymous.",
            subjects=[f"{CHECKPOINTS_PREFIX}.*.*"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.MEMORY,
            discard=DiscardPolicy.OLD,
            max_age=self.max_age_s,
            max_bytes=self.max_bytes,
            max_msg_size=self.max_msg_size,
            max_msgs_per_subject=1,
            allow_direct=True,
            num_replicas=self.replicas,
        )


def views_subject(camera_id: str) -> str:
    """Where inference publishes a camera's view, or why none (a SceneViewResult)."""
    return f"{VIEWS_PREFIX}.{camera_id}"


@dataclass(frozen=True, slots=True)
class ViewsStream:
    """``VIEWS``: each camera's latest scene view (a SceneViewResult: the picture without its people, or why
    none), published by inference, read by the registry, in the registry's account.

    One message per camera, replaced by the next; each at most ``max_msg_size`` (a view is capped below it),
    so the broker, not inference's goodwill, bounds what this path can carry. Kept in memory, for
    ``max_age_s`` at most: a broker restart loses the views, and an operator asks again.
    """

    max_age_s: float = 30 * 24 * 3600.0
    max_bytes: int = 64 * 1024 * 1024
    max_msg_size: int = 256 * 1024
    replicas: int = 1

    def config(self) -> StreamConfig:
        return StreamConfig(
            name="VIEWS",
            description="Vigie: each camera's latest view of its scene without its people, or why none",
            subjects=[f"{VIEWS_PREFIX}.*"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.MEMORY,
            discard=DiscardPolicy.OLD,
            max_age=self.max_age_s,
            max_bytes=self.max_bytes,
            max_msg_size=self.max_msg_size,
            max_msgs_per_subject=1,
            allow_direct=True,
            duplicate_window=120.0,
            num_replicas=self.replicas,
        )


def checkpoint_subject(partition: int, camera_id: str) -> str:
    """Where the anonymiser replica of ``partition`` saves the state of a camera."""
    return f"{CHECKPOINTS_PREFIX}.{partition}.{camera_id}"


@dataclass(frozen=True, slots=True)
class PolicyBucket:
    """The NATS KV bucket ``vigie-policy``: each camera's effective policy, written by the registry."""

    history: int = 5
    replicas: int = 1

    def config(self) -> KeyValueConfig:
        return KeyValueConfig(
            bucket=POLICY_BUCKET,
            description="Vigie: each camera's effective policy, written by the registry",
            history=self.history,
            storage=StorageType.FILE,
            max_bytes=BUCKET_MAX_BYTES,
            direct=True,
            replicas=self.replicas,
        )


@dataclass(frozen=True, slots=True)
class SourcesBucket:
    """The NATS KV bucket ``vigie-sources``: each camera's source URL, sealed, for ingest alone.

    One revision: no older sealed URL lingers in the stream.
    """

    replicas: int = 1

    def config(self) -> KeyValueConfig:
        return KeyValueConfig(
            bucket=SOURCES_BUCKET,
            description="Vigie: each camera's source URL, sealed, written by the registry for ingest",
            history=1,
            storage=StorageType.FILE,
            max_bytes=BUCKET_MAX_BYTES,
            direct=True,
            replicas=self.replicas,
        )


def bucket_stream(config: KeyValueConfig) -> StreamConfig:
    """The stream behind a KV bucket, as nats-py's ``create_key_value`` builds it (``KV_<bucket>``)."""
    return StreamConfig(
        name=f"KV_{config.bucket}",
        description=config.description,
        subjects=[f"$KV.{config.bucket}.>"],
        allow_direct=config.direct,
        allow_rollup_hdrs=True,
        allow_msg_ttl=True,
        deny_delete=True,
        discard=DiscardPolicy.NEW,
        duplicate_window=min(config.ttl, 120.0) if config.ttl else 120.0,
        max_age=config.ttl,
        max_bytes=config.max_bytes,
        max_consumers=-1,
        max_msg_size=config.max_value_size,
        max_msgs=-1,
        max_msgs_per_subject=config.history,
        num_replicas=config.replicas,
        storage=config.storage,
        retention=RetentionPolicy.LIMITS,
        # Every stored write announced, headers only (the key, the revision, no value): readers in other
        # accounts are notified through a stream import of these subjects (vigie_core.kv).
        republish=RePublish(
            src=f"$KV.{config.bucket}.>", dest=f"{bucket_notifications(config.bucket)}.>", headers_only=True
        ),
    )


def bucket_notifications(bucket: str) -> str:
    """Where a bucket's stored writes are announced (``<this>.<key>``, headers only, no value)."""
    return f"{KV_NOTIFICATIONS_PREFIX}.{bucket}"


# What each bucket may hold at most (its account's JetStream limit counts it).
BUCKET_MAX_BYTES = 64 * 1024 * 1024


def provisioned_stream_configs() -> tuple[StreamConfig, ...]:
    """Every stream the provisioner creates, as defined by default (the buckets' ``KV_<bucket>`` included), in
    its order."""
    return (
        FramesStream().config(),
        TracksStream().config(),
        EventsStream().config(),
        AuditStream().config(),
        *(DeadLetterStream(service).config() for service in DEADLETTER_SERVICES),
        CheckpointStream().config(),
        ViewsStream().config(),
        bucket_stream(PolicyBucket().config()),
        bucket_stream(SourcesBucket().config()),
    )


def provisioned_stream_names() -> tuple[str, ...]:
    """Every stream the provisioner creates (the buckets' ``KV_<bucket>`` included), in its order."""
    return tuple(config.name for config in provisioned_stream_configs() if config.name is not None)
