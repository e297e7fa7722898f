"""TRACKS messages in, checked: a `TrackFrame` becomes a `TrackObservation` or an error naming the field.

This is the only module that reads track ids from the wire; they go no further than the per-camera state
in :mod:`vigie_anonymiser.camera`.

A TRACKS message carrying fields a TrackFrame does not have is a boundary fault, not merely a malformed
message: TRACKS may hold boxes and track ids only, and protobuf would otherwise parse, say, a Frame
published on TRACKS into a harmless-looking empty TrackFrame, its pixels kept aside as unknown fields.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass

from google.protobuf.message import DecodeError
from google.protobuf.unknown_fields import UnknownFieldSet

from vigie_anonymiser.geometry import BoxTuple
from vigie_proto.v1.tracks_pb2 import Box, ObjectClass, TrackedObject, TrackFrame

__all__ = [
    "InvalidTrackFrameError",
    "ObservedObject",
    "TrackObservation",
    "TracksBoundaryFaultError",
    "is_camera_id",
    "parse_track_frame",
]

TRACK_ID_BYTES = 16
_CAMERA_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_KNOWN_CLASSES = frozenset(v for v in ObjectClass.values() if v != ObjectClass.OBJECT_CLASS_UNSPECIFIED)
# Boxes are normalised to [0, 1]; float32 rounding may put an edge a hair outside.
_BOX_SLACK = 1e-3
# Capture times outside these bounds are a broken clock or a broken message (2000-01-01 to 2200-01-01).
_EARLIEST, _LATEST = 946_684_800.0, 7_258_118_400.0


class InvalidTrackFrameError(ValueError):
    """A TRACKS message that cannot be counted; `field` names the offending field. The message says what
    is wrong, never the values (a box, a track id, text from the wire): it is logged and set aside."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field


class TracksBoundaryFaultError(InvalidTrackFrameError):
    """A TRACKS message with data a TrackFrame has no field for (pixels, another message's fields).

    It must be kept nowhere, not even on the dead-letter subject: what it carries is unknown.
    ``field_numbers`` are the unknown fields of the TrackFrame itself (0 when only a nested message had
    some), ``unknown_bytes`` how many bytes they take.
    """

    def __init__(self, field_numbers: tuple[int, ...], unknown_bytes: int) -> None:
        numbers = ", ".join(str(n) for n in field_numbers) or "in nested messages"
        super().__init__(
            "message",
            f"{unknown_bytes} bytes in fields a TrackFrame does not have ({numbers}): "
            "data TRACKS must not carry",
        )
        self.field_numbers = field_numbers
        self.unknown_bytes = unknown_bytes


@dataclass(frozen=True, slots=True)
class ObservedObject:
    track_id: bytes
    object_class: int
    box: BoxTuple
    # Where the tracker first saw this track, in the message that first reports it (see tracks.proto).
    first_box: BoxTuple | None = None


@dataclass(frozen=True, slots=True)
class TrackObservation:
    """One TrackFrame, checked. `captured_at` is in seconds since the Unix epoch; `fingerprint` tells a
    redelivered copy from another message with the same sequence (it leaves the process only in the
    anonymiser's own checkpoints)."""

    camera_id: str
    run_id: str
    sequence: int
    captured_at: float
    objects: tuple[ObservedObject, ...]
    ended: tuple[bytes, ...]
    model: str
    fingerprint: int


def is_camera_id(value: str) -> bool:
    """Whether ``value`` is a valid camera id (one NATS subject token of [A-Za-z0-9_-])."""
    return bool(_CAMERA_ID.fullmatch(value))


