"""The JetStream streams and subjects of Vigie, defined once.

FRAMES is the only stream that carries pixels: memory storage, seconds of retention. FRAMES and TRACKS
are partitioned by camera: a subject transform stores ``vigie.frames.<camera>`` as
``vigie.frames.<partition>.<camera>`` (a hash of the camera id), so each replica of their consumer
(inference, the anonymiser) takes one partition with its own durable consumer, and all messages of a
camera reach one replica, in order. Publishers and core subscribers keep using ``<prefix>.<camera>``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig, SubjectTransform

FRAMES_PREFIX = "vigie.frames"
TRACKS_PREFIX = "vigie.tracks"
AUDIT_PREFIX = "vigie.audit"


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
            num_replicas=1,
        )


@dataclass(frozen=True, slots=True)
class TracksStream:
    partitions: int = 1
    max_age_s: float = 60.0
    max_bytes: int = 256 * 1024 * 1024

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
            num_replicas=1,
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
            num_replicas=1,
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
            num_replicas=1,
        )
