"""What the journal appends: an audit event as it arrived, plus when it was logged, as one Merkle leaf.

A leaf is the deterministic protobuf serialisation of an :class:`AuditLogEntry`; the journal stores those
bytes verbatim and never re-encodes them, so the leaf hash can be recomputed by anyone from what is
stored or exported. The columns the API filters on (actor, action, cameras...) are copies taken from the
leaf, and the verifier checks that they still agree with it.

Pure: no database, network or web code.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp

from vigie_core.audit import action_name, outcome_name
from vigie_proto.v1.audit_pb2 import AuditEvent, AuditLogEntry


def _timestamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value.astimezone(UTC))
    return stamp


class LeafEncoder:
    """Encodes the leaves of one batch, which share their ``logged_at``."""

    def __init__(self, logged_at: datetime) -> None:
        self._logged_at = _timestamp(logged_at)
        # As the leaf holds it, to the microsecond the database keeps.
        self.logged_at = to_datetime(self._logged_at)

    def encode(self, event: AuditEvent) -> bytes:
        entry = AuditLogEntry(event=event, logged_at=self._logged_at)
        return entry.SerializeToString(deterministic=True)


def encode_leaf(event: AuditEvent, logged_at: datetime) -> bytes:
    return LeafEncoder(logged_at).encode(event)


def decode_leaf(leaf: bytes) -> AuditLogEntry:
    try:
        entry = AuditLogEntry.FromString(leaf)
    except DecodeError as error:
        raise ValueError(f"the stored leaf is not an AuditLogEntry: {error}") from None
    if entry.SerializeToString(deterministic=True) != leaf:
        raise ValueError("the stored leaf is not in the journal's canonical encoding")
    return entry


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_datetime(stamp: Timestamp) -> datetime:
    """An aware UTC datetime, to the microsecond (protobuf's ToDatetime, without its cost per call)."""
    return _EPOCH + timedelta(seconds=stamp.seconds, microseconds=stamp.nanos // 1000)


@dataclass(frozen=True, slots=True)
class IndexedColumns:
    """The copies of a leaf's fields that the database indexes for filtering."""

    event_id: str
    logged_at: datetime
    occurred_at: datetime
    service: str
    actor: str
    action: str
    outcome: str
    camera_ids: tuple[str, ...]

    @classmethod
    def of(cls, entry: AuditLogEntry) -> IndexedColumns:
        return cls.of_event(entry.event, to_datetime(entry.logged_at))

    @classmethod
    def of_event(cls, event: AuditEvent, logged_at: datetime) -> IndexedColumns:
        """``logged_at`` as the leaf holds it (see :attr:`LeafEncoder.logged_at`)."""
        return cls(
            event_id=event.event_id,
            logged_at=logged_at,
            occurred_at=to_datetime(event.occurred_at),
            service=event.service,
            actor=event.actor,
            action=action_name(event.action),
            outcome=outcome_name(event.outcome),
            # Sorted and de-duplicated as the database's (camera, entry) key holds them.
            camera_ids=tuple(sorted(set(event.camera_ids))),
        )


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def entry_document(index: int, leaf: bytes, leaf_hash: bytes) -> dict[str, Any]:
    """The JSON the audit API returns for a leaf still holding its payload."""
    entry = decode_leaf(leaf)
    event = entry.event
    window = event.data_time_range
    return {
        "index": index,
        "event_id": event.event_id,
        "pruned": False,
        "logged_at": _iso(to_datetime(entry.logged_at)),
        "occurred_at": _iso(to_datetime(event.occurred_at)),
        "service": event.service,
        "actor": event.actor,
        "action": action_name(event.action),
        "outcome": outcome_name(event.outcome),
        "motive": event.motive,
        "camera_ids": list(event.camera_ids),
        "records": [{"kind": r.kind, "id": r.id} for r in event.records],
        "data_time_range": {
            "start": _iso(to_datetime(window.start)) if window.HasField("start") else None,
            "end": _iso(to_datetime(window.end)) if window.HasField("end") else None,
        }
        if event.HasField("data_time_range")
        else None,
        "details": dict(sorted(event.details.items())),
        "leaf_hash": leaf_hash.hex(),
        "leaf": base64.b64encode(leaf).decode(),
    }


def pruned_entry_document(
    index: int,
    event_id: str,
    logged_at: datetime,
    service: str,
    action: str,
    pruned_at: datetime | None,
    leaf_hash: bytes,
) -> dict[str, Any]:
    """What remains of an entry after retention removed its payload: its hash keeps proofs working."""
    return {
        "index": index,
        "event_id": event_id,
        "pruned": True,
        "pruned_at": _iso(pruned_at) if pruned_at else None,
        "logged_at": _iso(logged_at),
        "service": service,
        "action": action,
        "leaf_hash": leaf_hash.hex(),
        "leaf": None,
    }