def parse_track_frame(data: bytes, subject_camera: str | None = None) -> TrackObservation:
    """Decode and check a TrackFrame; `subject_camera` is the camera its subject names, if known."""
    try:
        frame = TrackFrame.FromString(data)
    except DecodeError as error:
        raise InvalidTrackFrameError("message", f"not a vigie.v1.TrackFrame ({error})") from error
    _refuse_unknown_fields(frame)
    if not _CAMERA_ID.fullmatch(frame.camera_id):
        raise InvalidTrackFrameError("camera_id", "is not 1 to 64 letters, digits, '-' or '_'")
    if subject_camera is not None and frame.camera_id != subject_camera:
        named = repr(subject_camera) if is_camera_id(subject_camera) else "(not a camera id)"
        raise InvalidTrackFrameError(
            "camera_id", f"{frame.camera_id!r} differs from the camera of the subject, {named}"
        )
    if not frame.run_id:
        raise InvalidTrackFrameError("run_id", "is empty")
    if not frame.HasField("captured_at"):
        raise InvalidTrackFrameError("captured_at", "is missing")
    captured_at = frame.captured_at.seconds + frame.captured_at.nanos * 1e-9
    if not _EARLIEST <= captured_at <= _LATEST:
        raise InvalidTrackFrameError("captured_at", f"{captured_at} s since 1970 is not a plausible time")
    objects = tuple(_object(i, o) for i, o in enumerate(frame.objects))
    if len({o.track_id for o in objects}) != len(objects):
        raise InvalidTrackFrameError("objects.track_id", "the same track appears twice in one frame")
    for i, ended in enumerate(frame.ended_track_ids):
        if len(ended) != TRACK_ID_BYTES:
            raise InvalidTrackFrameError(
                f"ended_track_ids[{i}]", f"has {len(ended)} bytes, expected {TRACK_ID_BYTES}"
            )
    return TrackObservation(
        camera_id=frame.camera_id,
        run_id=frame.run_id,
        sequence=frame.sequence,
        captured_at=captured_at,
        objects=objects,
        ended=tuple(frame.ended_track_ids),
        model=frame.model,
        fingerprint=fingerprint(data),
    )


def fingerprint(data: bytes) -> int:
    """A digest of a message's bytes, the same in every process (Python's ``hash`` is salted per process:
    a checkpointed fingerprint must still recognise the redelivered copy after a restart)."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8, person=b"vigie-tracks-fp").digest())


def _refuse_unknown_fields(frame: TrackFrame) -> None:
    known = TrackFrame()
    known.CopyFrom(frame)
    known.DiscardUnknownFields()  # recursive: nested objects and boxes too
    unknown_bytes = frame.ByteSize() - known.ByteSize()
    if unknown_bytes:
        fields = UnknownFieldSet(frame)
        numbers = tuple(sorted({int(fields[i].field_number) for i in range(len(fields))}))
        raise TracksBoundaryFaultError(numbers, unknown_bytes)


def _object(index: int, obj: TrackedObject) -> ObservedObject:
    where = f"objects[{index}]"
    if len(obj.track_id) != TRACK_ID_BYTES:
        raise InvalidTrackFrameError(
            f"{where}.track_id", f"has {len(obj.track_id)} bytes, expected {TRACK_ID_BYTES}"
        )
    if obj.object_class not in _KNOWN_CLASSES:
        raise InvalidTrackFrameError(f"{where}.object_class", f"{obj.object_class} is not a counted class")
    if not obj.HasField("box"):
        raise InvalidTrackFrameError(f"{where}.box", "is missing")
    box = _box(f"{where}.box", obj.box)
    first_box = _box(f"{where}.first_box", obj.first_box) if obj.HasField("first_box") else None
    return ObservedObject(
        track_id=obj.track_id, object_class=int(obj.object_class), box=box, first_box=first_box
    )


def _box(where: str, message: Box) -> BoxTuple:
    box = (message.x1, message.y1, message.x2, message.y2)
    if not all(math.isfinite(v) and -_BOX_SLACK <= v <= 1.0 + _BOX_SLACK for v in box):
        raise InvalidTrackFrameError(where, "is not within the picture (0 to 1)")
    if box[2] < box[0] or box[3] < box[1]:
        raise InvalidTrackFrameError(where, "has x2 < x1 or y2 < y1")
    return box
