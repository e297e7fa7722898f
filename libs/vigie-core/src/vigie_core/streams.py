"""The JetStream streams and subjects of Vigie, defined once.

FRAMES is the only stream that carries pixels: memory storage, seconds of retention. Its subject
transform partitions cameras deterministically (``vigie.frames.<camera>`` is stored as
``vigie.frames.<partition>.<camera>``) so that each inference replica consumes one partition with its
own durable consumer: all frames of a camera reach the same tracker, in order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig, SubjectTransform

FRAMES_PREFIX = "vigie.frames"
TRACKS_PREFIX = "vigie.tracks"


def frames_subject(camera_id: str) -> str:
    """The subject ingest publishes a camera's frames to."""
    return f"{FRAMES_PREFIX}.{camera_id}"


def frames_partition_filter(partition: int) -> str:
    """The stored subjects of one partition of FRAMES, for an inference replica's consumer."""
    return f"{FRAMES_PREFIX}.{partition}.*"


def frames_partitions(config: StreamConfig) -> int:
    """How many partitions an existing FRAMES stream's subject transform splits cameras into."""
    transform = config.subject_transform
    match = re.search(r"partition\((\d+),", transform.dest if transform and transform.dest else "")
    return int(match.group(1)) if match else 1


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
            subject_transform=SubjectTransform(
                src=f"{FRAMES_PREFIX}.*",
                dest=f"{FRAMES_PREFIX}.{{{{partition({self.partitions},1)}}}}.{{{{wildcard(1)}}}}",
            ),
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
    max_age_s: float = 60.0
    max_bytes: int = 256 * 1024 * 1024

    def config(self) -> StreamConfig:
        return StreamConfig(
            name="TRACKS",
            description="Boxes and ephemeral track ids from inference; only the anonymiser reads them.",
            subjects=[f"{TRACKS_PREFIX}.*"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.MEMORY,
            discard=DiscardPolicy.OLD,
            max_age=self.max_age_s,
            max_bytes=self.max_bytes,
            num_replicas=1,
        )
