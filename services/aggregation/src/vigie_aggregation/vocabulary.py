"""The names the API and the metrics use for the protobuf enums, defined once."""

from __future__ import annotations

from vigie_proto.v1.events_pb2 import CrossingDirection
from vigie_proto.v1.tracks_pb2 import ObjectClass

__all__ = [
    "ALL",
    "ALL_CLASSES",
    "ALL_DIRECTIONS",
    "DIRECTION_CODES",
    "DIRECTION_NAMES",
    "OBJECT_CLASS_CODES",
    "OBJECT_CLASS_NAMES",
    "dwell_bucket_key",
]

# The label of a total over a dimension (every direction, every class, every dwell bucket).
ALL = "all"

OBJECT_CLASS_NAMES: dict[int, str] = {
    int(code): ObjectClass.Name(code).removeprefix("OBJECT_CLASS_").lower()
    for code in ObjectClass.values()
    if code != ObjectClass.OBJECT_CLASS_UNSPECIFIED
}
OBJECT_CLASS_CODES: dict[str, int] = {name: code for code, name in OBJECT_CLASS_NAMES.items()}
# What a report that does not say which classes it counted (one from before events.proto said) counted.
ALL_CLASSES: frozenset[int] = frozenset(OBJECT_CLASS_NAMES)

DIRECTION_NAMES: dict[int, str] = {
    int(code): CrossingDirection.Name(code).removeprefix("CROSSING_DIRECTION_").lower()
    for code in CrossingDirection.values()
    if code != CrossingDirection.CROSSING_DIRECTION_UNSPECIFIED
}
DIRECTION_CODES: dict[str, int] = {name: code for code, name in DIRECTION_NAMES.items()}
# What a line a report does not list in one_way_lines (or one from before that field) counted.
ALL_DIRECTIONS: frozenset[int] = frozenset(DIRECTION_NAMES)


def dwell_bucket_key(min_seconds: int, max_seconds: int) -> str:
    """``"60-300"`` for stays of 60 s to under 300 s, ``"300-"`` for 300 s or more (max 0: no bound)."""
    return f"{min_seconds}-{max_seconds}" if max_seconds else f"{min_seconds}-"
